"""Bridge throughput benchmark: raw paho subscriber, raw kafka-python producer, and the bridge.

Usage (needs a running Mosquitto and Kafka; ``--start-stack`` starts both on free ports)::

    .venv/bin/python bench/bridge_bench.py [--count 20000] [--start-stack]
        [--mqtt-host H --mqtt-port P --bootstrap B] [--out bench/results/bridge.json]

One run measures, with the same message count and payloads (the contract's JSON, ~110 bytes,
8 devices):

1. **paho subscriber, QoS 1**: the messages are queued at the broker for a persistent session
   first, then one paho client (auto ack) drains them; rate = count / drain time.
2. **kafka-python producer, acks=all** (idempotent, linger 5 ms, the bridge's settings): send
   all records, then ``flush()``; rate = count / time.
3. **bridge end to end**: the messages are queued for the bridge's session, then the bridge
   (:class:`bridge.service.Bridge`, in this process) is started; rate = count / time from start
   until every message was confirmed by Kafka and acked to MQTT.

Preloading the broker queue takes the publisher out of the measurement, so each rate is that of
the consumer side. Every client authenticates as the broker requires (README "Security"): each
device publishes with its own credential, and each subscriber session (paho, bridge) has a
bridge credential of its own; all are provisioned in the stack's credential directory. Benchmark topics ``bench-readings`` / ``bench-dlq`` / ``bench-raw``
(4 partitions) keep the demo's topics clean. Prints a table; writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from bridge.service import PRODUCER_DEFAULTS, Bridge  # noqa: E402
from iotflink.mqtt_auth import Credential, configure_paho  # noqa: E402
from iotflink.settings import BridgeSettings, StackSettings  # noqa: E402
from iotflink.stack import Stack  # noqa: E402

log = logging.getLogger("bench.bridge")
TOPICS = ("bench-readings", "bench-dlq", "bench-raw")
DEVICES = [f"bench-dev-{i}" for i in range(8)]


def payloads(count: int) -> list[tuple[str, bytes]]:
    """``count`` (device_id, payload) pairs following docs/CONTRACT.md, ts = now."""
    now = time.time_ns() // 1_000_000
    out = []
    for i in range(count):
        dev = DEVICES[i % len(DEVICES)]
        doc = {"device_id": dev, "seq": i // len(DEVICES), "ts": now - 1000,
               "readings": {"temp_c": 20.0 + (i % 100) / 10, "humidity_pct": 40.5}}
        out.append((dev, json.dumps(doc, separators=(",", ":")).encode()))
    return out


def ensure_topics(bootstrap: str, partitions: int = 4) -> None:
    from kafka import KafkaAdminClient  # noqa: PLC0415
    from kafka.admin import NewTopic  # noqa: PLC0415
    from kafka.errors import TopicAlreadyExistsError  # noqa: PLC0415

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    try:
        existing = set(admin.list_topics())
        for t in TOPICS:
            if t not in existing:
                try:
                    admin.create_topics([NewTopic(t, partitions, 1)])
                except TopicAlreadyExistsError:
                    pass
    finally:
        admin.close()


def register_session(host: str, port: int, cred: Credential, ca_file: Path | None) -> None:
    """Create a persistent MQTT v5 session subscribed to sensors/+/telemetry, then leave; the
    session is ``cred``'s (the broker uses the username as the client id)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cred.username, protocol=mqtt.MQTTv5)
    configure_paho(c, cred, ca_file)
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect(host, port, clean_start=True, properties=props)
    c.loop_start()
    c.subscribe("sensors/+/telemetry", qos=1)
    if not done.wait(10):
        raise RuntimeError("no SUBACK")
    c.disconnect()
    c.loop_stop()


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
    t0 = time.perf_counter()
    c.connect(host, port, clean_start=False, properties=props)
    c.loop_start()
    if not finished.wait(600):
        raise RuntimeError(f"paho subscriber got {got[0]} of {len(msgs)}")
    c.disconnect()
    c.loop_stop()
    return {"rate_per_s": len(msgs) / (t_end[0] - t0), "seconds": t_end[0] - t0, "publish_rate_per_s": pub_rate}


def bench_kafka(bootstrap: str, msgs, producer_overrides: dict) -> dict:
    from kafka import KafkaProducer  # noqa: PLC0415

    cfg = dict(PRODUCER_DEFAULTS, client_id="bench-raw-producer", **producer_overrides)
    p = KafkaProducer(bootstrap_servers=bootstrap, **cfg)
    p.send("bench-raw", value=b"warm-up", key=b"w").get(30)
    errors = [0]
    t0 = time.perf_counter()
    for dev, raw in msgs:
        p.send("bench-raw", value=raw, key=dev.encode()).add_errback(lambda _e: errors.__setitem__(0, errors[0] + 1))
    p.flush()
    dt = time.perf_counter() - t0
    p.close()
    return {"rate_per_s": len(msgs) / dt, "seconds": dt, "errors": errors[0]}


