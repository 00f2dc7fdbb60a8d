"""Leave-one-bearing-out calibration of the two bearing rules on eight FEMTO runs.

Usage::

    .venv/bin/python bench/bearing_calibrate.py [--procedure fixed|nested|bound] [--confirm] [--write]
    .venv/bin/python bench/bearing_calibrate.py --healthy

1. The eight FEMTO PRONOSTIA run-to-failure bearings of ``data/femto`` (1_1, 1_4..1_7 at
   1800 rpm / 4000 N; 2_1, 2_4, 2_5 at 1650 rpm / 4200 N) as the node publishes them
   (:func:`iotflink.simulation.replay.femto_rows`), late rows removed as the rule jobs do.
2. For each rule (``bearing_failure``: spike then temperature rise; ``bearing_vibration_rise``:
   sustained RMS rise) every parameter set of :func:`iotflink.testing.bearing.grid` is scored on every
   bearing by the plain-Python definition (:mod:`iotflink.testing.bearing`): the first alert before
   the end of the run (the failure), in min, and the alerts in the first half of the run.
3. For each bearing, the parameters are chosen on the seven others and judged on it. Printed:
   one table row per held-out bearing, the median warning over the eight and the first-half
   alerts. How they are chosen (``--procedure``, :func:`iotflink.testing.bearing.choose_with`;
   ``bearing_failure`` always ``fixed``): ``fixed`` (the default, what the rule files ship): no
   first-half alert on any of the seven, also with the threshold lowered by 10 %, then the
   largest median warning; ``nested``: the same with a safety margin of 1.1 to 2 chosen on the
   seven by an inner leave-one-bearing-out (nested cross-validation); ``bound``: ``fixed``, and
   the threshold at or above the 99 % prediction bound of a new bearing's healthy level from
   the seven (:func:`iotflink.testing.bearing.prediction_bound`).
4. The parameters chosen on all eight bearings: what the rule files ship (the script says so
   when a rule header holds other values).
5. ``--confirm``: each rule with each fold's parameters (:func:`jobs.rules.with_params`) runs as
   Flink SQL on a MiniCluster over its held-out bearing, all in one job (parallelism 1), and
   the alerts must be exactly those of the Python definition; prints the job's wall time.
   ``--write`` stores the figures in ``bench/results/bearing.json``.
6. ``--feature v_rms_g|peak_abs_g``: the sustained-rise definition on another vibration feature
   of the snapshots, in plain Python only (``peak_abs_g`` is what ``bearing_impact_rise``
   ships): a study of whether another feature warns earlier. ``--sustain 300,600``: the rise
   rules with these median windows (s) instead of the grid's. Prints the table of the rise
   rules; not with --confirm or --write.
7. ``--healthy``: per bearing and per run-in / baseline / median window of the rise rules, the
   *healthy ratio* (:func:`iotflink.testing.bearing.healthy_ratio`: the largest median over the
   baseline in the first half of the run, i.e. the lowest multiple k without a first-half
   alert); shows which bearing's healthy half limits the thresholds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from iotflink.settings import PROJECT_ROOT, RulesSettings
from iotflink.testing import bearing as br

RESULT = Path(__file__).resolve().parent / "results" / "bearing.json"
RULES_DIR = PROJECT_ROOT / "sql" / "rules"


def confirm(result: dict, runs: list[br.BearingRun], cfg: RulesSettings) -> dict:
    """Run every fold's rule variant on its held-out bearing on a MiniCluster (one job) and
    compare with the Python alerts. Returns ``{"runs", "rows", "seconds", "mismatches": [...]}``."""
    import tempfile  # noqa: PLC0415

    from iotflink.testing.rules_harness import BoundedRun, run_bounded_many  # noqa: PLC0415
    from jobs.rules import local_env, parse_rule_file, with_params  # noqa: PLC0415

    by_name = {r.name: r for r in runs}
    jobs, cases = [], []
    with tempfile.TemporaryDirectory(prefix="bearing-confirm-") as tmp:
        for rule, res in result.items():
            base = parse_rule_file(RULES_DIR / f"{rule}.sql")
            for f in res["folds"]:
                if f.params is None:
                    continue
                variant = with_params(base, {k: v for k, v in asdict(f.params).items()})
                run = by_name[f.held_out]
                jobs.append(BoundedRun(variant, Path(tmp) / f"{rule}-{run.name}", readings=run.rows,
                                       database=f"{rule}_{run.name}"))
                cases.append((rule, run, f.params))
        t0 = time.monotonic()
        run_bounded_many(local_env(), cfg, jobs)
        seconds = time.monotonic() - t0
    mismatches = []
    for job, (rule, run, p) in zip(jobs, cases):
        got = sorted(a["detection_ms"] for a in job.alerts)
        want = sorted(br.detections(rule, run, p))
        if got != want:
            mismatches.append({"rule": rule, "bearing": run.name, "sql": len(got), "python": len(want)})
    return {"runs": len(jobs), "rows": sum(len(j.readings) for j in jobs), "seconds": round(seconds, 1),
            "mismatches": mismatches}


def healthy_table(runs: list[br.BearingRun]) -> str:
    """Markdown table of :func:`iotflink.testing.bearing.healthy_ratio` per rise rule, run-in /
    baseline / median window (rows) and bearing (columns); 0.00 where the rule is not armed
    before the middle of the run. The last column: the largest ratio of the bearings."""
    names = [r.name for r in runs]
    lines = ["| rule | run-in + baseline | median | " + " | ".join(names) + " | largest |",
             "|---|---|---|" + "---|" * (len(names) + 1)]
    for rule, feature in br.FEATURE.items():
        feat = [br.as_feature(r, feature) for r in runs]
        for a in br.RUN_IN_S:
            for b in br.BASELINE_S:
                for s in br.SUSTAIN_S:
                    p = br.VibrationRiseParams(a, b, s, 1.0)
                    hs = [br.healthy_ratio(r, p) for r in feat]
                    lines.append(f"| `{rule}` | {a // 60}+{b // 60} min | {s} s | "
                                 + " | ".join(f"{h:.2f}" for h in hs) + f" | {max(hs):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit 1 when --confirm finds a difference between SQL and Python."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--confirm", action="store_true", help="run the SQL rules on a MiniCluster too")
    ap.add_argument("--write", action="store_true", help=f"store the figures in {RESULT.relative_to(PROJECT_ROOT)}")
    ap.add_argument("--feature", choices=["v_rms_g", "peak_abs_g"],
                    help="study: the sustained-rise definition on another feature (Python only)")
    ap.add_argument("--sustain", help="study: the rise rules with these median windows, s (e.g. 300,600)")
    ap.add_argument("--procedure", choices=br.PROCEDURES, default="fixed",
                    help="how the rise rules' parameters are chosen on the training bearings (default: fixed)")
    ap.add_argument("--healthy", action="store_true",
                    help="study: the healthy ratio of each bearing per window of the rise rules (Python only)")
    args = ap.parse_args(argv)
    cfg = RulesSettings.from_env()
    if args.healthy:
        if args.confirm or args.write:
            ap.error("--healthy is a study in Python only: no --confirm or --write")
        print(healthy_table(br.load_runs(cfg.out_of_orderness_ms)))
        return 0
    if args.feature or args.sustain:
        if args.confirm or args.write:
            ap.error("--feature / --sustain studies run in Python only: no --confirm or --write")
        runs = br.load_runs(cfg.out_of_orderness_ms)
        windows = [int(x) for x in args.sustain.split(",")] if args.sustain else None
        rules = ["bearing_vibration_rise"] if args.feature else list(br.FEATURE)
        print(f"study: sustained rise of {args.feature or 'the feature of each rise rule'}, median windows "
              f"{windows or br.SUSTAIN_S} s (plain Python)")
        print(br.table(br.calibrate(runs, rules, feature=args.feature, sustain_s=windows,
                                    procedure=args.procedure), runs))
        return 0
    t0 = time.monotonic()
    runs = br.load_runs(cfg.out_of_orderness_ms)
    result = br.calibrate(runs, procedure=args.procedure)
    search_s = time.monotonic() - t0
    print(f"procedure of the rise rules: {args.procedure}")
    print(br.table(result, runs))
    print()
    status = 0
    out = {"procedure": args.procedure, "search_seconds": round(search_s, 1), "rules": {}}
    for rule, res in result.items():
        chosen = res["chosen"]
        shipped = br.shipped_params(rule)
        scores = res["chosen_scores"]
        margin = "" if res.get("margin") is None else f" (margin {res['margin']:g})"
        print(f"{rule}: chosen on all eight bearings: {br.params_text(chosen)}{margin}; in the rule file: "
              f"{br.params_text(shipped)}{'' if shipped == chosen else '  (DIFFERENT)'}")
        print("  on the eight (in-sample): " + ", ".join(
            f"{b} {'none' if s.warning_min is None else f'{s.warning_min:.1f}'}" for b, s in scores.items()) + " min")
        out["rules"][rule] = {
            "median_warning_min": round(res["median_warning_min"], 1),
            "bearings_10_min": res["bearings_10_min"], "first_half_alerts": res["first_half_alerts"],
            "folds": [{"held_out": f.held_out, "params": asdict(f.params) if f.params else None, "margin": f.margin,
                       **({k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(f.score).items()}
                          if f.score else {})} for f in res["folds"]],
            "chosen_on_all": asdict(chosen) if chosen else None, "shipped": asdict(shipped)}
    both = br.together(result)
    print(f"{' + '.join(br.FEATURE)} deployed together (first alert of either, each with its fold's parameters): "
          f"median {both['median_warning_min']:.1f} min ({both['bearings_10_min']} of {len(runs)} bearings >= 10 min), "
          f"{sum(both['first_half_alerts'].values())} first-half alerts; "
          + ", ".join(f"{b} {'none' if w is None else f'{w:.1f}'}" for b, w in both["warning_min"].items()) + " min")
    out["rise_rules_together"] = {
        "median_warning_min": round(both["median_warning_min"], 1), "bearings_10_min": both["bearings_10_min"],
        "warning_min": {b: (round(w, 2) if w is not None else None) for b, w in both["warning_min"].items()},
        "first_half_alerts": both["first_half_alerts"]}
    print(f"search: {sum(len(br.grid(r)) for r in br.RULES)} parameter sets x {len(runs)} bearings "
          f"in {search_s:.1f} s (plain Python)")
    if args.confirm:
        conf = confirm(result, runs, cfg)
        out["confirm"] = conf
        print(f"confirm: {conf['runs']} rule runs ({conf['rows']} readings) on a MiniCluster in {conf['seconds']} s; "
              + ("SQL alerts = Python alerts on every run" if not conf["mismatches"]
                 else f"DIFFERENCES: {conf['mismatches']}"))
        status = 1 if conf["mismatches"] else 0
    if args.write:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
