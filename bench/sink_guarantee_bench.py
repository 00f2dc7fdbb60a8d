"""Exactly-once versus at-least-once Kafka sinks: throughput, and end-to-end latency at a fixed rate.

Both figures come from one run, on one stack (Kafka KRaft + the Flink standalone cluster,
started on free ports by this script unless ``--stack env``), with the same minimal Flink SQL
pass-through job, submitted from this process to the cluster (``execution.target: remote``)::

    Kafka <in topic> (JSON {id, produce_ms, payload}) -> Kafka <out topic> (same JSON)

The job differs between the two modes only in ``sink.delivery-guarantee``
(``exactly-once`` with a transactional id prefix and a 10 min transaction timeout, or
``at-least-once``); checkpointing is exactly-once in both, RocksDB incremental, same interval
(``jobs.common.job_configuration``), parallelism 2, 4 partitions per topic.

1. **Throughput.** ``--records`` records (~110 bytes of JSON each) are written once to an
   input topic; each mode reads that topic from the earliest to the latest offset (a bounded
   job) and writes its own output topic. ``records_per_s = records / duration``, where
   ``duration`` runs from the source vertex starting to the job reaching FINISHED (from
   ``/jobs/:jid``). For exactly-once, the job finishes only when the final checkpoint has
   committed the last transaction, so ``duration`` includes up to one checkpoint interval of
   waiting at the end: that is part of what exactly-once costs a bounded run. The output
   is counted with a ``read_committed`` consumer (exactly-once: must equal ``records``;
   at-least-once: at least ``records``).
2. **Latency.** Each mode runs an unbounded job on its own pair of topics; a producer thread
   writes ``--rate`` records/s with ``produce_ms`` = wall clock at send; a ``read_committed``
   consumer thread on the output takes ``latency = receive wall clock - produce_ms`` (one
   host, one clock). The first ``--warmup-s`` seconds are dropped, then ``--latency-s``
   seconds are measured. Exactly-once output becomes visible only when a checkpoint
   completes and commits the transaction, so its latency is bounded by, and close to, the
   checkpoint interval (``--checkpoint-interval-ms``, reported in the result).

Writes ``bench/results/sink_guarantee.json`` and prints a table. The machine's 1-min load
average before and after each phase is recorded: this is a 2-core box shared with other work.

Usage::

    .venv/bin/python bench/sink_guarantee_bench.py                    # own stack on free ports
    .venv/bin/python bench/sink_guarantee_bench.py --records 500000 --rate 2000 --latency-s 60
    .venv/bin/python bench/sink_guarantee_bench.py --stack env        # the stack of IOTFLINK_* (make demo's)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from iotflink.poll import PollTimeout, wait_for
from iotflink.runtime.flinkctl import FlinkCtl
from iotflink.runtime.stack import Stack, free_port_settings
from iotflink.settings import StackSettings, WindowJobSettings
from jobs.common import create_table_env, job_configuration, with_clause

log = logging.getLogger("sink_guarantee_bench")

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("at-least-once", "exactly-once")
PARTITIONS = 4
PAYLOAD = "x" * 60
COLUMNS = "id BIGINT, produce_ms BIGINT, payload STRING"


def load1() -> float:
    """The 1-minute load average (processes runnable or waiting), from ``os.getloadavg``."""
    return round(os.getloadavg()[0], 2)


# --------------------------------------------------------------------------- Kafka helpers
def create_topics(bootstrap: str, names: list[str]) -> None:
    """Create ``names`` with :data:`PARTITIONS` partitions (replication 1)."""
    from iotflink import kafka_io  # noqa: PLC0415

    kafka_io.create_topics(bootstrap, dict.fromkeys(names, PARTITIONS), client_id="bench-sg")


def produce(bootstrap: str, topic: str, n: int) -> float:
    """Write ``n`` records ``{id, produce_ms, payload}`` as fast as kafka-python can; returns seconds."""
    from kafka import KafkaProducer  # noqa: PLC0415

    prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024, acks=1)
    t0 = time.monotonic()
    now = int(time.time() * 1000)
    for i in range(n):
        prod.send(topic, json.dumps({"id": i, "produce_ms": now, "payload": PAYLOAD}).encode(),
                  partition=i % PARTITIONS)
    prod.flush()
    prod.close()
    return time.monotonic() - t0


def count_committed(bootstrap: str, topic: str, timeout_s: float = 300.0) -> int:
    """Records of ``topic`` a ``read_committed`` consumer sees, from the start to the end now.

    Raises:
        TimeoutError: the end offsets were not reached within ``timeout_s``.
    """
    from kafka import KafkaConsumer, TopicPartition  # noqa: PLC0415

    cons = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         isolation_level="read_committed", fetch_max_bytes=64 * 1024 * 1024)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(cons.partitions_for_topic(topic) or [])]
        ends = cons.end_offsets(parts)
        cons.assign(parts)
        cons.seek_to_beginning(*parts)
        count, deadline = 0, time.monotonic() + timeout_s
        while any(cons.position(tp) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                raise TimeoutError(f"counting {topic}: end offsets {ends} not reached")
            for tp, recs in cons.poll(timeout_ms=500, max_records=50_000).items():
                count += sum(1 for r in recs if r.offset < ends[tp])
        return count
    finally:
        cons.close()


# --------------------------------------------------------------------------- the job
def submit_passthrough(stack: Stack, mode: str, in_topic: str, out_topic: str, bounded: bool,
                       checkpoint_interval_ms: int, parallelism: int) -> str:
    """Submit ``INSERT INTO out SELECT * FROM in`` to the stack's cluster; returns the job id.

    ``mode`` is the sink's delivery guarantee (``exactly-once`` | ``at-least-once``).
    """
    s = stack.s
    cfg = WindowJobSettings(kafka_bootstrap=s.kafka_bootstrap, parallelism=parallelism,
                            checkpoint_interval_ms=checkpoint_interval_ms)
    conf = job_configuration(cfg, f"bench-sink-{mode}-{'bounded' if bounded else 'unbounded'}", extra={
        "execution.target": "remote", "rest.address": s.host, "rest.port": str(s.flink_rest_port),
        "execution.checkpointing.min-pause": "0 ms",
    })
    t_env = create_table_env(conf)
    src = {"connector": "kafka", "topic": in_topic, "properties.bootstrap.servers": s.kafka_bootstrap,
           "properties.group.id": f"bench-{uuid.uuid4().hex[:8]}", "scan.startup.mode": "earliest-offset",
           "properties.isolation.level": "read_committed", "value.format": "json"}
    if bounded:
        src["scan.bounded.mode"] = "latest-offset"
    snk = {"connector": "kafka", "topic": out_topic, "properties.bootstrap.servers": s.kafka_bootstrap,
           "value.format": "json", "sink.delivery-guarantee": mode}
    if mode == "exactly-once":
        snk["sink.transactional-id-prefix"] = f"bench-{uuid.uuid4().hex[:8]}"
        snk["properties.transaction.timeout.ms"] = "600000"
    t_env.execute_sql(f"CREATE TABLE bin ({COLUMNS}) {with_clause(src)}")
    t_env.execute_sql(f"CREATE TABLE bout ({COLUMNS}) {with_clause(snk)}")
    result = t_env.execute_sql("INSERT INTO bout SELECT id, produce_ms, payload FROM bin")
    return str(result.get_job_client().get_job_id())


def throughput_run(stack: Stack, ctl: FlinkCtl, mode: str, in_topic: str, records: int,
                   checkpoint_interval_ms: int, parallelism: int) -> dict:
    """Bounded pass-through of ``in_topic`` (``records`` records) with sink ``mode``.

    Returns ``{"mode", "records", "duration_s", "records_per_s", "output_records",
    "deploy_s", "load1_before", "load1_after"}``.
    """
    out_topic = f"bench-sg-out-{mode}-{uuid.uuid4().hex[:6]}"
    create_topics(stack.s.kafka_bootstrap, [out_topic])
    before = load1()
    job_id = submit_passthrough(stack, mode, in_topic, out_topic, True, checkpoint_interval_ms, parallelism)
    ctl.wait_state(job_id, {"FINISHED"}, timeout_s=900)
    info = ctl.job(job_id)
    src = next(v for v in info["vertices"] if v["name"].startswith("Source"))
    t_src = src["start-time"]
    t_end = info["timestamps"]["FINISHED"]
    duration = (t_end - t_src) / 1000.0
    out = count_committed(stack.s.kafka_bootstrap, out_topic)
    return {"mode": mode, "records": records, "duration_s": round(duration, 2),
            "records_per_s": round(records / duration), "output_records": out,
            "deploy_s": round((t_src - info["timestamps"]["CREATED"]) / 1000.0, 2),
            "load1_before": before, "load1_after": load1()}


class RateProducer(threading.Thread):
    """Writes ``rate`` records/s to ``topic`` (``produce_ms`` = wall clock at send) until stopped."""

    def __init__(self, bootstrap: str, topic: str, rate: int) -> None:
        super().__init__(name="rate-producer", daemon=True)
        from kafka import KafkaProducer  # noqa: PLC0415

        self.prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
        self.topic, self.rate, self.sent = topic, rate, 0
        self.stop_evt = threading.Event()

    def run(self) -> None:
        t0, tick = time.monotonic(), 0.01
        per_tick = self.rate * tick
        owed = 0.0
        while not self.stop_evt.is_set():
            owed += per_tick
            while owed >= 1:
                now = int(time.time() * 1000)
                self.prod.send(self.topic, json.dumps({"id": self.sent, "produce_ms": now, "payload": PAYLOAD}).encode(),
                               partition=self.sent % PARTITIONS)
                self.sent += 1
                owed -= 1
            t0 += tick
            self.stop_evt.wait(max(0.0, t0 - time.monotonic()))
        self.prod.flush()
        self.prod.close()


class LatencyConsumer(threading.Thread):
    """``read_committed`` consumer of ``topic``: records ``(receive_ms, produce_ms)`` per record."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="latency-consumer", daemon=True)
        from kafka import KafkaConsumer  # noqa: PLC0415

        self.cons = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                  isolation_level="read_committed", auto_offset_reset="earliest",
                                  fetch_max_wait_ms=10)
        self.samples: list[tuple[int, int]] = []
        self.stop_evt = threading.Event()

    def run(self) -> None:
        while not self.stop_evt.is_set():
            for recs in self.cons.poll(timeout_ms=100).values():
                now = int(time.time() * 1000)
                for r in recs:
                    self.samples.append((now, json.loads(r.value)["produce_ms"]))
        self.cons.close()


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


