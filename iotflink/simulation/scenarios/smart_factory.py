"""Scenario ``smart-factory``: 2,000 machines with a bearing sensor each, sampled at 10 Hz
(20,000 readings/s), through Mosquitto, the bridges, Kafka, the window job and a bearing rule,
for 5 minutes, on this one machine.

The fleet: ``--sensors`` virtual ESP32 nodes (``esp32/host/virtual_node.cpp``, the firmware core
plus libmosquitto; one MQTT connection, client id and credential per device, :data:`SPAWN_WAVE`
devices to a process on one event loop),
device ids ``factory-0000`` .., all playing FEMTO PRONOSTIA Bearing1_1 (vibration snapshots and
temperature, data/ATTRIBUTION.md) on one shared event-time clock. The data set has about 1.1
rows per second of event time; a node plays it ``speedup`` times faster so that it samples
``--hz`` readings per wall second (:class:`RatePlan`), and sends ``--samples-per-message``
samples per MQTT message (batches, docs/CONTRACT.md "Batches"; 10 = one message per second per
sensor). Each node plays ``hz x duration_s`` rows, so the run lasts ``--duration-s``.

Event time runs ``speedup`` times faster than the wall clock (a 10 Hz sensor fed from a 1 Hz data
set). A reading's device timestamp ``ts`` is mapped to the wall instant its node sampled it:
``due(ts) = t0 + (ts - origin) / speedup`` (:func:`due_wall_ms`), where ``origin`` is the shared
clock's origin (the first row's ``ts``) and ``t0`` the node's start on the wall clock, its
summary's ``start_ms``.

Measured (printed and written to ``bench/results/scenario-smart-factory.json``):

* readings/s at each stage: published by the nodes (samples the broker acknowledged / the
  publishing phase), forwarded by the bridges (their ``forwarded`` counter, sampled), read by
  the window job (its source's ``numRecordsOut``, watermark heartbeats included);
* consumer lag of the window job over time: records in ``sensor-readings`` (end offsets) minus
  records its source has read, every :data:`SAMPLE_S` s (the metric store answers with figures
  fetched at most ``metrics.fetcher.update-interval``, 1 s on the project's cluster, before the
  previous sample, so a sample overstates the lag by at most the read rate x their age);
* latency to a committed aggregate: a ``read_committed`` consumer of ``sensor-aggregates``
  runs beside the job; for each window (device, sensor, window end ``we``) the latency is the
  wall time the consumer first received its row (the job's exactly-once sink commits its
  transaction at a checkpoint: the row is then visible) minus ``due(we)``, the wall instant the
  device's clock passed the window's end (the earliest the window could be complete). Windows
  fired by the final drain are left out (they wait for the end of the run);
* latency to an alert (at-least-once alerts of the bearing rule): the wall time the consumer of
  ``alerts`` first received an alert minus ``due(detection_ms)``, the event completing the match;
* the exactness check of the demo: every sample the broker acknowledged is a record of
  ``sensor-readings`` or of ``sensor-dlq``; every sensor value of those samples is counted once
  in an aggregate's ``count`` or is in ``sensor-late``; the window operator's
  ``numLateRecordsDropped`` is 0 (:func:`iotflink.simulation.exactness.exactness_checks`, the
  demo's own);
* CPU: the cores each stage used while every node was publishing (psutil, process trees of
  the stack's services and the nodes, from the nodes' start to the last sample before the first
  node ended) and what the rest of the machine used (other work), with the load average.

Usage: ``iotflink scenario smart-factory [--short]`` (2,000 sensors for 300 s, or 200 for 30 s),
or ``python -m iotflink.simulation.scenarios.smart_factory --sensors 1000 --duration-s 300 --bridges 2``
(``make smart-factory ARGS="..."``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from iotflink.simulation.exactness import exactness_checks, reading_records_in_kafka
from iotflink.simulation.monitor import FirstSeen, latency_summary
from iotflink.simulation.scenarios.base import Outcome, Say, Scenario, ScenarioError

if TYPE_CHECKING:
    from iotflink.runtime.stack import Stack

log = logging.getLogger(__name__)

NAME = "smart-factory"
DEVICE_PREFIX = "factory-"
PROFILE = "femto-b1_1"
DEFAULT_SENSORS, SHORT_SENSORS = 2000, 200
DEFAULT_HZ = 10.0
DEFAULT_DURATION_S, SHORT_DURATION_S = 300.0, 30.0
DEFAULT_SAMPLES_PER_MESSAGE = 10
DEFAULT_PARALLELISM = 2
#: The bearing rule the scenario deploys (sql/rules/).
RULE = "bearing_vibration_rise"
#: Sampling period of the stage counters and the consumer lag (s).
SAMPLE_S = 5.0
#: Checkpoint interval of the window job in this scenario (ms): its exactly-once sink commits
#: the aggregates at each checkpoint, so this bounds the commit part of the latency.
CHECKPOINT_INTERVAL_MS = 10_000
#: Devices started at once, in one virtual-node process (:class:`iotflink.simulation.vnodes.NodeGroup`);
#: each later wave joins the shared event-time clock where it is by then.
SPAWN_WAVE = 250
#: Seconds the bridges get, after the nodes are done, to forward every acknowledged sample.
BRIDGE_DRAIN_S = 300.0
SERVICES = ("kafka", "mosquitto", "bridge", "flink-jobmanager", "flink-taskmanager")


@dataclass(frozen=True)
class RatePlan:
    """The load of one run.

    Fields:
        sensors: virtual nodes (devices).
        hz: readings per second per sensor (wall clock).
        duration_s: wall seconds of publishing.
        samples_per_message: samples per MQTT message (1 = single readings).
        rows: data rows each node plays (``ceil(hz x duration_s)``).
        speedup: event-time seconds per wall second: the event-time span of ``rows`` rows over
            ``duration_s``.
    """

    sensors: int
    hz: float
    duration_s: float
    samples_per_message: int
    rows: int
    speedup: float

    @property
    def readings_per_s(self) -> float:
        """Target readings/s of the fleet (``sensors x hz``)."""
        return self.sensors * self.hz

    @property
    def messages_per_s(self) -> float:
        """Target MQTT messages/s of the fleet (readings/s / samples per message)."""
        return self.readings_per_s / self.samples_per_message

    @property
    def readings(self) -> int:
        """Readings the fleet publishes in all (``sensors x rows``)."""
        return self.sensors * self.rows


def rate_plan(sensors: int, hz: float, duration_s: float, samples_per_message: int,
              event_ts_ms: Sequence[int]) -> RatePlan:
    """The :class:`RatePlan` for ``sensors`` nodes sampling ``hz`` readings/s for ``duration_s``,
    each playing the data set whose rows have event times ``event_ts_ms`` (ascending, epoch ms).

    Raises:
        ValueError: a non-positive argument, or the data set has fewer rows than
            ``hz x duration_s`` (or spans no event time).
    """
    if sensors < 1 or hz <= 0 or duration_s <= 0 or samples_per_message < 1:
        raise ValueError("sensors, hz, duration_s and samples_per_message must be positive")
    rows = math.ceil(hz * duration_s)
    if rows > len(event_ts_ms):
        raise ValueError(f"{hz:g} Hz for {duration_s:g} s needs {rows} rows; the data set has {len(event_ts_ms)}")
    span_ms = event_ts_ms[rows - 1] - event_ts_ms[0]
    if span_ms <= 0:
        raise ValueError("the played rows span no event time")
    return RatePlan(sensors, hz, duration_s, samples_per_message, rows, span_ms / 1000.0 / duration_s)


def due_wall_ms(event_ms: int, t0_wall_ms: float, origin_ms: int, speedup: float) -> float:
    """Wall time (epoch ms) at which a node started at ``t0_wall_ms`` on a shared event-time
    clock (``origin_ms``, ``speedup`` event-time s per wall s) reaches event time ``event_ms``
    (the virtual node's pacing: ``max(0, t - origin) / speedup`` after its start)."""
    return t0_wall_ms + max(0, event_ms - origin_ms) / speedup


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)



