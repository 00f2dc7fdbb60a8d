"""Profile one bridge process (``python -m bridge``) draining a preloaded MQTT queue, with py-spy.

Usage (starts Kafka + Mosquitto on free ports, stops them at the end)::

    .venv/bin/python bench/profile_bridge.py [--count 20000] [--batch 1] [--rate 250]
        [--out bench/results/bridge_profile.json]

``count`` readings (``bench/bridge_bench.py``'s payloads, 8 devices) are queued at the broker
for the bridge's session, then one bridge process is started and ``py-spy record`` (a sampling
profiler that reads the interpreter's stacks from outside, all threads, idle threads left out)
samples it at ``--rate`` Hz until every message is acked. The samples are grouped by where
the time goes: paho's network loop (packet reads, PUBLISH parsing, PUBACK writes), the
bridge's per-message work (validation, encoding, admission), kafka-python's ``send`` (caller
side) and its I/O thread (batches, requests, responses, future callbacks), the bridge's ack
path, the stats writer, and the rest. Printed as a table (share of CPU samples and
microseconds per message, from the process's CPU time); written as JSON with the top
functions by own and by inclusive samples.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import bridge_bench as bb  # the script's own folder (bench/) is on sys.path
import psutil

from iotflink.runtime.stack import Stack, free_port_settings
from iotflink.settings import StackSettings

ROOT = Path(__file__).resolve().parent.parent

#: Categories, first match wins, tested against each sample's stack from the innermost frame
#: outwards: (name, substrings of "function (file)" frames).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("bridge stats writer", ("write_stats", "run_until")),
    ("bridge ack path (drain acks, paho ack/PUBACK queue)", ("_drain_acks",)),
    ("kafka future callbacks (bridge _on_sent, partition clock)", ("_on_sent", "_on_send_error")),
    ("bridge validate (JSON parse + checks)", ("validate_message (", "validate (")),
    ("bridge encode value", ("encode_reading (",)),
    ("kafka-python send() (caller side: serialize, partition, accumulator, future)",
     ("KafkaProducer.send (",)),
    ("producer process link (pipe, pickling, futures)", ("bridge/producer_process.py",)),
    ("bridge admission + entries (_admit, _Entry, locks)", ("_admit", "_Entry", "_on_message")),
    ("paho PUBLISH handling (parse, MQTTMessage, properties)", ("_handle_publish", "_handle_on_message")),
    ("paho packet read (recv, fixed header)", ("_packet_read", "loop_read")),
    ("paho packet write (PUBACK out, sockpair)", ("_packet_write", "loop_write", "_sockpairR")),
    ("paho loop (select, misc)", ("_loop (", "loop_forever", "_thread_main")),
    ("kafka-python I/O thread (sender: batches, requests, responses)",
     ("kafka/producer/sender.py", "kafka/client_async.py", "kafka/conn.py",
      "kafka/producer/record_accumulator.py", "kafka/record/")),
    ("bridge heartbeat thread", ("_heartbeat_loop",)),
]


def categorise(stack: list[str]) -> str:
    """The category of one sample's stack (outermost frame first), ``"other"`` if none fits."""
    for name, needles in CATEGORIES:
        for frame in stack:
            if any(n in frame for n in needles):
                return name
    return "other"