def latency_run(stack: Stack, ctl: FlinkCtl, mode: str, rate: int, warmup_s: float, measure_s: float,
                checkpoint_interval_ms: int, parallelism: int) -> dict:
    """Unbounded pass-through at ``rate`` records/s; latency of records produced in the window.

    Returns ``{"mode", "rate", "checkpoint_interval_ms", "samples", "p50_ms", "p99_ms",
    "max_ms", "mean_ms", "delivered_per_s", "load1_before", "load1_after"}``.
    """
    tag = uuid.uuid4().hex[:6]
    in_topic, out_topic = f"bench-sg-lin-{mode}-{tag}", f"bench-sg-lout-{mode}-{tag}"
    create_topics(stack.s.kafka_bootstrap, [in_topic, out_topic])
    before = load1()
    job_id = submit_passthrough(stack, mode, in_topic, out_topic, False, checkpoint_interval_ms, parallelism)
    ctl.wait_running(job_id)
    cons = LatencyConsumer(stack.s.kafka_bootstrap, out_topic)
    cons.start()
    prod = RateProducer(stack.s.kafka_bootstrap, in_topic, rate)
    t_start = int(time.time() * 1000)
    prod.start()
    t_from = t_start + int(warmup_s * 1000)
    t_to = t_from + int(measure_s * 1000)
    while int(time.time() * 1000) < t_to:
        time.sleep(0.5)  # the measurement window: wall-clock time is the quantity here
    prod.stop_evt.set()
    prod.join(30)
    # wait for the window's last records to be delivered (exactly-once: the next commit)
    try:
        wait_for(lambda: any(p >= t_to for _, p in cons.samples[-200:]), 3 * checkpoint_interval_ms / 1000.0 + 30,
                 what="the measurement window's last records")
    except PollTimeout:
        log.warning("%s: the measurement window's last records did not come back", mode)
    cons.stop_evt.set()
    cons.join(30)
    ctl.cancel(job_id)
    lat = [r - p for r, p in cons.samples if t_from <= p < t_to]
    if not lat:
        raise RuntimeError(f"{mode}: no record produced in the measurement window came back")
    return {"mode": mode, "rate": rate, "checkpoint_interval_ms": checkpoint_interval_ms,
            "samples": len(lat), "p50_ms": percentile(lat, 0.50), "p99_ms": percentile(lat, 0.99),
            "max_ms": max(lat), "mean_ms": round(statistics.fmean(lat), 1),
            "delivered_per_s": round(len(lat) / measure_s, 1),
            "load1_before": before, "load1_after": load1()}


