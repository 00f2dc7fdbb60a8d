"""Scenario ``patient-vitals``: a 5 min sliding window (1 min slide) on heart rate alerts within
1 min of the moment the 5 min mean exceeds 120 BPM; 5 min tumbling windows miss or delay it.

Data (generated, seeded): several patients, one heart-rate reading every
:data:`INTERVAL_MS` for :data:`DURATION_MIN` minutes. Each patient rests around a resting rate
drawn from 62-80 BPM, inside the adult resting range of 60-100 BPM (American Heart
Association, "All About Heart Rate (Pulse)"), with a slow AR(1) drift and reading noise.
Patient :data:`ABNORMAL_PATIENT` is above 120 BPM (tachycardia for an adult at rest) from
minute :data:`ABNORMAL_FROM_MIN` to minute :data:`ABNORMAL_TO_MIN`, around
:data:`ABNORMAL_BPM`.

Alert rule: mean heart rate over a 5 min window above :data:`THRESHOLD_BPM`. The same readings
go through two instances of ``jobs/sensor_windows`` side by side: ``sliding`` (5 min windows
every 1 min) and ``tumbling`` (5 min windows). A job's alert time is the end (event time) of
the first window whose mean is above the threshold: the window fires when the watermark
passes that end. The reference, computed here independently from the readings, is the first
reading time at which the mean of the readings of the 5 min before it (``(t - 5 min, t]``) is
above the threshold: when the abnormal period of the rule starts.

Measured beside the event-time claim: the wall-clock delay from the moment the reading that
made the alert fire entered the pipeline (its Kafka timestamp, producer create time; which
reading: :func:`trigger_write_ms`) to the moment the alert's aggregate was visible in Kafka (first
received by a ``read_committed`` consumer of the instance's aggregates topic, running beside the
job: its exactly-once sink commits at checkpoints, every 5 s here), for the sliding and the
tumbling run side by side (and the median and max over every window of the patient fired by
a reading). The readings are written as fast as the producer goes (15 min of event time in a
second or two), so the delay is the pipeline's: watermark, window, sink and commit.

Claims checked: every reading of the abnormal patient from minute 3 to 9 is above 120 BPM and
none outside; the sliding alert comes at most 60 s (the slide) after the reference and not
before it; the tumbling alert is missing or later than the sliding one; no other patient
raises an alert; each job counts every (reading, window) pair once (aggregate counts + late
records = readings x windows per reading); the sliding alert is visible within 2 checkpoint
intervals of its triggering reading's write (a timing check, which the tests do not assert).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from iotflink.kafka_io import HEARTBEAT_DEVICE
from iotflink.simulation.monitor import FirstSeen, percentile
from iotflink.simulation.scenarios.base import (
    Outcome,
    Say,
    Scenario,
    finish_window_jobs,
    produce,
    start_window_jobs,
)

if TYPE_CHECKING:
    from iotflink.runtime.stack import Stack

NAME = "patient-vitals"
SENSOR = "heart_rate_bpm"
#: Start of the generated data, epoch ms (2026-01-05T08:00:00Z; on a 5 min boundary, so the
#: tumbling windows are [0, 5), [5, 10), [10, 15) minutes of the run).
BASE_MS = 1_767_600_000_000
INTERVAL_MS = 5_000
DURATION_MIN = 15
WINDOW_MS = 300_000
SLIDE_MS = 60_000
THRESHOLD_BPM = 120.0
ABNORMAL_PATIENT = "patient-01"
ABNORMAL_FROM_MIN, ABNORMAL_TO_MIN = 3, 9
ABNORMAL_BPM = 128.0
SEED = 13
TOPIC = "scenario-patient-vitals"
COMMON = {"IOTFLINK_WINDOW_SIZE_MS": str(WINDOW_MS), "IOTFLINK_OUT_OF_ORDERNESS_MS": "5000",
          "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": "5000"}
INSTANCES = {"vitals-sliding": {**COMMON, "IOTFLINK_WINDOW_KIND": "sliding", "IOTFLINK_WINDOW_SLIDE_MS": str(SLIDE_MS)},
             "vitals-tumbling": {**COMMON, "IOTFLINK_WINDOW_KIND": "tumbling"}}


def generate(patients: int, seed: int = SEED) -> list[dict]:
    """The readings of ``patients`` patients (``patient-01`` .. ``patient-NN``), in time order.

    Returns contract readings ``{"device_id", "seq", "ts" (epoch ms), "readings":
    {"heart_rate_bpm": BPM}}``, one per patient every :data:`INTERVAL_MS`. Same arguments,
    same readings.

    Raises:
        ValueError: ``patients`` < 1.
    """
    if patients < 1:
        raise ValueError(f"patients must be >= 1: {patients}")
    rng = random.Random(seed)
    ids = [f"patient-{i:02d}" for i in range(1, patients + 1)]
    resting = {p: rng.uniform(62.0, 80.0) for p in ids}
    drift = dict.fromkeys(ids, 0.0)
    out = []
    for step in range(DURATION_MIN * 60_000 // INTERVAL_MS):
        ts = BASE_MS + step * INTERVAL_MS
        for p in ids:
            drift[p] = 0.95 * drift[p] + rng.gauss(0.0, 0.6)  # slow AR(1) wander of the resting rate
            bpm = resting[p] + drift[p] + rng.gauss(0.0, 1.5)
            if p == ABNORMAL_PATIENT and abnormal(ts):
                bpm = max(THRESHOLD_BPM + 1.0, ABNORMAL_BPM + rng.gauss(0.0, 2.5))
            out.append({"device_id": p, "seq": step, "ts": ts, "readings": {SENSOR: round(bpm, 1)}})
    return out


def abnormal(ts_ms: int) -> bool:
    """True inside the abnormal period, minutes [3, 9) of the run."""
    return BASE_MS + ABNORMAL_FROM_MIN * 60_000 <= ts_ms < BASE_MS + ABNORMAL_TO_MIN * 60_000


def reference_onset(readings: list[dict], device: str) -> int | None:
    """First reading time (epoch ms) of ``device`` at which the mean of its readings in
    ``(t - 5 min, t]`` is above :data:`THRESHOLD_BPM`; None if never. Computed from the
    readings alone (no Flink window code)."""
    mine = sorted((r["ts"], r["readings"][SENSOR]) for r in readings if r["device_id"] == device)
    for i, (ts, _) in enumerate(mine):
        window = [v for t, v in mine[: i + 1] if t > ts - WINDOW_MS]
        if sum(window) / len(window) > THRESHOLD_BPM and ts - mine[0][0] >= WINDOW_MS - INTERVAL_MS:
            return ts
    return None


def first_alert(aggregates: list[dict], device: str) -> int | None:
    """End (epoch ms) of the first window of ``device`` whose mean is above the threshold."""
    ends = [a["window_end_ms"] for a in aggregates
            if a["device_id"] == device and a["sensor"] == SENSOR and a["mean"] > THRESHOLD_BPM]
    return min(ends) if ends else None


def trigger_write_ms(records: list[dict], window_end_ms: int, out_of_orderness_ms: int) -> int | None:
    """When the reading that made a window fire was written: the Kafka timestamp (producer create
    time, epoch ms) of the triggering reading of the window ending at ``window_end_ms``.

    A window fires when the job's watermark passes its end; a partition's watermark is the
    highest ``ts`` read from it minus ``out_of_orderness_ms``, and the job's is the minimum over
    its partitions (Flink docs, "Timely Stream Processing", watermarks in parallel streams). So
    per partition the first reading (by offset) with ``ts >= window_end_ms +
    out_of_orderness_ms`` moves that partition past the end, and the window fires on the last
    of those to arrive: the one written last. Partitions without readings are left out (the
    job's idle timeout takes them out of the minimum).

    Args:
        records: the readings topic as :func:`iotflink.kafka_io.read_topic` returns it
            (``partition``, ``offset``, ``timestamp``, ``value``); watermark heartbeats
            (device ``__heartbeat__``, written by the end-of-replay drain) are ignored.
    Returns:
        epoch ms, or None when a partition never reaches the bound with a reading (the window
        fired on the drain's heartbeats, not on a reading).
    """
    first: dict[int, int | None] = {}
    for r in sorted(records, key=lambda r: (r["partition"], r["offset"])):
        v = r["value"] or {}
        if v.get("device_id") == HEARTBEAT_DEVICE:
            continue
        first.setdefault(r["partition"], None)
        if first[r["partition"]] is None and v.get("ts", -1) >= window_end_ms + out_of_orderness_ms:
            first[r["partition"]] = r["timestamp"]
    if not first or None in first.values():
        return None
    return max(first.values())


def _minute(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "none"
    sec = (ts_ms - BASE_MS) / 1000
    return f"{int(sec // 60)}:{int(sec % 60):02d}"


def run(stack: Stack, short: bool, say: Say) -> Outcome:
    """Run the scenario on ``stack`` (Kafka and Flink); ``short``: 3 patients instead of 8."""
    patients = 3 if short else 8
    readings = generate(patients)
    say(f"{patients} patients, one heart-rate reading every {INTERVAL_MS // 1000} s for {DURATION_MIN} min "
        f"({len(readings)} readings); {ABNORMAL_PATIENT} above {THRESHOLD_BPM:g} BPM from minute "
        f"{ABNORMAL_FROM_MIN} to {ABNORMAL_TO_MIN}")
    results, visible, records = _run_jobs(stack, readings, say)
    slide, tumble = results["vitals-sliding"], results["vitals-tumbling"]
    onset = reference_onset(readings, ABNORMAL_PATIENT)
    a_slide = first_alert(slide.aggregates, ABNORMAL_PATIENT)
    a_tumble = first_alert(tumble.aggregates, ABNORMAL_PATIENT)
    delays = {name: window_delays(records, res, visible[name]) for name, res in results.items()}
    alert_delay = {"vitals-sliding": delays["vitals-sliding"].get(a_slide),
                   "vitals-tumbling": delays["vitals-tumbling"].get(a_tumble)}

    say("")
    say(f"{ABNORMAL_PATIENT}: 5 min mean heart rate (BPM) by window end, side by side")
    say(f"  {'window end':>10}  {'sliding 5m/1m':>14}  {'tumbling 5m':>12}")
    by_end = {k: {a['window_end_ms']: a['mean'] for a in r.aggregates
                  if a['device_id'] == ABNORMAL_PATIENT and a['sensor'] == SENSOR}
              for k, r in (("s", slide), ("t", tumble))}
    for end in sorted(set(by_end["s"]) | set(by_end["t"])):
        if end > BASE_MS + DURATION_MIN * 60_000:
            continue
        cells = []
        for k, alert in (("s", a_slide), ("t", a_tumble)):
            mean = by_end[k].get(end)
            mark = " ALERT" if end == alert else ("  >120" if mean is not None and mean > THRESHOLD_BPM else "")
            cells.append("" if mean is None else f"{mean:7.1f}{mark}")
        say(f"  {_minute(end):>10}  {cells[0]:>14}  {cells[1]:>12}")
    say(f"5 min mean first above {THRESHOLD_BPM:g} (reference, from the readings): minute {_minute(onset)}")
    say(f"sliding alert: minute {_minute(a_slide)}; tumbling alert: minute {_minute(a_tumble)}")
    say("wall-clock delay from the triggering reading entering the pipeline (its Kafka timestamp) to the "
        "alert visible in Kafka (read_committed), side by side:")
    # the delays measured (windows fired by a reading), once per run
    fired = {name: [d for d in ds.values() if d is not None] for name, ds in delays.items()}
    for name, alert in (("vitals-sliding", a_slide), ("vitals-tumbling", a_tumble)):
        spread = (f"; every window of {ABNORMAL_PATIENT} fired by a reading: median {_stat(fired[name], 'median')} ms, "
                  f"max {_stat(fired[name], 'max')} ms over {len(fired[name])}") if fired[name] else ""
        say(f"  {name:>16}: " + ("no alert" if alert is None else
                                  f"alert window ending {_minute(alert)}: {_ms(alert_delay[name])}") + spread)

    out = Outcome()
    out.figures = {
        "patients": patients, "readings": len(readings), "reading_interval_ms": INTERVAL_MS,
        "window_ms": WINDOW_MS, "slide_ms": SLIDE_MS, "threshold_bpm": THRESHOLD_BPM,
        "abnormal_from_min": ABNORMAL_FROM_MIN, "abnormal_to_min": ABNORMAL_TO_MIN,
        "reference_onset_min": None if onset is None else (onset - BASE_MS) / 60_000,
        "sliding_alert_min": None if a_slide is None else (a_slide - BASE_MS) / 60_000,
        "tumbling_alert_min": None if a_tumble is None else (a_tumble - BASE_MS) / 60_000,
        "sliding_alert_after_onset_s": None if None in (a_slide, onset) else (a_slide - onset) / 1000,
        "tumbling_alert_after_onset_s": None if None in (a_tumble, onset) else (a_tumble - onset) / 1000,
        "sliding_alert_wall_delay_ms": alert_delay["vitals-sliding"],
        "tumbling_alert_wall_delay_ms": alert_delay["vitals-tumbling"],
        **{f"{name.split('-')[1]}_window_wall_delay_ms_{stat}": _stat(fired[name], stat)
           for name in results for stat in ("median", "max")},
        "checkpoint_interval_ms": slide.cfg.checkpoint_interval_ms,
    }
    mine = [r for r in readings if r["device_id"] == ABNORMAL_PATIENT]
    above = [abnormal(r["ts"]) == (r["readings"][SENSOR] > THRESHOLD_BPM) for r in mine]
    out.check(f"{ABNORMAL_PATIENT} is above {THRESHOLD_BPM:g} BPM exactly from minute {ABNORMAL_FROM_MIN} "
              f"to {ABNORMAL_TO_MIN}", all(above), f"{sum(above)}/{len(mine)} readings agree")
    out.check("the sliding-window alert fires within 1 min of the abnormal period's start",
              onset is not None and a_slide is not None and 0 <= a_slide - onset <= SLIDE_MS,
              f"5 min mean above {THRESHOLD_BPM:g} from {_minute(onset)}, sliding alert at {_minute(a_slide)}")
    out.check("the tumbling-window run of the same data misses or delays it",
              a_slide is not None and (a_tumble is None or a_tumble > a_slide),
              f"tumbling alert {_minute(a_tumble)} vs sliding {_minute(a_slide)}")
    bound = 2 * slide.cfg.checkpoint_interval_ms
    out.check(f"the sliding alert is visible in Kafka within {bound / 1000:g} s (2 checkpoint intervals: the "
              "exactly-once sink commits at checkpoints) of its triggering reading entering the pipeline",
              alert_delay["vitals-sliding"] is not None and alert_delay["vitals-sliding"] <= bound,
              f"sliding {_ms(alert_delay['vitals-sliding'])}; tumbling "
              f"{'no alert' if a_tumble is None else _ms(alert_delay['vitals-tumbling'])}", timing=True)
    others = sorted({a["device_id"] for r in results.values() for a in r.aggregates
                     if a["device_id"] != ABNORMAL_PATIENT and a["mean"] > THRESHOLD_BPM})
    out.check("no other patient raises an alert", not others, f"{others or 'none'}")
    for name, res in results.items():
        per_value = WINDOW_MS // res.cfg.slide_ms
        counted = sum(int(a["count"]) for a in res.aggregates)
        out.check(f"{name}: every (reading, window) pair counted once",
                  counted + len(res.late) == per_value * len(readings) and not res.dropped_late,
                  f"{counted} counted + {len(res.late)} late vs {per_value} x {len(readings)}; "
                  f"numLateRecordsDropped {res.dropped_late}")
    return out


def _window_key(value: dict) -> int | None:
    # the aggregates of the abnormal patient, by window end, for FirstSeen
    if value.get("device_id") == ABNORMAL_PATIENT and value.get("sensor") == SENSOR:
        return int(value["window_end_ms"])
    return None


def _run_jobs(stack: Stack, readings: list[dict], say: Say) -> tuple[dict, dict, list[dict]]:
    """Both window job instances over ``readings`` (as :func:`base.run_window_jobs`), with a
    ``read_committed`` consumer of each instance's aggregates topic beside them that records when
    each window of :data:`ABNORMAL_PATIENT` first became visible. Returns (instance ->
    :class:`base.WindowResult`, instance -> {window end ms: visible at, epoch ms}, the readings
    topic's records as read back after the run)."""
    from iotflink import kafka_io  # noqa: PLC0415

    jobs = start_window_jobs(stack, TOPIC, INSTANCES, say)
    watchers: dict = {}
    try:
        for name, cfg in jobs.cfgs.items():
            watchers[name] = FirstSeen(stack.s.kafka_bootstrap, cfg.topics.aggregates, _window_key)
        written = produce(stack.s.kafka_bootstrap, TOPIC, readings)
        say(f"wrote {written} readings to {TOPIC} (as fast as the producer goes)")
        results = finish_window_jobs(stack, jobs, written, max(r["ts"] for r in readings), say)
    except BaseException:
        jobs.cancel()
        raise
    finally:
        visible = {name: w.stop() for name, w in watchers.items()}
    return results, visible, kafka_io.read_topic(stack.s.kafka_bootstrap, TOPIC)


def window_delays(records: list[dict], res, visible: dict[int, float]) -> dict[int, int | None]:
    """Per window end (epoch ms) of :data:`ABNORMAL_PATIENT` in ``res`` (a :class:`base.WindowResult`):
    the wall-clock delay (ms) from its triggering reading's write (:func:`trigger_write_ms`) to the
    moment its aggregate was first visible (``visible``: window end -> epoch ms); None for a
    window fired by the end-of-replay drain or not seen."""
    out = {}
    for a in res.aggregates:
        if a["device_id"] != ABNORMAL_PATIENT or a["sensor"] != SENSOR:
            continue
        end = int(a["window_end_ms"])
        trig = trigger_write_ms(records, end, res.cfg.out_of_orderness_ms)
        seen = visible.get(end)
        out[end] = None if trig is None or seen is None else round(seen - trig)
    return out


def _stat(measured: list[int], stat: str) -> int | None:
    """The median (nearest rank) or max of the measured delays (ms); None for none measured."""
    if not measured:
        return None
    return max(measured) if stat == "max" else percentile(measured, 50)


def _ms(delay: int | None) -> str:
    return "not measured (fired by the end-of-replay drain, or not seen)" if delay is None else f"{delay} ms"


SCENARIO = Scenario(NAME, "heart rate: a 5 min/1 min sliding window alerts within 1 min of a patient's "
                          "tachycardia, 5 min tumbling windows miss or delay it (side by side)", run)