def values_per_row(rows: Iterable[Mapping[str, float]]) -> list[int]:
    """Prefix sums of sensor values: element ``i`` = values in rows ``0 .. i-1`` (length
    ``len(rows) + 1``), for :func:`values_in_ranges`."""
    out = [0]
    for readings in rows:
        out.append(out[-1] + len(readings))
    return out


def values_in_ranges(prefix: Sequence[int], ranges: Iterable[Sequence[int]]) -> int:
    """Sensor values of the rows whose seqs are in the inclusive ``[lo, hi]`` ``ranges`` (seq =
    row index: a node started with a fresh seq file numbers its rows from 0).

    Raises:
        ValueError: a range outside the rows of ``prefix``.
    """
    total = 0
    for lo, hi in ranges:
        if not 0 <= lo <= hi < len(prefix) - 1:
            raise ValueError(f"seq range [{lo}, {hi}] outside rows 0..{len(prefix) - 2}")
        total += prefix[hi + 1] - prefix[lo]
    return total


# ------------------------------------------------------------------ measuring while it runs


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds user + system so far) of every process (one psutil pass)."""
    import psutil  # noqa: PLC0415

    out = {}
    for p in psutil.process_iter(["ppid", "cpu_times"]):
        t = p.info.get("cpu_times")
        if t is not None:
            out[p.pid] = (p.info["ppid"] or 0, t.user + t.system)
    return out


def tree_cpu_s(table: Mapping[int, tuple[int, float]], roots: Iterable[int], last: dict[int, float],
               children: bool = True) -> float:
    """CPU seconds so far of the processes ``roots`` (and, with ``children``, their descendants)
    in ``table`` (:func:`process_table`). ``last``: pid -> CPU seconds at earlier calls, updated
    here; a process that has exited counts with its last sampled value (so up to one sampling
    period of its CPU is missed)."""
    wanted = set(roots)
    if children:
        kids: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            kids.setdefault(ppid, []).append(pid)
        todo = list(wanted)
        while todo:
            for child in kids.get(todo.pop(), []):
                if child not in wanted:
                    wanted.add(child)
                    todo.append(child)
    for pid in wanted:
        if pid in table:
            last[pid] = table[pid][1]
    return sum(last.values())


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; psutil: total minus idle and
    iowait)."""
    import psutil  # noqa: PLC0415

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def cpu_shares(before: Mapping[str, float], after: Mapping[str, float], seconds: float) -> dict[str, float]:
    """Cores used per stage between two samples (``after - before`` CPU seconds / ``seconds``);
    ``machine`` (if present) is the whole machine and ``other work`` what no stage used."""
    cores = {k: round((after[k] - before[k]) / seconds, 2) for k in after if k in before}
    if "machine" in cores:
        cores["other work"] = round(cores["machine"] - sum(v for k, v in cores.items() if k != "machine"), 2)
    return cores


