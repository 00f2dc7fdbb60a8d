"""Throughput of the window job: pure Flink SQL versus a Python DataStream window, in one run.

Both variants compute the same thing: parse the sensor-readings JSON, explode ``readings`` into
(device_id, sensor, value) rows, event time from ``ts`` with a bounded-out-of-orderness
watermark and idleness, tumbling event-time windows per (device_id, sensor) with allowed
lateness, count/min/max/mean per window, and values past the allowed lateness to a side output.

- ``sql``: exactly :func:`jobs.sensor_windows.build` (JVM operators only: JSON format, UNNEST,
  CURRENT_WATERMARK split, legacy group window with late firing).
- ``python``: ``flat_map`` (json.loads + explode) -> Python timestamp assigner ->
  ``key_by`` -> ``TumblingEventTimeWindows`` + ``allowed_lateness`` + ``side_output_late_data``
  -> Python ``AggregateFunction`` + ``ProcessWindowFunction``.

Sinks are ``blackhole`` tables in both, so the figure is the pipeline's, not a sink's.

Sources (``--source``):
- ``file`` (default): the same generated JSON-lines file (seeded; a share of events delayed
  past the allowed lateness) is read by both variants through the filesystem / FileSource.
- ``kafka``: both variants read the topic ``sensor-readings`` (or ``--topic``) from
  ``--bootstrap`` from the earliest to the latest offset at start (bounded), with a fresh
  consumer group; ``--produce N`` first writes N generated events there with kafka-python.

events/s = input events / the job's net runtime (``JobExecutionResult.getNetRuntime``:
from submission to the end of a bounded run, so task deployment is included; choose sizes
that run well over 10 s). Values/s counts exploded (device, sensor, value) rows.

Usage::

    .venv/bin/python bench/window_job_bench.py                       # generated file, both variants
    .venv/bin/python bench/window_job_bench.py --sql-events 2000000 --python-events 100000
    .venv/bin/python bench/window_job_bench.py --source kafka --bootstrap 127.0.0.1:9092 --produce 500000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from pyflink.common import Row
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream.functions import AggregateFunction, ProcessWindowFunction

from iotflink.settings import WindowJobSettings
from jobs import common
from jobs import sensor_windows as sw
from jobs.common import create_stream_env, create_table_env, job_configuration, with_clause

log = logging.getLogger(__name__)

SENSORS = ("temp_c", "humidity_pct", "co2_ppm")
BASE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def generate_events(n: int, devices: int, readings_per_event: int, late_share: float, cfg: WindowJobSettings,
                    seed: int = 1):
    """Yield ``n`` sensor-readings records (dicts, CONTRACT.md) in arrival order.

    Each device reports every 100 ms of event time; ``late_share`` of the events are delayed by
    more than out-of-orderness + window + allowed lateness (so they go to the late output), and
    another 5 % are slightly out of order (within the bound).
    """
    rng = random.Random(seed)
    too_late = cfg.out_of_orderness_ms + cfg.window_size_ms + cfg.allowed_lateness_ms
    sensors = SENSORS[:readings_per_event]
    for i in range(n):
        ts = BASE_TS + (i // devices) * 100
        r = rng.random()
        if r < late_share:
            ts -= too_late + rng.randrange(cfg.window_size_ms)
        elif r < late_share + 0.05:
            ts -= rng.randrange(cfg.out_of_orderness_ms)
        yield {"device_id": f"dev-{i % devices:04d}", "seq": i // devices, "ts": ts,
               "readings": {s: round(rng.uniform(0, 100), 3) for s in sensors}, "ingest_ms": ts}


def write_events_file(path: Path, n: int, args, cfg: WindowJobSettings) -> None:
    """Write ``n`` generated events as JSON lines to ``path``."""
    with path.open("w") as f:
        for e in generate_events(n, args.devices, args.readings, args.late_share, cfg, args.seed):
            f.write(json.dumps(e, separators=(",", ":")))
            f.write("\n")


def produce_to_kafka(bootstrap: str, topic: str, n: int, args, cfg: WindowJobSettings) -> None:
    """Append ``n`` generated events to ``topic`` (key = device_id), acks=all."""
    from kafka import KafkaProducer  # noqa: PLC0415

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024,
                             key_serializer=str.encode, value_serializer=lambda v: json.dumps(v).encode())
    for e in generate_events(n, args.devices, args.readings, args.late_share, cfg, args.seed):
        producer.send(topic, key=e["device_id"], value=e)
    producer.flush()
    producer.close()


def kafka_record_count(bootstrap: str, topic: str) -> int:
    """Records between the earliest and latest offsets of every partition of ``topic``."""
    from kafka import KafkaConsumer, TopicPartition  # noqa: PLC0415

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    begin, end = consumer.beginning_offsets(parts), consumer.end_offsets(parts)
    consumer.close()
    return sum(end[p] - begin[p] for p in parts)


#: Checkpoints of the local run go to files: the job's state (the dedup's one key per reading,
#: 65 MB after 1M readings) exceeds the 5 MB cap of the JobManager's memory storage, where a
#: checkpoint failure loop stalled the first Kafka run.
CHECKPOINT_DIR = Path(tempfile.mkdtemp(prefix="window-bench-ckpt-"))


def _conf(cfg: WindowJobSettings, name: str, kafka: bool) -> dict[str, str]:
    """The job's configuration (exactly-once checkpoints at its interval) with the deployed state
    backend, RocksDB, and checkpoints in :data:`CHECKPOINT_DIR`."""
    return job_configuration(cfg, name, use_kafka=kafka, extra={
        "state.backend.type": "rocksdb", "execution.checkpointing.dir": CHECKPOINT_DIR.as_uri()})


# --------------------------------------------------------------------------- SQL variant
def run_sql(cfg: WindowJobSettings, args, path: Path | None) -> float:
    """Run :func:`jobs.sensor_windows.build` over the input into blackhole sinks; net runtime (s)."""
    t_env = create_table_env(_conf(cfg, "bench_sql", kafka=path is None))
    if path is not None:
        t_env.execute_sql(sw.file_source_ddl(cfg, "src", path))
    else:
        opts = {"connector": "kafka", "topic": args.topic, "properties.bootstrap.servers": args.bootstrap,
                "properties.group.id": f"bench-sql-{uuid.uuid4().hex[:8]}",
                "properties.isolation.level": "read_committed", "scan.startup.mode": "earliest-offset",
                "scan.bounded.mode": "latest-offset", "scan.parallelism": str(cfg.source_parallelism),
                **sw.source_format_options("value.")}
        t_env.execute_sql(f"CREATE TABLE src ({sw.source_schema(cfg)}\n) {with_clause(opts)}")
    t_env.execute_sql(f"CREATE TABLE bh_agg ({sw.AGGREGATE_COLUMNS}\n) WITH ('connector' = 'blackhole')")
    t_env.execute_sql(f"CREATE TABLE bh_late ({sw.LATE_COLUMNS}\n) WITH ('connector' = 'blackhole')")
    result = common.execute(t_env, sw.build(t_env, cfg, "src", "bh_agg", "bh_late"))
    job = result.get_job_client().get_job_execution_result().result()
    return job.get_net_runtime() / 1000.0


# --------------------------------------------------------------------------- Python functions
# Module level, so cloudpickle ships plain functions/classes to the Python workers.
def _explode(line: str):
    """JSON sensor-readings record -> one Row(device_id, sensor, seq, ts, value) per reading."""
    e = json.loads(line)
    for sensor, value in e["readings"].items():
        yield Row(e["device_id"], sensor, e["seq"], e["ts"], float(value))


class _EventTime(TimestampAssigner):
    """Event time = the row's ``ts`` (epoch ms)."""

    def extract_timestamp(self, value, record_timestamp):
        return value[3]