# --------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict:
    """Start (or attach to) a stack, run both phases for both modes, return the result dict."""
    own = args.stack == "own"
    tmp = tempfile.mkdtemp(prefix="bench-sg-") if own else None
    cfg = free_port_settings(Path(tmp) / "run") if own else StackSettings.from_env()
    stack = Stack(cfg)
    if own:
        stack.start(services=("kafka", "flink-jobmanager", "flink-taskmanager"),
                    progress=lambda m: print(f"[stack] {m}", flush=True))
    ctl = FlinkCtl(cfg)
    try:
        result: dict = {"bench": "sink_guarantee", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "machine": {"cpus": os.cpu_count(), "load1_start": load1()},
                        "params": {"records": args.records, "rate": args.rate, "warmup_s": args.warmup_s,
                                   "latency_s": args.latency_s, "parallelism": args.parallelism,
                                   "checkpoint_interval_ms": args.checkpoint_interval_ms,
                                   "partitions": PARTITIONS, "stack": args.stack},
                        "throughput": [], "latency": []}
        in_topic = f"bench-sg-in-{uuid.uuid4().hex[:6]}"
        create_topics(cfg.kafka_bootstrap, [in_topic])
        secs = produce(cfg.kafka_bootstrap, in_topic, args.records)
        print(f"[bench] wrote {args.records} input records in {secs:.1f} s", flush=True)
        # ABBA order (at-least-once, exactly-once, exactly-once, at-least-once, ...): a drift
        # over the run (JIT warm-up, page cache, load) weighs on both modes alike
        order = [m for i in range(args.throughput_rounds) for m in (MODES if i % 2 == 0 else MODES[::-1])]
        for mode in order:
            r = throughput_run(stack, ctl, mode, in_topic, args.records, args.checkpoint_interval_ms,
                               args.parallelism)
            print(f"[bench] throughput {mode}: {r}", flush=True)
            result["throughput"].append(r)
        for mode in MODES:
            r = latency_run(stack, ctl, mode, args.rate, args.warmup_s, args.latency_s,
                            args.checkpoint_interval_ms, args.parallelism)
            print(f"[bench] latency {mode}: {r}", flush=True)
            result["latency"].append(r)
        tp = {m: statistics.median(r["records_per_s"] for r in result["throughput"] if r["mode"] == m)
              for m in MODES}
        result["throughput_median"] = tp
        lt = {r["mode"]: r for r in result["latency"]}
        result["ratios"] = {
            "throughput_alo_over_eo": round(tp["at-least-once"] / tp["exactly-once"], 2),
            "p50_eo_over_alo": round(lt["exactly-once"]["p50_ms"] / max(1, lt["at-least-once"]["p50_ms"]), 1),
            "p99_eo_over_alo": round(lt["exactly-once"]["p99_ms"] / max(1, lt["at-least-once"]["p99_ms"]), 1),
        }
        result["machine"]["load1_end"] = load1()
        return result
    finally:
        for j in ctl.list_jobs():
            if j["state"] == "RUNNING" and j["name"].startswith("bench-sink-"):
                ctl.cancel(j["jid"])
        if own:
            stack.stop()