def bench_bridge(host: str, port: int, bootstrap: str, msgs, max_inflight: int, producer_overrides: dict,
                 stack: Stack, creds: dict[str, Credential]) -> dict:
    client_id = f"bench-bridge-{uuid.uuid4().hex[:6]}"
    cred = stack.provision([client_id], role="bridge")[client_id]
    ca_file = stack.s.mqtt_ca_file
    register_session(host, port, cred, ca_file)
    pub_rate = preload(host, port, msgs, creds, ca_file)
    cfg = BridgeSettings(mqtt_host=host, mqtt_port=port, topic_filter="sensors/+/telemetry", client_id=client_id,
                         kafka_bootstrap=bootstrap, readings_topic="bench-readings", dlq_topic="bench-dlq",
                         max_inflight=max_inflight, username=client_id,
                         password_file=stack.credentials.password_file(client_id), ca_file=ca_file)
    b = Bridge(cfg, producer_config=producer_overrides)
    t0 = time.perf_counter()
    b.start()
    deadline = t0 + 600
    while b.stats()["acked"] < len(msgs):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"bridge stalled: {b.stats()}")
        time.sleep(0.005)
    dt = time.perf_counter() - t0
    b.stop()
    st = b.stats()
    return {"rate_per_s": len(msgs) / dt, "seconds": dt, "publish_rate_per_s": pub_rate, "max_inflight": max_inflight,
            "stats": {k: st[k] for k in ("received", "forwarded", "dead_lettered", "acked", "kafka_errors")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--max-inflight", type=int, default=1000, help="the bridge's max_inflight")
    ap.add_argument("--linger-ms", type=int, default=None, help="override the bridge's linger_ms (both producers)")
    ap.add_argument("--mqtt-host", default=None)
    ap.add_argument("--mqtt-port", type=int, default=None)
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--start-stack", action="store_true", help="start Kafka + Mosquitto on free ports (iotflink.stack)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bridge.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    started = None
    cfg = StackSettings.from_env()
    if args.start_stack:
        from iotflink.stack import free_port_settings  # noqa: PLC0415

        cfg = free_port_settings(Path(tempfile.mkdtemp(prefix="bridge-bench-")) / "run", cfg)
        started = Stack(cfg)
        started.start(services=("kafka", "mosquitto"), progress=lambda m: print(f"[stack] {m}", flush=True))
    stack = started or Stack(cfg)  # the running stack's credentials (IOTFLINK_RUN_DIR / _MQTT_AUTH_DIR)
    host = args.mqtt_host or cfg.host
    port = args.mqtt_port or cfg.mqtt_port
    bootstrap = args.bootstrap or cfg.kafka_bootstrap
    try:
        ensure_topics(bootstrap)
        msgs = payloads(args.count)
        print(f"[bench] {args.count} messages, {sum(len(m) for _d, m in msgs) / len(msgs):.0f} bytes each on average",
              flush=True)
        overrides = {} if args.linger_ms is None else {"linger_ms": args.linger_ms}
        creds = stack.provision(DEVICES)
        paho_r = bench_paho(host, port, msgs, stack, creds)
        print(f"[bench] paho subscriber done: {paho_r['rate_per_s']:.0f}/s", flush=True)
        kafka_r = bench_kafka(bootstrap, msgs, overrides)
        print(f"[bench] kafka producer done: {kafka_r['rate_per_s']:.0f}/s", flush=True)
        msgs = payloads(args.count)  # fresh ts
        bridge_r = bench_bridge(host, port, bootstrap, msgs, args.max_inflight, overrides, stack, creds)
        print(f"[bench] bridge done: {bridge_r['rate_per_s']:.0f}/s", flush=True)
    finally:
        if started is not None:
            started.stop(services=("kafka", "mosquitto"))

    result = {
        "count": args.count,
        "payload_bytes_avg": round(sum(len(m) for _d, m in msgs) / len(msgs), 1),
        "paho_subscriber_qos1": paho_r,
        "kafka_producer_acks_all": kafka_r,
        "bridge_mqtt_to_kafka_qos1_ack_after_kafka": bridge_r,
        "producer_config": {k: (v if isinstance(v, (int, float, str, bool)) else type(v).__name__) for k, v in {**PRODUCER_DEFAULTS, **overrides}.items() if k != "client_id"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()]},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    rows = [("paho subscriber, QoS 1 (auto ack)", paho_r), ("kafka-python producer, acks=all", kafka_r),
            ("bridge MQTT->Kafka, QoS 1, ack after Kafka", bridge_r)]
    print(f"\n{'path':46} {'msgs/s':>10} {'seconds':>9}")
    for name, r in rows:
        print(f"{name:46} {r['rate_per_s']:>10.0f} {r['seconds']:>9.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load average (1, 5, 15 min): {result['machine']['loadavg_1_5_15_at_end']} on {os.cpu_count()} CPUs")
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
