"""Pictures (PNG, matplotlib) of the anomaly job on a NAB series and of the bearing rules on a
FEMTO run.

Usage::

    .venv/bin/python bench/plots.py                       # both, into docs/img/
    .venv/bin/python bench/plots.py nab [--csv F] [--windows F] [--limit N] [--out F.png]
    .venv/bin/python bench/plots.py bearing [--bearing 1_1] [--out F.png]

``nab``: a Numenta Anomaly Benchmark series (default ``data/nab/machine_temperature_system_failure.csv``)
with NAB's labelled anomaly windows (``combined_windows.json``) shaded, scored reading by
reading with the anomaly job's own model functions (:func:`jobs.anomaly.step`, the job's
default parameters :class:`iotflink.settings.AnomalyJobSettings`; timestamps read as UTC, one
device, sensor ``value``, every reading in file order and none late): the values with the
job's alerts, and below them |z| with the alert threshold and the exit level of the
hysteresis.

``bearing``: a FEMTO run (default Bearing1_1) as the rule jobs see it (:mod:`iotflink.testing.bearing`,
the parameters of the rule files' headers): horizontal vibration RMS and its rolling median,
the baseline and its window after the run-in, the thresholds of bearing_vibration_rise and
bearing_failure and their alerts; the peak of the snapshots with bearing_impact_rise's median,
baseline, threshold and alerts; the bearing temperature. The alerts are those of the plain-Python definitions, which
``tests/test_rules_femto.py`` and ``bench/bearing_calibrate.py --confirm`` check against the
SQL rules on Flink.

Exit status 0, or 1 with a message on stderr when an input file is missing or unreadable.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from iotflink.errors import ConfigError
from iotflink.settings import PROJECT_ROOT, AnomalyJobSettings, RulesSettings
from iotflink.testing import bearing as br

NAB_CSV = PROJECT_ROOT / "data" / "nab" / "machine_temperature_system_failure.csv"
NAB_WINDOWS = PROJECT_ROOT / "data" / "nab" / "combined_windows.json"
IMG_DIR = PROJECT_ROOT / "docs" / "img"


def _pyplot():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC)


def score_nab(csv_path: Path, limit: int | None = None) -> dict:
    """The anomaly job's model over one NAB file.

    Returns ``{"times": [datetime UTC], "values": [float], "z": [float | None: the score the
    model decides on, max(|z|, |season_z|)], "out_of_range": [index of each reading beyond the
    range seen so far], "alerts": [index of the reading that raised an alert], "threshold",
    "exit_level"}``.

    Raises:
        ConfigError: the file is missing or a row is unreadable.
    """
    from jobs import anomaly as an  # noqa: PLC0415

    p = an.params(AnomalyJobSettings())
    times, values, zs, alerts, outside = [], [], [], [], []
    state = None
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                if limit is not None and i >= limit:
                    break
                t = _utc(row["timestamp"])
                x = float(row["value"])
                ts = int(t.timestamp() * 1000)
                res = an.step(state, an.Reading("nab", "value", i, ts, x, ts), p)
                state = res.state
                times.append(t)
                values.append(x)
                both = [abs(z) for z in (res.score.z, res.score.season_z) if z is not None]
                zs.append(max(both) if both else None)
                if res.score.out_of_range:
                    outside.append(i)
                if res.alert is not None:
                    alerts.append(i)
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"cannot read NAB series {csv_path}: {exc}") from exc
    return {"times": times, "values": values, "z": zs, "alerts": alerts, "out_of_range": outside,
            "threshold": p.threshold, "exit_level": p.exit_level}


def nab_windows(windows_path: Path, csv_path: Path) -> list[tuple[datetime, datetime]]:
    """NAB's labelled windows of the file named like ``csv_path`` (any category), UTC.

    Raises:
        ConfigError: the labels file is missing or not JSON.
    """
    try:
        labels = json.loads(Path(windows_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read NAB labels {windows_path}: {exc}") from exc
    for name, wins in labels.items():
        if name.split("/")[-1] == Path(csv_path).name:
            return [(_utc(a), _utc(b)) for a, b in wins]
    return []


def plot_nab(out: Path, csv_path: Path = NAB_CSV, windows_path: Path = NAB_WINDOWS, limit: int | None = None) -> Path:
    """Draw the NAB picture into ``out`` (PNG); returns ``out``."""
    s = score_nab(csv_path, limit)
    if not s["times"]:
        raise ConfigError(f"NAB series {csv_path} has no rows")
    wins = [(a, b) for a, b in nab_windows(windows_path, csv_path) if b >= s["times"][0] and a <= s["times"][-1]]
    plt = _pyplot()
    fig, (ax, az) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True, height_ratios=[3, 2])
    for i, (a, b) in enumerate(wins):
        for axis in (ax, az):
            axis.axvspan(a, b, color="tab:orange", alpha=0.18, lw=0, label="NAB labelled window" if i == 0 and axis is ax else None)
    ax.plot(s["times"], s["values"], lw=0.6, color="tab:blue", label="machine temperature")
    ax.plot([s["times"][i] for i in s["alerts"]], [s["values"][i] for i in s["alerts"]], "v", color="tab:red",
            ms=8, label=f"alert of the anomaly job ({len(s['alerts'])})")
    ax.plot([s["times"][i] for i in s["out_of_range"]], [s["values"][i] for i in s["out_of_range"]], ".",
            color="tab:purple", ms=3, label=f"beyond the range seen so far ({len(s['out_of_range'])})")
    ax.set_ylabel("value (NAB series unit)")
    ax.set_title(f"NAB {Path(csv_path).name}: the anomaly job's z-score model (jobs/anomaly.py, default parameters)")
    ax.legend(loc="lower left", fontsize=8)
    zt = [t for t, z in zip(s["times"], s["z"]) if z is not None]
    zv = [min(z, 12.0) for z in s["z"] if z is not None]
    az.plot(zt, zv, lw=0.6, color="tab:gray", label="max(|z|, |time-of-day z|) (clipped at 12)")
    az.axhline(s["threshold"], color="tab:red", lw=0.8, ls="--", label=f"threshold {s['threshold']:g}")
    az.axhline(s["exit_level"], color="tab:green", lw=0.8, ls=":", label=f"exit level {s['exit_level']:g}")
    az.set_ylabel("score")
    az.set_xlabel("time (UTC)")
    az.legend(loc="upper left", fontsize=8, ncol=3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def plot_bearing(out: Path, bearing: str = "1_1") -> Path:
    """Draw the bearing picture of FEMTO ``bearing`` into ``out`` (PNG); returns ``out``: the
    RMS with bearing_vibration_rise and bearing_failure, the peak with bearing_impact_rise, the
    temperature, each rule with the parameters of its header."""
    run = br.load_run(bearing, RulesSettings().out_of_orderness_ms)
    peak = br.as_feature(run, "peak_abs_g")
    pf, pr, pi = (br.shipped_params(r) for r in ("bearing_failure", "bearing_vibration_rise", "bearing_impact_rise"))
    spikes = br.spike_rise_alerts(run, pf)
    n_matches = len(br.spike_matches(run, pf))
    rises = br.vibration_rise_alerts(run, pr)
    impacts = br.vibration_rise_alerts(peak, pi)
    base_f, _ = br.baseline(run, pf.run_in_s, pf.baseline_s)
    base_r, _ = br.baseline(run, pr.run_in_s, pr.baseline_s)
    base_i, _ = br.baseline(peak, pi.run_in_s, pi.baseline_s)
    roll = br.rolling_median(run, pr.sustain_s)
    roll_i = br.rolling_median(peak, pi.sustain_s)

    def hours(ts: int) -> float:
        return (ts - run.first_ms) / 3_600_000

    plt = _pyplot()
    fig, (av, ap, at) = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True, height_ratios=[3, 3, 2])
    vt = [hours(t) for t, _s, _h in run.vib]
    av.plot(vt, [h for _t, _s, h in run.vib], lw=0.4, color="tab:blue", alpha=0.6, label="h_rms_g per 10 s snapshot")
    av.plot(vt, roll, lw=0.8, color="navy", label=f"median over {pr.sustain_s} s")
    av.axvspan(pr.run_in_s / 3600, (pr.run_in_s + pr.baseline_s) / 3600, color="tab:green", alpha=0.12, lw=0,
               label="baseline window (vibration rise)")
    if base_r is not None:
        av.axhline(base_r, color="tab:green", lw=0.9, label=f"baseline {base_r:.3f} g")
        av.axhline(pr.rise_k * base_r, color="tab:purple", lw=0.9, ls="--", label=f"{pr.rise_k:g} x baseline (rise)")
    if base_f is not None:
        av.axhline(pf.spike_k * base_f, color="tab:red", lw=0.9, ls=":", label=f"{pf.spike_k:g} x baseline (spike)")
    hv = {t: h for t, _s, h in run.vib}
    av.plot([hours(s) for s, _t0, _r in spikes], [hv[s] for s, _t0, _r in spikes], "|", color="tab:red", ms=14,
            mew=2, label=f"bearing_failure alert ({len(spikes)}; {n_matches} matches)")
    av.plot([hours(t) for t in rises], [hv[t] for t in rises], "v", color="tab:purple", ms=9,
            label=f"bearing_vibration_rise alert ({len(rises)})")
    av.axvline(hours(run.half_ms), color="gray", lw=0.8, ls="-.")
    av.set_yscale("log")
    av.set_ylabel("horizontal vibration RMS (g, log)")

    def before(alerts) -> str:
        return f"{(run.end_ms - min(alerts)) / 60_000:.0f} min" if alerts else "none"

    av.set_title(f"FEMTO Bearing{bearing}: {run.hours:.1f} h run to failure; first alert before failure: "
                 f"impact rise {before(impacts)}, vibration rise {before(rises)}, "
                 f"spike then temperature rise {before([r for _s, _t0, r in spikes])}", fontsize=9)
    av.legend(loc="upper left", fontsize=7, ncol=2)
    ap.plot(vt, [p for _t, _s, p in peak.vib], lw=0.4, color="tab:cyan", alpha=0.6,
            label="peak_abs_g per 10 s snapshot")
    ap.plot(vt, roll_i, lw=0.8, color="teal", label=f"median over {pi.sustain_s} s")
    if base_i is not None:
        ap.axhline(base_i, color="tab:green", lw=0.9, label=f"baseline {base_i:.2f} g")
        ap.axhline(pi.rise_k * base_i, color="tab:brown", lw=0.9, ls="--",
                   label=f"{pi.rise_k:g} x baseline (impact rise)")
    pv = {t: p for t, _s, p in peak.vib}
    ap.plot([hours(t) for t in impacts], [pv[t] for t in impacts], "v", color="tab:brown", ms=9,
            label=f"bearing_impact_rise alert ({len(impacts)})")
    ap.axvline(hours(run.half_ms), color="gray", lw=0.8, ls="-.")
    ap.set_yscale("log")
    ap.set_ylabel("peak acceleration (g, log)")
    ap.legend(loc="upper left", fontsize=7, ncol=2)
    at.plot([hours(t) for t, _s, _c in run.temps], [c for _t, _s, c in run.temps], lw=0.6, color="tab:orange",
            label="bearing temperature (1 s)")
    at.axvline(hours(run.half_ms), color="gray", lw=0.8, ls="-.", label="half of the run")
    tv = {t: c for t, _s, c in run.temps}
    at.plot([hours(rr) for _s, _t0, rr in spikes], [tv[rr] for _s, _t0, rr in spikes], "|", color="tab:red", ms=14,
            mew=2, label=f"rise of >= {pf.rise_c:g} C within 60 s of a spike (first of each episode)")
    at.set_ylabel("temperature (degrees C)")
    at.set_xlabel("hours since the first reading (the run ends in the bearing's failure)")
    at.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    """Draw the pictures; print the paths written."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="?", choices=["all", "nab", "bearing"], default="all")
    ap.add_argument("--csv", type=Path, default=NAB_CSV, help="NAB series (timestamp,value)")
    ap.add_argument("--windows", type=Path, default=NAB_WINDOWS, help="NAB combined_windows.json")
    ap.add_argument("--limit", type=int, default=None, help="NAB: first N rows only")
    ap.add_argument("--bearing", default="1_1", help="FEMTO bearing (1_1, 1_4 ... 2_5)")
    ap.add_argument("--out", type=Path, default=None, help="PNG path (one picture only)")
    args = ap.parse_args(argv)
    if args.out is not None and args.what == "all":
        ap.error("--out needs 'nab' or 'bearing'")
    try:
        if args.what in ("all", "nab"):
            print(plot_nab(args.out or IMG_DIR / "nab_machine_temperature.png", args.csv, args.windows, args.limit))
        if args.what in ("all", "bearing"):
            print(plot_bearing(args.out or IMG_DIR / f"bearing_{args.bearing}.png", args.bearing))
    except ConfigError as exc:
        print(f"plots: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