def table(result: dict) -> str:
    """The result as a text table."""
    lines = [f"sink guarantee bench ({result['params']['records']} records; rate "
             f"{result['params']['rate']}/s; checkpoint interval {result['params']['checkpoint_interval_ms']} ms; "
             f"parallelism {result['params']['parallelism']}; {result['machine']['cpus']} CPUs, load1 "
             f"{result['machine']['load1_start']} -> {result['machine']['load1_end']})",
             f"{'mode':15} {'records/s':>10} {'duration s':>10} {'out recs':>9} | {'p50 ms':>7} {'p99 ms':>7} "
             f"{'max ms':>7} {'samples':>8}"]
    lat = {r["mode"]: r for r in result["latency"]}
    for r in result["throughput"]:
        l_ = lat[r["mode"]]
        lines.append(f"{r['mode']:15} {r['records_per_s']:>10} {r['duration_s']:>10} {r['output_records']:>9} | "
                     f"{l_['p50_ms']:>7} {l_['p99_ms']:>7} {l_['max_ms']:>7} {l_['samples']:>8}")
    lines.append(f"ratios: {result['ratios']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stack", choices=["own", "env"], default="own",
                   help="own: start a stack on free ports and stop it after; env: use IOTFLINK_* settings")
    p.add_argument("--records", type=int, default=300_000, help="records of the throughput phase")
    p.add_argument("--throughput-rounds", type=int, default=2,
                   help="rounds of the throughput phase, both modes each, in ABBA order; medians reported")
    p.add_argument("--rate", type=int, default=2000, help="records/s of the latency phase")
    p.add_argument("--warmup-s", type=float, default=10.0)
    p.add_argument("--latency-s", type=float, default=40.0, help="measured seconds of the latency phase")
    p.add_argument("--checkpoint-interval-ms", type=int, default=5000)
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS / "sink_guarantee.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # SIGTERM / SIGINT end the run through run()'s finally: jobs cancelled, the stack stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
