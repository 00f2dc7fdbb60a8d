"""Scenario ``storm-after-outage``: a fleet of virtual devices loses its broker connection at
the same moment, keeps sampling into its outboxes (which overflow, dropping the oldest), comes
back and flushes them at once; the resident memory (RSS) of every process stays bounded, the
consumer lag drains, and every sample is accounted for, the dropped ones included.

Scaled to this 2-core machine (the field's example is 10,000 sensors coming back after 1 h):
:data:`FULL` runs 2,000 devices with a 1 h outage (``--short``: :data:`SHORT`, 100 devices, 300
s). The devices are C virtual nodes (``esp32/host/virtual_node``: the firmware core plus
libmosquitto; each device with its own MQTT connection, client id, credential, topic, seq file and
outbox), :attr:`StormPlan.devices_per_process` to a process on one event loop
(:class:`iotflink.simulation.vnodes.NodeGroup`), each playing FEMTO PRONOSTIA Bearing1_1
(vibration snapshots and temperature, about 1.1 rows per second of event time,
data/ATTRIBUTION.md) ``speedup`` times faster than real time on one shared clock,
:data:`SAMPLES_PER_MESSAGE` samples per message. Before data row ``outage_at`` every device
waits for its acknowledgements and disconnects for ``outage_s`` of event time (``outage_s /
speedup`` wall seconds), sampling on into its outbox, which holds 128 samples (the firmware's
bound): an outage longer than about 116 s of FEMTO drops the oldest samples, counted in the
device's ``drops.outbox`` and ``dropped``; then every device reconnects within the same second,
flushes the 128 newest queued samples and plays ``tail_rows`` more rows
(:func:`rows_to_play`).

Path: Mosquitto, the bridge, Kafka, ``jobs/sensor_windows`` (parallelism 2, out-of-orderness
:data:`OUT_OF_ORDERNESS_MS`: the flushed samples are up to the outbox's 128 samples behind the
newest ones).

Measured every :data:`SAMPLE_S` s: the RSS of each stack service's process tree (psutil) and
of every virtual-node process (and per device: its RSS / its devices); the consumer lag of the
window job (records in ``sensor-readings`` minus records its source has read; the metric store
is up to 10 s old).

Claims checked: every process's RSS stayed within its bound (:func:`rss_bounds`: a JVM its
``-Xmx`` plus 1 GiB of non-heap memory, the bridge and Mosquitto 256 MiB, a virtual-node process
32 MiB plus :data:`NODE_RSS_PER_DEVICE` per further device); the lag was back to 0 at the end;
the demo's exact accounting (every acknowledged sample in ``sensor-readings`` or
``sensor-dlq``, every value in an aggregate count or in ``sensor-late``,
``numLateRecordsDropped`` 0: :func:`iotflink.simulation.exactness.exactness_checks`); every
device's outbox overflowed in the outage and accounts exactly for its samples
(:func:`overflow_accounting`: every seq it handed out was acknowledged or evicted from its
outbox, the evicted ones the oldest queued in the outage); Mosquitto dropped nothing.

Usage: ``iotflink scenario storm-after-outage [--short]``, or ``python -m
iotflink.simulation.scenarios.storm --nodes 5000 --outage-s 3600 --speedup 100`` for another
scale.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
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
SAMPLES_PER_MESSAGE = 10
#: Samples the firmware's outbox holds (``fw::Node<>``'s default ``kOutboxCap``).
OUTBOX_CAPACITY = 128
OUT_OF_ORDERNESS_MS = 300_000
#: Seq numbers a device reserves per seq-file write (``--seq-block``; the board's NVS block is
#: 64): thousands of devices sampling 110 rows/s each would otherwise fsync their seq files
#: hundreds of times a second, which this shared machine's disk cannot keep up with.
SEQ_BLOCK = 1024
SAMPLE_S = 1.0
SERVICES = ("kafka", "mosquitto", "bridge", "flink-jobmanager", "flink-taskmanager")
MIB = 2**20
#: RSS bounds of the processes that are not JVMs (bytes); a virtual-node process with one device.
BOUNDS = {"bridge": 256 * MIB, "mosquitto": 256 * MIB, "virtual node": 32 * MIB}
#: RSS allowance of a virtual-node process for each device beyond its first (bytes): its
#: firmware core (outbox, windows: about 20 KiB), its libmosquitto client and its list of
#: acknowledged seqs.
NODE_RSS_PER_DEVICE = 128 * 2**10
#: Non-heap allowance of a JVM over its -Xmx (metaspace, code cache, threads, direct buffers).
JVM_NON_HEAP = 1024 * MIB


@dataclass(frozen=True)
class StormPlan:
    """The scale of one run.

    Fields:
        nodes: virtual devices.
        outage_at: the data row (0-based) before which every device goes offline.
        outage_s: the outage in event-time seconds (``outage_s / speedup`` wall seconds).
        tail_rows: rows each device plays after the outage's end.
        speedup: event-time seconds per wall second.
        devices_per_process: devices per virtual-node process.
        connect_s: wall seconds the devices get to connect before the first row is due.
    """

    nodes: int
    outage_at: int
    outage_s: float
    tail_rows: int
    speedup: float
    devices_per_process: int = 250
    connect_s: float = 0.0

    @property
    def pace_origin_offset_ms(self) -> int:
        """How far before the data's first row the shared clock starts (event-time ms), so the
        first row is due ``connect_s`` wall seconds after the devices start: time for a fleet of
        thousands to connect (each CONNECT checks a password at the broker) before it plays."""
        return int(self.connect_s * 1000 * self.speedup)


FULL = StormPlan(nodes=2000, outage_at=50, outage_s=3600.0, tail_rows=100, speedup=100.0, connect_s=15.0)
SHORT = StormPlan(nodes=100, outage_at=50, outage_s=300.0, tail_rows=50, speedup=20.0, devices_per_process=50)


def rows_to_play(event_ts_ms: Sequence[int], plan: StormPlan) -> int:
    """Rows each device plays: up to the first row at or after the outage's end (event time
    ``event_ts_ms[outage_at] + outage_s``), then ``tail_rows`` more.

    Raises:
        ValueError: the data set ends before that.
    """
    end = event_ts_ms[plan.outage_at] + plan.outage_s * 1000
    first_after = bisect.bisect_left(event_ts_ms, end)
    rows = first_after + plan.tail_rows
    if rows > len(event_ts_ms):
        raise ValueError(f"{plan.outage_s:g} s of outage after row {plan.outage_at} and {plan.tail_rows} more rows "
                         f"need {rows} rows; the data set has {len(event_ts_ms)}")
    return rows


def overflow_accounting(summary: Mapping, outage_at: int) -> str | None:
    """What is wrong with one device's accounting of an outage that overflowed its outbox (its
    summary, :class:`iotflink.simulation.vnodes.NodeResult`; the outage before row
    ``outage_at``), or None when it holds:

    * samples were lost (``dropped`` > 0), and every loss is an outbox eviction: no buffer,
      storage, held-queue, refused or unsent loss, and ``dropped`` <= ``drops.outbox`` (the
      outbox also counts a sample it evicted while it was in flight, whose PUBACK still came:
      right after the reconnect the outbox is full, and each new reading evicts the oldest);
    * every seq handed out was acknowledged or dropped: ``messages`` = acknowledged seqs (the
      ``acked_ranges``) + ``dropped``;
    * the dropped are the oldest queued: every sample before the outage (the first range starts
      at seq 0 and reaches ``outage_at - 1``; unless the device never connected before the
      outage, ``connects`` 1: then those samples were queued too) and the newest one (the last
      range ends at ``messages - 1``) were acknowledged.
    """
    d = summary["drops"]
    ranges = summary["acked_ranges"]
    acked = sum(hi - lo + 1 for lo, hi in ranges)
    if summary["dropped"] <= 0:
        return "nothing was dropped: the outage did not overflow the outbox"
    if d["buffer"] or d["storage"] or d["clock"] or summary["rejected"] or summary["unsent"]:
        return f"other losses: {d}, rejected {summary['rejected']}, unsent {summary['unsent']}"
    if summary["dropped"] > d["outbox"]:
        return f"dropped {summary['dropped']} > outbox evictions {d['outbox']}"
    if acked != summary["published"] or acked + summary["dropped"] != summary["messages"]:
        return f"acknowledged {acked} + dropped {summary['dropped']} != messages {summary['messages']}"
    before_outage = summary["connects"] <= 1 or (ranges and ranges[0][0] == 0 and ranges[0][1] >= outage_at - 1)
    if not ranges or not before_outage or ranges[-1][1] != summary["messages"] - 1:
        return f"acknowledged seqs {ranges}: not every sample before the outage and the newest"
    return None


def xmx_bytes(cmdline: Iterable[str]) -> int | None:
    """The ``-Xmx`` of a Java command line in bytes (``-Xmx768m``, ``-Xmx1073741824``, k/m/g
    suffixes); None when there is none."""
    for arg in cmdline:
        m = re.fullmatch(r"-Xmx(\d+)([kKmMgG]?)", arg)
        if m:
            return int(m.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2).lower()]
    return None


def rss_bounds(stage: str, cmdline: Iterable[str], devices: int = 1) -> int:
    """The RSS bound of one process (bytes): a JVM (``-Xmx`` on its command line) its heap plus
    :data:`JVM_NON_HEAP`; otherwise :data:`BOUNDS` of its stage (``bridge``, ``mosquitto``,
    ``virtual node``), for a virtual-node process of ``devices`` devices plus
    :data:`NODE_RSS_PER_DEVICE` for each beyond the first.

    Raises:
        KeyError: a non-JVM process of a stage without a bound.
    """
    heap = xmx_bytes(cmdline)
    if heap is not None:
        return heap + JVM_NON_HEAP
    extra = NODE_RSS_PER_DEVICE * (devices - 1) if stage == "virtual node" else 0
    return BOUNDS[stage] + extra


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
            stage did not finish in time; ValueError: the plan needs more rows than the data set has.
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
    load0 = os.getloadavg()
    now_ms = int(time.time() * 1000)
    data = load_dataset("femto", now_ms)
    rows = rows_to_play([r[0] for r in data], plan)
    origin = data[0][0]
    prefix = values_per_row(r[2] for r in data[:rows])
    last_ts = data[rows - 1][0]
    processes = -(-plan.nodes // plan.devices_per_process)
    say(f"{plan.nodes} virtual devices ({processes} processes of up to {plan.devices_per_process}) x {rows} rows of "
        f"FEMTO Bearing1_1 at {plan.speedup:g}x, {SAMPLES_PER_MESSAGE} samples per message; every device offline "
        f"before row {plan.outage_at} for {plan.outage_s:g} s of event time ({plan.outage_s / plan.speedup:g} s wall; "
        f"about {rows - plan.tail_rows - plan.outage_at} samples for a {OUTBOX_CAPACITY}-sample outbox), then all "
        f"flush at once; load average {load0[0]:.1f}")
    env = {**window_job_env(2), "IOTFLINK_OUT_OF_ORDERNESS_MS": str(OUT_OF_ORDERNESS_MS),
           "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": "10000"}
    job_cfg = WindowJobSettings.from_env({**cfg.to_env(), **env})
    ctl = FlinkCtl(cfg)
    say("resetting the topics (and cancelling running jobs) so the counts cover this run only")
    reset_topics(stack, ctl, job_cfg.consumer_group)
    stack.stop_service("bridge")
    stack.start(services=("bridge",), progress=lambda m: say("  " + m))
    devices = [f"{DEVICE_PREFIX}{i:04d}" for i in range(plan.nodes)]
    t_prov = time.monotonic()
    stack.provision(devices)
    say(f"  {plan.nodes} device credentials in {time.monotonic() - t_prov:.1f} s")
    job_id = ctl.submit("sensor_windows", env_overrides=env)
    ctl.wait_running(job_id)
    broker_before = stack.mosquitto_counters(fresh=False)
    specs = [NodeSpec(PROFILE, device_id=d, speedup=plan.speedup, limit=rows, now_ms=now_ms,
                      pace_origin_ms=origin - plan.pace_origin_offset_ms,
                      samples_per_message=SAMPLES_PER_MESSAGE, outage_at=plan.outage_at, outage_s=plan.outage_s,
                      max_inflight=20, extra_args=("--quiet", "--seq-block", str(SEQ_BLOCK))) for d in devices]
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
                                                auth_dir=cfg.mqtt_auth_dir, ca_file=cfg.mqtt_ca_file,
                                                devices_per_process=plan.devices_per_process))
            devices_per_pid = group.devices_per_pid
            say(f"  {plan.nodes} devices started in {time.monotonic() - t0:.1f} s ({len(devices_per_pid)} processes)")
            while group.running():
                sample(group.pids)
                time.sleep(SAMPLE_S)  # the sampling period while the nodes run
            results = group.wait(timeout_s=120)
        nodes_s = time.monotonic() - t0
        published = sum(r.published for r in results)
        values_in = sum(values_in_ranges(prefix, r.summary["acked_ranges"]) for r in results) \
            - sum(int(r.summary.get("invalid", 0)) for r in results)
        say(f"devices done in {nodes_s:.0f} s: {published} samples acknowledged, "
            f"{sum(r.dropped for r in results)} dropped")

        def bridge_done() -> bool:
            st = stack.bridge_stats()
            return st["forwarded"] + st["dead_lettered"] >= published and st["pending"] == 0
        wait_for(bridge_done, 600, interval_s=1.0, what="the bridge to forward every sample")
        bridge_s = time.monotonic() - t0
        broker_dropped = stack.mosquitto_counters(fresh=True).dropped_since(broker_before)
        wait_for(lambda: sample([]) == 0, 900, interval_s=SAMPLE_S, what="the window job's lag to drain")
        drained_s = time.monotonic() - t0
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
    bounds = {(stage, pid): rss_bounds(stage, cmdlines.get(pid, []), devices_per_pid.get(pid, 1) if
                                       stage == "virtual node" else 1)
              for stage, procs in peaks.items() for pid in procs}
    over = over_bound(peaks, bounds)
    node_drops = sum(r.dropped for r in results)
    outbox_drops = sum(int(r.summary["drops"]["outbox"]) for r in results)
    messages = sum(int(r.summary["messages"]) for r in results)
    wrong = {r.device_id: why for r in results if (why := overflow_accounting(r.summary, plan.outage_at)) is not None}
    evicted_in_flight = outbox_drops - node_drops
    late_connect = sum(int(r.summary["connects"]) <= 1 for r in results)  # not connected before the outage
    max_lag = max(x["lag_records"] for x in lags)
    per_stage = {stage: {"peak_rss_mib": round(max(procs.values()) / MIB, 1), "processes": len(procs),
                         "sum_of_peaks_mib": round(sum(procs.values()) / MIB, 1)} for stage, procs in peaks.items()}
    node_peaks = peaks.get("virtual node", {})
    per_device_kib = [rss_b / 1024 / devices_per_pid[pid] for pid, rss_b in node_peaks.items() if pid in devices_per_pid]
    say("")
    say("peak RSS per stage (largest process; processes; sum of their peaks):")
    for stage, f in per_stage.items():
        say(f"  {stage:18} {f['peak_rss_mib']:>8} MiB  {f['processes']:>4}  {f['sum_of_peaks_mib']:>9} MiB")
    if per_device_kib:
        say(f"  virtual-node RSS per device: {min(per_device_kib):.0f} to {max(per_device_kib):.0f} KiB")
    say(f"consumer lag: max {max_lag} records, then 0; accounting: {messages} samples handed out = {published} "
        f"acknowledged + {node_drops} dropped by full outboxes (outbox evictions {outbox_drops}: "
        f"{evicted_in_flight} of them in flight, acknowledged all the same); {values_in} values = {counted} "
        f"counted + {len(late)} late; {late_connect} devices first connected after the outage")
    out = Outcome()
    out.figures = {"plan": {"nodes": plan.nodes, "devices_per_process": plan.devices_per_process,
                            "processes": len(devices_per_pid), "profile": PROFILE, "rows_per_node": rows,
                            "speedup": plan.speedup, "samples_per_message": SAMPLES_PER_MESSAGE,
                            "outage_at_row": plan.outage_at, "outage_event_s": plan.outage_s,
                            "outage_wall_s": plan.outage_s / plan.speedup, "tail_rows": plan.tail_rows,
                            "connect_s": plan.connect_s,
                            "outbox_capacity": OUTBOX_CAPACITY, "out_of_orderness_ms": OUT_OF_ORDERNESS_MS,
                            "window_job_parallelism": 2},
                   "samples_handed_out": messages, "published_samples": published, "node_drops": node_drops,
                   "outbox_evictions": outbox_drops, "evicted_in_flight_then_acked": evicted_in_flight,
                   "devices_not_connected_before_outage": late_connect,
                   "values_in": values_in, "readings_records": readings_records,
                   "dlq_records": len(dlq), "counted": counted, "late": len(late), "dropped_late": dropped_late,
                   "mosquitto_dropped": broker_dropped, "max_lag_records": max_lag,
                   "lag_samples": lags, "rss": per_stage,
                   "node_rss_per_device_kib": {"min": round(min(per_device_kib), 1) if per_device_kib else None,
                                               "max": round(max(per_device_kib), 1) if per_device_kib else None},
                   "nodes_s": round(nodes_s, 1), "bridge_done_s": round(bridge_s, 1), "lag_drained_s": round(drained_s, 1),
                   "load_average_1m": {"start": round(load0[0], 1), "end": round(os.getloadavg()[0], 1)},
                   "run_s": round(time.monotonic() - t_run, 1)}
    out.check("every process's RSS stayed within its bound (JVM: -Xmx + 1 GiB; bridge, Mosquitto 256 MiB; "
              "virtual-node process 32 MiB + 128 KiB per further device)", not over and bool(peaks),
              f"{sum(len(p) for p in peaks.values())} processes sampled {len(rss)} times; over: {over or 'none'}")
    out.check("the consumer lag grew and drained to 0", max_lag >= 0 and lags[-1]["lag_records"] == 0,
              f"max {max_lag} records, last {lags[-1]['lag_records']}")
    for name, passed, detail in exactness_checks(published, readings_records, len(dlq), values_in, counted,
                                           len(late), dropped_late):
        out.check(name, passed, detail)
    out.check("every device's outbox overflowed in the outage and accounts for each sample (acknowledged, or "
              "evicted from the outbox: the oldest queued)", not wrong and len(results) == plan.nodes,
              f"{plan.nodes} devices: {messages} samples = {published} acknowledged + {node_drops} dropped; "
              f"wrong: {dict(list(wrong.items())[:5]) or 'none'}")
    out.check("Mosquitto dropped no message", broker_dropped == 0, f"{broker_dropped} dropped")
    return out


def _run(stack: Stack, short: bool, say: Say) -> Outcome:
    stack.start(services=SERVICES, progress=lambda m: say("  " + m))
    return run_storm(stack, SHORT if short else FULL, say)


SCENARIO = Scenario(NAME, "2,000 virtual devices (scaled) lose the broker for 1 h of event time, overflow their outboxes "
                          "and flush together: RSS of every process bounded, lag drains, exact accounting of every "
                          "sample, dropped ones included", _run, services=SERVICES)


def main(argv: list[str] | None = None) -> int:
    """``python -m iotflink.simulation.scenarios.storm [--nodes N] [--outage-s S] [--speedup X]
    [--outage-at ROW] [--tail-rows N] [--devices-per-process N] [--short] [--no-results]``: run
    the scenario at this scale; exit status 0 when every check held, 1 otherwise."""
    from iotflink.settings import StackSettings  # noqa: PLC0415
    from iotflink.simulation import scenarios  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="storm-after-outage", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=FULL.nodes)
    p.add_argument("--outage-s", type=float, default=FULL.outage_s, help="outage, event-time seconds")
    p.add_argument("--speedup", type=float, default=FULL.speedup)
    p.add_argument("--outage-at", type=int, default=FULL.outage_at)
    p.add_argument("--tail-rows", type=int, default=FULL.tail_rows)
    p.add_argument("--devices-per-process", type=int, default=FULL.devices_per_process)
    p.add_argument("--connect-s", type=float, default=FULL.connect_s,
                   help="wall seconds to connect before the first row is due")
    p.add_argument("--short", action="store_true", help=f"the short plan ({SHORT.nodes} devices)")
    p.add_argument("--no-results", action="store_true")
    a = p.parse_args(argv)
    plan = SHORT if a.short else StormPlan(a.nodes, a.outage_at, a.outage_s, a.tail_rows, a.speedup,
                                           a.devices_per_process, a.connect_s)
    return scenarios.run(NAME, StackSettings.from_env(), a.short, not a.no_results,
                         runner=lambda stack, say: run_storm(stack, plan, say))


if __name__ == "__main__":
    sys.exit(main())