# ------------------------------------------------------------------ the run


def _stage_pids(stack: Stack) -> dict[str, list[int]]:
    names = {"mosquitto": ["mosquitto"], "bridges": ["bridge"] + [f"bridge-{i}" for i in range(1, stack.s.bridges)],
             "kafka": ["kafka"], "flink": ["flink-jobmanager", "flink-taskmanager"]}
    return {stage: [p for p in (stack.pid(n) for n in ns) if p is not None] for stage, ns in names.items()}


def _cpu_sample(stack: Stack, node_pids: list[int], last: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds so far per stage (``last``: per stage, pid -> last sampled CPU seconds)."""
    table = process_table()
    out = {stage: tree_cpu_s(table, pids, last.setdefault(stage, {})) for stage, pids in _stage_pids(stack).items()}
    out["virtual nodes"] = tree_cpu_s(table, node_pids, last.setdefault("virtual nodes", {}), children=False)
    out["machine"] = machine_busy_s()
    return out


def _node_t0_ms(summary: Mapping) -> float:
    """Wall time (epoch ms) a node started pacing: its summary's ``start_ms`` (the start of its
    process's event loop)."""
    return float(summary["start_ms"])


def run_factory(stack: Stack, say: Say, sensors: int, duration_s: float, hz: float = DEFAULT_HZ,
                samples_per_message: int = DEFAULT_SAMPLES_PER_MESSAGE,
                parallelism: int = DEFAULT_PARALLELISM) -> Outcome:
    """Run the smart factory on ``stack`` (every service of :data:`SERVICES` started).

    Raises:
        ScenarioError: a job failed; VnodeError: the nodes could not run; TimeoutError: a stage
            did not finish in time.
    """
    from iotflink import kafka_io  # noqa: PLC0415
    from iotflink.poll import wait_for  # noqa: PLC0415
    from iotflink.runtime.flinkctl import FlinkCtl  # noqa: PLC0415
    from iotflink.settings import WindowJobSettings  # noqa: PLC0415
    from iotflink.simulation.demo import reset_topics, window_job_env  # noqa: PLC0415
    from iotflink.simulation.replay import load_dataset  # noqa: PLC0415
    from iotflink.simulation.vnodes import NodeGroup, NodeSpec  # noqa: PLC0415

    cfg = stack.s
    now_ms = int(time.time() * 1000)
    data = load_dataset("femto", now_ms)  # shifted as the node shifts it (whole data set)
    plan = rate_plan(sensors, hz, duration_s, samples_per_message, [r[0] for r in data])
    origin = data[0][0]
    prefix = values_per_row(r[2] for r in data[:plan.rows])
    last_ts = data[plan.rows - 1][0]
    load0 = os.getloadavg()
    say(f"plan: {plan.sensors} sensors x {plan.hz:g} Hz = {plan.readings_per_s:,.0f} readings/s "
        f"({plan.messages_per_s:,.0f} MQTT messages/s, {plan.samples_per_message} samples per message) for "
        f"{plan.duration_s:g} s; FEMTO Bearing1_1 at {plan.speedup:.2f}x event time ({plan.rows} rows per node); "
        f"{cfg.bridges} bridge(s); window job parallelism {parallelism}; load average {load0[0]:.1f}")

    env = {**window_job_env(parallelism), "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": str(CHECKPOINT_INTERVAL_MS)}
    job_cfg = WindowJobSettings.from_env({**cfg.to_env(), **env})
    ctl = FlinkCtl(cfg)
    say("resetting the topics (and cancelling running jobs) so the counts cover this run only")
    reset_topics(stack, ctl, job_cfg.consumer_group)
    for name in ["bridge"] + [f"bridge-{i}" for i in range(1, cfg.bridges)]:
        stack.stop_service(name)
    stack.start(services=("bridge",), progress=lambda m: say("  " + m))
    devices = [f"{DEVICE_PREFIX}{i:04d}" for i in range(sensors)]
    say(f"provisioning {sensors} device credentials ...")
    stack.provision(devices)

    say(f"submitting jobs/sensor_windows (parallelism {parallelism}, checkpoint every "
        f"{CHECKPOINT_INTERVAL_MS / 1000:g} s) and deploying the rule {RULE} ...")
    job_id = ctl.submit("sensor_windows", env_overrides=env)
    ctl.wait_running(job_id)
    rc = subprocess.run([sys.executable, "-m", "iotflink.cli", "rules", "deploy", RULE],  # noqa: S603
                        env=stack.flink_env(), check=False, capture_output=True, text=True)
    if rc.returncode != 0:
        raise ScenarioError(f"`iotflink rules deploy {RULE}` failed: {rc.stdout[-500:]}{rc.stderr[-500:]}")

    aggs_seen = FirstSeen(cfg.kafka_bootstrap, cfg.topics.aggregates,
                          lambda v: (v["device_id"], v["sensor"], int(v["window_end_ms"])))
    alerts_seen = FirstSeen(cfg.kafka_bootstrap, cfg.topics.alerts,
                            lambda v: (v["rule_id"], v["alert_key"], int(v["detection_ms"])))
    def specs_from(first: int, shift_ms: int) -> list:
        return [NodeSpec(PROFILE, device_id=d, speedup=plan.speedup, limit=plan.rows, now_ms=now_ms,
                         pace_origin_ms=origin + shift_ms, samples_per_message=samples_per_message,
                         max_inflight=20, extra_args=("--quiet",)) for d in devices[first:first + SPAWN_WAVE]]

    samples: list[dict] = []
    t_start = time.monotonic()

    def sample(phase: str) -> dict:
        st = stack.bridge_stats()
        end = sum(kafka_io.end_offsets(cfg.kafka_bootstrap, cfg.topics.readings).values())
        read = ctl.source_records_read(job_id)
        row = {"t_s": round(time.monotonic() - t_start, 1), "phase": phase, "forwarded": st["forwarded"],
               "readings_end_offset": end, "job_read": read, "lag_records": max(0, end - read),
               "load1": round(os.getloadavg()[0], 1)}
        samples.append(row)
        say(f"  t={row['t_s']:6.1f} s {phase:9} bridges forwarded {row['forwarded']:>9}  job read "
            f"{read:>9}  consumer lag {row['lag_records']:>8}  load {row['load1']}")
        return row

    broker_before = stack.mosquitto_counters(fresh=False)
    say(f"starting {sensors} virtual nodes ...")
    origins: dict[str, int] = {}
    try:
        with contextlib.ExitStack() as nodes:
            groups = []
            spawn0 = time.monotonic()
            for first in range(0, sensors, SPAWN_WAVE):
                # a node started later skips ahead on the shared clock by the time since the first
                # wave (its skipped rows are due at once), so every node samples on one wall clock
                shift = int((time.monotonic() - spawn0) * 1000 * plan.speedup)
                wave = specs_from(first, shift)
                groups.append(nodes.enter_context(NodeGroup(
                    wave, cfg.mqtt_host, cfg.mqtt_port, cfg.run_dir, reset_seq=True, auth_dir=cfg.mqtt_auth_dir,
                    ca_file=cfg.mqtt_ca_file)))
                origins.update({sp.device: sp.pace_origin_ms for sp in wave})
            say(f"  {sensors} nodes started in {time.monotonic() - spawn0:.1f} s")
            pids = [pid for g in groups for pid in g.pids]

            def running() -> int:
                return sum(g.running() for g in groups)
            cpu_last: dict[str, dict[int, float]] = {}
            cpu0, c0 = _cpu_sample(stack, pids, cpu_last), time.monotonic()
            cpu1, c1 = cpu0, c0
            while running():
                sample("publish")
                if running() == sensors:  # every node still publishing
                    cpu1, c1 = _cpu_sample(stack, pids, cpu_last), time.monotonic()
                time.sleep(SAMPLE_S)  # the sampling period while the nodes run
            publish_s = time.monotonic() - spawn0
            results = [r for g in groups for r in g.wait(timeout_s=120)]
        published = sum(r.published for r in results)
        say(f"nodes done: {published} samples acknowledged by the broker in {publish_s:.0f} s")
        values_in = sum(values_in_ranges(prefix, r.summary["acked_ranges"]) for r in results) \
            - sum(int(r.summary.get("invalid", 0)) for r in results)
        t0s = {r.device_id: _node_t0_ms(r.summary) for r in results}

        def bridge_done() -> bool:
            st = stack.bridge_stats()
            return st["forwarded"] + st["dead_lettered"] >= published and st["pending"] == 0
        try:
            wait_for(bridge_done, BRIDGE_DRAIN_S, interval_s=1.0, what="the bridges to forward every sample")
        except TimeoutError as exc:  # a sample lost upstream of Kafka: the accounting check says so
            say(f"  {exc}")
        broker_dropped = stack.mosquitto_counters(fresh=True).dropped_since(broker_before)

        def caught_up() -> bool:
            if ctl.job(job_id)["state"] in ("FAILED", "FAILING"):
                raise ScenarioError(f"window job failed: {[h.describe() for h in ctl.failed_jobs()]}")
            return sample("drain")["lag_records"] == 0
        wait_for(caught_up, 900, interval_s=SAMPLE_S, what="the window job to read every record")
        # readings in Kafka: records less the bridges' heartbeats, read while no heartbeat moved
        readings_records = reading_records_in_kafka(stack)
        dropped_late = ctl.operator_metric_sum(job_id, "GroupWindowAggregate", "numLateRecordsDropped")
        drain_at_ms = time.time() * 1000
        say("draining the window job (fires the last windows, commits its exactly-once sinks) ...")
        ctl.drain_bounded_replay(job_id, cfg.kafka_bootstrap, cfg.topics.readings, last_ts)
    finally:
        aggs_first = aggs_seen.stop()
        alerts_first = alerts_seen.stop()

    aggregates = kafka_io.latest_by_key(kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.aggregates))
    late = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.late)
    dlq = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.dlq)
    counted = sum(int(a["count"]) for a in aggregates.values())

    agg_lat = [seen - due_wall_ms(we, t0s[dev], origins[dev], plan.speedup)
               for (dev, _sensor, we), seen in aggs_first.items() if dev in t0s and seen < drain_at_ms]
    alert_lat = [seen - due_wall_ms(ts, t0s[dev], origins[dev], plan.speedup)
                 for (_rule, dev, ts), seen in alerts_first.items() if dev in t0s]
    cores = cpu_shares(cpu0, cpu1, c1 - c0) if c1 > c0 else {}
    forwarded_pub = [s for s in samples if s["phase"] == "publish"]
    fwd_rate = ((forwarded_pub[-1]["forwarded"] - forwarded_pub[0]["forwarded"])
                / (forwarded_pub[-1]["t_s"] - forwarded_pub[0]["t_s"])) if len(forwarded_pub) > 1 else None
    read_rate = ((forwarded_pub[-1]["job_read"] - forwarded_pub[0]["job_read"])
                 / (forwarded_pub[-1]["t_s"] - forwarded_pub[0]["t_s"])) if len(forwarded_pub) > 1 else None
    pub_rate = published / publish_s
    lags = [s["lag_records"] for s in samples]
    load1 = os.getloadavg()
    out = Outcome()
    out.figures = {
        "plan": {"sensors": plan.sensors, "hz": plan.hz, "duration_s": plan.duration_s,
                 "samples_per_message": plan.samples_per_message, "target_readings_per_s": plan.readings_per_s,
                 "speedup_event_time": round(plan.speedup, 3), "rows_per_node": plan.rows,
                 "bridges": cfg.bridges, "window_job_parallelism": parallelism, "rule": RULE,
                 "checkpoint_interval_ms": CHECKPOINT_INTERVAL_MS, "window_size_ms": job_cfg.window_size_ms},
        "readings_per_s": {"published_by_nodes": round(pub_rate), "forwarded_by_bridges": _round(fwd_rate),
                           "read_by_window_job": _round(read_rate)},
        "publish_phase_s": round(publish_s, 1), "published_samples": published,
        "readings_records": readings_records, "dlq_records": len(dlq), "values_in": values_in,
        "counted": counted, "late": len(late), "dropped_late": dropped_late,
        "node_drops": sum(r.dropped for r in results), "mosquitto_dropped": broker_dropped,
        "max_lag_records": max(lags) if lags else None, "final_lag_records": lags[-1] if lags else None,
        "latency_to_committed_aggregate": latency_summary(agg_lat),
        "latency_to_alert": latency_summary(alert_lat),
        "cpu_cores_while_publishing": cores,
        "load_average_1m": {"start": round(load0[0], 2), "end": round(load1[0], 2)},
        "lag_samples": samples,
    }
    print_figures(out.figures, say)
    for name, passed, detail in exactness_checks(published, readings_records, len(dlq), values_in, counted,
                                                 len(late), dropped_late):
        out.check(name, passed, detail)
    out.check("Mosquitto dropped no message for a full session queue", broker_dropped == 0,
              f"{broker_dropped} dropped ($SYS/broker/publish/messages/dropped)")
    out.check("the nodes published the target rate (at least 95 %)", pub_rate >= 0.95 * plan.readings_per_s,
              f"{pub_rate:,.0f} of {plan.readings_per_s:,.0f} readings/s", timing=True)
    out.check("the consumer lag is back to 0 at the end", bool(lags) and lags[-1] == 0,
              f"max {max(lags) if lags else None} records, last {lags[-1] if lags else None}")
    return out