class _Stats(AggregateFunction):
    """Incremental [count, min, max, sum] of the rows' values."""

    def create_accumulator(self):
        return [0, float("inf"), float("-inf"), 0.0]

    def add(self, value, acc):
        v = value[4]
        return [acc[0] + 1, min(acc[1], v), max(acc[2], v), acc[3] + v]

    def get_result(self, acc):
        return acc

    def merge(self, a, b):
        return [a[0] + b[0], min(a[1], b[1]), max(a[2], b[2]), a[3] + b[3]]


class _Emit(ProcessWindowFunction):
    """(key, window, [count, min, max, sum]) -> aggregate Row with window bounds (ms) and mean."""

    def process(self, key, context, elements):
        count, vmin, vmax, total = next(iter(elements))
        w = context.window()
        yield Row(key[0], key[1], w.start, w.end, count, vmin, vmax, total / count)


# --------------------------------------------------------------------------- Python DataStream variant
def run_python(cfg: WindowJobSettings, args, path: Path | None) -> float:
    """The same aggregation as a PyFlink DataStream window; net runtime (s)."""
    from pyflink.common import Duration, Types, WatermarkStrategy  # noqa: PLC0415
    from pyflink.common.serialization import SimpleStringSchema  # noqa: PLC0415
    from pyflink.common.time import Time  # noqa: PLC0415
    from pyflink.datastream import OutputTag  # noqa: PLC0415
    from pyflink.datastream.window import TumblingEventTimeWindows  # noqa: PLC0415
    from pyflink.table import StreamTableEnvironment  # noqa: PLC0415

    env = create_stream_env(_conf(cfg, "bench_python", kafka=path is None))
    if path is not None:
        from pyflink.datastream.connectors.file_system import FileSource, StreamFormat  # noqa: PLC0415

        source = FileSource.for_record_stream_format(StreamFormat.text_line_format(), str(path)).build()
        lines = env.from_source(source, WatermarkStrategy.no_watermarks(), "readings-file")
    else:
        from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource  # noqa: PLC0415

        source = (KafkaSource.builder().set_bootstrap_servers(args.bootstrap).set_topics(args.topic)
                  .set_group_id(f"bench-py-{uuid.uuid4().hex[:8]}")
                  .set_starting_offsets(KafkaOffsetsInitializer.earliest())
                  .set_bounded(KafkaOffsetsInitializer.latest())
                  .set_property("isolation.level", "read_committed")
                  .set_value_only_deserializer(SimpleStringSchema()).build())
        lines = env.from_source(source, WatermarkStrategy.no_watermarks(), "readings-kafka")
    lines = lines.uid("bench-py-source").set_parallelism(cfg.source_parallelism)

    def value_type():
        return Types.ROW_NAMED(["device_id", "sensor", "seq", "ts", "value"],
                               [Types.STRING(), Types.STRING(), Types.LONG(), Types.LONG(), Types.DOUBLE()])
    agg_type = Types.ROW_NAMED(["device_id", "sensor", "window_start_ms", "window_end_ms", "count", "min", "max", "mean"],
                               [Types.STRING(), Types.STRING(), Types.LONG(), Types.LONG(), Types.LONG(),
                                Types.DOUBLE(), Types.DOUBLE(), Types.DOUBLE()])

    watermarks = (WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(cfg.out_of_orderness_ms))
                  .with_idleness(Duration.of_millis(cfg.idleness_ms))
                  .with_timestamp_assigner(_EventTime()))
    # A type info of its own: OutputTag.__getstate__ clears only the row's Java type info, not
    # its fields', so a type info already converted to Java (flat_map's) fails to pickle
    # ("cannot pickle '_thread.RLock'") when the window operator is serialized.
    late_tag = OutputTag("late", value_type())
    rows = (lines.flat_map(_explode, output_type=value_type()).name("explode readings").uid("bench-py-explode")
            .assign_timestamps_and_watermarks(watermarks).name("event time + watermark").uid("bench-py-watermark"))
    aggregates = (rows.key_by(lambda r: (r[0], r[1]), key_type=Types.TUPLE([Types.STRING(), Types.STRING()]))
                  .window(TumblingEventTimeWindows.of(Time.milliseconds(cfg.window_size_ms)))
                  .allowed_lateness(cfg.allowed_lateness_ms)
                  .side_output_late_data(late_tag)
                  .aggregate(_Stats(), window_function=_Emit(),
                             accumulator_type=Types.PICKLED_BYTE_ARRAY(), output_type=agg_type)
                  .name("tumbling window").uid("bench-py-window"))
    late = aggregates.get_side_output(late_tag)

    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql("CREATE TABLE bh_agg (device_id STRING, sensor STRING, window_start_ms BIGINT, "
                      "window_end_ms BIGINT, `count` BIGINT, `min` DOUBLE, `max` DOUBLE, `mean` DOUBLE) "
                      "WITH ('connector' = 'blackhole')")
    t_env.execute_sql("CREATE TABLE bh_late (device_id STRING, sensor STRING, seq BIGINT, ts BIGINT, `value` DOUBLE) "
                      "WITH ('connector' = 'blackhole')")
    stmts = t_env.create_statement_set()
    stmts.add_insert("bh_agg", t_env.from_data_stream(aggregates))
    stmts.add_insert("bh_late", t_env.from_data_stream(late))
    stmts.attach_as_datastream()
    return env.execute("bench_python").get_net_runtime() / 1000.0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run both variants on the same input, print one comparison; exit code 0."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", choices=("file", "kafka"), default="file")
    p.add_argument("--sql-events", type=int, default=1_000_000, help="file source: events for the SQL variant")
    p.add_argument("--python-events", type=int, default=60_000, help="file source: events for the Python variant")
    p.add_argument("--variants", default="sql,python", help="comma list of sql,python")
    p.add_argument("--devices", type=int, default=50)
    p.add_argument("--readings", type=int, default=2, choices=(1, 2, 3), help="sensor values per event")
    p.add_argument("--late-share", type=float, default=0.01, help="share of events past the allowed lateness")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--window-ms", type=int, default=10_000, help="tumbling window size (ms)")
    p.add_argument("--parallelism", type=int, default=None, help="default: IOTFLINK_JOB_PARALLELISM")
    p.add_argument("--bootstrap", default=None, help="kafka source: bootstrap servers")
    p.add_argument("--topic", default=None, help="kafka source: topic (default IOTFLINK_TOPIC_READINGS)")
    p.add_argument("--produce", type=int, default=0, help="kafka source: first write N generated events")
    p.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    cfg = WindowJobSettings.from_env()
    cfg = replace(cfg, window_size_ms=args.window_ms, parallelism=args.parallelism or cfg.parallelism)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    results = {"source": args.source, "parallelism": cfg.parallelism, "window_ms": cfg.window_size_ms,
               "readings_per_event": args.readings, "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="window-bench-") as tmp:
        inputs: dict[str, tuple[Path | None, int]] = {}
        if args.source == "file":
            for v in variants:
                n = args.sql_events if v == "sql" else args.python_events
                path = Path(tmp) / f"{v}.json"
                write_events_file(path, n, args, cfg)
                inputs[v] = (path, n)
        else:
            if not args.bootstrap:
                p.error("--source kafka needs --bootstrap")
            args.topic = args.topic or cfg.topics.readings
            if args.produce:
                produce_to_kafka(args.bootstrap, args.topic, args.produce, args, cfg)
            n = kafka_record_count(args.bootstrap, args.topic)
            inputs = {v: (None, n) for v in variants}
        for v in variants:
            path, n = inputs[v]
            t0 = time.monotonic()
            runtime = (run_sql if v == "sql" else run_python)(cfg, args, path)
            wall = time.monotonic() - t0
            results[v] = {"events": n, "values": n * args.readings if args.source == "file" else None,
                          "net_runtime_s": round(runtime, 2), "wall_s": round(wall, 2),
                          "events_per_s": round(n / runtime) if runtime > 0 else None}
            print(f"{v:>6}: {n:>9} events in {runtime:7.2f} s net ({wall:6.2f} s wall) -> "
                  f"{results[v]['events_per_s']:>8} events/s", flush=True)
    if "sql" in results and "python" in results and results["python"]["events_per_s"]:
        ratio = results["sql"]["events_per_s"] / results["python"]["events_per_s"]
        results["sql_over_python"] = round(ratio, 1)
        print(f"SQL / Python DataStream throughput: {ratio:.1f}x  (parallelism {cfg.parallelism}, "
              f"{os.cpu_count()} CPUs, 1-min load average at start {results['load_avg_1m']:.1f})")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