def parse_raw(text: str) -> list[tuple[list[str], int]]:
    """py-spy's ``--format raw`` lines ``frame;frame;... count`` as (frames, count)."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        stack, _, n = line.rpartition(" ")
        # "process PID:"command line"" -> "process PID" (no local paths in the results)
        out.append(([re.sub(r"^(process \d+):.*", r"\1", f) for f in stack.split(";")], int(n)))
    return out


def cpu_s(ps: psutil.Process) -> float:
    """CPU seconds (user + system) of ``ps`` and its children (a producer process)."""
    total = 0.0
    for p in [ps, *ps.children(recursive=True)]:
        try:
            c = p.cpu_times()
        except psutil.Error:
            continue
        total += c.user + c.system
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1, help="samples per message")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--max-inflight", type=int, default=1000)
    ap.add_argument("--gil", action="store_true",
                    help="only samples of the thread holding the interpreter lock (py-spy --gil): what "
                         "keeps the one lock busy")
    ap.add_argument("--bridge-only", action="store_true",
                    help="sample the bridge process only, not its producer process")
    ap.add_argument("--producer", choices=("process", "inline"), default="process",
                    help="where the bridge's Kafka producer runs (IOTFLINK_BRIDGE_PRODUCER_PROCESS)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bridge_profile.json")
    args = ap.parse_args(argv)
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if pyspy is None:
        raise SystemExit("py-spy not found (requirements-dev.txt; scripts/setup.sh installs it)")

    cfg = free_port_settings(Path(tempfile.mkdtemp(prefix="bridge-profile-")) / "run", StackSettings.from_env())
    stack = Stack(cfg)
    stack.start(services=("kafka", "mosquitto"), progress=lambda m: print(f"[stack] {m}", flush=True))
    try:
        bb.ensure_topics(cfg.kafka_bootstrap)
        creds = stack.provision(bb.DEVICES)
        msgs = bb.payloads(args.count, args.batch)
        run = uuid.uuid4().hex[:6]
        readings_topic, dlq_topic = f"bench-readings-{run}", f"bench-dlq-{run}"
        bb.ensure_topics(cfg.kafka_bootstrap, topics=(readings_topic, dlq_topic))
        user = f"bench-bridge-{run}"
        bcred = stack.provision([user], role="bridge")[user]
        bb.register_session(cfg.mqtt_host, cfg.mqtt_port, bcred, cfg.mqtt_ca_file)
        bb.preload(cfg.mqtt_host, cfg.mqtt_port, msgs, creds, cfg.mqtt_ca_file)
        env = {**os.environ, **cfg.to_env(), "IOTFLINK_TOPIC_READINGS": readings_topic,
               "IOTFLINK_TOPIC_DLQ": dlq_topic, "IOTFLINK_BRIDGES": "1", "IOTFLINK_MQTT_BRIDGE_USER": user,
               "IOTFLINK_BRIDGE_MAX_INFLIGHT": str(args.max_inflight),
               "IOTFLINK_BRIDGE_PRODUCER_PROCESS": str(args.producer == "process").lower()}
        tmp = Path(tempfile.mkdtemp(prefix="bridge-profile-"))
        stats_file, raw_file = tmp / "stats.json", tmp / "profile.txt"
        proc = subprocess.Popen([sys.executable, "-m", "bridge", "--stats-file", str(stats_file),
                                 "--stats-interval-s", "0.05", "--log-level", "WARNING"], env=env, cwd=ROOT)
        ps = psutil.Process(proc.pid)
        cpu0 = t0 = spy = None
        deadline = time.monotonic() + 600
        while True:
            try:
                st = json.loads(stats_file.read_text())
            except (OSError, ValueError):
                st = {}
            if cpu0 is None and st.get("received", 0) > 0:
                # sampling starts with the first message: interpreter start-up is left out
                spy = subprocess.Popen([pyspy, "record", "-p", str(proc.pid), "--format", "raw", "--threads",
                                        *([] if args.bridge_only else ["--subprocesses"]), "--rate", str(args.rate),
                                        *(["--gil"] if args.gil else []), "-o", str(raw_file)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                cpu0, t0 = cpu_s(ps), time.perf_counter()
            if st.get("acked", 0) >= len(msgs):
                cpu1, t1 = cpu_s(ps), time.perf_counter()
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"bridge stalled or exited: {st}")
            time.sleep(0.01)
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        spy.wait(60)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        stack.stop(services=("kafka", "mosquitto"))

    samples = parse_raw(raw_file.read_text())
    total = sum(n for _s, n in samples)
    by_proc: collections.Counter = collections.Counter()
    for frames, n in samples:
        by_proc[next((f for f in frames if f.startswith("process ")), "process ?")] += n
    by_cat: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    for frames, n in samples:
        by_cat[categorise(frames)] += n
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    cpu_us_per_msg = (cpu1 - cpu0) / len(msgs) * 1e6
    rows = [{"category": cat, "share": n / total, "us_per_msg": n / total * cpu_us_per_msg}
            for cat, n in by_cat.most_common()]
    result = {
        "messages": len(msgs), "samples_per_message": args.batch, "msg_per_s": len(msgs) / (t1 - t0),
        "cpu_s": cpu1 - cpu0, "cpu_us_per_msg": cpu_us_per_msg, "pyspy_samples": total,
        "categories": rows,
        "by_process": {k: n / total for k, n in by_proc.items()},
        "top_own": [{"frame": f, "share": n / total} for f, n in own.most_common(40)],
        "top_inclusive": [{"frame": f, "share": n / total} for f, n in incl.most_common(60)],
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"\n{len(msgs)} messages ({args.batch} sample(s) each): {result['msg_per_s']:.0f} msg/s, "
          f"{cpu_us_per_msg:.0f} us CPU per message (all threads), {total} py-spy samples, "
          f"load average {result['loadavg_1_5_15']}")
    for k, n in by_proc.most_common():
        print(f"  {n / total:6.1%}  {k[:100]}")
    print("\n| where | share of CPU samples | us per message |\n|---|---|---|")
    for r in rows:
        print(f"| {r['category']} | {r['share']:.1%} | {r['us_per_msg']:.1f} |")
    print("\ntop functions by own samples:")
    for r in result["top_own"][:25]:
        print(f"  {r['share']:6.1%}  {r['frame']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
