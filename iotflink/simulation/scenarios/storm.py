"""Scenario ``storm-after-outage``: a fleet of virtual devices loses its broker connection at
the same moment, keeps sampling into its outboxes, comes back and flushes them at once; the
resident memory (RSS) of every process stays bounded, the consumer lag drains, and every
reading is accounted for.

Scaled to this 2-core machine (the field's example is 10,000 sensors flushing 1 h of readings):
``nodes`` C virtual nodes (``esp32/host/virtual_node``: the firmware core plus libmosquitto,
one process, MQTT connection and credential per device; :data:`FULL` 200, ``--short`` 50),
each playing FEMTO PRONOSTIA Bearing1_1 (vibration snapshots and temperature, about 1.1 rows
per second of event time, data/ATTRIBUTION.md) :data:`SPEEDUP` times faster than real time on
one shared clock, :data:`SAMPLES_PER_MESSAGE` samples per message. Before data row
:data:`OUTAGE_AT` every node waits for its acknowledgements and disconnects for
:data:`OUTAGE_S` s of event time (``OUTAGE_S / SPEEDUP`` wall seconds), sampling on into its
outbox, which holds 128 samples (the firmware's bound: a longer outage drops the oldest, counted
in the node's ``dropped``); then every node reconnects within the same second and flushes.
The outage (100 s of event time, about 110 samples) fits the outbox, so the flush is about
110 samples per node at once, plus the readings that follow.

Path: Mosquitto, the bridge, Kafka, ``jobs/sensor_windows`` (parallelism 2, out-of-orderness
:data:`OUT_OF_ORDERNESS_MS`: the flushed readings are up to the outage behind the newest ones).

Measured every :data:`SAMPLE_S` s: the RSS of each stack service's process tree (psutil) and
of every virtual node; the consumer lag of the window job (records in ``sensor-readings``
minus records its source has read; the metric store is up to 10 s old).

Claims checked: every process's RSS stayed within its bound (:func:`rss_bounds`: a JVM its
``-Xmx`` plus 1 GiB of non-heap memory, the bridge and Mosquitto 256 MiB, a virtual node 32
MiB); the lag was back to 0 at the end; the demo's exact accounting (every acknowledged sample
in ``sensor-readings`` or ``sensor-dlq``, every value in an aggregate count or in
``sensor-late``, ``numLateRecordsDropped`` 0:
:func:`iotflink.simulation.exactness.exactness_checks`); no node dropped a sample; Mosquitto
dropped nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from iotflink.simulation.exactness import exactness_checks, reading_records_in_kafka
from iotflink.simulation.scenarios.base import Outcome, Say, Scenario, ScenarioError
from iotflink.simulation.scenarios.smart_factory import values_in_ranges, values_per_row

if TYPE_CHECKING:
    from iotflink.runtime.stack import Stack

NAME = "storm-after-outage"
PROFILE = "femto-b1_1"
DEVICE_PREFIX = "storm-"
SPEEDUP = 10.0
ROWS = 400
OUTAGE_AT = 100
OUTAGE_S = 100.0
SAMPLES_PER_MESSAGE = 10
OUT_OF_ORDERNESS_MS = 150_000
SAMPLE_S = 1.0
SERVICES = ("kafka", "mosquitto", "bridge", "flink-jobmanager", "flink-taskmanager")
MIB = 2**20
#: RSS bounds of the processes that are not JVMs (bytes).
BOUNDS = {"bridge": 256 * MIB, "mosquitto": 256 * MIB, "virtual node": 32 * MIB}
#: Non-heap allowance of a JVM over its -Xmx (metaspace, code cache, threads, direct buffers).
JVM_NON_HEAP = 1024 * MIB


@dataclass(frozen=True)
class StormPlan:
    """The scale of one run: ``nodes`` virtual devices."""

    nodes: int


FULL, SHORT = StormPlan(200), StormPlan(50)


def xmx_bytes(cmdline: Iterable[str]) -> int | None:
    """The ``-Xmx`` of a Java command line in bytes (``-Xmx768m``, ``-Xmx1073741824``, k/m/g
    suffixes); None when there is none."""
    for arg in cmdline:
        m = re.fullmatch(r"-Xmx(\d+)([kKmMgG]?)", arg)
        if m:
            return int(m.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2).lower()]
    return None


def rss_bounds(stage: str, cmdline: Iterable[str]) -> int:
    """The RSS bound of one process (bytes): a JVM (``-Xmx`` on its command line) its heap plus
    :data:`JVM_NON_HEAP`; otherwise :data:`BOUNDS` of its stage (``bridge``, ``mosquitto``,
    ``virtual node``).

    Raises:
        KeyError: a non-JVM process of a stage without a bound.
    """
    heap = xmx_bytes(cmdline)
    return heap + JVM_NON_HEAP if heap is not None else BOUNDS[stage]


def peak_rss(samples: Iterable[Mapping[str, Mapping[int, int]]]) -> dict[str, dict[int, int]]:
    """Per stage and pid, the largest RSS over ``samples`` (each: stage -> pid -> RSS bytes)."""
    out: dict[str, dict[int, int]] = {}
    for sample in samples:
        for stage, procs in sample.items():
            for pid, rss in procs.items():
                out.setdefault(stage, {})[pid] = max(out.get(stage, {}).get(pid, 0), rss)
    return out


def over_bound(peaks: Mapping[str, Mapping[int, int]], bounds: Mapping[tuple[str, int], int]) -> list[str]:
    """The processes whose peak RSS exceeded their bound, as ``"stage pid: peak > bound MiB"``."""
    return [f"{stage} {pid}: {rss / MIB:.0f} > {bounds[(stage, pid)] / MIB:.0f} MiB"
            for stage, procs in peaks.items() for pid, rss in procs.items()
            if (stage, pid) in bounds and rss > bounds[(stage, pid)]]


def _stage_roots(stack: Stack) -> dict[str, list[int]]:
    names = {"mosquitto": ["mosquitto"], "bridge": stack.instances("bridge"), "kafka": ["kafka"],
             "flink-jobmanager": ["flink-jobmanager"], "flink-taskmanager": stack.instances("flink-taskmanager")}
    return {stage: [p for p in (stack.pid(n) for n in ns) if p is not None] for stage, ns in names.items()}


def sample_rss(stack: Stack, node_pids: list[int], cmdlines: dict[int, list[str]]) -> dict[str, dict[int, int]]:
    """RSS (bytes) of every process of each stage's tree and of each virtual node; fills
    ``cmdlines`` (pid -> command line) for the bounds."""
    import psutil  # noqa: PLC0415

    out: dict[str, dict[int, int]] = {}
    roots = _stage_roots(stack)
    roots["virtual node"] = node_pids
    for stage, pids in roots.items():
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                procs = [proc] + ([] if stage == "virtual node" else proc.children(recursive=True))
                for p in procs:
                    with p.oneshot():
                        out.setdefault(stage, {})[p.pid] = p.memory_info().rss
                        if p.pid not in cmdlines:
                            cmdlines[p.pid] = p.cmdline()
            except psutil.Error:
                continue  # exited between the listing and the read
    return out


def run_storm(stack: Stack, plan: StormPlan, say: Say) -> Outcome:
    """Run the scenario with ``plan`` on ``stack`` (every service of :data:`SERVICES` started).

    Raises:
        ScenarioError: a job failed; VnodeError: the nodes could not run; TimeoutError: a
            stage did not finish in time.
    """
    from iotflink import kafka_io  # noqa: PLC0415
    from iotflink.poll import wait_for  # noqa: PLC0415
    from iotflink.runtime.flinkctl import FlinkCtl  # noqa: PLC0415
    from iotflink.settings import WindowJobSettings  # noqa: PLC0415
    from iotflink.simulation.demo import reset_topics, window_job_env  # noqa: PLC0415
    from iotflink.simulation.replay import load_dataset  # noqa: PLC0415
    from iotflink.simulation.vnodes import NodeGroup, NodeSpec  # noqa: PLC0415

    cfg = stack.s
    t_run = time.monotonic()
    now_ms = int(time.time() * 1000)
    data = load_dataset("femto", now_ms)
    origin = data[0][0]
    prefix = values_per_row(r[2] for r in data[:ROWS])
    last_ts = data[ROWS - 1][0]
    say(f"{plan.nodes} virtual nodes x {ROWS} rows of FEMTO Bearing1_1 at {SPEEDUP:g}x, {SAMPLES_PER_MESSAGE} samples "
        f"per message; every node offline before row {OUTAGE_AT} for {OUTAGE_S:g} s of event time "
        f"({OUTAGE_S / SPEEDUP:g} s wall), then all flush their outboxes at once")
    env = {**window_job_env(2), "IOTFLINK_OUT_OF_ORDERNESS_MS": str(OUT_OF_ORDERNESS_MS),
           "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": "10000"}
    job_cfg = WindowJobSettings.from_env({**cfg.to_env(), **env})
    ctl = FlinkCtl(cfg)
    say("resetting the topics (and cancelling running jobs) so the counts cover this run only")
    reset_topics(stack, ctl, job_cfg.consumer_group)
    stack.stop_service("bridge")
    stack.start(services=("bridge",), progress=lambda m: say("  " + m))
    devices = [f"{DEVICE_PREFIX}{i:04d}" for i in range(plan.nodes)]
    stack.provision(devices)
    job_id = ctl.submit("sensor_windows", env_overrides=env)
    ctl.wait_running(job_id)
    broker_before = stack.mosquitto_counters(fresh=False)
    specs = [NodeSpec(PROFILE, device_id=d, speedup=SPEEDUP, limit=ROWS, now_ms=now_ms, pace_origin_ms=origin,
                      samples_per_message=SAMPLES_PER_MESSAGE, outage_at=OUTAGE_AT, outage_s=OUTAGE_S,
                      max_inflight=20, extra_args=("--quiet",)) for d in devices]
    rss: list[dict] = []
    lags: list[dict] = []
    cmdlines: dict[int, list[str]] = {}
    t0 = time.monotonic()

    def sample(pids: list[int]) -> int:
        rss.append(sample_rss(stack, pids, cmdlines))
        end = sum(kafka_io.end_offsets(cfg.kafka_bootstrap, cfg.topics.readings).values())
        if ctl.job(job_id)["state"] in ("FAILED", "FAILING"):
            raise ScenarioError(f"window job failed: {[h.describe() for h in ctl.failed_jobs()]}")
        lag = max(0, end - ctl.source_records_read(job_id))
        lags.append({"t_s": round(time.monotonic() - t0, 1), "lag_records": lag})
        return lag

    try:
        with contextlib.ExitStack() as ctx:
            group = ctx.enter_context(NodeGroup(specs, cfg.mqtt_host, cfg.mqtt_port, cfg.run_dir, reset_seq=True,
                                                auth_dir=cfg.mqtt_auth_dir, ca_file=cfg.mqtt_ca_file))
            say(f"  {plan.nodes} nodes started in {time.monotonic() - t0:.1f} s")
            while group.running():
                sample(group.pids)
                time.sleep(SAMPLE_S)  # the sampling period while the nodes run
            results = group.wait(timeout_s=120)
        nodes_s = time.monotonic() - t0
        published = sum(r.published for r in results)
        values_in = sum(values_in_ranges(prefix, r.summary["acked_ranges"]) for r in results) \
            - sum(int(r.summary.get("invalid", 0)) for r in results)
        say(f"nodes done in {nodes_s:.0f} s: {published} samples acknowledged, {sum(r.dropped for r in results)} dropped")

        def bridge_done() -> bool:
            st = stack.bridge_stats()
            return st["forwarded"] + st["dead_lettered"] >= published and st["pending"] == 0
        wait_for(bridge_done, 300, interval_s=1.0, what="the bridge to forward every sample")
        broker_dropped = stack.mosquitto_counters(fresh=True).dropped_since(broker_before)
        wait_for(lambda: sample([]) == 0, 600, interval_s=SAMPLE_S, what="the window job's lag to drain")
        readings_records = reading_records_in_kafka(stack)
        dropped_late = ctl.operator_metric_sum(job_id, "GroupWindowAggregate", "numLateRecordsDropped")
        ctl.drain_bounded_replay(job_id, cfg.kafka_bootstrap, cfg.topics.readings, last_ts)
        job_id = None
    finally:
        if job_id is not None:
            ctl.cancel(job_id)

    aggregates = kafka_io.latest_by_key(kafka_io.read_topic(cfg.kafka_bootstrap, job_cfg.topics.aggregates))
    late = kafka_io.read_topic(cfg.kafka_bootstrap, job_cfg.topics.late)
    dlq = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.dlq)
    counted = sum(int(a["count"]) for a in aggregates.values())
    peaks = peak_rss(rss)
    bounds = {(stage, pid): rss_bounds(stage, cmdlines.get(pid, [])) for stage, procs in peaks.items() for pid in procs}
    over = over_bound(peaks, bounds)
    node_drops = sum(r.dropped for r in results)
    max_lag = max(x["lag_records"] for x in lags)
    per_stage = {stage: {"peak_rss_mib": round(max(procs.values()) / MIB, 1), "processes": len(procs),
                         "sum_of_peaks_mib": round(sum(procs.values()) / MIB, 1)} for stage, procs in peaks.items()}
    say("")
    say("peak RSS per stage (largest process; processes; sum of their peaks):")
    for stage, f in per_stage.items():
        say(f"  {stage:18} {f['peak_rss_mib']:>8} MiB  {f['processes']:>4}  {f['sum_of_peaks_mib']:>9} MiB")
    say(f"consumer lag: max {max_lag} records, then 0; accounting: {published} samples, {values_in} values, "
        f"{counted} counted + {len(late)} late")
    out = Outcome()
    out.figures = {"plan": {"nodes": plan.nodes, "profile": PROFILE, "rows_per_node": ROWS, "speedup": SPEEDUP,
                            "samples_per_message": SAMPLES_PER_MESSAGE, "outage_at_row": OUTAGE_AT,
                            "outage_event_s": OUTAGE_S, "outage_wall_s": OUTAGE_S / SPEEDUP,
                            "out_of_orderness_ms": OUT_OF_ORDERNESS_MS, "window_job_parallelism": 2},
                   "published_samples": published, "values_in": values_in, "readings_records": readings_records,
                   "dlq_records": len(dlq), "counted": counted, "late": len(late), "dropped_late": dropped_late,
                   "node_drops": node_drops, "mosquitto_dropped": broker_dropped, "max_lag_records": max_lag,
                   "lag_samples": lags, "rss": per_stage, "nodes_s": round(nodes_s, 1),
                   "load_average_1m_end": round(os.getloadavg()[0], 1), "run_s": round(time.monotonic() - t_run, 1)}
    out.check("every process's RSS stayed within its bound (JVM: -Xmx + 1 GiB; bridge, Mosquitto 256 MiB; "
              "virtual node 32 MiB)", not over and bool(peaks),
              f"{sum(len(p) for p in peaks.values())} processes sampled {len(rss)} times; over: {over or 'none'}")
    out.check("the consumer lag grew and drained to 0", max_lag >= 0 and lags[-1]["lag_records"] == 0,
              f"max {max_lag} records, last {lags[-1]['lag_records']}")
    for name, passed, detail in exactness_checks(published, readings_records, len(dlq), values_in, counted,
                                           len(late), dropped_late):
        out.check(name, passed, detail)
    out.check("no node dropped a sample (the outage fits the outbox)", node_drops == 0, f"{node_drops} dropped")
    out.check("Mosquitto dropped no message", broker_dropped == 0, f"{broker_dropped} dropped")
    return out


def _run(stack: Stack, short: bool, say: Say) -> Outcome:
    stack.start(services=SERVICES, progress=lambda m: say("  " + m))
    return run_storm(stack, SHORT if short else FULL, say)


SCENARIO = Scenario(NAME, "200 virtual devices (scaled) lose the broker at once, buffer in their outboxes and flush "
                          "together: RSS of every process bounded, lag drains, exact accounting", _run,
                    services=SERVICES)
