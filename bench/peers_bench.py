"""The window job against the stream processors a user would pick instead: same workload, same run.

Workload (one run, every system reads the same Kafka topic):

- ``--readings`` sensor-readings records (default 1,000,000) of 2 values each (``temp_c``,
  ``humidity_pct``) from ``--devices`` devices (default 1,000), each device one record every
  ``--interval-ms`` of event time (default 5,000 ms: the fleet's reporting interval), written with
  kafka-python to a fresh topic of 4 partitions, key = ``device_id``. 5 % of the records are
  delayed by up to 5 s (inside every system's out-of-orderness bound, so nothing is late and
  every system must give the same windows), and ``--dup-share`` (1 %) are sent twice (the same
  device_id and seq: a redelivery).
- Each system: drop copies of a reading (same device_id, seq); 60 s tumbling event-time windows
  per (device_id, sensor) with count/min/max/mean; the windows to a Kafka topic.

Systems (``--systems``; each runs as its own process, one worker / parallelism as given):

- ``flink-pN``: the window job itself (:func:`jobs.sensor_windows.build` with its Kafka source,
  exactly-once Kafka sinks, RocksDB, checkpoints every 30 s) on a local MiniCluster at
  parallelism N, the source bounded at the topic's end offsets at start.
- ``bytewax``: bytewax 0.21 (``KafkaSource(tail=False)`` -> json -> keyed dedup in
  ``stateful_flat_map`` -> ``fold_window`` with ``EventClock`` (10 s wait) and a 60 s
  ``TumblingWindower`` per device (one accumulator per sensor) -> ``KafkaSink``), one worker.
- ``quix``: quix-streams 3 (``Application``, JSON topic with the reading's ``ts`` as message
  timestamp -> stateful dedup filter (RocksDB state) -> ``tumbling_window(60 s, grace 10 s)``
  ``.reduce`` per device (one accumulator per sensor) ``.final()`` -> output topic).

bytewax and quix-streams key their windows by the message key (the device) and keep one
accumulator per sensor inside: the same windows without a repartition through Kafka.

Peers are installed into their own venv (``--peers-venv``, default ``.venv-peers``) from
``bench/peers-requirements.txt``, created on first use: they are not the project's dependencies.

Measured per system and round (ABBA order over ``--rounds``):

- ``startup_s``: from the process's launch to its first record read (Flink: the source vertex's
  ``write-records`` in the MiniCluster's REST API, polled every 0.25 s with the metric fetcher
  at 0.5 s, so up to ~0.75 s late; the others: the first call of their parse function);
- Flink's SQL planning: the first Flink round of each parallelism compiles the job's plan into a
  cache for the run (:func:`jobs.common.execute_cached`, as ``main()`` submits the job), the
  later rounds load it, as a resubmission of the same job with the same settings does
  (``plan_cache``: ``miss`` / ``hit`` per round); ``--no-plan-cache`` plans in every round;
- ``readings_per_s``: readings / (end - first read); the end is the last record parsed (quix,
  which has no end of input and stops after 30 s without records) or the end of the run (Flink: the
  job's end, including its last checkpoint and the commit of its Kafka transactions; bytewax:
  the dataflow's end);
- ``cpu_s``: CPU seconds (user + system) of the process and all its descendants (the
  MiniCluster's JVM), sampled with psutil every 0.2 s; ``cpu_s_per_m``: per million readings;
  ``readings_per_cpu_s``; the same after the first read (``busy_cpu_s_per_m``,
  ``readings_per_busy_cpu_s``: the steady state, without the start-up's CPU);
- Flink only: ``jit_cpu_s_per_m``, the CPU of the JVM's JIT compiler threads (C1, C2; from
  ``/proc/<pid>/task``), and ``busy_nojit_cpu_s_per_m``, the CPU after the first read without
  them. The JIT is a warm-up cost that a long-running job pays once, and under load it varies
  from run to run by more than most changes to the job, so variants of the job (``--variant``)
  are best compared by ``busy_nojit_cpu_s_per_m``.

Every system's windows are checked against an independent computation from the generated
records (the last two windows of event time are left out: quix-streams closes a window only when
a later record arrives, and there is none at the end). A system that gives other windows fails
the run.

Usage::

    .venv/bin/python bench/peers_bench.py --start-stack [--readings 1000000] [--rounds 3]
        [--systems flink-p1,flink-p2,bytewax,quix] [--out bench/results/peers.json]
    .venv/bin/python bench/peers_bench.py --bootstrap HOST:PORT ...
    # an A/B of job variants in one run: flink-p1 as it is against flink-p1 with more options
    .venv/bin/python bench/peers_bench.py --start-stack --systems flink-p1,flink-p1:heap \\
        --variant heap=state.backend.type=hashmap --rounds 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SENSORS = ("temp_c", "humidity_pct")
BASE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WINDOW_MS = 60_000
WAIT_MS = 10_000  # out-of-orderness bound / bytewax wait / quix grace
MAX_DELAY_MS = 5_000
PARTITIONS = 4

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- workload
def generate(n: int, devices: int, interval_ms: int, dup_share: float, seed: int = 7):
    """Yield ``(device_id, record)`` in send order (record: the contract's JSON object).

    Device ``d`` sends record ``k`` (seq ``k``) at event time ``BASE_TS + k * interval_ms + d``;
    5 % of records are sent up to :data:`MAX_DELAY_MS` of event time later than their neighbours
    (they keep their own ``ts``); ``dup_share`` are sent a second time right after.
    """
    rng = random.Random(seed)
    held: list[tuple[int, str, dict]] = []  # (release index, device, record)
    sent = 0
    i = 0
    step = max(1, interval_ms // devices)  # event-time ms between two consecutive records
    while sent < n:
        k, d = divmod(i, devices)
        dev = f"dev-{d:05d}"
        ts = BASE_TS + k * interval_ms + d
        rec = {"device_id": dev, "seq": k, "ts": ts,
               "readings": {"temp_c": round(20 + rng.gauss(0, 3), 3), "humidity_pct": round(rng.uniform(20, 80), 3)},
               "ingest_ms": ts}
        i += 1
        if rng.random() < 0.05:
            held.append((i + rng.randrange(max(1, MAX_DELAY_MS // step)), dev, rec))
        else:
            yield dev, rec
            sent += 1
            if sent < n and rng.random() < dup_share:
                yield dev, rec
                sent += 1
        ready = [h for h in held if h[0] <= i]
        if ready:
            held = [h for h in held if h[0] > i]
            for _, hdev, hrec in ready:
                if sent < n:
                    yield hdev, hrec
                    sent += 1


def expected_windows(records) -> dict[tuple[str, str, int], tuple[int, float, float, float]]:
    """Independent computation: dedup on (device_id, seq), then per (device, sensor, window start
    ms) ``(count, min, max, mean)``."""
    seen: set[tuple[str, int]] = set()
    acc: dict[tuple[str, str, int], list[float]] = {}
    for _, r in records:
        if (r["device_id"], r["seq"]) in seen:
            continue
        seen.add((r["device_id"], r["seq"]))
        start = r["ts"] - r["ts"] % WINDOW_MS
        for s, v in r["readings"].items():
            a = acc.setdefault((r["device_id"], s, start), [0, float("inf"), float("-inf"), 0.0])
            a[0] += 1
            a[1] = min(a[1], v)
            a[2] = max(a[2], v)
            a[3] += v
    return {k: (a[0], a[1], a[2], a[3] / a[0]) for k, a in acc.items()}


#: Topic configuration of every topic of the run: no time-based retention. The readings' event
#: time is in the past, and systems that stamp their output records with it (quix-streams: the
#: window's time) would see the broker delete whole segments at its next retention check.
TOPIC_CONFIG = {"retention.ms": "-1"}


def produce(bootstrap: str, topic: str, records) -> int:
    """Create ``topic`` (:data:`PARTITIONS` partitions) and write ``records``; returns the count."""
    from kafka import KafkaProducer  # noqa: PLC0415

    create_topic(bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    n = 0
    for dev, rec in records:
        producer.send(topic, key=dev.encode(), value=json.dumps(rec, separators=(",", ":")).encode())
        n += 1
    producer.flush()
    producer.close()
    return n


def create_topic(bootstrap: str, topic: str) -> None:
    """Create an output topic with :data:`PARTITIONS` partitions."""
    from iotflink import kafka_io  # noqa: PLC0415

    kafka_io.create_topics(bootstrap, {topic: PARTITIONS}, configs=TOPIC_CONFIG)


def read_windows(bootstrap: str, topic: str) -> dict[tuple[str, str, int], tuple[int, float, float, float]]:
    """The windows a system wrote: ``{(device_id, sensor, window_start_ms): (count, min, max,
    mean)}``; an upsert (a later record for the same window) replaces the earlier one."""
    from iotflink import kafka_io  # noqa: PLC0415

    out = {}
    for rec in kafka_io.read_topic(bootstrap, topic, timeout_s=300):
        v = rec["value"]
        if v is None:
            continue
        out[(v["device_id"], v["sensor"], int(v["window_start_ms"]))] = (
            int(v["count"]), float(v["min"]), float(v["max"]), float(v["mean"]))
    return out


def compare(got: dict, want: dict, last_start: int) -> list[str]:
    """Differences between two window sets, windows starting before ``last_start`` only."""
    diffs = []
    keys = {k for k in want if k[2] < last_start} | {k for k in got if k[2] < last_start}
    for k in sorted(keys):
        g, w = got.get(k), want.get(k)
        if g is None or w is None or g[0] != w[0] or any(abs(a - b) > 1e-6 * max(1.0, abs(b))
                                                          for a, b in zip(g[1:], w[1:])):
            diffs.append(f"{k}: got {g}, want {w}")
    return diffs


# --------------------------------------------------------------------------- workers
def _since_launch() -> float:
    import psutil  # noqa: PLC0415

    return time.time() - psutil.Process().create_time()


def worker_flink(args) -> dict:
    """Run the window job at ``args.parallelism`` over the topic; returns the worker's figures."""
    from dataclasses import replace  # noqa: PLC0415

    from iotflink.errors import JobError  # noqa: PLC0415
    from iotflink.runtime.flink_rest import FlinkRest  # noqa: PLC0415
    from iotflink.runtime.stack import free_port  # noqa: PLC0415
    from iotflink.settings import Topics, WindowJobSettings  # noqa: PLC0415
    from jobs import sensor_windows as sw  # noqa: PLC0415
    from jobs.common import create_table_env, job_configuration  # noqa: PLC0415

    phases = {"imported_s": _since_launch()}
    tag = uuid.uuid4().hex[:8]
    cfg = WindowJobSettings(kafka_bootstrap=args.bootstrap, parallelism=args.parallelism,
                            source_parallelism=args.parallelism, consumer_group=f"peers-{tag}",
                            transactional_id_prefix=f"peers-{tag}", out_of_orderness_ms=WAIT_MS,
                            idleness_ms=0 if args.parallelism > 1 else WindowJobSettings.idleness_ms)
    cfg = replace(cfg, topics=replace(Topics(), readings=args.topic, aggregates=args.out_topic,
                                      late=f"{args.out_topic}-late", duplicates=f"{args.out_topic}-dup",
                                      window_dlq=f"{args.out_topic}-dlq"))
    rest = free_port()
    ckpt = Path(tempfile.mkdtemp(prefix="peers-ckpt-"))
    t_env = create_table_env(job_configuration(cfg, f"peers_flink_p{args.parallelism}", use_kafka=True, extra={
        **sw.state_configuration(cfg), "execution.checkpointing.dir": ckpt.as_uri(),
        "rest.port": str(rest), "metrics.fetcher.update-interval": "500",
        **dict(o.split("=", 1) for o in args.flink_option)}))
    phases["gateway_s"] = _since_launch()
    t_env.execute_sql(sw.kafka_source_ddl(cfg, "readings"))
    t_env.execute_sql("ALTER TABLE readings SET ('scan.bounded.mode' = 'latest-offset')")
    t_env.execute_sql(sw.kafka_aggregates_sink_ddl(cfg, "aggregates"))
    t_env.execute_sql(sw.kafka_late_sink_ddl(cfg, "late"))
    t_env.execute_sql(sw.kafka_duplicates_sink_ddl(cfg, "duplicates"))
    t_env.execute_sql(sw.kafka_dlq_sink_ddl(cfg, "dlq"))
    tables = ("readings", "aggregates", "late", "duplicates", "dlq")
    if args.plan_cache_dir is None:
        stmts = sw.build(t_env, cfg, *tables)
        submit = stmts.execute
        plan_cache = None
    else:
        submit, plan_cache = _cached_submission(t_env, cfg, tables, args)
    first: list[float] = []
    job_conf: dict = {}  # the job's execution config as the REST API shows it (object reuse, ...)
    done = threading.Event()

    def watch() -> None:
        api = FlinkRest(f"http://127.0.0.1:{rest}", timeout_s=2)
        while not done.is_set() and not first:
            try:
                for job in api.jobs():
                    vertices = api.job(job["jid"])["vertices"]
                    if vertices and vertices[0]["metrics"].get("write-records", 0) > 0:
                        first.append(_since_launch())
                        job_conf.update(api.call(f"/jobs/{job['jid']}/config").get("execution-config", {}))
            except JobError:
                pass
            done.wait(0.25)

    phases["built_s"] = _since_launch()
    threading.Thread(target=watch, daemon=True).start()
    result = submit()
    phases["submitted_s"] = _since_launch()
    result.get_job_client().get_job_execution_result().result()
    end = _since_launch()
    done.set()
    return {"first_read_s": first[0] if first else None, "end_s": end, "phases": phases,
            "object_reuse": job_conf.get("object-reuse-mode"), "plan_cache": plan_cache}


#: What differs between two rounds of the same Flink system (topic names, consumer group,
#: transactional ids, the broker): connector options only, which a compiled plan does not hold
#: (``jobs.common.load_or_compile`` compiles with ``catalog-objects = IDENTIFIER``).
_ROUND_NEUTRAL = {"kafka_bootstrap": "bench:9092", "consumer_group": "bench", "transactional_id_prefix": "bench"}


def _cached_submission(t_env, cfg, tables: tuple[str, ...], args):
    """``(submit, "hit" | "miss")``: the job through the compiled plan cache in
    ``args.plan_cache_dir`` (:func:`jobs.common.execute_cached`, as ``main()`` submits it), keyed
    as :func:`jobs.sensor_windows.plan_key` does but over the job's settings and DDL with the
    round's own names replaced by :data:`_ROUND_NEUTRAL`, so the second round of a system hits
    the plan the first one stored (as a resubmission of the same job with the same settings
    does)."""
    from dataclasses import replace  # noqa: PLC0415

    from iotflink.settings import Topics  # noqa: PLC0415
    from jobs import sensor_windows as sw  # noqa: PLC0415
    from jobs.common import load_or_compile, plan_cache_key  # noqa: PLC0415

    neutral = replace(cfg, topics=Topics(), **_ROUND_NEUTRAL)
    sw.configure_windowing(t_env, cfg)
    key = plan_cache_key(t_env, [Path(sw.__file__).read_text(), repr(neutral), *sw.job_ddl(neutral),
                                 "scan.bounded.mode=latest-offset"])
    steps: list[str] = []
    plan = load_or_compile(t_env, lambda: sw.build(t_env, cfg, *tables), key, args.plan_cache_dir,
                           f"peers_flink_p{args.parallelism}", on_step=steps.append)
    return plan.execute, "miss" if "build" in steps else "hit"


def worker_bytewax(args) -> dict:
    """Run the bytewax dataflow over the topic (one worker); returns the worker's figures."""
    from datetime import datetime, timedelta  # noqa: PLC0415

    import bytewax.operators as op  # noqa: PLC0415
    from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource  # noqa: PLC0415
    from bytewax.dataflow import Dataflow  # noqa: PLC0415
    from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window  # noqa: PLC0415
    from bytewax.testing import run_main  # noqa: PLC0415

    first: list[float] = []

    def parse(msg):
        if not first:
            first.append(_since_launch())
        return json.loads(msg.value)

    def dedup(seen, rec):
        seen = seen or set()
        if rec["seq"] in seen:
            return seen, []
        seen.add(rec["seq"])
        return seen, [rec]

    def folder(acc, rec):
        acc = dict(acc)
        acc.setdefault("_start", rec["ts"] - rec["ts"] % WINDOW_MS)
        for s, v in rec["readings"].items():
            a = acc.get(s)
            acc[s] = (1, v, v, v) if a is None else (a[0] + 1, min(a[1], v), max(a[2], v), a[3] + v)
        return acc

    def merger(a, b):
        raise AssertionError("tumbling windows never merge")

    def to_messages(item):
        dev, (_, acc) = item
        start = acc["_start"]
        return [KafkaSinkMessage(dev.encode(), json.dumps({
            "device_id": dev, "sensor": s, "window_start_ms": start, "window_end_ms": start + WINDOW_MS,
            "count": a[0], "min": a[1], "max": a[2], "mean": a[3] / a[0]}).encode())
            for s, a in acc.items() if s != "_start"]

    flow = Dataflow("peers_bytewax")
    msgs = op.input("in", flow, KafkaSource([args.bootstrap], [args.topic], tail=False,
                                            add_config={"group.id": f"peers-{uuid.uuid4().hex[:8]}"}))
    recs = op.map("parse", msgs, parse)
    keyed = op.key_on("device", recs, lambda r: r["device_id"])
    unique = op.stateful_flat_map("dedup", keyed, dedup)
    clock = EventClock(lambda r: datetime.fromtimestamp(r["ts"] / 1000, tz=UTC),
                       wait_for_system_duration=timedelta(milliseconds=WAIT_MS))
    windower = TumblingWindower(length=timedelta(milliseconds=WINDOW_MS),
                                align_to=datetime.fromtimestamp(BASE_TS / 1000, tz=UTC))
    out = fold_window("window", unique, clock, windower, dict, folder, merger)
    op.output("out", op.flat_map("encode", out.down, to_messages), KafkaSink([args.bootstrap], args.out_topic))
    run_main(flow)
    return {"first_read_s": first[0] if first else None, "end_s": _since_launch()}


def worker_quix(args) -> dict:
    """Run the quix-streams application over the topic; returns the worker's figures."""
    from quixstreams import Application  # noqa: PLC0415

    first: list[float] = []
    last = [0.0]
    seen = [0]

    app = Application(broker_address=args.bootstrap, consumer_group=f"peers-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", state_dir=tempfile.mkdtemp(prefix="peers-quix-"),
                      loglevel="WARNING")
    src = app.topic(args.topic, value_deserializer="json",
                    timestamp_extractor=lambda value, headers, ts, ts_type: value["ts"])
    dst = app.topic(args.out_topic, value_serializer="json")

    def mark(value):
        now = _since_launch()
        if not first:
            first.append(now)
        last[0] = now
        seen[0] += 1
        return value

    def unseen(value, state):
        key = str(value["seq"])
        if state.get(key):
            return False
        state.set(key, 1)
        return True

    def reducer(acc, rec):
        for s, v in rec["readings"].items():
            a = acc.get(s)
            acc[s] = [1, v, v, v] if a is None else [a[0] + 1, min(a[1], v), max(a[2], v), a[3] + v]
        return acc

    def initializer(rec):
        return reducer({}, rec)

    def explode(win, key, timestamp, headers):
        dev = key.decode() if isinstance(key, bytes) else key
        return [{"device_id": dev, "sensor": s, "window_start_ms": win["start"], "window_end_ms": win["end"],
                 "count": a[0], "min": a[1], "max": a[2], "mean": a[3] / a[0]} for s, a in win["value"].items()]

    sdf = app.dataframe(src)
    sdf = sdf.apply(mark)
    sdf = sdf.filter(unseen, stateful=True)
    sdf = sdf.tumbling_window(WINDOW_MS, grace_ms=WAIT_MS).reduce(reducer, initializer).final()
    sdf = sdf.apply(explode, expand=True, metadata=True)
    sdf.to_topic(dst)
    app.run(timeout=QUIX_IDLE_STOP_S, collect=False)
    return {"first_read_s": first[0] if first else None, "end_s": last[0], "records_read": seen[0]}


#: quix-streams has no end of input: the run stops after this long without a record. Short
#: stops (3 s) ended runs early on a loaded machine (a rebalance or a slow commit), so the end
#: is taken as the last record's time instead, and the stop only costs wall time.
QUIX_IDLE_STOP_S = 30.0

WORKERS = {"flink": worker_flink, "bytewax": worker_bytewax, "quix": worker_quix}


# --------------------------------------------------------------------------- driver
def ensure_peers_venv(path: Path) -> Path:
    """The peers' venv interpreter; creates the venv from ``bench/peers-requirements.txt`` if
    missing. Raises ``subprocess.CalledProcessError`` if pip fails."""
    python = path / "bin" / "python"
    stamp = path / ".requirements"
    req = ROOT / "bench" / "peers-requirements.txt"
    if not python.exists() or not stamp.exists() or stamp.read_text() != req.read_text():
        print(f"[peers] creating {path} from {req.name}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(req)], check=True)
        stamp.write_text(req.read_text())
    return python


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """``{tid: (name, CPU seconds)}`` of the threads of process ``pid`` (Linux ``/proc``; user +
    system time); empty once the process is gone."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


#: OS thread names (cut to 15 characters by Linux) of the JVM's JIT compilers.
JIT_THREADS = ("C1 CompilerThre", "C2 CompilerThre")


def variant_options(variants: list[str], label: str) -> list[str]:
    """The Flink options (``KEY=VALUE``) of variant ``label`` from ``--variant LABEL=KEY=VALUE``
    entries (none for ``label == ""``).

    Raises:
        ValueError: ``label`` is not empty and no entry names it.
    """
    if not label:
        return []
    opts = [v.split("=", 1)[1] for v in variants if v.split("=", 1)[0] == label and "=" in v]
    if not opts:
        raise ValueError(f"no --variant {label}=KEY=VALUE given for system ...:{label}")
    return opts


def run_system(system: str, python: str, args, out_topic: str) -> dict:
    """Launch one worker process, sample its CPU, return its figures. ``system``: ``flink-pN``,
    ``flink-pN:LABEL`` (the job with the options of ``--variant LABEL=...`` added), ``bytewax``,
    ``quix``."""
    import psutil  # noqa: PLC0415

    name, _, label = system.partition(":")
    kind, _, par = name.partition("-p")
    cmd = [python, str(Path(__file__).resolve()), "--worker", kind, "--bootstrap", args.bootstrap,
           "--topic", args.topic, "--out-topic", out_topic, "--parallelism", par or "1"]
    if kind == "flink":
        cmd += [f"--flink-option={o}" for o in [*args.flink_option, *variant_options(args.variant, label)]]
        if args.plan_cache_dir is not None:
            cmd += ["--plan-cache-dir", str(args.plan_cache_dir)]
    env = dict(os.environ)
    result_file = Path(tempfile.mkstemp(prefix="peers-result-")[1])
    cmd += ["--result-file", str(result_file)]
    t0 = time.monotonic()
    proc = psutil.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cpu: dict[int, float] = {}
    timeline: list[tuple[float, float]] = []  # (s since launch, CPU-s so far)
    jit: dict[tuple[int, int], float] = {}  # (pid, tid) of a JIT compiler thread -> its CPU-s
    jit_timeline: list[tuple[float, float]] = []  # (s since launch, JIT CPU-s so far)
    stderr_tail: list[str] = []

    def drain() -> None:
        for line in proc.stderr:
            stderr_tail.append(line)
            del stderr_tail[:-40]

    threading.Thread(target=drain, daemon=True).start()
    while proc.poll() is None:
        try:
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    cpu[p.pid] = max(cpu.get(p.pid, 0.0), t.user + t.system)
                except psutil.Error:
                    pass
                if kind == "flink":
                    for tid, (tname, tcpu) in thread_cpu(p.pid).items():
                        if tname.startswith(JIT_THREADS):
                            jit[(p.pid, tid)] = tcpu
        except psutil.Error:
            pass
        timeline.append((time.monotonic() - t0, sum(cpu.values())))
        jit_timeline.append((time.monotonic() - t0, sum(jit.values())))
        time.sleep(0.2)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{system} exited {proc.returncode}:\n{''.join(stderr_tail)}")
    res = json.loads(result_file.read_text())
    result_file.unlink()
    total = sum(cpu.values())
    first = res["first_read_s"]
    at_first = max((c for t, c in timeline if t <= first), default=0.0) if first is not None else 0.0
    res.update(wall_s=wall, cpu_s=total, startup_cpu_s=at_first, busy_cpu_s=total - at_first)
    if kind == "flink":
        jit_first = max((c for t, c in jit_timeline if t <= first), default=0.0) if first is not None else 0.0
        res.update(jit_cpu_s=sum(jit.values()), busy_jit_cpu_s=sum(jit.values()) - jit_first)
    return res


def start_kafka(prefix: str):
    """Start a Kafka broker alone on free ports (:mod:`iotflink.runtime.stack`, run dir under a new temp
    dir named ``prefix...``); returns ``(stack, bootstrap)``; ``stack.stop()`` stops it.

    Raises:
        StackError: the broker did not become ready.
    """
    from iotflink.runtime.stack import Stack, free_port_settings  # noqa: PLC0415
    from iotflink.settings import StackSettings  # noqa: PLC0415

    scfg = free_port_settings(Path(tempfile.mkdtemp(prefix=prefix)) / "run", StackSettings.from_env())
    stack = Stack(scfg)
    stack.start(services=("kafka",), progress=lambda m: print(f"[stack] {m}", flush=True))
    return stack, scfg.kafka_bootstrap


def median(values: list[float]) -> float:
    """The median (the mean of the two middle values for an even count)."""
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def summarise(runs: dict[str, list[dict]], readings: int, devices: int, dup_share: float, rounds: int) -> dict:
    """Medians per system over its rounds; prints the table and the ratios; returns
    ``{system: {figure: median, "rounds": [round figures]}}``."""
    summary = {}
    for s, rs in runs.items():
        summary[s] = {k: median([r[k] for r in rs]) for k in (
            "readings_per_s", "first_read_s", "cpu_s_per_m", "readings_per_cpu_s", "busy_cpu_s_per_m",
            "readings_per_busy_cpu_s")}
        summary[s]["rounds"] = rs
    print(f"\nworkload: {readings:,} readings x 2 values, {devices} devices, 4 partitions, "
          f"{dup_share:.0%} copies; medians of {rounds} rounds (ABBA)")
    print(f"{'system':10s} {'readings/s':>11s} {'startup s':>10s} {'CPU-s/M':>9s} {'readings/CPU-s':>15s} "
          f"{'busy CPU-s/M':>13s} {'readings/busy CPU-s':>20s}")
    for s, m in summary.items():
        print(f"{s:10s} {m['readings_per_s']:>11,.0f} {m['first_read_s']:>10.1f} {m['cpu_s_per_m']:>9.1f} "
              f"{m['readings_per_cpu_s']:>15,.0f} {m['busy_cpu_s_per_m']:>13.1f} {m['readings_per_busy_cpu_s']:>20,.0f}")
    flinks = [s for s in summary if all("jit_cpu_s_per_m" in r for r in runs[s])]
    if flinks:
        print("JVM JIT compilers (C1 + C2 threads), CPU-s per million readings in all, and the CPU-s per million "
              "after the first read without them:")
    for s in flinks:
        for key in ("jit_cpu_s_per_m", "busy_nojit_cpu_s_per_m"):
            summary[s][key] = median([r[key] for r in runs[s]])
        print(f"  {s:14s} JIT {summary[s]['jit_cpu_s_per_m']:6.1f}   after the first read without JIT "
              f"{summary[s]['busy_nojit_cpu_s_per_m']:6.1f}")
    peers = [s for s in summary if not s.startswith("flink")]
    if peers and "flink-p1" in summary:
        best = max(peers, key=lambda s: summary[s]["readings_per_cpu_s"])
        for key in ("readings_per_cpu_s", "readings_per_busy_cpu_s"):
            print(f"flink-p1 / {best} {key}: {summary['flink-p1'][key] / summary[best][key]:.2f}")
    if "flink-p1" in summary and "flink-p2" in summary:
        for key in ("cpu_s_per_m", "busy_cpu_s_per_m"):
            print(f"flink-p2 / flink-p1 {key}: {summary['flink-p2'][key] / summary['flink-p1'][key]:.2f}")
    for s, m in summary.items():
        base = s.partition(":")[0]
        if s != base and base in summary:  # a variant against the job as it is, same parallelism
            for key in ("cpu_s_per_m", "busy_cpu_s_per_m", "busy_nojit_cpu_s_per_m", "readings_per_s", "first_read_s"):
                if key in m and key in summary[base]:  # (an earlier run's JSON has no JIT figures)
                    print(f"{s} / {base} {key}: {m[key] / summary[base][key]:.2f}")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap")
    ap.add_argument("--start-stack", action="store_true", help="start a Kafka broker on free ports (iotflink.runtime.stack)")
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--devices", type=int, default=1_000)
    ap.add_argument("--interval-ms", type=int, default=5_000)
    ap.add_argument("--dup-share", type=float, default=0.01)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--systems", default="flink-p1,flink-p2,bytewax,quix")
    ap.add_argument("--peers-venv", type=Path, default=ROOT / ".venv-peers")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "peers.json")
    ap.add_argument("--flink-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a Flink configuration option for the flink systems (repeatable; e.g. "
                         "state.backend.type=hashmap to measure a variant)")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=KEY=VALUE",
                    help="Flink options of the system flink-pN:LABEL (repeatable), an A/B against "
                         "flink-pN in the same run, e.g. --systems flink-p1,flink-p1:heap "
                         "--variant heap=state.backend.type=hashmap")
    # worker mode (internal)
    ap.add_argument("--worker", choices=sorted(WORKERS))
    ap.add_argument("--topic", default="")
    ap.add_argument("--out-topic", default="")
    ap.add_argument("--parallelism", type=int, default=1)
    ap.add_argument("--result-file", type=Path)
    ap.add_argument("--plan-cache-dir", type=Path, help=argparse.SUPPRESS)  # worker: set by the driver
    ap.add_argument("--no-plan-cache", action="store_true",
                    help="plan the SQL in every Flink round (default: a plan is compiled once per run "
                         "and parallelism, later rounds load it, as a resubmission of the job does)")
    ap.add_argument("--summarise", type=Path, help="print the table of an earlier run's JSON (--out) and exit")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.summarise:
        data = json.loads(args.summarise.read_text())
        w = data["workload"]
        summarise({s: m["rounds"] for s, m in data["systems"].items()}, w["readings"], w["devices"],
                  w["dup_share"], w["rounds"])
        return 0
    if args.worker:
        res = WORKERS[args.worker](args)
        args.result_file.write_text(json.dumps(res))
        return 0

    stack = None
    if args.start_stack:
        stack, args.bootstrap = start_kafka("peers-bench-")
    if not args.bootstrap:
        ap.error("--bootstrap or --start-stack is required")
    try:
        systems = [s.strip() for s in args.systems.split(",") if s.strip()]
        peers_python = None
        if any(not s.startswith("flink") for s in systems):
            peers_python = str(ensure_peers_venv(args.peers_venv))
        args.topic = f"peers-in-{uuid.uuid4().hex[:6]}"
        if not args.no_plan_cache:  # one cache per run: each system's first round compiles
            args.plan_cache_dir = Path(tempfile.mkdtemp(prefix="peers-plans-"))
        records = list(generate(args.readings, args.devices, args.interval_ms, args.dup_share))
        want = expected_windows(records)
        last_start = max(k[2] for k in want) - WINDOW_MS  # the last two windows are left out
        t0 = time.monotonic()
        produce(args.bootstrap, args.topic, records)
        print(f"[peers] {len(records):,} readings ({len(want):,} windows) written to {args.topic} in "
              f"{time.monotonic() - t0:.1f} s", flush=True)
        del records
        order = []
        for r in range(args.rounds):
            order += systems if r % 2 == 0 else list(reversed(systems))
        runs: dict[str, list[dict]] = {s: [] for s in systems}
        for i, system in enumerate(order):
            out_topic = f"peers-out-{system.replace(':', '.')}-{i}-{args.topic.rsplit('-', 1)[-1]}"  # unique per run on a shared broker
            for t in ([out_topic] + ([f"{out_topic}-late", f"{out_topic}-dup", f"{out_topic}-dlq"]
                                     if system.startswith("flink") else [])):
                create_topic(args.bootstrap, t)
            python = sys.executable if system.startswith("flink") else peers_python
            res = run_system(system, python, args, out_topic)
            diffs = compare(read_windows(args.bootstrap, out_topic), want, last_start)
            if diffs:
                raise RuntimeError(f"{system}: {len(diffs)} windows differ (records read: "
                                   f"{res.get('records_read', '?')}), e.g. {diffs[:3]}")
            busy = res["end_s"] - res["first_read_s"]
            res.update(readings_per_s=args.readings / busy, cpu_s_per_m=res["cpu_s"] / args.readings * 1e6,
                       readings_per_cpu_s=args.readings / res["cpu_s"],
                       busy_cpu_s_per_m=res["busy_cpu_s"] / args.readings * 1e6,
                       readings_per_busy_cpu_s=args.readings / res["busy_cpu_s"])
            if "jit_cpu_s" in res:  # the JVM's JIT compilers: warm-up, not work per reading
                res.update(jit_cpu_s_per_m=res["jit_cpu_s"] / args.readings * 1e6,
                           busy_nojit_cpu_s_per_m=(res["busy_cpu_s"] - res["busy_jit_cpu_s"]) / args.readings * 1e6)
            runs[system].append(res)
            cache = f" (plan cache {res['plan_cache']})" if res.get("plan_cache") else ""
            print(f"[peers] {system:9s} round {len(runs[system])}: {res['readings_per_s']:>9,.0f} readings/s, "
                  f"startup {res['first_read_s']:.1f} s{cache}, {res['cpu_s']:.1f} CPU-s, "
                  f"({res['startup_cpu_s']:.1f} before the first read), "
                  f"{res['readings_per_busy_cpu_s']:,.0f} readings per CPU-s after it, windows match", flush=True)
        summary = summarise(runs, args.readings, args.devices, args.dup_share, args.rounds)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"workload": {"readings": args.readings, "devices": args.devices,
                                                     "interval_ms": args.interval_ms, "dup_share": args.dup_share,
                                                     "rounds": args.rounds}, "systems": summary}, indent=2))
        return 0
    finally:
        if args.plan_cache_dir is not None:
            shutil.rmtree(args.plan_cache_dir, ignore_errors=True)
        if stack is not None:
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
