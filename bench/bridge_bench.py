"""Bridge throughput benchmark: bare paho subscriber, bare kafka-python producer, and the bridge
with 1 and 2 processes, single-reading and batched messages, in one run.

Usage (needs a running Mosquitto and Kafka; ``--start-stack`` starts both on free ports)::

    .venv/bin/python bench/bridge_bench.py --start-stack [--count 20000] [--batch 10]
        [--producer process,inline] [--mqtt-host H --mqtt-port P --bootstrap B]
        [--out bench/results/bridge.json]

One run measures, with ``count`` readings (the contract's JSON, 8 devices, ts 100 ms apart
per device, as a 10 Hz sensor):

1. **paho subscriber, QoS 1**: the messages are queued at the broker for a persistent session
   first, then one paho client (auto ack) drains them; rate = count / drain time.
2. **kafka-python producer, acks=all** (the bridge's producer settings): send all records,
   then ``flush()``; rate = count / time.
3. **bridge, N processes x payload kind**: N in (1, 2) ``python -m bridge`` processes, each
   with its own bridge credential (client id, session, producer), in one MQTT v5 shared
   subscription group (one process: a plain subscription, as the stack runs it); payloads single readings (``count`` messages) or batches of
   ``--batch`` samples (``count / batch`` messages, the same readings). The messages are
   queued at the broker for the group first, then the processes are started; the rate is
   taken from the first message a bridge took in to the moment every message is acked (the
   bridges' stats files, written every 20 ms), so interpreter start-up is not counted.
   msg/s and readings/s are reported. ``--producer`` chooses where each bridge's Kafka
   producer runs (``IOTFLINK_BRIDGE_PRODUCER_PROCESS``): ``process`` (a child process of the
   bridge, the default), ``inline`` (in the bridge process), or both, one after the other.

Each path's **CPU time per message** (user + system, all threads) is reported beside its
rate: the bare clients' from this process's own usage over their run, the bridges' from their
processes and, separately, their producer processes, between the first message taken in and
the last acked. On a shared machine the rates depend on how the cores were shared; the CPU
time per message much less.

For every bridge run the records written are read back and checked: every reading is in
Kafka (distinct ``(device_id, seq)`` = count; duplicates reported), and the **late upper
bound** is computed: the share of records whose ts is more than the window job's
out-of-orderness bound (``IOTFLINK_OUT_OF_ORDERNESS_MS``, 10 s) below the highest ts before it in
its partition (the job's watermark never exceeds that, so at most these could be late), and
the share of readings that came after a newer reading of the same device (reordered) with the
largest such step back in event time.

Preloading the broker queue takes the publisher out of the measurement, so each rate is that of
the consumer side. Every client authenticates as the broker requires (README "Security"): each
device publishes with its own credential, and each subscriber session has a bridge credential
of its own. Benchmark topics ``bench-*`` (4 partitions) keep the demo's topics clean. Prints a
table; writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.service import PRODUCER_DEFAULTS
from iotflink.kafka_io import HEARTBEAT_DEVICE, read_topic
from iotflink.runtime.mqtt_auth import Credential, configure_paho
from iotflink.runtime.stack import Stack
from iotflink.settings import BridgeSettings, StackSettings, WindowJobSettings

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench.bridge")
TOPICS = ("bench-readings", "bench-dlq", "bench-raw")
DEVICES = [f"bench-dev-{i}" for i in range(8)]


def payloads(count: int, batch: int = 1) -> list[tuple[str, bytes]]:
    """``count`` readings following docs/CONTRACT.md as (device_id, payload) pairs: one reading
    per message, or ``batch`` samples per message (a ``samples`` list, seq = first sample's).
    Device ``d``'s reading ``k`` has seq ``k`` and ts ``t0 + 100 k`` ms, t0 so that the last
    is 1 s old."""
    per_dev = -(-count // len(DEVICES))
    t0 = time.time_ns() // 1_000_000 - 1000 - per_dev * 100
    out = []
    for k0 in range(0, per_dev, batch):
        for dev in DEVICES:
            ks = [k for k in range(k0, min(k0 + batch, per_dev))]
            samples = [{"ts": t0 + 100 * k, "readings": {"temp_c": 20.0 + (k % 100) / 10, "humidity_pct": 40.5}}
                       for k in ks]
            if batch == 1:
                doc = {"device_id": dev, "seq": ks[0], **samples[0]}
            else:
                doc = {"device_id": dev, "seq": ks[0], "samples": samples}
            out.append((dev, json.dumps(doc, separators=(",", ":")).encode()))
    return out


def ensure_topics(bootstrap: str, partitions: int = 4, topics: tuple[str, ...] = TOPICS) -> None:
    from iotflink import kafka_io  # noqa: PLC0415

    kafka_io.create_topics(bootstrap, dict.fromkeys(topics, partitions), client_id="bench-admin")


def _session(host: str, port: int, cred: Credential, ca_file: Path | None, expiry_s: int,
             topic_filter: str | None) -> None:
    """Connect as ``cred`` with clean start and session expiry ``expiry_s`` (s), subscribe to
    ``topic_filter`` (QoS 1) if given, wait for the broker's answer (SUBACK, else CONNACK; 10 s),
    disconnect. Raises RuntimeError without that answer."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cred.username, protocol=mqtt.MQTTv5)
    configure_paho(c, cred, ca_file)
    done = threading.Event()
    if topic_filter is None:
        c.on_connect = lambda *a: done.set()
    else:
        c.on_subscribe = lambda *a: done.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_s
    c.connect(host, port, clean_start=True, properties=props)
    c.loop_start()
    if topic_filter is not None:
        c.subscribe(topic_filter, qos=1)
    if not done.wait(10):
        raise RuntimeError(f"no {'CONNACK' if topic_filter is None else 'SUBACK'} for {cred.username}")
    c.disconnect()
    c.loop_stop()


def register_session(host: str, port: int, cred: Credential, ca_file: Path | None,
                     topic_filter: str = "sensors/+/telemetry") -> None:
    """Create a persistent MQTT v5 session (expiry 1 h) subscribed to ``topic_filter``, then
    leave; the session is ``cred``'s (the broker uses the username as the client id)."""
    _session(host, port, cred, ca_file, 3600, topic_filter)


def end_session(host: str, port: int, cred: Credential, ca_file: Path | None) -> None:
    """End ``cred``'s persistent session at the broker (connect with clean start, disconnect
    with session expiry 0), so that later runs' messages are not queued for it too (the
    broker saves its queue to disk every so many changes: idle sessions that keep queueing
    slow every later preload down)."""
    _session(host, port, cred, ca_file, 0, None)


def preload(host: str, port: int, msgs: list[tuple[str, bytes]], creds: dict[str, Credential],
            ca_file: Path | None, window: int = 1000) -> float:
    """Publish every message at QoS 1, each device over its own connection with its credential
    (PUBACK window ``window`` over all); return the publish rate/s."""
    slots = threading.Semaphore(window)
    acked = [0]
    lock = threading.Lock()

    def on_publish(*_a):
        with lock:
            acked[0] += 1
        slots.release()

    clients = {}
    for dev in sorted({d for d, _raw in msgs}):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{dev}", protocol=mqtt.MQTTv311)
        configure_paho(c, creds[dev], ca_file)
        c.max_inflight_messages_set(window)
        c.on_publish = on_publish
        c.connect(host, port)
        c.loop_start()
        clients[dev] = c
    t0 = time.perf_counter()
    for dev, raw in msgs:
        slots.acquire()
        clients[dev].publish(f"sensors/{dev}/telemetry", raw, qos=1)
    while True:
        with lock:
            if acked[0] >= len(msgs):
                break
        time.sleep(0.005)
    dt = time.perf_counter() - t0
    for c in clients.values():
        c.disconnect()
        c.loop_stop()
    return len(msgs) / dt


def bench_paho(host: str, port: int, msgs, stack: Stack, creds: dict[str, Credential]) -> dict:
    client_id = f"bench-sub-{uuid.uuid4().hex[:6]}"
    sub = stack.provision([client_id], role="bridge")[client_id]
    ca_file = stack.s.mqtt_ca_file
    register_session(host, port, sub, ca_file)
    pub_rate = preload(host, port, msgs, creds, ca_file)
    got = [0]
    t_end = [0.0]
    finished = threading.Event()

    def on_message(_c, _u, _m):
        got[0] += 1
        if got[0] == len(msgs):
            t_end[0] = time.perf_counter()
            finished.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    configure_paho(c, sub, ca_file)
    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 1000
    cpu0, svc0 = own_cpu_s(), services_cpu_s(stack)
    t0 = time.perf_counter()
    c.connect(host, port, clean_start=False, properties=props)
    c.loop_start()
    if not finished.wait(600):
        raise RuntimeError(f"paho subscriber got {got[0]} of {len(msgs)}")
    cpu, svc1 = own_cpu_s() - cpu0, services_cpu_s(stack)
    c.disconnect()
    c.loop_stop()
    end_session(host, port, sub, ca_file)
    return {"rate_per_s": len(msgs) / (t_end[0] - t0), "seconds": t_end[0] - t0, "publish_rate_per_s": pub_rate,
            "cpu_s": cpu, "cpu_us_per_msg": cpu / len(msgs) * 1e6,
            "services_cpu_us_per_msg": services_us_per_msg(svc0, svc1, len(msgs))}


def own_cpu_s() -> float:
    """CPU seconds (user + system, all threads) of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def tree_cpu_s(pids: list[int]) -> tuple[float, float]:
    """CPU seconds (user + system) of the processes ``pids`` and of their children (the
    bridges' producer processes), as (processes, children)."""
    own = kids = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            c = proc.cpu_times()
            own += c.user + c.system
            for child in proc.children(recursive=True):
                cc = child.cpu_times()
                kids += cc.user + cc.system
        except psutil.Error:
            continue
    return own, kids


SERVICES = ("mosquitto", "kafka")


def services_cpu_s(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of the broker processes this bench runs against (:data:`SERVICES`,
    with their children), by service; a service whose pid is unknown (not started by this
    stack) is left out."""
    out = {}
    for name in SERVICES:
        pid = stack.pid(name)
        if pid is not None:
            own, kids = tree_cpu_s([pid])
            out[name] = own + kids
    return out


def services_us_per_msg(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """CPU microseconds per message of each service between two :func:`services_cpu_s`."""
    return {k: (after[k] - before[k]) / n * 1e6 for k in before if k in after}


def bench_kafka(bootstrap: str, msgs, producer_overrides: dict, stack: Stack) -> dict:
    from kafka import KafkaProducer  # noqa: PLC0415

    cfg = dict(PRODUCER_DEFAULTS, client_id="bench-raw-producer", **producer_overrides)
    p = KafkaProducer(bootstrap_servers=bootstrap, **cfg)
    p.send("bench-raw", value=b"warm-up", key=b"w").get(30)
    errors = [0]
    cpu0, svc0 = own_cpu_s(), services_cpu_s(stack)
    t0 = time.perf_counter()
    for dev, raw in msgs:
        p.send("bench-raw", value=raw, key=dev.encode()).add_errback(lambda _e: errors.__setitem__(0, errors[0] + 1))
    p.flush()
    dt = time.perf_counter() - t0
    cpu, svc1 = own_cpu_s() - cpu0, services_cpu_s(stack)
    p.close()
    return {"rate_per_s": len(msgs) / dt, "seconds": dt, "errors": errors[0], "cpu_s": cpu,
            "cpu_us_per_msg": cpu / len(msgs) * 1e6, "services_cpu_us_per_msg": services_us_per_msg(svc0, svc1, len(msgs))}


def late_upper_bound(records: list[dict], out_of_orderness_ms: int) -> dict:
    """Reordering seen in ``records`` (``read_topic`` output, partition then offset order).

    Returns ``{"records", "late_upper_bound", "late_share", "reordered", "reordered_share",
    "max_step_back_ms"}``: ``late_upper_bound`` counts records whose ts is more than
    ``out_of_orderness_ms`` below the highest ts before them in their partition (a bounded
    out-of-orderness watermark is at most that, so at most these are late for the job);
    ``reordered`` counts readings that came after a newer reading of the same device, and
    ``max_step_back_ms`` is the largest such step back in event time.
    """
    part_max: dict[int, int] = {}
    dev_max: dict[str, int] = {}
    late = reordered = 0
    step_back = 0
    n = 0
    for r in records:
        v = r["value"]
        if not isinstance(v, dict) or "readings" not in v or r["key"] == HEARTBEAT_DEVICE:
            continue
        n += 1
        ts, p, dev = v["ts"], r["partition"], v["device_id"]
        if ts < part_max.get(p, ts) - out_of_orderness_ms:
            late += 1
        part_max[p] = max(part_max.get(p, ts), ts)
        prev = dev_max.get(dev)
        if prev is not None and ts < prev:
            reordered += 1
            step_back = max(step_back, prev - ts)
        dev_max[dev] = ts if prev is None else max(prev, ts)
    return {"records": n, "late_upper_bound": late, "late_share": late / n if n else 0.0,
            "reordered": reordered, "reordered_share": reordered / n if n else 0.0, "max_step_back_ms": step_back}


def bench_bridges(stack: Stack, bootstrap: str, msgs: list[tuple[str, bytes]], readings: int, processes: int,
                  creds: dict[str, Credential], max_inflight: int, out_of_orderness_ms: int,
                  producer_process: bool = True, linger_ms: int | None = None) -> dict:
    """``processes`` ``python -m bridge`` processes in one shared subscription group drain the
    preloaded ``msgs`` into a fresh topic; returns rates, the bridges' summed counters, the
    exactness check and :func:`late_upper_bound`."""
    run = uuid.uuid4().hex[:6]
    group, readings_topic, dlq_topic = f"bench-{run}", f"bench-readings-{run}", f"bench-dlq-{run}"
    ensure_topics(bootstrap, topics=(readings_topic, dlq_topic))
    host, port, ca_file = stack.s.mqtt_host, stack.s.mqtt_port, stack.s.mqtt_ca_file
    users = [f"bench-bridge-{run}-{i}" for i in range(processes)]
    bridge_creds = stack.provision(users, role="bridge")
    topic_filter = f"$share/{group}/sensors/+/telemetry" if processes > 1 else "sensors/+/telemetry"
    for user in users:
        register_session(host, port, bridge_creds[user], ca_file, topic_filter)
    pub_rate = preload(host, port, msgs, creds, ca_file)
    env = dict(os.environ)
    env.update(stack.s.to_env())
    env.update({"IOTFLINK_TOPIC_READINGS": readings_topic, "IOTFLINK_TOPIC_DLQ": dlq_topic,
                "IOTFLINK_BRIDGE_SHARE_GROUP": group, "IOTFLINK_BRIDGES": str(processes),
                "IOTFLINK_BRIDGE_MAX_INFLIGHT": str(max_inflight),
                "IOTFLINK_BRIDGE_PRODUCER_PROCESS": str(producer_process).lower()})
    if linger_ms is not None:
        env["IOTFLINK_BRIDGE_LINGER_MS"] = str(linger_ms)
    tmp = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    stats_files = [tmp / f"{u}.json" for u in users]
    procs = []
    for user, stats in zip(users, stats_files):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bridge", "--stats-file", str(stats), "--stats-interval-s", "0.02",
             "--log-level", "WARNING"], env={**env, "IOTFLINK_MQTT_BRIDGE_USER": user}, cwd=ROOT))

    def stats() -> list[dict]:
        out = []
        for f in stats_files:
            try:
                out.append(json.loads(f.read_text()))
            except (OSError, ValueError):
                out.append({})
        return out

    t_first = t_end = None
    pids = [p.pid for p in procs]
    deadline = time.monotonic() + 600
    try:
        while True:
            now = time.perf_counter()
            st = stats()
            if t_first is None and sum(s.get("received", 0) for s in st) > 0:
                t_first = now
                cpu0, svc0, own0 = tree_cpu_s(pids), services_cpu_s(stack), own_cpu_s()
            if sum(s.get("acked", 0) for s in st) >= len(msgs):
                t_end = now
                cpu1, svc1, own1 = tree_cpu_s(pids), services_cpu_s(stack), own_cpu_s()
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"bridges stalled or exited: {st}")
            time.sleep(0.01)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    st = stats()
    for user in users:
        end_session(host, port, bridge_creds[user], ca_file)
    dt = t_end - t_first
    got = [r for r in read_topic(bootstrap, readings_topic) if r["key"] != HEARTBEAT_DEVICE]
    keys = collections.Counter((r["value"]["device_id"], r["value"]["seq"]) for r in got)
    summed = {k: sum(s.get(k, 0) for s in st) for k in ("received", "records", "forwarded", "dead_lettered",
                                                          "acked", "kafka_errors")}
    cpu_mqtt, cpu_producer = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    return {"processes": processes, "messages": len(msgs), "readings": readings,
            "msg_per_s": len(msgs) / dt, "readings_per_s": readings / dt, "seconds": dt,
            "cpu_s_bridge_processes": cpu_mqtt, "cpu_s_producer_processes": cpu_producer,
            "cpu_us_per_msg": (cpu_mqtt + cpu_producer) / len(msgs) * 1e6,
            "services_cpu_us_per_msg": services_us_per_msg(svc0, svc1, len(msgs)),
            "bench_poll_cpu_us_per_msg": (own1 - own0) / len(msgs) * 1e6,
            "publish_rate_per_s": pub_rate, "per_process_received": [s.get("received", 0) for s in st],
            "stats": summed, "distinct_readings_in_kafka": len(keys), "duplicates": sum(keys.values()) - len(keys),
            "reordering": late_upper_bound(got, out_of_orderness_ms)}


def machine_ceiling(paho_r: dict, kafka_r: dict, cpus: int) -> dict:
    """The highest single-reading rate any bridge built on these two clients could reach on this
    machine, from the CPU the bare runs measured.

    A bridge does at least the bare subscriber's work per message (paho, QoS 1) and the bare
    producer's per record, and the broker processes do theirs (Mosquitto delivering, Kafka
    appending; measured over the same bare runs). With every core busy and no cost of its own,
    ``cpus`` / that sum is the ceiling: a floor of CPU per message, not a measured bridge rate.

    Returns:
        ``floor_cpu_us_per_msg`` (the sum, microseconds), its ``parts``, ``ceiling_msg_per_s``
        and ``ceiling_vs_min_bare`` (the ceiling over min(bare paho, bare producer) rate).
    """
    parts = {"paho_subscriber": paho_r["cpu_us_per_msg"], "kafka_producer": kafka_r["cpu_us_per_msg"],
             **{f"{k}_during_paho": v for k, v in paho_r.get("services_cpu_us_per_msg", {}).items()},
             **{f"{k}_during_producer": v for k, v in kafka_r.get("services_cpu_us_per_msg", {}).items()}}
    floor_us = sum(parts.values())
    ceiling = cpus * 1e6 / floor_us
    return {"floor_cpu_us_per_msg": floor_us, "parts": parts, "ceiling_msg_per_s": ceiling,
            "ceiling_vs_min_bare": ceiling / min(paho_r["rate_per_s"], kafka_r["rate_per_s"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20_000, help="readings per run")
    ap.add_argument("--batch", type=int, default=10, help="samples per message of the batched runs")
    ap.add_argument("--processes", default="1,2", help="bridge process counts to run, comma-separated")
    ap.add_argument("--producer", default="process",
                    help="where the bridges' Kafka producer runs, comma-separated: process (a child process, "
                         "the default), inline (in the bridge process)")
    ap.add_argument("--max-inflight", type=int, default=1000, help="the bridges' max_inflight (messages)")
    ap.add_argument("--linger-ms", default="",
                    help="the bridges' producer linger (IOTFLINK_BRIDGE_LINGER_MS), comma-separated values "
                         "each run in turn; empty = the setting's default")
    ap.add_argument("--mqtt-host", default=None)
    ap.add_argument("--mqtt-port", type=int, default=None)
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--start-stack", action="store_true", help="start Kafka + Mosquitto on free ports (iotflink.runtime.stack)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bridge.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    load_start = [round(x, 2) for x in os.getloadavg()]
    started = None
    cfg = StackSettings.from_env()
    if args.mqtt_host or args.mqtt_port or args.bootstrap:
        cfg = dataclasses.replace(cfg, mqtt_host_override=args.mqtt_host or cfg.mqtt_host,
                                  mqtt_port=args.mqtt_port or cfg.mqtt_port,
                                  kafka_bootstrap_override=args.bootstrap or cfg.kafka_bootstrap)
    if args.start_stack:
        from iotflink.runtime.stack import free_port_settings  # noqa: PLC0415

        cfg = free_port_settings(Path(tempfile.mkdtemp(prefix="bridge-bench-")) / "run", cfg)
        started = Stack(cfg)
        started.start(services=("kafka", "mosquitto"), progress=lambda m: print(f"[stack] {m}", flush=True))
    stack = started or Stack(cfg)  # the running stack's credentials (IOTFLINK_RUN_DIR / _MQTT_AUTH_DIR)
    host, port, bootstrap = cfg.mqtt_host, cfg.mqtt_port, cfg.kafka_bootstrap
    ooo_ms = WindowJobSettings.from_env().out_of_orderness_ms
    runs: list[dict] = []
    try:
        ensure_topics(bootstrap)
        msgs = payloads(args.count)
        print(f"[bench] {args.count} readings; single: {len(msgs)} messages of "
              f"{sum(len(m) for _d, m in msgs) / len(msgs):.0f} bytes on average", flush=True)
        creds = stack.provision(DEVICES)
        paho_r = bench_paho(host, port, msgs, stack, creds)
        print(f"[bench] paho subscriber: {paho_r['rate_per_s']:.0f} msg/s", flush=True)
        default_linger = BridgeSettings.from_env().linger_ms  # the bridges' producer setting
        kafka_r = bench_kafka(bootstrap, msgs, {"linger_ms": default_linger}, stack)
        print(f"[bench] kafka producer: {kafka_r['rate_per_s']:.0f} records/s", flush=True)
        modes = [m.strip() for m in args.producer.split(",")]
        lingers = [int(v) for v in args.linger_ms.split(",") if v.strip()] or [None]
        for mode, processes, batch, linger in [(m, int(n), b, g) for m in modes for n in args.processes.split(",")
                                               for b in dict.fromkeys((1, args.batch)) for g in lingers]:
            msgs = payloads(args.count, batch)  # fresh ts
            r = bench_bridges(stack, bootstrap, msgs, args.count, processes, creds, args.max_inflight, ooo_ms,
                              producer_process=mode == "process", linger_ms=linger)
            r["producer"] = mode
            r["linger_ms"] = linger if linger is not None else default_linger
            r["samples_per_message"] = batch
            r["payload_bytes_avg"] = round(sum(len(m) for _d, m in msgs) / len(msgs), 1)
            runs.append(r)
            print(f"[bench] {processes} bridge(s), producer {mode}, linger {r['linger_ms']} ms, {batch} sample(s)/msg: "
                  f"{r['msg_per_s']:.0f} msg/s, "
                  f"{r['readings_per_s']:.0f} readings/s, per process {r['per_process_received']}, "
                  f"{r['distinct_readings_in_kafka']} distinct readings in Kafka, {r['duplicates']} duplicates, "
                  f"late upper bound {r['reordering']['late_upper_bound']}, reordered "
                  f"{r['reordering']['reordered']} (max step back {r['reordering']['max_step_back_ms']} ms)",
                  flush=True)
    finally:
        if started is not None:
            started.stop(services=("kafka", "mosquitto"))

    floor = min(paho_r["rate_per_s"], kafka_r["rate_per_s"])
    result = {
        "count": args.count,
        "paho_subscriber_qos1": paho_r,
        "kafka_producer_acks_all": kafka_r,
        "bridges": runs,
        "min_bare_rate_per_s": floor,
        "machine_ceiling": machine_ceiling(paho_r, kafka_r, os.cpu_count() or 1),
        "out_of_orderness_ms": ooo_ms,
        "producer_config": {k: (v if isinstance(v, (int, float, str, bool)) else type(v).__name__)
                            for k, v in PRODUCER_DEFAULTS.items() if k != "client_id"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_1_5_15_at_start": load_start,
                    "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()]},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    def svc(r: dict) -> str:
        return " + ".join(f"{v:.0f}" for v in r.get("services_cpu_us_per_msg", {}).values()) or "-"

    print("\n| path | msg/s | readings/s | vs min(bare paho, bare producer) | CPU us/msg (MQTT side + producer "
          "process) | Mosquitto + Kafka CPU us/msg | late upper bound | reordered |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| bare paho subscriber, QoS 1 (auto ack) | {paho_r['rate_per_s']:.0f} | {paho_r['rate_per_s']:.0f} | | "
          f"{paho_r['cpu_us_per_msg']:.0f} | {svc(paho_r)} | | |")
    print(f"| bare kafka-python producer, acks=all | {kafka_r['rate_per_s']:.0f} | {kafka_r['rate_per_s']:.0f} | | "
          f"{kafka_r['cpu_us_per_msg']:.0f} | {svc(kafka_r)} | | |")
    for r in runs:
        n = r["messages"]
        print(f"| bridge x{r['processes']}, producer {r['producer']}, linger {r['linger_ms']} ms, "
              f"{r['samples_per_message']} sample(s)/msg | {r['msg_per_s']:.0f} | "
              f"{r['readings_per_s']:.0f} | {r['readings_per_s'] / floor:.0%} | "
              f"{r['cpu_s_bridge_processes'] / n * 1e6:.0f} + {r['cpu_s_producer_processes'] / n * 1e6:.0f} | "
              f"{svc(r)} | {r['reordering']['late_upper_bound']} | {r['reordering']['reordered']} "
              f"(max {r['reordering']['max_step_back_ms']} ms back) |")
    mc = result["machine_ceiling"]
    print(f"\nmachine ceiling of any single-reading bridge on these clients: {mc['ceiling_msg_per_s']:.0f} msg/s = "
          f"{mc['ceiling_vs_min_bare']:.0%} of min(bare) ({os.cpu_count()} CPUs / {mc['floor_cpu_us_per_msg']:.0f} us: "
          + ", ".join(f"{k} {v:.0f}" for k, v in mc["parts"].items()) + ")")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load average (1, 5, 15 min): {load_start} at the start, {result['machine']['loadavg_1_5_15_at_end']} "
          f"at the end, on {os.cpu_count()} CPUs")
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
