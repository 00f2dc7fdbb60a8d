"""Where the window job's CPU goes: a Java Flight Recorder profile of one bounded run, summarised.

The run is the job as ``bench/peers_bench.py`` runs it (the job's own Kafka source, dedup, late
split, windows and exactly-once Kafka sinks, RocksDB, on a local MiniCluster at
``--parallelism``) over ``--readings`` generated readings of 2 values in a fresh Kafka topic. The
MiniCluster's JVM records ``jdk.ExecutionSample`` events (JFR's ``profile`` settings: a stack
sample of every running Java thread every 10 ms; JDK 17, ``-XX:StartFlightRecording``), and
``jfr print --json`` turns them into stacks. Two tables are printed:

- per thread group: Flink names a task thread after its operator chain (``Source: readings ...
  -> Calc -> ...``), so this is where the cost is by operator; other groups are Kafka client
  threads, RocksDB background threads, checkpointing and the rest of the JVM;
- per category of the sampled frame (the first frame, from the top, outside ``java.``,
  ``jdk.``, ``sun.``; ``(JDK)`` if there is none): JSON, RocksDB state, Kafka client,
  serialization, network stack, generated code (Flink SQL's code-generated operators: the
  parse, explode, dedup and late-flag Calcs), window operator, and the rest by package.

Limits: JFR's execution samples cover Java frames only; time inside native code (RocksDB's
JNI calls) is not in them, so the RocksDB share is the Java side of its calls. Short runs are
dominated by start-up (SQL planning, code generation); use 1,000,000 readings or more.

A third table covers what JFR does not see: the CPU seconds of every OS thread of the run's
processes (``/proc/<pid>/task/<tid>/stat``, user + system, sampled every 0.3 s; thread names are
cut to 15 characters by Linux), grouped by name: the operator chains' task threads, the JIT
compilers (``C2 CompilerThre``, ``C1 CompilerThre``), GC, RocksDB's background threads, the
py4j threads that plan the SQL for the Python driver (``Thread-N``) and the Python driver itself.

Usage::

    .venv/bin/python bench/profile_window_job.py --start-stack [--readings 1000000] [--parallelism 1]
        [--jfr /tmp/window-job.jfr] [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import peers_bench as pb

#: (category, class-name prefixes), first match wins.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JSON (Jackson, Flink JSON format)", ("org.apache.flink.shaded.jackson2.", "com.fasterxml.jackson.",
                                           "org.apache.flink.formats.json.", "io.iotflink.")),
    ("RocksDB state", ("org.rocksdb.", "org.apache.flink.state.rocksdb.", "org.apache.flink.contrib.streaming.state.")),
    ("Kafka client", ("org.apache.kafka.", "org.apache.flink.connector.kafka.", "org.apache.flink.kafka.shaded.")),
    ("serialization (row/type serializers)", ("org.apache.flink.api.common.typeutils.", "org.apache.flink.table.runtime.typeutils.",
                                              "org.apache.flink.table.data.", "org.apache.flink.core.memory.")),
    ("network stack / mailbox", ("org.apache.flink.runtime.io.", "org.apache.flink.streaming.runtime.io.",
                                 "org.apache.flink.streaming.runtime.tasks.", "org.apache.flink.shaded.netty")),
    ("window operator", ("org.apache.flink.table.runtime.operators.window.",)),
    ("dedup / rank / other SQL operators", ("org.apache.flink.table.runtime.operators.",)),
    ("state backend (heap, TTL, keyed state API)", ("org.apache.flink.runtime.state.", "org.apache.flink.api.common.state.")),
)
GENERATED = re.compile(r"(^|\.)[A-Z][A-Za-z]*\$\d+$|^(StreamExec|BatchExec)|Generated|\$\$Lambda")


def category(frames: list[str]) -> str:
    """Category of one stack (``frames``: fully qualified method names, top first)."""
    for f in frames:
        cls = f.rsplit(".", 1)[0]
        if cls.startswith(("java.", "jdk.", "sun.", "javax.")):
            continue
        for name, prefixes in CATEGORIES:
            if cls.startswith(prefixes):
                return name
        if GENERATED.search(cls) or "." not in cls:
            return "generated code (SQL Calcs: parse, explode, late flag; codegen aggregates)"
        return ".".join(cls.split(".")[:4])
    return "(JDK)"


def thread_group(name: str) -> str:
    """A thread's group: the operator chain of a task thread, else a family of JVM threads."""
    m = re.match(r"^(.*?) \(\d+/\d+\)(#\d+)?$", name)
    if m:
        return "task: " + m.group(1)[:110]
    for prefix in ("kafka-producer-network-thread", "Kafka Fetcher", "rocksdb", "Source Data Fetcher",
                   "flink-akka", "pekko", "Flink-", "AsyncOperations", "GC", "C2 Compiler", "C1 Compiler"):
        if name.startswith(prefix) or prefix.lower() in name.lower():
            return prefix
    return re.sub(r"[-#]?\d+$", "", name)[:60]


