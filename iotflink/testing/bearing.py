"""The three bearing rules in plain Python, their scores on FEMTO runs, and their calibration.

This is the reference implementation of ``sql/rules/bearing_failure.sql``,
``sql/rules/bearing_vibration_rise.sql`` and ``sql/rules/bearing_impact_rise.sql``: the
calibration searches their parameters here (fast), and the tests and
``bench/bearing_calibrate.py --confirm`` check that the SQL rules on Flink raise exactly the
alerts computed here. The rules share one kind of baseline (of ``h_rms_g``; of ``peak_abs_g``
for ``bearing_impact_rise``):

- ``first_ms``: event time of the device's first on-time reading (vibration or temperature);
- ``baseline_g``: the median ``h_rms_g`` of the vibration snapshots with event time in
  ``[first_ms + run_in_s, first_ms + run_in_s + baseline_s)``, i.e. a window that starts after
  the run-in (a new bearing vibrates more in its first tens of minutes); known, and the rules
  armed, from event time ``first_ms + run_in_s + baseline_s`` on.

Rules (``h`` is ``h_rms_g`` in g, ``temp`` is ``temp_c`` in degrees C):

- ``bearing_failure`` (spike then temperature rise, :func:`spike_rise_alerts`): a snapshot S
  with ``h > spike_k * baseline_g``; T0 = the first temperature reading after S; R = the first
  temperature reading after T0 with ``temp >= T0.temp + rise_c``; an alert at R when
  ``R.ts - S.ts < within_s`` (60 s): a match (:func:`spike_matches`). Spikes less than
  ``quiet_s`` apart form one *episode*; the alert is the episode's first match in S order
  (one alert per episode, where the match per spike gave hundreds on a failing bearing).
- ``bearing_vibration_rise`` (sustained rise, :func:`vibration_rise_alerts`): ``roll_g`` =
  the median ``h`` of the snapshots in the last ``sustain_s`` seconds (event time
  ``[t - sustain_s, t]``); the snapshot is *high* when ``roll_g > rise_k * baseline_g``; an
  alert at each high snapshot whose previous snapshot was not high (one alert per episode).
- ``bearing_impact_rise``: the same on ``peak_abs_g`` (the largest absolute acceleration
  sample of the snapshot, g), whose rise shows impacts of a damaged race or rolling element
  before the RMS grows (R. B. Randall, J. Antoni, "Rolling element bearing diagnostics - A
  tutorial", Mechanical Systems and Signal Processing 25 (2011) 485-520).

Readings are those the node publishes (:func:`iotflink.simulation.replay.femto_rows`), in arrival order;
as the rule jobs do, a reading at or behind the watermark (highest event time seen minus the
out-of-orderness bound) is late and not used.

Scores of a run (the failure is the run's last reading, PRONOSTIA stops a test when the
vibration exceeds 20 g): the *warning*, minutes from the first alert to the end of the run, and
the *false alarms*, alerts per hour in the first half of the run (healthy by assumption).

Source of the data: P. Nectoux et al., "PRONOSTIA: An experimental platform for bearings
accelerated degradation tests", IEEE PHM 2012 (data/ATTRIBUTION.md).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from iotflink.simulation.replay import DATA_DIR, FEMTO_BEARINGS, femto_rows

#: Flink MATCH_RECOGNIZE WITHIN of the spike-then-rise pattern, s (the pattern's 60 s).
WITHIN_S = 60
#: bearing_failure's episode gap, s: spikes less than 10 min apart belong to one episode, which
#: raises one alert (a design choice, not calibrated: it changes how many alerts a failing
#: bearing raises, not the first one).
QUIET_S = 600
#: The vibration feature each rise rule compares with its baseline.
FEATURE = {"bearing_vibration_rise": "h_rms_g", "bearing_impact_rise": "peak_abs_g"}


@dataclass(frozen=True)
class BearingRun:
    """The on-time readings of one bearing run as a rule job sees them.

    Fields:
        name: bearing id (``"1_1"``); device_id: its device.
        vib: ``(ts_ms, seq, h_rms_g)`` of each vibration snapshot, in (event time, seq) order
            (another vibration feature in its place when built with ``feature``).
        temps: ``(ts_ms, seq, temp_c)`` of each temperature reading, same order.
        first_ms / end_ms: event time of the first / last on-time reading (end = the failure).
        late_seqs: seq of the readings that arrived at or behind the watermark.
        rows: every reading in arrival order (dicts with the DDL's columns of ``readings``).
        feature: the vibration value in ``vib`` (``h_rms_g``, ``v_rms_g`` or ``peak_abs_g``).
        bound_ms: the watermark's out-of-orderness bound the run was built with, ms.
    """

    name: str
    device_id: str
    vib: tuple[tuple[int, int, float], ...]
    temps: tuple[tuple[int, int, float], ...]
    first_ms: int
    end_ms: int
    late_seqs: frozenset[int]
    rows: tuple[dict, ...]
    feature: str = "h_rms_g"
    bound_ms: int = 0

    @property
    def half_ms(self) -> int:
        """Event time of the middle of the run, epoch ms (the first half is healthy)."""
        return self.first_ms + (self.end_ms - self.first_ms) // 2

    @property
    def hours(self) -> float:
        """Length of the run, h."""
        return (self.end_ms - self.first_ms) / 3_600_000


def readings_rows(bearing: str, data_dir=DATA_DIR, device_id: str | None = None) -> list[dict]:
    """Readings of a FEMTO bearing in arrival order as ``readings`` rows: ``{"device_id", "seq",
    "ts" (epoch ms), "readings", "ingest_ms"}`` (``seq`` counts from 0 in arrival order)."""
    return [{"device_id": dev, "seq": seq, "ts": ts, "readings": values, "ingest_ms": ts}
            for seq, (ts, dev, values) in enumerate(femto_rows(bearing, data_dir, device_id))]


def run_from_rows(name: str, rows: Sequence[Mapping], bound_ms: int, feature: str = "h_rms_g") -> BearingRun:
    """The :class:`BearingRun` of ``rows`` (one device, arrival order) with watermark bound
    ``bound_ms``: a row whose ts is at or behind (highest ts before it - bound) is late.
    ``feature``: the vibration value the rules compare (the shipped rules: ``h_rms_g``;
    ``v_rms_g`` or ``peak_abs_g`` to study other features with the same definitions).

    Raises:
        ValueError: no rows, or rows of several devices.
    """
    if not rows:
        raise ValueError("no readings")
    devices = {r["device_id"] for r in rows}
    if len(devices) != 1:
        raise ValueError(f"readings of one device expected, got {sorted(devices)}")
    late, on_time, max_ts = set(), [], None
    for r in rows:
        if max_ts is not None and r["ts"] <= max_ts - bound_ms:
            late.add(r["seq"])
        else:
            on_time.append(r)
        max_ts = r["ts"] if max_ts is None else max(max_ts, r["ts"])
    on_time.sort(key=lambda r: (r["ts"], r["seq"]))
    vib = tuple((r["ts"], r["seq"], float(r["readings"][feature])) for r in on_time
                if r["readings"].get(feature) is not None)
    temps = tuple((r["ts"], r["seq"], float(r["readings"]["temp_c"])) for r in on_time
                  if r["readings"].get("temp_c") is not None)
    return BearingRun(name, devices.pop(), vib, temps, on_time[0]["ts"], on_time[-1]["ts"], frozenset(late),
                      tuple(rows), feature, bound_ms)


def as_feature(run: BearingRun, feature: str) -> BearingRun:
    """``run`` with ``feature`` in its ``vib`` (the same readings and watermark bound)."""
    if run.feature == feature:
        return run
    return run_from_rows(run.name, run.rows, run.bound_ms, feature)


def load_run(bearing: str, bound_ms: int, data_dir=DATA_DIR, feature: str = "h_rms_g") -> BearingRun:
    """One FEMTO bearing (``"1_1"`` ...) as the rules see it (device ``femto-b<bearing>``)."""
    return run_from_rows(bearing, readings_rows(bearing, data_dir), bound_ms, feature)


def load_runs(bound_ms: int, bearings: Iterable[str] = FEMTO_BEARINGS, data_dir=DATA_DIR,
              feature: str = "h_rms_g") -> list[BearingRun]:
    """:func:`load_run` of each bearing."""
    return [load_run(b, bound_ms, data_dir, feature) for b in bearings]


# ---------------------------------------------------------------------------- the rules
@dataclass(frozen=True)
class SpikeRiseParams:
    """Parameters of ``bearing_failure``: run_in_s, baseline_s (s), spike_k (x baseline),
    rise_c (degrees C), quiet_s (s: a spike episode ends after quiet_s without a spike; not
    calibrated, :data:`QUIET_S`); WITHIN is fixed at :data:`WITHIN_S`."""

    run_in_s: int
    baseline_s: int
    spike_k: float
    rise_c: float
    quiet_s: int = 600


@dataclass(frozen=True)
class VibrationRiseParams:
    """Parameters of ``bearing_vibration_rise``: run_in_s, baseline_s, sustain_s (s),
    rise_k (x baseline)."""

    run_in_s: int
    baseline_s: int
    sustain_s: int
    rise_k: float


def median(values: Sequence[float]) -> float:
    """The median; for an even count the mean of the two middle values (what Flink's
    ``PERCENTILE(x, 0.5)`` computes by linear interpolation)."""
    return statistics.median(values)


def baseline(run: BearingRun, run_in_s: int, baseline_s: int) -> tuple[float | None, int]:
    """``(baseline_g, armed_ms)``: the median of the run's feature (g) of the snapshots in
    ``[first + run_in_s, first + run_in_s + baseline_s)`` (None when there is none) and the event
    time from which the rules are armed (``first + run_in_s + baseline_s``), epoch ms."""
    lo = run.first_ms + run_in_s * 1000
    hi = lo + baseline_s * 1000
    values = [h for ts, _s, h in run.vib if lo <= ts < hi]
    return (median(values) if values else None), hi


def _rise_after(run: BearingRun, ts: int, seq: int, rise_c: float, within_ms: int):
    """(T0, R) of a spike at (ts, seq), or None: R is the first reading after T0 at or above
    T0 + rise_c, less than within_ms after the spike."""
    temps = run.temps
    i = bisect.bisect_right(temps, (ts, seq, float("inf")))
    if i >= len(temps):
        return None
    t0 = temps[i]
    for r in temps[i + 1:]:
        if r[0] - ts >= within_ms:
            return None
        if r[2] >= t0[2] + rise_c:
            return t0, r
    return None


def spike_matches(run: BearingRun, p: SpikeRiseParams) -> list[tuple[int, int, int, int]]:
    """Every spike-then-rise match of ``bearing_failure``: ``(S ts, T0 ts, R ts, episode)`` in
    S order (epoch ms). ``episode``: event time of the first spike of S's episode (a spike is
    the first of an episode when no spike precedes it within ``quiet_s``, i.e. the previous
    spike is more than ``quiet_s`` earlier)."""
    base, armed = baseline(run, p.run_in_s, p.baseline_s)
    if base is None:
        return []
    out, prev, episode = [], None, None
    for ts, seq, h in run.vib:
        if ts >= armed and h > p.spike_k * base:
            if prev is None or ts - prev > p.quiet_s * 1000:
                episode = ts
            prev = ts
            m = _rise_after(run, ts, seq, p.rise_c, WITHIN_S * 1000)
            if m:
                out.append((ts, m[0][0], m[1][0], episode))
    return out


def spike_rise_alerts(run: BearingRun, p: SpikeRiseParams) -> list[tuple[int, int, int]]:
    """Alerts of ``bearing_failure``: the first match (in S order) of each spike episode
    (:func:`spike_matches`), ``(S ts, T0 ts, R ts)`` (epoch ms; the alert's detection time is
    R's)."""
    out, seen = [], set()
    for s_ts, t0_ts, r_ts, episode in spike_matches(run, p):
        if episode not in seen:
            seen.add(episode)
            out.append((s_ts, t0_ts, r_ts))
    return out


def rolling_median(run: BearingRun, sustain_s: int) -> list[float]:
    """Per snapshot, the median of the run's feature (h_rms_g unless built otherwise, g) of the
    snapshots with event time in ``[t - sustain_s, t]`` (Flink ``RANGE BETWEEN INTERVAL 'sustain_s' SECOND PRECEDING AND
    CURRENT ROW``)."""
    out, window, lo = [], [], 0
    vib = run.vib
    for ts, _s, h in vib:
        bisect.insort(window, h)
        while vib[lo][0] < ts - sustain_s * 1000:
            window.pop(bisect.bisect_left(window, vib[lo][2]))
            lo += 1
        n = len(window)
        out.append(window[n // 2] if n % 2 else (window[n // 2 - 1] + window[n // 2]) / 2)
    return out


def vibration_rise_alerts(run: BearingRun, p: VibrationRiseParams,
                          roll: Sequence[float] | None = None) -> list[int]:
    """Alerts of ``bearing_vibration_rise`` (of ``bearing_impact_rise`` on a run built with
    ``feature="peak_abs_g"``, :func:`as_feature`): event times (epoch ms) of the snapshots that start
    a high episode. ``roll``: :func:`rolling_median` for ``p.sustain_s``, if already computed."""
    base, armed = baseline(run, p.run_in_s, p.baseline_s)
    if base is None:
        return []
    roll = rolling_median(run, p.sustain_s) if roll is None else roll
    out, prev_high = [], False
    for (ts, _s, _h), r in zip(run.vib, roll, strict=True):
        high = ts >= armed and r > p.rise_k * base
        if high and not prev_high:
            out.append(ts)
        prev_high = high
    return out


def healthy_ratio(run: BearingRun, p: VibrationRiseParams, roll: Sequence[float] | None = None) -> float:
    """The largest ``roll_g / baseline_g`` of a rise rule over the armed snapshots of the run's
    first half (event time in ``[armed, half)``), dimensionless; 0.0 when none is armed there or
    the baseline is unknown. ``p.rise_k`` at or above it raises no alert in the first half (a
    snapshot is high when ``roll_g > rise_k * baseline_g``). ``roll``: :func:`rolling_median`
    for ``p.sustain_s``, if already computed."""
    base, armed = baseline(run, p.run_in_s, p.baseline_s)
    if not base:
        return 0.0
    roll = rolling_median(run, p.sustain_s) if roll is None else roll
    half = run.half_ms
    return max((r / base for (ts, _s, _h), r in zip(run.vib, roll, strict=True) if armed <= ts < half),
               default=0.0)


# ---------------------------------------------------------------------------- scores
@dataclass(frozen=True)
class Score:
    """How a rule did on one run.

    Fields:
        warning_min: minutes from the first alert to the end of the run (the failure); None
            when the rule raised no alert.
        first_half_alerts: alerts detected in the first half of the run (false alarms).
        first_half_per_h: the same per hour of the first half.
        alerts: every alert of the run.
        guard_alerts: first-half alerts of the same rule with its threshold multiple divided by
            :data:`MARGIN` (the calibration's safety margin); None when not computed.
        healthy_ratio: rise rules: the largest ratio ``roll_g / baseline_g`` over the armed
            snapshots of the first half (dimensionless; 0.0 when none is armed there), i.e. the
            lowest ``rise_k`` that raises no first-half alert with the same windows
            (:func:`healthy_ratio`); None when not computed (``bearing_failure``).
    """

    warning_min: float | None
    first_half_alerts: int
    first_half_per_h: float
    alerts: int
    guard_alerts: int | None = None
    healthy_ratio: float | None = None


def score(run: BearingRun, detection_ms: Sequence[int]) -> Score:
    """Score alerts detected at ``detection_ms`` (epoch ms, any order) on ``run``."""
    first_half = sum(1 for t in detection_ms if t < run.half_ms)
    warning = (run.end_ms - min(detection_ms)) / 60_000 if detection_ms else None
    return Score(warning, first_half, first_half / (run.hours / 2), len(detection_ms))


def detections(rule: str, run: BearingRun, params) -> list[int]:
    """Detection times (epoch ms) of ``rule`` (``bearing_failure`` | ``bearing_vibration_rise``
    | ``bearing_impact_rise``); ``run`` with any feature (each rule uses its own)."""
    if rule == "bearing_failure":
        return [r for _s, _t0, r in spike_rise_alerts(as_feature(run, "h_rms_g"), params)]
    if rule in FEATURE:
        return vibration_rise_alerts(as_feature(run, FEATURE[rule]), params)
    raise ValueError(f"unknown bearing rule {rule!r}")


def params_of(rule: str, values: Mapping[str, float]):
    """The parameter object of ``rule`` (:class:`SpikeRiseParams` for ``bearing_failure``,
    :class:`VibrationRiseParams` for the rise rules) from a rule file's parameter values
    (``jobs.rules.RuleFile.params``: name -> value, durations in s).

    Raises:
        KeyError: a parameter the rule needs is missing; ValueError: unknown rule.
    """
    if rule == "bearing_failure":
        return SpikeRiseParams(int(values["run_in_s"]), int(values["baseline_s"]), values["spike_k"],
                               values["rise_c"], int(values["quiet_s"]))
    if rule in FEATURE:
        return VibrationRiseParams(int(values["run_in_s"]), int(values["baseline_s"]), int(values["sustain_s"]),
                                   values["rise_k"])
    raise ValueError(f"unknown bearing rule {rule!r}")


def shipped_params(rule: str):
    """:func:`params_of` ``rule`` with the values in its file's header (``sql/rules/<rule>.sql``).

    Raises:
        RuleSqlError: the rule file cannot be read or parsed; ValueError: unknown rule.
    """
    from iotflink.settings import PROJECT_ROOT  # noqa: PLC0415
    from jobs.rules import parse_rule_file  # noqa: PLC0415

    return params_of(rule, parse_rule_file(PROJECT_ROOT / "sql" / "rules" / f"{rule}.sql").params)


# ---------------------------------------------------------------------------- calibration
#: Parameter grids of the calibration. Baseline windows: run-in of 30 / 60 / 90 min, then 30
#: or 60 min of median; spike multiples and sustained-rise multiples of the baseline.
RUN_IN_S = (1800, 3600, 5400)
BASELINE_S = (1800, 3600)
SPIKE_K = (1.5, 1.8, 2.0, 2.5, 3.0, 4.0, 5.0)
RISE_C = (0.1, 0.2, 0.3, 0.5, 1.0)
SUSTAIN_S = (30, 60, 120, 300)
RISE_K = (1.2, 1.3, 1.4, 1.5, 1.75, 2.0, 2.5, 3.0)
#: Safety margin of the calibration: a parameter set is admissible on a bearing only when the
#: same rule with its threshold multiple (spike_k, rise_k) divided by MARGIN raises no alert in
#: the first half either. Without it the search picks the lowest threshold that the training
#: bearings just tolerate, and a held-out bearing's healthy half exceeds it (leave-one-out of
#: both rules at margin 1.0 gave false alarms on Bearing1_1 or Bearing2_5).
MARGIN = 1.1


def grid(rule: str, sustain_s: Sequence[int] = ()) -> list:
    """Every parameter set the calibration tries for ``rule`` (a rise rule: also with the
    median windows ``sustain_s``, s)."""
    if rule == "bearing_failure":
        return [SpikeRiseParams(a, b, k, x) for a, b, k, x in itertools.product(RUN_IN_S, BASELINE_S, SPIKE_K, RISE_C)]
    if rule in FEATURE:
        windows = sorted(set(SUSTAIN_S) | set(sustain_s))
        return [VibrationRiseParams(a, b, s, k)
                for a, b, s, k in itertools.product(RUN_IN_S, BASELINE_S, windows, RISE_K)]
    raise ValueError(f"unknown bearing rule {rule!r}")


def lowered(p, margin: float = MARGIN):
    """``p`` with its threshold multiple (spike_k or rise_k) divided by ``margin``."""
    if isinstance(p, SpikeRiseParams):
        return dataclasses.replace(p, spike_k=p.spike_k / margin)
    return dataclasses.replace(p, rise_k=p.rise_k / margin)


def score_grid(rule: str, runs: Sequence[BearingRun], margin: float = MARGIN, feature: str | None = None,
               sustain_s: Sequence[int] | None = None) -> dict:
    """``{params: {bearing: Score}}`` for every parameter set of :func:`grid` (with
    ``guard_alerts`` at the threshold divided by ``margin``). A rise rule compares
    :data:`FEATURE` of it, or ``feature`` (a study of another feature); ``sustain_s``: other
    median windows than :data:`SUSTAIN_S` (a study)."""
    out: dict = {}
    rolls: dict = {}

    def detect(run, p):
        if rule in FEATURE:
            key = (run.name, p.sustain_s)
            if key not in rolls:
                rolls[key] = rolling_median(run, p.sustain_s)
            return vibration_rise_alerts(run, p, rolls[key])
        return detections(rule, run, p)

    runs = [as_feature(r, feature or FEATURE.get(rule, "h_rms_g")) for r in runs]
    for p in grid(rule, sustain_s or ()):
        if sustain_s is not None and isinstance(p, VibrationRiseParams) and p.sustain_s not in sustain_s:
            continue
        row = {}
        for run in runs:
            guard = score(run, detect(run, lowered(p, margin))).first_half_alerts
            ratio = healthy_ratio(run, p, rolls[(run.name, p.sustain_s)]) if rule in FEATURE else None
            row[run.name] = dataclasses.replace(score(run, detect(run, p)), guard_alerts=guard, healthy_ratio=ratio)
        out[p] = row
    return out


def median_warning(scores: Iterable[Score]) -> float:
    """Median warning (min) of several runs; a run without alert counts as 0 min."""
    return statistics.median([s.warning_min or 0.0 for s in scores])


def admissible(p, per: Mapping, bearings: Sequence[str], margin: float | None = None, bound: bool = False) -> bool:
    """Whether parameter set ``p`` (scores ``per``: ``{bearing: Score}``) raises no first-half
    alert on any of ``bearings`` with a safety margin: with ``margin`` None, also none with its
    threshold divided by :data:`MARGIN` (``guard_alerts``, any rule); with a ``margin`` (rise
    rules), its ``rise_k`` is at least ``margin`` times each bearing's ``healthy_ratio`` (the
    threshold clears the largest healthy-half level of every training bearing by that factor).
    With ``bound`` (rise rules), also ``rise_k`` at or above the :func:`prediction_bound` of the
    bearings' healthy ratios (never admissible when that bound is None)."""
    if bound:
        if any(per[b].healthy_ratio is None for b in bearings):
            raise ValueError("a prediction bound needs the healthy ratio of a rise rule (score_grid of a rise rule)")
        limit = prediction_bound([per[b].healthy_ratio for b in bearings])
        if limit is None or p.rise_k < limit:
            return False
    for b in bearings:
        s = per[b]
        if s.first_half_alerts:
            return False
        if margin is None:
            if s.guard_alerts:
                return False
        elif s.healthy_ratio is None:
            raise ValueError("a margin needs the healthy ratio of a rise rule (score_grid of a rise rule)")
        elif s.healthy_ratio * margin > p.rise_k:
            return False
    return True


def choose(scored: Mapping, bearings: Sequence[str], margin: float | None = None, bound: bool = False):
    """The parameter set chosen on ``bearings``: no alert in the first half of any of them, with
    a safety margin (:func:`admissible`: by default also none with the threshold lowered by
    :data:`MARGIN`; with ``margin``, a rise rule's ``rise_k`` clears every bearing's healthy
    ratio by that factor; with ``bound``, also at or above their :func:`prediction_bound`), then
    the largest median warning; ties go to the most conservative set
    (the highest threshold multiple, then the highest rise / longest sustain, then the shortest
    baseline wait). Returns None when every set raises a false alarm on some bearing."""
    def conservative(p):
        d = asdict(p)
        k = d.get("spike_k", d.get("rise_k"))
        second = d.get("rise_c", d.get("sustain_s"))
        return (k, second, -(d["run_in_s"] + d["baseline_s"]))

    best, best_key = None, None
    for p, per in scored.items():
        if not admissible(p, per, bearings, margin, bound):
            continue
        key = (round(median_warning(per[b] for b in bearings), 1), conservative(p))
        if best_key is None or key > best_key:
            best, best_key = p, key
    return best


#: One-sided 99 % quantiles of Student's t by degrees of freedom (NIST/SEMATECH e-Handbook of
#: Statistical Methods, 1.3.6.7.2, "Critical values of the Student's t distribution").
T_99 = {2: 6.965, 3: 4.541, 4: 3.747, 5: 3.365, 6: 3.143, 7: 2.998, 8: 2.896, 9: 2.821, 10: 2.764}
#: Fewest training bearings with an armed first half that a prediction bound is computed from.
MIN_BOUND_N = 3


def prediction_bound(ratios: Sequence[float]) -> float | None:
    """One-sided 99 % upper prediction bound of the healthy ratio of a *new* bearing from the
    healthy ratios of training bearings (:func:`healthy_ratio`; those without an armed first half,
    0.0, carry no information and are left out): ``exp(mean + t * sd * sqrt(1 + 1/n))`` of their
    logarithms (a ratio is multiplicative), the normal prediction interval for one future
    observation (G. J. Hahn, W. Q. Meeker, "Statistical Intervals: A Guide for Practitioners",
    Wiley 1991, ch. 4), t from :data:`T_99` with n - 1 degrees of freedom. Dimensionless; None
    when fewer than :data:`MIN_BOUND_N` ratios are left (no estimate of the spread).

    Raises:
        ValueError: more ratios than :data:`T_99` has quantiles for (over 11)."""
    logs = [math.log(r) for r in ratios if r > 0]
    n = len(logs)
    if n < MIN_BOUND_N:
        return None
    if n - 1 not in T_99:
        raise ValueError(f"prediction bound from {n} ratios: t quantiles known up to {max(T_99)} degrees of freedom")
    return math.exp(statistics.fmean(logs) + T_99[n - 1] * statistics.stdev(logs) * math.sqrt(1 + 1 / n))


#: Safety margins the nested calibration tries (:func:`nested_margin`), smallest first.
MARGINS = (1.1, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0)


def nested_margin(scored: Mapping, bearings: Sequence[str], margins: Sequence[float] = MARGINS) -> tuple[float, list]:
    """The safety margin chosen on ``bearings`` alone by an inner leave-one-bearing-out (nested
    cross-validation: G. C. Cawley, N. L. C. Talbot, "On over-fitting in model selection and
    subsequent selection bias in performance evaluation", JMLR 11 (2010) 2079-2107): the
    smallest of ``margins`` for which, for every bearing b of ``bearings``, the set chosen on the
    others (:func:`choose` with that margin) raises no first-half alert on b (no admissible set:
    no rule, no alert); the largest margin when none passes. ``scored``: :func:`score_grid` of a
    rise rule.

    Returns ``(margin, inner)``: ``inner`` lists ``(margin, bearing, params, first_half_alerts)``
    of every inner fold tried, in order.
    """
    inner = []
    for m in margins:
        clean = True
        for b in bearings:
            p = choose(scored, [x for x in bearings if x != b], m)
            alarms = scored[p][b].first_half_alerts if p is not None else 0
            inner.append((m, b, p, alarms))
            clean = clean and not alarms
        if clean:
            return m, inner
    return margins[-1], inner


@dataclass(frozen=True)
class FoldResult:
    """One fold of leave-one-bearing-out: ``params`` chosen on every bearing but ``held_out``,
    and their ``score`` on ``held_out`` (None params: no set was free of false alarms); ``margin``:
    the safety margin chosen on the others (nested calibration), None with the fixed
    :data:`MARGIN`."""

    held_out: str
    params: object
    score: Score | None
    margin: float | None = None


#: Calibration procedures of the rise rules (:func:`choose_with`).
PROCEDURES = ("fixed", "nested", "bound")


def choose_with(procedure: str, scored: Mapping, bearings: Sequence[str]) -> tuple[object, float | None]:
    """``(params, margin)`` chosen on ``bearings`` by ``procedure``:

    - ``"fixed"``: :func:`choose` with the fixed margin :data:`MARGIN` (margin None);
    - ``"nested"``: the margin chosen on ``bearings`` by :func:`nested_margin`, then
      :func:`choose` with it (rise rules);
    - ``"bound"``: :func:`choose` with the fixed margin and the :func:`prediction_bound` of the
      bearings' healthy ratios (rise rules).

    Raises:
        ValueError: unknown procedure.
    """
    if procedure == "fixed":
        return choose(scored, bearings), None
    if procedure == "nested":
        margin = nested_margin(scored, bearings)[0]
        return choose(scored, bearings, margin), margin
    if procedure == "bound":
        return choose(scored, bearings, bound=True), None
    raise ValueError(f"unknown calibration procedure {procedure!r} (one of {PROCEDURES})")


def leave_one_bearing_out(rule: str, runs: Sequence[BearingRun], scored: Mapping | None = None,
                          procedure: str = "fixed") -> list[FoldResult]:
    """For each run: choose the parameters on the others (:func:`choose_with` ``procedure``),
    score them on it."""
    scored = score_grid(rule, runs) if scored is None else scored
    names = [r.name for r in runs]
    out = []
    for held in names:
        p, margin = choose_with(procedure, scored, [n for n in names if n != held])
        out.append(FoldResult(held, p, scored[p][held] if p is not None else None, margin))
    return out


# ---------------------------------------------------------------------------- report
RULES = ("bearing_failure", "bearing_vibration_rise", "bearing_impact_rise")


def params_text(p) -> str:
    """Short text of a parameter set (durations in min or s, multiples, degrees C)."""
    if p is None:
        return "none without false alarm"
    base = f"run-in {p.run_in_s // 60} min, baseline {p.baseline_s // 60} min"
    if isinstance(p, SpikeRiseParams):
        return f"{base}, k {p.spike_k:g}, rise {p.rise_c:g} C"
    return f"{base}, {p.sustain_s} s median, k {p.rise_k:g}"


def calibrate(runs: Sequence[BearingRun], rules: Sequence[str] = RULES, feature: str | None = None,
              sustain_s: Sequence[int] | None = None, procedure: str = "fixed") -> dict:
    """Leave-one-bearing-out calibration of the bearing rules on ``runs`` (``feature``,
    ``sustain_s``: studies, see :func:`score_grid`). The rise rules are chosen by
    ``procedure`` (:func:`choose_with`) in each fold and on all runs for the shipped
    parameters; ``bearing_failure`` always by ``"fixed"``.

    Returns ``{rule: {"folds": [FoldResult, ...], "chosen": params chosen on every run,
    "margin": the nested margin they were chosen with (None: another procedure), "chosen_scores": {bearing: Score},
    "median_warning_min": float, "bearings_10_min": int, "first_half_alerts": int}}`` (median
    and counts over the held-out folds).
    """
    out = {}
    for rule in rules:
        scored = score_grid(rule, runs, feature=feature, sustain_s=sustain_s)
        proc = procedure if rule in FEATURE else "fixed"
        folds = leave_one_bearing_out(rule, runs, scored, proc)
        chosen, margin = choose_with(proc, scored, [r.name for r in runs])
        held = [f.score for f in folds if f.score is not None]
        out[rule] = {
            "folds": folds, "chosen": chosen, "margin": margin, "chosen_scores": scored[chosen] if chosen else {},
            "median_warning_min": median_warning([f.score or Score(None, 0, 0.0, 0) for f in folds]),
            "bearings_10_min": sum(1 for s in held if (s.warning_min or 0) >= 10),
            "first_half_alerts": sum(s.first_half_alerts for s in held),
        }
    return out


def together(result: Mapping, rules: Sequence[str] = tuple(FEATURE)) -> dict:
    """Leave-one-bearing-out of ``rules`` deployed together (each with its fold's parameters;
    the first alert of any of them counts): ``{"warning_min": {bearing: min or None},
    "first_half_alerts": {bearing: n}, "median_warning_min", "bearings_10_min"}``."""
    warn: dict = {}
    alarms: dict = {}
    for rule in rules:
        for f in result[rule]["folds"]:
            w = f.score.warning_min if f.score else None
            old = warn.get(f.held_out)
            warn[f.held_out] = w if old is None else (old if w is None else max(old, w))
            alarms[f.held_out] = alarms.get(f.held_out, 0) + (f.score.first_half_alerts if f.score else 0)
    return {"warning_min": warn, "first_half_alerts": alarms,
            "median_warning_min": statistics.median([w or 0.0 for w in warn.values()]),
            "bearings_10_min": sum(1 for w in warn.values() if (w or 0) >= 10)}


def table(result: Mapping, runs: Sequence[BearingRun]) -> str:
    """The leave-one-bearing-out table (Markdown) of :func:`calibrate`'s result."""
    hours = {r.name: r.hours for r in runs}
    lines = ["| rule | held-out bearing | run | parameters chosen on the other seven | "
             "first alert before failure | first-half alerts per h | alerts |",
             "|---|---|---|---|---|---|---|"]
    for rule, res in result.items():
        for f in res["folds"]:
            s = f.score
            warn = "none" if s is None or s.warning_min is None else f"{s.warning_min:.1f} min"
            lines.append(f"| `{rule}` | {f.held_out} | {hours[f.held_out]:.2f} h | {params_text(f.params)}"
                         f"{'' if f.margin is None else f', margin {f.margin:g}'} | {warn} | "
                         f"{s.first_half_per_h if s else 0:.2f} | {s.alerts if s else 0} |")
        lines.append(f"| `{rule}` | **median** | | | **{res['median_warning_min']:.1f} min** "
                     f"({res['bearings_10_min']} of {len(res['folds'])} bearings >= 10 min) | "
                     f"**{res['first_half_alerts']}** in all first halves | |")
    return "\n".join(lines)
