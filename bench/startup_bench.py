"""Where the window job's start-up goes (launch to first read), and what the plan cache saves.

Each round launches one fresh process that runs the window job exactly as ``main()`` builds it
(:func:`jobs.sensor_windows.create_job`: its Kafka source, dedup, late split, windows and four
exactly-once Kafka sinks, RocksDB) on a local MiniCluster, as ``bench/peers_bench.py`` does, over
a small topic, and records when each step of the start-up ended, in seconds since the
process's launch:

- ``imports``: Python started and imported PyFlink and the job;
- ``gateway``: the PyFlink gateway JVM is up and the table environment created;
- ``ddl``: the five ``CREATE TABLE`` statements ran;
- ``build``: :func:`jobs.sensor_windows.build` added the pipeline (Calcite parses and validates
  each view);
- ``plan``: the optimised plan exists (variant ``direct``: inside ``execute()``, so this step is
  merged into the next one; ``compile``: ``StatementSet.compile_plan()``; ``cached``: the
  compiled plan loaded from the plan cache, :func:`jobs.common.execute_cached`);
- ``execute``: ``execute()`` returned (translation to operators, code generation, job graph,
  MiniCluster start, submission);
- from the JVM's log (``FLINK_LOG_DIR``, log4j timestamps): ``minicluster``: "Starting Flink
  Mini Cluster"; ``submitted``: the dispatcher received the job graph; ``deploying``: the first
  task switched to DEPLOYING; ``running``: the last task switched to RUNNING (every operator
  opened: RocksDB, Kafka producers' transactions initialised); ``split``: the Kafka source
  reader got its splits;
- ``first_read``: the source's ``numRecordsOut`` above 0 in the MiniCluster's REST API (polled
  every 0.1 s, metric fetcher every 0.1 s, so up to ~0.2 s late).

Variants (``--variants``, run in ABBA order over ``--rounds``):

- ``direct``: ``build()`` then ``StatementSet.execute()`` (the job before the plan cache);
- ``cached``: :func:`jobs.common.execute_cached` with a warm cache (the same job version and
  settings submitted before: a restart, a second submission); the bench warms the cache once
  before the rounds;
- ``cold``: :func:`jobs.common.execute_cached` with an empty cache (first submission: compile,
  store, execute the compiled plan).

``--target cluster`` times the deployed path instead: ``flink run -d -py jobs/sensor_windows.py``
(:meth:`iotflink.runtime.flinkctl.FlinkCtl.submit_script`, the client JVM with the C1 JIT only, its
Python driver running ``main()``) against a local standalone cluster (JobManager and one
TaskManager already running, started by the bench with Kafka on free ports), with
``IOTFLINK_PLAN_CACHE_DIR=none`` (``direct``) or a warm cache (``cached``). Steps, s since
``flink run`` was launched, from the client's log: ``client_jvm`` (the client JVM logs),
``driver`` (it started the Python driver), ``settings`` (the driver imported the job and read
its settings), ``gateway`` (table environment created), ``plan`` (cached: the plan loaded,
after the DDL), ``jobgraph`` (the client submits the job graph: the plan translated),
``submitted`` (the JobManager accepted it: upload done); then ``client`` (``flink run``
returned), ``scheduled`` (the job's first subtask left CREATED, from the REST API's
``subtasktimes``), ``running`` (every subtask RUNNING); each round's job is cancelled then.
(The REST metrics of a cluster are fetched every 10 s, too coarse for the first read; it
follows ``running`` by about 0.5 s in the MiniCluster rounds.)

Usage::

    .venv/bin/python bench/startup_bench.py --start-stack [--rounds 3] [--variants direct,cached]
        [--target minicluster|cluster] [--out bench/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import peers_bench as pb

ROOT = Path(__file__).resolve().parent.parent

#: (step, regular expression on a log line, first or last match)
LOG_STEPS: tuple[tuple[str, str, str], ...] = (
    ("minicluster", r"Starting Flink Mini Cluster", "first"),
    ("submitted", r"Received JobGraph submission", "first"),
    ("deploying", r"switched from SCHEDULED to DEPLOYING", "first"),
    ("running", r"switched from INITIALIZING to RUNNING", "last"),
    ("split", r"Adding split\(s\) to reader", "first"),
)
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


#: The same for the log of a ``flink run`` client (``--target cluster``).
CLIENT_STEPS: tuple[tuple[str, str, str], ...] = (
    ("client_jvm", r"Starting Command Line Client", "first"),
    ("driver", r"Python Process Started", "first"),
    ("settings", r"__main__: settings:", "first"),
    ("gateway", r"table environment for", "first"),
    ("plan", r"compiled plan (loaded|stored)", "first"),
    ("jobgraph", r"RestClusterClient.*Submitting job", "first"),
    ("submitted", r"Successfully submitted job", "first"),
)


def log_steps(log_dir: Path, launch: float, steps=LOG_STEPS, pattern: str = "*.log") -> dict[str, float]:
    """The ``steps`` (default :data:`LOG_STEPS`) found in the logs ``log_dir/pattern``, in s
    since ``launch`` (epoch s); log4j writes local time."""
    out: dict[str, float] = {}
    for f in sorted(log_dir.glob(pattern)):
        for line in f.read_text(errors="replace").splitlines():
            m = LOG_TIME.match(line)
            if not m:
                continue
            for step, pattern_, which in steps:
                if (which == "last" or step not in out) and re.search(pattern_, line):
                    t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - launch
                    out[step] = round(t, 3)
    return out


def settings(bootstrap: str, topic: str, tag: str):
    """The window job's settings for this bench: its own consumer group, transactional ids and
    output topics per ``tag`` (a warm cache needs the same tag)."""
    from dataclasses import replace  # noqa: PLC0415

    from iotflink.settings import Topics, WindowJobSettings  # noqa: PLC0415

    cfg = WindowJobSettings(kafka_bootstrap=bootstrap, consumer_group=f"startup-{tag}",
                            transactional_id_prefix=f"startup-{tag}", out_of_orderness_ms=pb.WAIT_MS)
    return replace(cfg, topics=replace(Topics(), readings=topic, aggregates=f"startup-out-{tag}",
                                       late=f"startup-out-{tag}-late", duplicates=f"startup-out-{tag}-dup",
                                       window_dlq=f"startup-out-{tag}-dlq"))


def worker(args) -> dict:
    """One start-up of the job of :func:`settings` as ``args.variant``; returns its steps (s since
    the process's launch), the JVM log's steps and the first read."""
    launch = _launch_time()
    steps: dict[str, float] = {}

    def mark(step: str) -> None:
        steps[step] = round(time.time() - launch, 3)

    import socket  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    from jobs import common  # noqa: PLC0415
    from jobs import sensor_windows as sw  # noqa: PLC0415

    mark("imports")
    cfg = settings(args.bootstrap, args.topic, args.tag)
    with socket.socket() as sock:  # a free port for the MiniCluster's REST API
        sock.bind(("127.0.0.1", 0))
        rest = sock.getsockname()[1]
    ckpt = Path(tempfile.mkdtemp(prefix="startup-ckpt-"))
    extra = {"execution.checkpointing.dir": ckpt.as_uri(), "rest.port": str(rest),
             "metrics.fetcher.update-interval": "100"}
    first: list[float] = []
    done = threading.Event()

    def watch() -> None:
        base = f"http://127.0.0.1:{rest}"
        while not done.is_set() and not first:
            try:
                for job in json.load(urllib.request.urlopen(f"{base}/jobs/overview", timeout=2))["jobs"]:
                    vertices = json.load(urllib.request.urlopen(f"{base}/jobs/{job['jid']}", timeout=2))["vertices"]
                    if vertices and vertices[0]["metrics"].get("write-records", 0) > 0:
                        first.append(round(time.time() - launch, 3))
            except OSError:
                pass
            done.wait(0.1)

    threading.Thread(target=watch, daemon=True).start()
    t_env = common.create_table_env(common.job_configuration(cfg, cfg.job_name, use_kafka=True, extra=extra))
    mark("gateway")
    for ddl in sw.job_ddl(cfg):
        t_env.execute_sql(ddl)
    mark("ddl")
    cache = None if args.variant == "direct" else Path(args.cache_dir)
    result = sw.execute(t_env, cfg, cache, on_step=mark)
    mark("execute")
    client = result.get_job_client()
    deadline = time.time() + 300
    while not first and time.time() < deadline:
        time.sleep(0.05)
    done.set()
    client.cancel().result()
    return {"steps": steps, "log": log_steps(Path(os.environ["FLINK_LOG_DIR"]), launch),
            "first_read": first[0] if first else None}


def _launch_time() -> float:
    import psutil  # noqa: PLC0415

    return psutil.Process().create_time()


def run_worker(args, variant: str, cache_dir: Path, tag: str) -> dict:
    """Launch one worker process (its own JVM log directory); returns its figures."""
    log_dir = Path(tempfile.mkdtemp(prefix="startup-log-"))
    result_file = Path(tempfile.mkstemp(prefix="startup-result-")[1])
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--variant", variant,
           "--bootstrap", args.bootstrap, "--topic", args.topic, "--tag", tag,
           "--cache-dir", str(cache_dir), "--result-file", str(result_file)]
    env = dict(os.environ, FLINK_LOG_DIR=str(log_dir))
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=900)
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} worker exited {proc.returncode}:\n{proc.stderr[-4000:]}")
        return json.loads(result_file.read_text())
    finally:
        result_file.unlink(missing_ok=True)
        shutil.rmtree(log_dir, ignore_errors=True)


#: Steps in the order they happen, for the table (``plan`` and ``build`` exist in some variants only).
ORDER = ("client_jvm", "driver", "settings", "imports", "gateway", "ddl", "build", "plan", "minicluster", "execute",
         "jobgraph", "submitted", "client", "scheduled", "deploying", "split", "running", "first_read")


def cluster_round(ctl, variant: str, cache_dir: Path, tag: str, topic: str) -> dict[str, float]:
    """One ``flink run`` of the window job on the stack's cluster (module docstring); its steps."""
    from iotflink.settings import PROJECT_ROOT  # noqa: PLC0415

    env = {"IOTFLINK_PLAN_CACHE_DIR": "none" if variant == "direct" else str(cache_dir),
           "IOTFLINK_TOPIC_READINGS": topic, "IOTFLINK_CONSUMER_GROUP": f"startup-{tag}",
           "IOTFLINK_WINDOW_TXN_ID_PREFIX": f"startup-{tag}", "IOTFLINK_WINDOW_INSTANCE": tag,
           "IOTFLINK_OUT_OF_ORDERNESS_MS": str(pb.WAIT_MS)}
    t0 = time.time()
    job_id = ctl.submit_script(PROJECT_ROOT / "jobs" / "sensor_windows.py", env_overrides=env)
    steps = {"client": time.time() - t0}
    # the client's log (log4j of `flink run`, rewritten per run; the Python driver's lines in it)
    steps.update(log_steps(ctl.stack.log_dir, t0, CLIENT_STEPS, "flink--client-*.log"))
    ctl.wait_running(job_id, timeout_s=300)
    firsts, lasts = [], []
    for v in ctl.job(job_id)["vertices"]:
        times = ctl.rest(f"/jobs/{job_id}/vertices/{v['id']}/subtasktimes")
        for sub in times["subtasks"]:
            ts = sub["timestamps"]
            firsts.append(min(t for k, t in ts.items() if k != "CREATED" and t > 0))
            lasts.append(ts["RUNNING"])
    steps.update(scheduled=min(firsts) / 1000 - t0, running=max(lasts) / 1000 - t0)
    ctl.cancel(job_id)
    ctl.wait_state(job_id, {"CANCELED"}, timeout_s=120)
    return {k: round(v, 3) for k, v in steps.items()}


def start_cluster():
    """Kafka and a Flink standalone cluster (JobManager, one TaskManager) on free ports under a
    new temp dir; returns ``(stack, FlinkCtl)``."""
    from iotflink.runtime.flinkctl import FlinkCtl  # noqa: PLC0415
    from iotflink.runtime.stack import Stack, free_port_settings  # noqa: PLC0415
    from iotflink.settings import StackSettings  # noqa: PLC0415

    scfg = free_port_settings(Path(tempfile.mkdtemp(prefix="startup-bench-")) / "run", StackSettings.from_env())
    stack = Stack(scfg)
    try:
        stack.start(services=("kafka", "flink-jobmanager", "flink-taskmanager"),
                    progress=lambda m: print(f"[stack] {m}", flush=True))
        return stack, FlinkCtl(scfg)
    except BaseException:
        stack.stop()
        raise


def timeline(res: dict) -> dict[str, float]:
    """Every step of one run (worker and log), s since launch."""
    out = {**res["steps"], **res["log"]}
    if res["first_read"] is not None:
        out["first_read"] = res["first_read"]
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, print the steps (medians) per variant and the ratio; exit code 0."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap")
    ap.add_argument("--start-stack", action="store_true", help="start a Kafka broker on free ports")
    ap.add_argument("--readings", type=int, default=20_000, help="readings in the input topic")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default="direct,cached")
    ap.add_argument("--target", choices=("minicluster", "cluster"), default="minicluster")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "startup.json")
    # worker mode (internal)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--variant", default="direct")
    ap.add_argument("--topic", default="")
    ap.add_argument("--tag", default="")
    ap.add_argument("--cache-dir", default="")
    ap.add_argument("--result-file", type=Path)
    args = ap.parse_args(argv)
    if args.worker:
        args.result_file.write_text(json.dumps(worker(args)))
        return 0

    stack = ctl = None
    if args.target == "cluster":
        stack, ctl = start_cluster()
        args.bootstrap = stack.s.kafka_bootstrap
    elif args.start_stack:
        stack, args.bootstrap = pb.start_kafka("startup-bench-")
    if not args.bootstrap:
        ap.error("--bootstrap or --start-stack is required")
    try:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        run_id = uuid.uuid4().hex[:6]
        args.topic = f"startup-in-{run_id}"
        pb.produce(args.bootstrap, args.topic, list(pb.generate(args.readings, 1_000, 5_000, 0.01)))
        cache_root = Path(tempfile.mkdtemp(prefix="startup-plans-"))
        warm = cache_root / "warm"
        # one tag (settings) for every round, so the warm cache holds the plan of every round's
        # job; the start-up does not depend on the offsets a cancelled round may have committed
        tag = run_id
        for suffix in ("", "-late", "-dup", "-dlq"):
            pb.create_topic(args.bootstrap, f"startup-out-{tag}{suffix}")
        if args.target == "cluster":
            for suffix in ("sensor-aggregates", "sensor-late", "sensor-duplicates", "sensor-windows-dlq"):
                pb.create_topic(args.bootstrap, f"{suffix}-{tag}")

        def one(variant: str, cache: Path) -> dict[str, float]:
            if args.target == "cluster":
                return cluster_round(ctl, variant, cache, tag, args.topic)
            return timeline(run_worker(args, variant, cache, tag))

        if "cached" in variants:
            print("[startup] warming the plan cache", flush=True)
            one("cold", warm)
        order = []
        for r in range(args.rounds):
            order += variants if r % 2 == 0 else list(reversed(variants))
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for i, variant in enumerate(order):
            cache = warm if variant == "cached" else cache_root / f"cold-{i}"
            runs[variant].append(one(variant, cache))
            t = runs[variant][-1]
            print(f"[startup] {variant:7s} round {len(runs[variant])}: "
                  + ", ".join(f"{k} {t[k]:.1f}" for k in ORDER if k in t), flush=True)
        summary = {v: {k: pb.median([t[k] for t in ts if k in t]) for k in ORDER if any(k in t for t in ts)}
                   for v, ts in runs.items()}
        print(f"\n{args.target}: medians of {args.rounds} rounds (ABBA), s since the launch; load average "
              f"{os.getloadavg()[0]:.1f} at the end")
        print(f"{'step':12s}" + "".join(f"{v:>10s}" for v in variants))
        for k in ORDER:
            if any(k in summary[v] for v in variants):
                print(f"{k:12s}" + "".join(f"{summary[v].get(k, float('nan')):>10.1f}" for v in variants))
        if "direct" in summary and len(variants) > 1:
            for v in variants:
                if v != "direct":
                    last = "first_read" if "first_read" in summary[v] else "running"
                    print(f"{last}, {v} / direct: {summary[v][last] / summary['direct'][last]:.2f}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"target": args.target, "readings": args.readings, "rounds": args.rounds,
                                        "load_avg_1m_end": os.getloadavg()[0], "summary": summary,
                                        "runs": runs}, indent=2))
        shutil.rmtree(cache_root, ignore_errors=True)
        return 0
    finally:
        if stack is not None:
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