def summarise(jfr: Path, top: int) -> dict:
    """Read ``jdk.ExecutionSample`` events of ``jfr``; returns and prints the two tables."""
    out = subprocess.run([shutil.which("jfr") or "jfr", "print", "--json", "--events", "jdk.ExecutionSample",
                          str(jfr)], check=True, capture_output=True, text=True).stdout
    events = json.loads(out)["recording"]["events"]
    by_thread: collections.Counter[str] = collections.Counter()
    by_cat: collections.Counter[str] = collections.Counter()
    for e in events:
        v = e["values"]
        thread = (v.get("sampledThread") or {}).get("javaName") or (v.get("sampledThread") or {}).get("osName") or "?"
        # JFR names types in the JVM's internal form (org/apache/flink/...)
        frames = [f"{fr['method']['type']['name'].replace('/', '.')}.{fr['method']['name']}"
                  for fr in (v.get("stackTrace") or {}).get("frames", [])]
        by_thread[thread_group(thread)] += 1
        by_cat[category(frames)] += 1
    total = sum(by_cat.values()) or 1
    print(f"\n{total:,} CPU samples (10 ms each on a running Java thread)")
    print("\nby thread (operator chain for task threads):")
    for k, n in by_thread.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {k}")
    print("\nby category of the sampled frame:")
    for k, n in by_cat.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {k}")
    return {"samples": total, "by_thread": dict(by_thread.most_common()), "by_category": dict(by_cat.most_common())}


def run_sampled(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd``; returns the CPU seconds per thread-name group of it and its descendants.

    Raises:
        subprocess.CalledProcessError: the command failed.
    """
    import psutil  # noqa: PLC0415

    proc = psutil.Popen(cmd, env=env)
    seen: dict[tuple[int, int], tuple[str, float]] = {}
    while proc.poll() is None:
        try:
            pids = [proc.pid, *(c.pid for c in proc.children(recursive=True))]
        except psutil.Error:
            pids = [proc.pid]
        for pid in pids:
            for tid, value in pb.thread_cpu(pid).items():
                seen[(pid, tid)] = value
        try:
            proc.wait(timeout=0.3)
        except psutil.TimeoutExpired:
            pass
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    groups: collections.Counter[str] = collections.Counter()
    for name, cpu in seen.values():
        groups["GC" if name.startswith(("GC", "G1")) else (re.sub(r"[-#\d]+$", "", name) or name)] += cpu
    return dict(groups.most_common())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap")
    ap.add_argument("--start-stack", action="store_true")
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--devices", type=int, default=1_000)
    ap.add_argument("--parallelism", type=int, default=1)
    ap.add_argument("--jfr", type=Path, default=Path(tempfile.gettempdir()) / "window-job.jfr")
    ap.add_argument("--summarise-only", action="store_true", help="only summarise an existing --jfr file")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", type=Path, default=pb.ROOT / "bench" / "results" / "window_job_profile.json")
    args = ap.parse_args(argv)
    if not args.summarise_only:
        stack = None
        if args.start_stack:
            stack, args.bootstrap = pb.start_kafka("profile-bench-")
        try:
            topic = f"profile-in-{uuid.uuid4().hex[:6]}"
            pb.produce(args.bootstrap, topic, pb.generate(args.readings, args.devices, 5_000, 0.01))
            out_topic = f"profile-out-{uuid.uuid4().hex[:6]}"
            for t in (out_topic, f"{out_topic}-late", f"{out_topic}-dup", f"{out_topic}-dlq"):
                pb.create_topic(args.bootstrap, t)
            args.jfr.unlink(missing_ok=True)
            env = {**os.environ,
                   "JVM_ARGS": f"-XX:StartFlightRecording=filename={args.jfr},settings=profile,dumponexit=true"}
            result = Path(tempfile.mkstemp(prefix="profile-result-")[1])
            threads = run_sampled([sys.executable, str(Path(pb.__file__)), "--worker", "flink", "--bootstrap",
                                   args.bootstrap, "--topic", topic, "--out-topic", out_topic, "--parallelism",
                                   str(args.parallelism), "--result-file", str(result)], env)
            res = json.loads(result.read_text())
            print(f"run: {args.readings:,} readings, first read at {res['first_read_s']:.1f} s, "
                  f"end at {res['end_s']:.1f} s; start-up phases (s since launch): {res.get('phases')}", flush=True)
            total = sum(threads.values()) or 1.0
            print(f"\nCPU seconds per thread group (all threads, native code included): {total:.1f} in all")
            for k, v in list(threads.items())[:args.top]:
                print(f"  {v:6.1f} s {100 * v / total:5.1f} %  {k}")
        finally:
            if stack is not None:
                stack.stop()
    summary = summarise(args.jfr, args.top)
    if not args.summarise_only:
        summary.update(thread_cpu_s={k: round(v, 2) for k, v in threads.items()}, phases=res.get("phases"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"readings": args.readings, "parallelism": args.parallelism, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