def print_figures(fig: dict, say: Say) -> None:
    """Print the run's figures (``fig``: :attr:`Outcome.figures` of :func:`run_factory`)."""
    r, a, al = fig["readings_per_s"], fig["latency_to_committed_aggregate"], fig["latency_to_alert"]
    say(f"readings/s: published by nodes {r['published_by_nodes']}, forwarded by bridges "
        f"{r['forwarded_by_bridges']}, read by the window job {r['read_by_window_job']} "
        f"(target {fig['plan']['target_readings_per_s']:,.0f})")
    say(f"consumer lag: max {fig['max_lag_records']} records, final {fig['final_lag_records']}")
    say(f"latency to a committed aggregate: p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms ({a['n']} windows)")
    say(f"latency to an alert: p50 {al['p50_ms']} ms, p99 {al['p99_ms']} ms ({al['n']} alerts)")
    say(f"cores used while publishing: {fig['cpu_cores_while_publishing']}")
    say(f"load average (1 min): {fig['load_average_1m']}")


def _run_short_or_full(stack: Stack, short: bool, say: Say) -> Outcome:
    """The registry's entry: the defaults, or the short run; starts the services of
    :data:`SERVICES` that ``stack`` does not run yet (Mosquitto and the bridges)."""
    stack.start(services=SERVICES, progress=lambda m: say("  " + m))
    if short:
        return run_factory(stack, say, SHORT_SENSORS, SHORT_DURATION_S)
    return run_factory(stack, say, DEFAULT_SENSORS, DEFAULT_DURATION_S)


