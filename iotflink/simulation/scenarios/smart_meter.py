"""Scenario ``smart-meter-billing``: 1 million meter readings through MQTT, the bridge, Kafka and
two daily-window jobs side by side, with a ``kill -9`` of the TaskManager and a ``kill -9`` of
the bridge in the middle; daily totals per meter against an independent computation, and the
duplicates an at-least-once pipeline would have billed.

Data (generated, seeded; the project has no metering data set): ``meters`` electricity meters,
each reporting its consumption of every 15 min interval (kWh, 3 decimals: watt-hour
resolution) for ``intervals`` intervals from local midnight of :data:`START_LOCAL` in
:data:`ZONE`; the values follow a household daily profile (night base load, morning and
evening peaks) scaled per meter, with noise (:func:`interval_kwh`). As in advanced metering
infrastructure, meters reach the head end through data concentrators: ``concentrators``
devices (``dcu-00`` ..), each with its own MQTT credential, each relaying
``meters / concentrators`` meters. One contract sample of a concentrator is one 15 min
interval with one reading per meter (sensor ``m0000_kwh`` .. : the meter's id plus the unit), so
a meter is the window key ``(device_id, sensor)``; a message is a batch
(docs/CONTRACT.md "Batches") of :data:`SAMPLES_PER_MESSAGE` intervals (an hourly upload). The
full run is 1,000 meters x 1,000 intervals (10.4 days) = 1,000,000 readings (20 concentrators,
20,000 samples, 5,000 MQTT messages); ``--short`` 100 meters x 576 intervals (6 days) = 57,600.
The local days cross the start of daylight saving time in ``Europe/Berlin`` on 2026-03-29
(a 23 h billing day; IANA tz database).

Path: a paho publisher (:class:`iotflink.simulation.load.ContinuousPublisher`, one MQTT connection per
concentrator, QoS 1) paces the messages over ``publish_s`` seconds, interleaved so that every
concentrator's message ``k`` goes out before any message ``k + 1``; Mosquitto; the bridge
(ack to MQTT only after Kafka); ``sensor-readings``; two instances of ``jobs/sensor_windows``
(daily windows in :data:`ZONE`, dedup on ``(device_id, seq)``), reading the same topic:

* ``meter-eo``: exactly-once Kafka sinks (the project's default);
* ``meter-alo``: the same job with ``IOTFLINK_WINDOW_DELIVERY_GUARANTEE=at-least-once``.

Watermark: a concentrator's message spans an hour of event time and the concentrators'
messages interleave, so the out-of-orderness bound is 2 h (:data:`OUT_OF_ORDERNESS_MS`): a
billing day closes 2 h of event time after local midnight. No idle timeout
(``IOTFLINK_IDLENESS_MS=0``): quiet partitions are moved by the bridge's watermark heartbeats.
With the 5 s idle timeout of parallelism 1, the catch-up after the TaskManager kill marked
partitions idle while the source worked through another partition's fetched backlog, so the
watermark ran up to two days of event time ahead and 155,200 of the 1,000,000 readings went to
``sensor-late`` in one run (counted there, so the accounting closed, but missing from the bills).

Faults (:mod:`iotflink.simulation.chaos`), while the publisher runs:

1. once a quarter of the messages are acknowledged, :func:`iotflink.simulation.chaos.kill_bridge`
   (``kill -9``, a new bridge): the messages the bridge had written to Kafka but not yet
   acknowledged are delivered again (QoS 1, persistent session), so ``sensor-readings`` holds
   copies of those samples (as many as were in that state at the kill: possibly none);
2. once a third are acknowledged, and as soon as the at-least-once instance has written
   aggregates since its last completed checkpoint with the next checkpoint at least 2 s away
   (the case in which a failure duplicates output: a kill right after a checkpoint would
   duplicate nothing), :func:`iotflink.simulation.chaos.kill_taskmanager` (``kill -9``, a new
   TaskManager); both jobs restart from their last checkpoint.

Independent computation (:func:`reference_totals`, no Flink): each interval's local date from
Python's ``zoneinfo`` (``datetime.fromtimestamp(ts, ZoneInfo(zone)).date()``), then per
(meter, local date) the count and the sum of kWh.

Claims checked: every sample the broker acknowledged is in ``sensor-readings`` (distinct
``(device_id, seq)``) and none in the dead-letter topic; the exactly-once instance's daily
totals equal the reference for every (meter, local date) (count, and sum to 1e-9 relative),
with exactly one aggregate record per (meter, date): 0 duplicate charges, 0 lost readings;
every copy of a sample the bridge kill produced is in each instance's ``sensor-duplicates``
(dropped once, counted); nothing late; and the at-least-once instance, whose final totals are
equally right, wrote more than one record for some (meter, date): the charges a biller
reading every record would have sent twice (:func:`duplicate_charges`, counted, with their kWh
and the share of all charges).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import random
import sys
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from iotflink.simulation.scenarios.base import Outcome, Say, Scenario, ScenarioError, reset_topics, start_window_jobs

if TYPE_CHECKING:
    from iotflink.runtime.stack import Stack

log = logging.getLogger(__name__)

NAME = "smart-meter-billing"
ZONE = "Europe/Berlin"
#: First local day of the run (a Monday; DST starts on Sunday 2026-03-29 in Europe/Berlin).
START_LOCAL = dt.date(2026, 3, 23)
SHORT_START_LOCAL = dt.date(2026, 3, 28)
INTERVAL_MS = 15 * 60_000
#: Intervals (samples) per MQTT message: an hourly upload of 15 min interval data.
SAMPLES_PER_MESSAGE = 4
#: Watermark bound: one message spans 1 h of event time and the concentrators interleave.
OUT_OF_ORDERNESS_MS = 2 * 3_600_000
SEED = 20260323
SERVICES = ("kafka", "mosquitto", "bridge", "flink-jobmanager", "flink-taskmanager")
INSTANCE_EO, INSTANCE_ALO = "meter-eo", "meter-alo"


@dataclass(frozen=True)
class MeterPlan:
    """The load of one run.

    Fields:
        meters: electricity meters (window keys).
        concentrators: data concentrators (MQTT devices), each relaying ``meters /
            concentrators`` meters (at most 64: the contract's readings per sample).
        intervals: 15 min intervals per meter (samples per concentrator).
        publish_s: wall seconds over which the publisher paces the messages.
        checkpoint_interval_ms: the window jobs' checkpoint interval (ms).
        start: first local date (``ZONE``).
    """

    meters: int
    concentrators: int
    intervals: int
    publish_s: float
    checkpoint_interval_ms: int
    start: dt.date = START_LOCAL

    def __post_init__(self) -> None:
        if self.meters < 1 or self.concentrators < 1 or self.intervals < 1 or self.publish_s <= 0:
            raise ValueError(f"meters, concentrators, intervals and publish_s must be positive: {self}")
        if self.meters % self.concentrators or not 1 <= self.meters // self.concentrators <= 64:
            raise ValueError(f"{self.meters} meters do not split into {self.concentrators} concentrators of "
                             "1..64 meters (the contract's readings per sample)")

    @property
    def readings(self) -> int:
        """Meter readings in all (``meters x intervals``)."""
        return self.meters * self.intervals

    @property
    def samples(self) -> int:
        """Contract samples in all (``concentrators x intervals``; Kafka records)."""
        return self.concentrators * self.intervals

    @property
    def messages(self) -> int:
        """MQTT messages in all."""
        return self.concentrators * math.ceil(self.intervals / SAMPLES_PER_MESSAGE)


FULL = MeterPlan(meters=1000, concentrators=20, intervals=1000, publish_s=240.0, checkpoint_interval_ms=30_000)
SHORT = MeterPlan(meters=100, concentrators=5, intervals=576, publish_s=45.0, checkpoint_interval_ms=10_000,
                  start=SHORT_START_LOCAL)


def local_midnight_ms(day: dt.date, zone: str = ZONE) -> int:
    """Epoch ms of local midnight starting ``day`` in ``zone``."""
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def concentrator_id(i: int) -> str:
    """Device id of concentrator ``i`` (``dcu-00``)."""
    return f"dcu-{i:02d}"


def meter_sensor(m: int) -> str:
    """Sensor name of meter ``m`` (``m0000_kwh``: its id and the unit, kWh per interval)."""
    return f"m{m:04d}_kwh"


def interval_kwh(rng: random.Random, scale: float, local_hour: float) -> float:
    """Consumption of one 15 min interval (kWh, 3 decimals, >= 0.001): a household profile of
    0.06 kWh night base load with a morning peak (07:00-09:00 local, +0.10) and an evening peak
    (17:00-22:00, +0.20), times the meter's ``scale``, with +-30 % uniform noise. An
    illustration of the shape of residential load profiles, not a calibrated model."""
    base = 0.06
    if 7 <= local_hour < 9:
        base += 0.10
    elif 17 <= local_hour < 22:
        base += 0.20
    return max(0.001, round(base * scale * rng.uniform(0.7, 1.3), 3))


@dataclass(frozen=True)
class Batch:
    """One MQTT message of a concentrator: ``device_id``, ``seq`` (of its first sample),
    ``samples`` (``[{"ts": epoch ms, "readings": {sensor: kWh}}]``); ``topic`` and
    ``payload_bytes()`` as :class:`iotflink.simulation.replay.Message` has them (for the publisher)."""

    device_id: str
    seq: int
    samples: tuple

    @property
    def topic(self) -> str:
        """``sensors/{device_id}/telemetry``."""
        return f"sensors/{self.device_id}/telemetry"

    def payload_bytes(self) -> bytes:
        """The batch payload (docs/CONTRACT.md "Batches"), compact UTF-8 JSON."""
        return json.dumps({"device_id": self.device_id, "seq": self.seq, "samples": list(self.samples)},
                          separators=(",", ":")).encode()


def generate(plan: MeterPlan, seed: int = SEED, zone: str = ZONE) -> list[Batch]:
    """The run's messages in publishing order: message ``k`` of every concentrator, then
    message ``k + 1`` (each concentrator's seqs count its samples from 0).

    Concentrator ``c`` relays meters ``c x per .. (c + 1) x per - 1`` (``per = meters /
    concentrators``); each meter has a scale drawn once (lognormal, median 1), then one
    :func:`interval_kwh` per interval. Seeded: the same plan and seed give the same messages.
    """
    rng = random.Random(seed)
    tz = ZoneInfo(zone)
    per = plan.meters // plan.concentrators
    scales = [rng.lognormvariate(0.0, 0.4) for _ in range(plan.meters)]
    begin = local_midnight_ms(plan.start, zone)
    locals_ = [dt.datetime.fromtimestamp((begin + i * INTERVAL_MS) / 1000, tz) for i in range(plan.intervals)]
    hours = [t.hour + t.minute / 60 for t in locals_]
    per_dcu: list[list[Batch]] = []
    for c in range(plan.concentrators):
        meters = range(c * per, (c + 1) * per)
        samples = [{"ts": begin + i * INTERVAL_MS,
                    "readings": {meter_sensor(m): interval_kwh(rng, scales[m], hours[i]) for m in meters}}
                   for i in range(plan.intervals)]
        per_dcu.append([Batch(concentrator_id(c), i, tuple(samples[i:i + SAMPLES_PER_MESSAGE]))
                        for i in range(0, plan.intervals, SAMPLES_PER_MESSAGE)])
    return [dcu[k] for k in range(len(per_dcu[0])) for dcu in per_dcu]


def reference_totals(batches: Iterable[Batch], zone: str = ZONE) -> dict[tuple[str, str, str], dict]:
    """The independent daily bill: per ``(device_id, sensor, local date YYYY-MM-DD in zone)``
    (local date from ``zoneinfo``), ``{"count", "sum"}`` (sum in kWh) of the readings; a
    sample repeated with the same ``(device_id, seq)`` counts once."""
    tz = ZoneInfo(zone)
    seen: set[tuple[str, int]] = set()
    out: dict[tuple[str, str, str], dict] = {}
    for b in batches:
        for i, s in enumerate(b.samples):
            if (b.device_id, b.seq + i) in seen:
                continue
            seen.add((b.device_id, b.seq + i))
            date = dt.datetime.fromtimestamp(s["ts"] / 1000, tz).date().isoformat()
            for sensor, kwh in s["readings"].items():
                t = out.setdefault((b.device_id, sensor, date), {"count": 0, "sum": 0.0})
                t["count"] += 1
                t["sum"] += kwh
    return out


def duplicate_charges(aggregate_records: Iterable[Mapping]) -> dict:
    """What a biller that charges every record of an aggregates topic would send twice.

    Args:
        aggregate_records: every record value of the topic (not only the latest per key):
            dicts with ``device_id``, ``sensor``, ``local_date`` (or ``window_start_ms``),
            ``count`` and ``mean``.
    Returns:
        ``{"records", "charges" (distinct (meter, date)), "duplicates" (records - charges),
        "duplicated_charges" (charges with more than one record), "duplicate_kwh" (the kWh of
        the extra records: mean x count each), "share" (duplicates / charges)}``.
    """
    seen: dict[tuple, int] = {}
    extra_kwh = 0.0
    n = 0
    for v in aggregate_records:
        n += 1
        key = (v["device_id"], v["sensor"], v.get("local_date", v.get("window_start_ms")))
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            extra_kwh += float(v["mean"]) * int(v["count"])
    dups = n - len(seen)
    return {"records": n, "charges": len(seen), "duplicates": dups,
            "duplicated_charges": sum(1 for c in seen.values() if c > 1),
            "duplicate_kwh": round(extra_kwh, 3), "share": dups / len(seen) if seen else 0.0}


def compare_totals(reference: Mapping[tuple[str, str, str], Mapping], aggregates: Iterable[Mapping],
                   rel_tol: float = 1e-9) -> dict:
    """The job's final daily totals against the reference.

    Args:
        reference: :func:`reference_totals`.
        aggregates: the final aggregate per window (``device_id``, ``sensor``, ``local_date``,
            ``count``, ``mean``).
    Returns:
        ``{"matching", "mismatched" (keys whose count differs or whose sum (mean x count) is not
        within ``rel_tol``), "missing" (in the reference only), "extra" (in the job only),
        "counted" (sum of the job's counts)}``; the lists hold at most 10 keys each.
    """
    got = {(a["device_id"], a["sensor"], a["local_date"]): a for a in aggregates}
    mismatched = [k for k, r in reference.items() if k in got and not (
        int(got[k]["count"]) == r["count"]
        and math.isclose(float(got[k]["mean"]) * int(got[k]["count"]), r["sum"], rel_tol=rel_tol))]
    missing = [k for k in reference if k not in got]
    extra = [k for k in got if k not in reference]
    return {"matching": len(reference) - len(mismatched) - len(missing), "mismatched": mismatched[:10],
            "n_mismatched": len(mismatched), "missing": missing[:10], "n_missing": len(missing),
            "extra": extra[:10], "n_extra": len(extra), "counted": sum(int(a["count"]) for a in got.values())}


def readings_copies(records: Iterable[Mapping]) -> tuple[int, int, set]:
    """``(records, distinct (device_id, seq), keys with more than one record)`` of the reading
    records (values) of ``sensor-readings``, watermark heartbeats (no readings) left out."""
    counts: dict[tuple[str, int], int] = {}
    n = 0
    for v in records:
        if not isinstance(v, Mapping) or not v.get("readings"):
            continue
        n += 1
        key = (v["device_id"], int(v["seq"]))
        counts[key] = counts.get(key, 0) + 1
    return n, len(counts), {k for k, c in counts.items() if c > 1}


# ------------------------------------------------------------------ the run


def _instance_env(plan: MeterPlan, delivery: str) -> dict[str, str]:
    return {"IOTFLINK_WINDOW_KIND": "daily", "IOTFLINK_WINDOW_TIME_ZONE": ZONE,
            "IOTFLINK_OUT_OF_ORDERNESS_MS": str(OUT_OF_ORDERNESS_MS), "IOTFLINK_IDLENESS_MS": "0",
            "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": str(plan.checkpoint_interval_ms),
            "IOTFLINK_WINDOW_DELIVERY_GUARANTEE": delivery}


def _latest_completed(ctl, job_id: str) -> dict | None:
    try:
        return (ctl.checkpoints(job_id).get("latest") or {}).get("completed")
    except Exception as exc:  # noqa: BLE001 - the JobManager is busy: no answer this time
        log.debug("checkpoints of %s: %r", job_id, exc)
        return None


class UncheckpointedOutput:
    """Tells when a job has written output records since its last completed checkpoint: the
    end offset of its output topic (sampled by ``monitor``, a
    :class:`iotflink.simulation.monitor.OutputMonitor`) rose after the first sample taken once the
    checkpoint's last acknowledgement was in (``latest_ack_timestamp``). Those records were
    written after the checkpoint's barrier, so a restore from it writes them again under
    at-least-once."""

    def __init__(self, ctl, job_id: str, monitor, topic: str, interval_ms: int) -> None:
        self.ctl, self.job_id, self.monitor, self.topic = ctl, job_id, monitor, topic
        self.interval_ms = interval_ms

    def __call__(self) -> bool:
        """True when output since the last completed checkpoint exists and the next
        checkpoint is not about to be triggered (at least 2 s before it is due)."""
        cp = _latest_completed(self.ctl, self.job_id)
        now = self.monitor.latest(self.topic)
        if now is None:
            return False
        if cp is None:  # no checkpoint yet: a restore replays all output
            return now > 0
        ack_ms = cp.get("latest_ack_timestamp") or cp["trigger_timestamp"] + cp.get("end_to_end_duration", 0)
        t_ack = time.monotonic() - (time.time() - ack_ms / 1000)  # the monitor's clock
        young = time.time() * 1000 - cp["trigger_timestamp"] < self.interval_ms - 2000
        return young and self.monitor.first_increase_after(self.topic, t_ack) is not None


def _wait_committed(bootstrap: str, group: str, ends: Mapping[int, int], topic: str, timeout_s: float) -> None:
    """Poll until ``group`` committed at least ``ends`` (partition -> offset) on ``topic``
    (the Flink Kafka source commits at each completed checkpoint)."""
    from iotflink.kafka_io import committed_offsets  # noqa: PLC0415
    from iotflink.poll import wait_for  # noqa: PLC0415

    def done() -> bool:
        got = committed_offsets(bootstrap, group)
        return all(end == 0 or got.get((topic, p), -1) >= end for p, end in ends.items())
    wait_for(done, timeout_s, interval_s=1.0, what=f"consumer group {group} to commit the end of {topic}")


def run_billing(stack: Stack, plan: MeterPlan, say: Say) -> Outcome:
    """Run the scenario with ``plan`` on ``stack`` (every service of :data:`SERVICES` started).

    Raises:
        ScenarioError: a job failed or the publisher failed; TimeoutError: a stage did not
            finish in time; IotFlinkError: a fault could not be injected.
    """
    from iotflink import kafka_io  # noqa: PLC0415
    from iotflink.poll import wait_for  # noqa: PLC0415
    from iotflink.simulation import chaos  # noqa: PLC0415
    from iotflink.simulation.load import ContinuousPublisher  # noqa: PLC0415
    from iotflink.simulation.monitor import OutputMonitor  # noqa: PLC0415

    cfg = stack.s
    t_run = time.monotonic()
    batches = generate(plan)
    last_ts = max(s["ts"] for b in batches for s in b.samples)
    say(f"{plan.readings:,} meter readings: {plan.meters:,} meters x {plan.intervals:,} intervals of 15 min from "
        f"{plan.start} (local days of {ZONE}, generated, seed {SEED}); {plan.concentrators} concentrators, "
        f"{plan.samples:,} samples in {len(batches):,} MQTT messages of {SAMPLES_PER_MESSAGE} intervals, "
        f"paced over {plan.publish_s:g} s")
    t0 = time.monotonic()
    ref = reference_totals(batches)
    say(f"reference daily totals (zoneinfo, no Flink): {len(ref):,} (meter, local date) charges "
        f"in {time.monotonic() - t0:.1f} s")

    devices = sorted({b.device_id for b in batches})
    creds = stack.provision(devices)
    say("stopping the bridge while the topics are reset ...")
    stack.stop_service("bridge")
    reset_topics(stack, [cfg.topics.dlq])
    run = start_window_jobs(stack, cfg.topics.readings,
                            {INSTANCE_EO: _instance_env(plan, "exactly-once"),
                             INSTANCE_ALO: _instance_env(plan, "at-least-once")}, say)
    ctl = run.ctl
    try:
        stack.create_topics(names=[cfg.topics.dlq, *(t for c in run.cfgs.values() for t in c.output_topics())])
        stack.start(services=("bridge",), progress=lambda m: say("  " + m))
        eo_job, alo_job = run.jobs[INSTANCE_EO], run.jobs[INSTANCE_ALO]
        alo_aggs = run.cfgs[INSTANCE_ALO].topics.aggregates
        pub = ContinuousPublisher(batches, cfg.mqtt_host, cfg.mqtt_port, len(batches) / plan.publish_s,
                                        client_id="iotflink-meter", window=4 * plan.concentrators,
                                        credentials=creds, ca_file=cfg.mqtt_ca_file)
        faults: dict[str, dict] = {}
        with OutputMonitor(cfg.kafka_bootstrap, [alo_aggs], interval_s=0.2) as monitor:
            pub.start()
            t_pub = time.monotonic()
            say(f"publishing {len(batches):,} messages at {len(batches) / plan.publish_s:.0f} msg/s ...")

            def acked_share() -> float:
                if pub.error is not None:
                    raise ScenarioError(f"publisher failed: {pub.error!r}")
                return pub.acked / len(batches)

            wait_for(lambda: acked_share() >= 1 / 4, plan.publish_s * 3, interval_s=0.2,
                     what="a quarter of the messages acknowledged")
            t_kill = time.monotonic() - t_pub
            running = pub.is_alive()
            before = stack.bridge_stats()
            say(f"t={t_kill:.1f} s, {pub.acked:,} messages acknowledged: kill -9 of the bridge "
                f"(it had forwarded {before.get('forwarded')} records, {before.get('pending')} pending) ...")
            br = chaos.kill_bridge(stack)
            faults["kill_bridge"] = {**br.to_dict(), "at_s": round(t_kill, 1), "publisher_running": running}
            say(f"  new bridge holds its subscription {br.ready_s:.1f} s after the kill")

            wait_for(lambda: acked_share() >= 1 / 3, plan.publish_s * 3, interval_s=0.2,
                     what="a third of the messages acknowledged")
            uncheckpointed = UncheckpointedOutput(ctl, alo_job, monitor, alo_aggs, plan.checkpoint_interval_ms)
            try:
                wait_for(lambda: uncheckpointed() or not pub.is_alive(), plan.publish_s * 3, interval_s=0.2,
                         what="at-least-once output since the last checkpoint")
            except TimeoutError as exc:
                say(f"  {exc}; killing anyway")
            t_kill = time.monotonic() - t_pub
            running = pub.is_alive()
            say(f"t={t_kill:.1f} s, {pub.acked:,} messages acknowledged: kill -9 of the TaskManager "
                f"({INSTANCE_ALO} wrote aggregates since its last checkpoint: {uncheckpointed()}) ...")
            tm = chaos.kill_taskmanager(stack)
            for name, job in ((INSTANCE_EO, eo_job), (INSTANCE_ALO, alo_job)):
                back = chaos.wait_job_recovered(ctl, job, tm.fault_epoch_ms, timeout_s=300)
                tm.extra[f"{name}_running_s"] = round(back - tm.t_fault, 1)
            faults["kill_taskmanager"] = {**tm.to_dict(), "at_s": round(t_kill, 1), "publisher_running": running}
            say(f"  new TaskManager {tm.ready_s:.1f} s after the kill; jobs running again after "
                f"{tm.extra[f'{INSTANCE_EO}_running_s']} s ({INSTANCE_EO}) and "
                f"{tm.extra[f'{INSTANCE_ALO}_running_s']} s ({INSTANCE_ALO})")
            pub.join(timeout=plan.publish_s * 5)
            if pub.is_alive() or pub.error is not None:
                pub.stop()
                raise ScenarioError(f"publisher did not finish: {pub.sent} sent, {pub.acked} acked, {pub.error!r}")
        publish_s = time.monotonic() - t_pub
        say(f"published {pub.acked:,} of {len(batches):,} messages in {publish_s:.0f} s (all acknowledged by the broker)")

        # every acknowledged sample must reach sensor-readings (ack after Kafka, so no loss)
        state: dict = {}

        def all_in_kafka() -> bool:
            values = [r["value"] for r in kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.readings, timeout_s=120)]
            state["records"], state["distinct"], state["copied"] = readings_copies(values)
            return state["distinct"] >= plan.samples
        try:
            wait_for(all_in_kafka, 300, interval_s=2.0, what="every sample in sensor-readings")
        except TimeoutError as exc:
            say(f"  {exc}")  # the accounting check below says what is missing
        say(f"sensor-readings: {state['records']:,} reading records, {state['distinct']:,} distinct samples "
            f"(copies from the bridge kill: {state['records'] - state['distinct']})")
        ends = kafka_io.end_offsets(cfg.kafka_bootstrap, cfg.topics.readings)
        for name in run.jobs:
            if ctl.job(run.jobs[name])["state"] in ("FAILED", "FAILING"):
                raise ScenarioError(f"job {name} failed: {[h.describe() for h in ctl.failed_jobs()]}")
        say("waiting until both jobs have checkpointed past the last reading ...")
        with ThreadPoolExecutor(max_workers=2) as pool:
            for fut in [pool.submit(_wait_committed, cfg.kafka_bootstrap, run.cfgs[n].consumer_group, ends,
                                    cfg.topics.readings, 600) for n in run.jobs]:
                fut.result()
        dropped: dict[str, int | None] = {}

        def metrics_read() -> bool:  # a restarted job registers its metrics again after a while
            dropped.update({n: ctl.operator_metric_sum(j, "GroupWindowAggregate", "numLateRecordsDropped")
                            for n, j in run.jobs.items()})
            return all(v is not None for v in dropped.values())
        try:
            wait_for(metrics_read, 60, interval_s=2.0, what="numLateRecordsDropped of both jobs")
        except TimeoutError as exc:
            say(f"  {exc}")

        def drain(name: str) -> None:
            ctl.drain_bounded_replay(run.jobs[name], cfg.kafka_bootstrap, cfg.topics.readings, last_ts, timeout_s=600)
            say(f"instance {name}: every window fired, job stopped with a drained savepoint")
        with ThreadPoolExecutor(max_workers=2) as pool:
            for fut in [pool.submit(drain, n) for n in run.jobs]:
                fut.result()
        run.jobs.clear()
    finally:
        run.cancel()

    out_of = {n: {"aggs": [r["value"] for r in kafka_io.read_topic(cfg.kafka_bootstrap, c.topics.aggregates)
                           if r["value"] is not None],
                  "late": len(kafka_io.read_topic(cfg.kafka_bootstrap, c.topics.late)),
                  "dups": [r["value"] for r in kafka_io.read_topic(cfg.kafka_bootstrap, c.topics.duplicates)]}
              for n, c in run.cfgs.items()}
    dlq = len(kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.dlq))
    bills = {n: duplicate_charges(o["aggs"]) for n, o in out_of.items()}
    finals = {n: list(kafka_io.latest_by_key(
        kafka_io.read_topic(cfg.kafka_bootstrap, run.cfgs[n].topics.aggregates)).values()) for n in run.cfgs}
    cmp = {n: compare_totals(ref, finals[n]) for n in run.cfgs}
    dup_keys = {n: {(d["device_id"], int(d["seq"])) for d in o["dups"] if d} for n, o in out_of.items()}
    copies = state["records"] - state["distinct"]
    eo, alo = INSTANCE_EO, INSTANCE_ALO
    total_kwh = sum(r["sum"] for r in ref.values())

    say("")
    say(f"{'':34} {'exactly-once':>14} {'at-least-once':>14}")
    for label, key in (("aggregate records", "records"), ("charges (meter, local date)", "charges"),
                       ("duplicate records billed", "duplicates"), ("charges billed twice or more", "duplicated_charges"),
                       ("kWh billed twice", "duplicate_kwh")):
        say(f"  {label:32} {bills[eo][key]:>14,} {bills[alo][key]:>14,}")
    for label, fn in (("final totals = reference", lambda n: f"{cmp[n]['matching']:,}/{len(ref):,}"),
                      ("readings counted", lambda n: f"{cmp[n]['counted']:,}"),
                      ("late", lambda n: f"{out_of[n]['late']}"),
                      ("copies dropped (dedup)", lambda n: f"{len(out_of[n]['dups'])}")):
        say(f"  {label:32} {fn(eo):>14} {fn(alo):>14}")

    out = Outcome()
    out.figures = {
        "plan": {"meters": plan.meters, "concentrators": plan.concentrators, "intervals": plan.intervals,
                 "readings": plan.readings, "samples": plan.samples, "messages": len(batches),
                 "samples_per_message": SAMPLES_PER_MESSAGE, "zone": ZONE, "first_local_date": plan.start.isoformat(),
                 "publish_s_target": plan.publish_s, "checkpoint_interval_ms": plan.checkpoint_interval_ms,
                 "out_of_orderness_ms": OUT_OF_ORDERNESS_MS, "seed": SEED, "data": "generated"},
        "charges": len(ref), "total_kwh": round(total_kwh, 3),
        "published_messages": pub.acked, "publish_s": round(publish_s, 1),
        "readings_records": state["records"], "distinct_samples": state["distinct"],
        "copies_from_bridge_kill": copies, "dlq_records": dlq,
        "faults": faults,
        "exactly_once": {**bills[eo], "matching": cmp[eo]["matching"], "counted": cmp[eo]["counted"],
                         "late": out_of[eo]["late"], "dropped_late": dropped[eo],
                         "duplicates_dropped": len(out_of[eo]["dups"])},
        "at_least_once": {**bills[alo], "matching": cmp[alo]["matching"], "counted": cmp[alo]["counted"],
                          "late": out_of[alo]["late"], "dropped_late": dropped[alo],
                          "duplicates_dropped": len(out_of[alo]["dups"])},
        "run_s": round(time.monotonic() - t_run, 1),
    }
    out.check("every acknowledged sample is in sensor-readings, none dead-lettered",
              state["distinct"] == plan.samples and dlq == 0 and pub.acked == len(batches),
              f"{state['distinct']:,} distinct of {plan.samples:,} samples; {dlq} dead letters; "
              f"{pub.acked:,}/{len(batches):,} messages acknowledged")
    out.check("both faults hit while the publisher ran",
              all(f["publisher_running"] for f in faults.values()) and len(faults) == 2,
              ", ".join(f"{k} at {f['at_s']} s (publisher running: {f['publisher_running']})" for k, f in faults.items()))
    c = cmp[eo]
    out.check("exactly-once: every daily total equals the independent computation (count, kWh)",
              c["matching"] == len(ref) and not c["n_extra"] and c["counted"] == plan.readings,
              f"{c['matching']:,}/{len(ref):,} charges match; {c['counted']:,} of {plan.readings:,} readings counted; "
              f"mismatched {c['mismatched'] or 'none'}, missing {c['missing'] or 'none'}, extra {c['extra'] or 'none'}")
    out.check("exactly-once: 0 duplicate charges (one aggregate record per meter and day)",
              bills[eo]["duplicates"] == 0 and bills[eo]["charges"] == len(ref),
              f"{bills[eo]['records']:,} records for {bills[eo]['charges']:,} charges")
    out.check("every copy the bridge kill made was dropped once, in both instances (sensor-duplicates)",
              len(out_of[eo]["dups"]) == copies and dup_keys[eo] == state["copied"]
              and dup_keys[alo] == state["copied"],
              f"{copies} copies in sensor-readings; dropped: {len(out_of[eo]['dups'])} ({eo}), "
              f"{len(out_of[alo]['dups'])} records of {len(dup_keys[alo])} samples ({alo})")
    out.check("nothing late, nothing dropped as late",
              all(o["late"] == 0 for o in out_of.values()) and all(d == 0 for d in dropped.values()),
              f"late {[o['late'] for o in out_of.values()]}, numLateRecordsDropped {list(dropped.values())}")
    a = bills[alo]
    out.check("at-least-once: right final totals (the latest record of each charge)",
              cmp[alo]["matching"] == len(ref), f"final totals {cmp[alo]['matching']:,}/{len(ref):,} match")
    # whether the kill lands after output the last checkpoint does not cover depends on when the
    # windows fire on this machine: counted always, asserted by the CLI run only (timing)
    out.check("at-least-once: duplicate charges after the TaskManager kill",
              a["duplicates"] > 0,
              f"{a['duplicates']:,} duplicate records ({a['duplicated_charges']:,} charges, {a['duplicate_kwh']:,} kWh, "
              f"{a['share']:.2%} of charges) a biller reading every record would have sent twice", timing=True)
    return out


def _run(stack: Stack, short: bool, say: Say) -> Outcome:
    """The registry's entry: the full plan or :data:`SHORT`; starts the services of
    :data:`SERVICES` that ``stack`` does not run yet (Mosquitto and the bridge)."""
    stack.start(services=SERVICES, progress=lambda m: say("  " + m))
    return run_billing(stack, SHORT if short else FULL, say)


SCENARIO = Scenario(NAME, "1 million meter readings through MQTT, the bridge and daily windows with a TaskManager "
                          "and a bridge kill -9: exactly-once bills = an independent computation, 0 duplicates; "
                          "at-least-once's duplicates counted", _run, services=SERVICES)


def main(argv: list[str] | None = None) -> int:
    """``python -m iotflink.simulation.scenarios.smart_meter [--meters N] [--concentrators N] [--intervals N]
    [--publish-s S] [--short] [--no-results]``: run the scenario with this plan; exit status 0
    when every check held, 1 otherwise."""
    from iotflink.settings import StackSettings  # noqa: PLC0415
    from iotflink.simulation import scenarios  # noqa: PLC0415

    p = argparse.ArgumentParser(prog=NAME, description=__doc__.split("\n\n")[0])
    p.add_argument("--meters", type=int, default=FULL.meters)
    p.add_argument("--concentrators", type=int, default=FULL.concentrators)
    p.add_argument("--intervals", type=int, default=FULL.intervals, help="15 min intervals per meter")
    p.add_argument("--publish-s", type=float, default=FULL.publish_s)
    p.add_argument("--checkpoint-interval-ms", type=int, default=FULL.checkpoint_interval_ms)
    p.add_argument("--short", action="store_true", help=f"{SHORT.readings:,} readings")
    p.add_argument("--no-results", action="store_true")
    a = p.parse_args(argv)
    plan = SHORT if a.short else MeterPlan(a.meters, a.concentrators, a.intervals, a.publish_s,
                                           a.checkpoint_interval_ms)
    return scenarios.run(NAME, StackSettings.from_env(), a.short, not a.no_results,
                         runner=lambda stack, say: run_billing(stack, plan, say))

if __name__ == "__main__":
    sys.exit(main())