SCENARIO = Scenario(NAME, "2,000 bearing sensors at 10 Hz (20,000 readings/s) for 5 min through MQTT, the bridges, "
                          "Kafka, the window job and a bearing rule: rates, lag, latency, exactness",
                    _run_short_or_full, services=SERVICES)


def main(argv: list[str] | None = None) -> int:
    """``python -m iotflink.simulation.scenarios.smart_factory [--sensors N] [--duration-s S] [--hz F]
    [--samples-per-message N] [--bridges N] [--parallelism N] [--no-results]``: run the scenario
    with these settings; exit status 0 when every check held, 1 otherwise."""
    from iotflink.settings import StackSettings  # noqa: PLC0415
    from iotflink.simulation import scenarios  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="smart-factory", description=__doc__.split("\n\n")[0])
    p.add_argument("--sensors", type=int, default=DEFAULT_SENSORS)
    p.add_argument("--duration-s", type=float, default=DEFAULT_DURATION_S)
    p.add_argument("--hz", type=float, default=DEFAULT_HZ)
    p.add_argument("--samples-per-message", type=int, default=DEFAULT_SAMPLES_PER_MESSAGE)
    p.add_argument("--bridges", type=int, default=None, help="bridge processes (default IOTFLINK_BRIDGES)")
    p.add_argument("--parallelism", type=int, default=DEFAULT_PARALLELISM)
    p.add_argument("--short", action="store_true", help=f"{SHORT_SENSORS} sensors for {SHORT_DURATION_S:g} s")
    p.add_argument("--no-results", action="store_true")
    a = p.parse_args(argv)
    env = dict(os.environ)
    if a.bridges is not None:
        env["IOTFLINK_BRIDGES"] = str(a.bridges)
    sensors, duration = (SHORT_SENSORS, SHORT_DURATION_S) if a.short else (a.sensors, a.duration_s)
    return scenarios.run(NAME, StackSettings.from_env(env), a.short, not a.no_results,
                         runner=lambda stack, say: run_factory(stack, say, sensors, duration, a.hz,
                                                               a.samples_per_message, a.parallelism))

if __name__ == "__main__":
    sys.exit(main())
