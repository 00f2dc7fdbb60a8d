"""The bridge process (``python -m bridge``) against a real Mosquitto and a real Kafka, started
on free ports by :mod:`iotflink.runtime.stack`.

Checks: every valid message reaches ``sensor-readings`` and every invalid one ``sensor-dlq``,
exactly once; a message that arrives while Kafka is down is not acked until Kafka confirms it,
both when Kafka comes back under the running bridge and when the bridge is killed meanwhile
(the broker redelivers it to the next bridge process); SIGTERM stops the bridge cleanly.
Hostile conditions: a missing dead-letter topic holds the acks back (stats ``dlq_blocked``)
until the topic exists, without the process exiting; a record the broker refuses as too large
becomes a truncated ``record_too_large`` dead letter; a retained message is forwarded once and
not again after the bridge reconnects; Mosquitto refuses a packet over ``max_packet_size``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.service import MAX_PACKET_BYTES
from iotflink import kafka_io
from iotflink.runtime.mqtt_auth import configure_paho
from iotflink.runtime.stack import mqtt_connect_packet
from iotflink.settings import PROJECT_ROOT
from tests.test_bridge_support import poll, stack_publisher

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

#: Services of the module's ``stack`` fixture (tests/conftest.py).
STACK_SERVICES = ('kafka', 'mosquitto')


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def reading(dev: str, seq: int) -> bytes:
    return json.dumps({"device_id": dev, "seq": seq, "ts": now_ms() - 500, "readings": {"temp_c": 20.5}}).encode()


class BridgeProc:
    """``python -m bridge`` as a child process with the stack's environment."""

    def __init__(self, stack, client_id: str, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        """A bridge whose MQTT username (and so client id and persistent session) is
        ``client_id``, with a bridge credential provisioned for it."""
        stack.provision([client_id], role="bridge")
        self.stats_file = workdir / f"bridge-{uuid.uuid4().hex[:6]}.json"
        self.log = self.stats_file.with_suffix(".log")
        env = dict(os.environ)
        env.update(stack.s.to_env())
        env["IOTFLINK_MQTT_BRIDGE_USER"] = client_id
        env.update(extra_env or {})
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "--stats-file", str(self.stats_file), "--stats-interval-s", "0.1"],
                cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def stats(self) -> dict:
        if self.proc.poll() is not None and not self.stats_file.exists():
            raise AssertionError(f"bridge exited {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            return json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            return {}

    def stat(self, name: str) -> int:
        return self.stats().get(name, 0)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def read_all(bootstrap: str, topic: str) -> list:
    """Every record of ``topic`` from the beginning to the current end offsets."""
    from kafka import KafkaConsumer, TopicPartition  # noqa: PLC0415

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in parts):
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend(recs)
            assert time.monotonic() < deadline, f"reading {topic} timed out"
        return out
    finally:
        consumer.close()


def readings_of(bootstrap: str, dev: str, topic: str = "sensor-readings") -> list[int]:
    return sorted(json.loads(r.value)["seq"] for r in read_all(bootstrap, topic) if r.key == dev.encode())


def dead_letters_of(bootstrap: str, dev: str, topic: str = "sensor-dlq") -> list[dict]:
    return [json.loads(r.value) for r in read_all(bootstrap, topic) if r.key == dev.encode()]


def create_topic(bootstrap: str, name: str, configs: dict[str, str] | None = None) -> None:
    kafka_io.create_topics(bootstrap, {name: 1}, configs=configs)


def wait_ready(bridge: BridgeProc, subscribed: int = 1) -> None:
    """Until the bridge holds its subscription (the SUBACK is counted in its stats file)."""
    poll(lambda: bridge.stat("subscribed") >= subscribed, 60, f"bridge subscribed ({subscribed})")


def test_bridge_end_to_end_exactly_once_and_no_ack_while_kafka_is_down(stack, tmp_path):
    bootstrap = stack.s.kafka_bootstrap
    client_id = f"bridge-it-{uuid.uuid4().hex[:6]}"
    dev = f"it-{uuid.uuid4().hex[:6]}"
    topic = f"sensors/{dev}/telemetry"
    bridge = BridgeProc(stack, client_id, tmp_path)
    pub = stack_publisher(stack, dev)
    try:
        poll(lambda: bridge.stat("connects") >= 1, 60, "bridge connected")
        # the SUBACK is asynchronous: probe until the first reading is through
        poll(lambda: (pub.publish(topic, reading(dev, 0)), time.sleep(0.1), bridge.stat("acked") > 0)[-1],
             30, "subscription active")
        n0 = bridge.stat("received")  # probes, all seq 0
        invalid = [b"{broken", b"\x00\xffbin", json.dumps({"device_id": dev, "seq": 1, "ts": 1000,
                                                           "readings": {"t": 1}}).encode(),
                   json.dumps({"device_id": dev, "seq": 2, "ts": now_ms(), "readings": {"t": True}}).encode(),
                   b"y" * (64 * 1024 + 1)]
        for seq in range(1, 21):
            pub.publish(topic, reading(dev, seq))
        for raw in invalid:
            pub.publish(topic, raw)
        total = n0 + 20 + len(invalid)
        poll(lambda: bridge.stat("acked") >= total, 60, "all acked")
        st = bridge.stats()
        assert st["received"] == st["acked"] == total and st["kafka_errors"] == 0
        assert st["dead_lettered"] == len(invalid) and st["forwarded"] == n0 + 20
        seqs = readings_of(bootstrap, dev)
        assert seqs == [0] * n0 + list(range(1, 21))  # each exactly once
        dlq = [json.loads(r.value) for r in read_all(bootstrap, "sensor-dlq") if r.key == dev.encode()]
        assert sorted(d["reason"] for d in dlq) == sorted(
            ["malformed_json", "malformed_json", "ts_too_old", "bad_type", "too_large"])
        assert any(d.get("raw_b64") for d in dlq) and all(d["mqtt_topic"] == topic for d in dlq)

        # --- Kafka goes down under the running bridge: the message is received, not acked
        stack.stop_service("kafka")
        acked_before = bridge.stat("acked")
        pub.publish(topic, reading(dev, 100))
        poll(lambda: bridge.stat("received") == total + 1, 30, "message received while Kafka is down")
        assert bridge.stat("acked") == acked_before
        stack.start(services=("kafka",))
        poll(lambda: bridge.stat("acked") == acked_before + 1, 150, "acked after Kafka came back")
        assert readings_of(bootstrap, dev).count(100) == 1

        # --- Kafka down and the bridge crashes: the broker redelivers to the next bridge
        stack.stop_service("kafka")
        received = bridge.stat("received")
        acked_before = bridge.stat("acked")
        pub.publish(topic, reading(dev, 200))
        poll(lambda: bridge.stat("received") == received + 1, 30, "message received while Kafka is down")
        assert bridge.stat("acked") == acked_before
        bridge.kill()  # SIGKILL: no flush, no ack
        stack.start(services=("kafka",))
        bridge = BridgeProc(stack, client_id, tmp_path)
        poll(lambda: bridge.stat("acked") >= 1, 90, "redelivered message acked by the new bridge")
        st = bridge.stats()
        assert st["redelivered"] >= 1 and st["received"] == st["acked"]
        assert readings_of(bootstrap, dev).count(200) == 1
    finally:
        pub.close()
        if bridge.proc.poll() is None:
            assert bridge.stop() == 0  # SIGTERM: clean stop, exit 0


def test_missing_dlq_topic_holds_acks_back_until_it_exists_without_exiting(stack, tmp_path):
    bootstrap = stack.s.kafka_bootstrap
    dlq = f"dlq-missing-{uuid.uuid4().hex[:6]}"
    dev = f"dlq-{uuid.uuid4().hex[:6]}"
    topic = f"sensors/{dev}/telemetry"
    bridge = BridgeProc(stack, f"bridge-dlq-{dev}", tmp_path, {"IOTFLINK_TOPIC_DLQ": dlq})
    pub = stack_publisher(stack, dev)
    try:
        wait_ready(bridge)
        pub.publish(topic, b"{broken")  # its dead letter needs the missing topic
        pub.publish(topic, reading(dev, 1))  # valid, but behind it
        # kafka-python waits max_block_ms (10 s) for the topic's metadata, then raises
        st = poll(lambda: (lambda s: s if s.get("dlq_blocked") else None)(bridge.stats()), 60, "dlq_blocked")
        assert st["dlq_blocked"]["topic"] == dlq and "KafkaTimeoutError" in st["dlq_blocked"]["error"]
        assert st["acked"] == 0 and st["received"] == st["pending"] == 2
        assert bridge.proc.poll() is None  # still running
        create_topic(bootstrap, dlq)
        poll(lambda: bridge.stat("acked") == 2, 120, "acks resume once the DLQ topic exists")
        st = bridge.stats()
        assert st["dlq_blocked"] is None and st["kafka_errors"] >= 1 and st["pending"] == 0
        assert [d["reason"] for d in dead_letters_of(bootstrap, dev, dlq)] == ["malformed_json"]
        assert readings_of(bootstrap, dev) == [1]
    finally:
        pub.close()
        assert bridge.stop() == 0


def test_record_the_broker_refuses_as_too_large_is_dead_lettered_truncated(stack, tmp_path):
    bootstrap = stack.s.kafka_bootstrap
    small = f"readings-small-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, small, {"max.message.bytes": "2000"})
    dev = f"big-{uuid.uuid4().hex[:6]}"
    topic = f"sensors/{dev}/telemetry"
    big = json.dumps({"device_id": dev, "seq": 2, "ts": now_ms() - 500,
                      "readings": {f"s{i:02d}_" + "x" * 56: 20.5 for i in range(64)}}).encode()
    bridge = BridgeProc(stack, f"bridge-big-{dev}", tmp_path, {"IOTFLINK_TOPIC_READINGS": small})
    pub = stack_publisher(stack, dev)
    try:
        wait_ready(bridge)
        pub.publish(topic, reading(dev, 1))
        poll(lambda: bridge.stat("acked") == 1, 60, "small reading acked")
        pub.publish(topic, big)  # ~4.6 KB: the broker answers MESSAGE_TOO_LARGE
        pub.publish(topic, reading(dev, 3))
        poll(lambda: bridge.stat("acked") == 3, 120, "all acked")
        st = bridge.stats()
        assert st["forwarded"] == 2 and st["dead_lettered"] == 1
        assert st["dlq_reasons"] == {"record_too_large": 1} and st["producer_restarts"] >= 1
        assert st["kafka_blocked"] is None and st["dlq_blocked"] is None
        assert readings_of(bootstrap, dev, small) == [1, 3]
        (letter,) = dead_letters_of(bootstrap, dev)
        assert letter["reason"] == "record_too_large" and letter["truncated"] is True
        assert letter["raw_bytes"] == len(big) and big.decode().startswith(letter["raw"])
        assert f"{small} record of " in letter["detail"] and "MessageSizeTooLargeError" in letter["detail"]
    finally:
        pub.close()
        assert bridge.stop() == 0


def test_producer_process_confirms_records_reports_failures_and_survives_nothing_silently(stack):
    """ProcessProducer (the bridge's producer in a child process) against the real Kafka:
    confirmed records carry their partition and offset and are in the topic; a record that
    send() refuses fails as a synchronous failure; a killed child fails the outstanding and
    every later record (not retriable, so the bridge replaces the producer)."""
    from bridge.producer_process import ProcessProducer, ProducerProcessError  # noqa: PLC0415
    from bridge.service import PRODUCER_DEFAULTS  # noqa: PLC0415

    bootstrap = stack.s.kafka_bootstrap
    topic = f"pp-{uuid.uuid4().hex[:6]}"
    kafka_io.create_topics(bootstrap, {topic: 3})
    pp = ProcessProducer(bootstrap, **{**PRODUCER_DEFAULTS, "client_id": "pp-test", "max_request_size": 4096})
    confirmed, failed = {}, []
    try:
        for i in range(60):
            pp.send(topic, value=f"v{i}".encode(), key=f"dev-{i % 7}".encode()).add_callback(
                confirmed.__setitem__, i).add_errback(lambda i, e: failed.append((i, e)), i)
        pp.flush(30)
        assert failed == [] and sorted(confirmed) == list(range(60))
        assert pp.partitions_for(topic) == {0, 1, 2}
        assert {md.topic for md in confirmed.values()} == {topic}
        offsets = [(md.partition, md.offset) for md in confirmed.values()]
        assert len(set(offsets)) == 60 and {p for p, _o in offsets} <= {0, 1, 2}
        by_value = {r.value: (r.partition, r.offset) for r in read_all(bootstrap, topic)}
        assert {by_value[f"v{i}".encode()] for i in range(60)} == set(offsets)
        # one key, one partition (the bridge's dedup key and ordering per device)
        assert len({confirmed[i].partition for i in range(0, 60, 7)}) == 1

        got = []
        pp.send(topic, value=b"x" * 10_000, key=b"big").add_errback(got.append)
        poll(lambda: got, 30, "the too-large record failed")
        assert type(got[0]).__name__ == "MessageSizeTooLargeError" and got[0].raised_by_send is True

        os.kill(pp.pid, signal.SIGKILL)
        late = []
        poll(lambda: pp.send(topic, value=b"after", key=b"k").add_errback(late.append) and late, 30,
             "a send after the child died fails")
        assert isinstance(late[0], ProducerProcessError) and late[0].retriable is False
    finally:
        pp.close(5)


def test_retained_message_is_forwarded_once_and_not_again_after_a_reconnect(stack, tmp_path):
    bootstrap = stack.s.kafka_bootstrap
    dev = f"ret-{uuid.uuid4().hex[:6]}"
    topic = f"sensors/{dev}/telemetry"
    client_id = f"bridge-ret-{dev}"
    bridge = BridgeProc(stack, client_id, tmp_path)
    try:
        wait_ready(bridge)
        pub = stack_publisher(stack, dev)
        pub.publish(topic, reading(dev, 1), retain=True)  # stored by the broker, and delivered once
        poll(lambda: bridge.stat("acked") == 1, 60, "retained reading acked")
        pub.close()
        # 1) the bridge process restarts: same persistent session, subscribes again
        assert bridge.stop() == 0
        bridge = BridgeProc(stack, client_id, tmp_path)
        wait_ready(bridge)
        # the broker would send retained messages right after the SUBACK, before this marker
        pub = stack_publisher(stack, dev)
        pub.publish(topic, reading(dev, 2))
        poll(lambda: bridge.stat("acked") == 1, 60, "marker 2 acked")
        pub.close()
        # 2) Mosquitto restarts under the running bridge (the retained message is persisted)
        stack.stop_service("mosquitto")
        poll(lambda: bridge.stat("disconnects") >= 1, 60, "disconnect seen")
        stack.start(services=("mosquitto",))
        wait_ready(bridge, subscribed=2)
        pub = stack_publisher(stack, dev)
        pub.publish(topic, reading(dev, 3))
        poll(lambda: bridge.stat("acked") == 2, 60, "marker 3 acked")
        pub.close()
        st = bridge.stats()
        # marker 2 may come again (its PUBACK may not have left before the broker stopped);
        # the retained reading 1 must not
        assert st["received"] == 2 + st["redelivered"]
        seqs = readings_of(bootstrap, dev)
        assert seqs.count(1) == 1 and set(seqs) == {1, 2, 3}  # the retained reading exactly once
    finally:
        if bridge.proc.poll() is None:
            assert bridge.stop() == 0


def _raw_publish(port: int, topic: str, payload: bytes, cred) -> bytes:
    """Publish at QoS 1 over a raw MQTT 3.1.1 connection as ``cred``; return every byte the
    broker sent after the CONNACK until it closed the connection or acked (b"" = closed, no
    PUBACK)."""
    connect = mqtt_connect_packet(f"raw-{uuid.uuid4().hex[:6]}", cred.username, cred.password, keepalive_s=60)
    var = len(topic).to_bytes(2, "big") + topic.encode() + b"\x00\x01"
    remaining = len(var) + len(payload)
    rl = bytearray()
    while True:
        byte, remaining = remaining % 128, remaining // 128
        rl.append(byte | (0x80 if remaining else 0))
        if not remaining:
            break
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(connect)
        assert sock.recv(4) == b"\x20\x02\x00\x00"
        try:
            sock.sendall(b"\x32" + bytes(rl) + var + payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while we were still sending
        got = b""
        try:
            while len(got) < 4:
                chunk = sock.recv(4 - len(got))
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        return got


def test_mosquitto_refuses_a_packet_over_max_packet_size(stack, tmp_path):
    port = stack.s.mqtt_port
    dev = f"max-{uuid.uuid4().hex[:6]}"
    topic = f"sensors/{dev}/telemetry"
    cred = stack.provision([dev])[dev]
    # an MQTT v5 client is told the limit in the CONNACK
    told: list = []
    probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"v5-{uuid.uuid4().hex[:6]}",
                        protocol=mqtt.MQTTv5)
    configure_paho(probe, cred, stack.s.mqtt_ca_file)
    probe.on_connect = lambda _c, _u, _f, _rc, props: told.append(getattr(props, "MaximumPacketSize", None))
    probe.connect("127.0.0.1", port, properties=Properties(PacketTypes.CONNECT))
    probe.loop_start()
    try:
        poll(lambda: told, 30, "v5 CONNACK")
    finally:
        probe.disconnect()
        probe.loop_stop()
    assert told == [MAX_PACKET_BYTES]

    bridge = BridgeProc(stack, f"bridge-{dev}", tmp_path)
    try:
        wait_ready(bridge)
        # Mosquitto 2.0 measures a packet as its type byte + remaining length (topic length,
        # topic, packet id, payload); the 1..4 bytes of the remaining-length field itself are
        # not counted
        fixed = 1 + 2 + len(topic) + 2
        # one byte over: the broker closes the connection without a PUBACK
        assert _raw_publish(port, topic, b"y" * (MAX_PACKET_BYTES - fixed + 1), cred) == b""
        # exactly the limit: accepted (PUBACK), and dead-lettered by the bridge (over 64 KiB)
        at_limit = b"z" * (MAX_PACKET_BYTES - fixed)
        assert _raw_publish(port, topic, at_limit, cred) == b"\x40\x02\x00\x01"
        poll(lambda: bridge.stat("acked") == 1, 60, "packet at the limit forwarded")
        st = bridge.stats()
        assert st["received"] == 1 and st["dlq_reasons"] == {"too_large": 1}
        (letter,) = dead_letters_of(stack.s.kafka_bootstrap, dev)
        assert letter["reason"] == "too_large" and letter["raw_bytes"] == len(at_limit)
    finally:
        assert bridge.stop() == 0


def test_bridge_writes_watermark_heartbeats_to_quiet_partitions(stack, tmp_path):
    """The bridge's watermark heartbeats (``iotflink.kafka_io.PartitionClock``) on a real
    four-partition topic: two devices on two partitions send one reading each (event times T1 <
    T2) and go quiet. Heartbeats (no sensor value, key ``__heartbeat__``) go to the other
    partitions, first at most at T1 (the lowest active partition) and, once every partition is
    quiet, T2 (the highest); in the end every partition holds T2, the partition of T2 got no
    heartbeat, and no heartbeat ever carried an event time nobody sent."""
    from kafka.partitioner.default import murmur2  # noqa: PLC0415

    from iotflink import kafka_io  # noqa: PLC0415

    bootstrap = stack.s.kafka_bootstrap
    topic = f"hb-readings-{uuid.uuid4().hex[:6]}"
    kafka_io.create_topics(bootstrap, {topic: 4})
    part_of = lambda dev: (murmur2(dev.encode()) & 0x7FFFFFFF) % 4  # noqa: E731 - kafka's key partitioner
    devs = [f"hb-{i}" for i in range(50)]
    dev1 = devs[0]
    dev2 = next(d for d in devs if part_of(d) != part_of(dev1))
    t1, t2 = now_ms() - 60_000, now_ms() - 30_000
    bridge = BridgeProc(stack, f"bridge-hb-{uuid.uuid4().hex[:6]}", tmp_path, extra_env={
        "IOTFLINK_TOPIC_READINGS": topic, "IOTFLINK_BRIDGE_HEARTBEAT_INTERVAL_MS": "200",
        "IOTFLINK_BRIDGE_HEARTBEAT_QUIET_MS": "1000"})
    try:
        wait_ready(bridge)
        pubs = {dev: stack_publisher(stack, dev) for dev in (dev1, dev2)}  # each device its own credential
        try:
            for dev, ts in ((dev1, t1), (dev2, t2)):
                body = {"device_id": dev, "seq": 1, "ts": ts, "readings": {"temp_c": 20.5}}
                pubs[dev].publish(f"sensors/{dev}/telemetry", json.dumps(body).encode())
            poll(lambda: sum(p.acked for p in pubs.values()) == 2, 30, "both readings acked")
        finally:
            for p in pubs.values():
                p.close()

        def every_partition_at_t2() -> bool:
            recs = kafka_io.read_topic(bootstrap, topic)
            highest = {}
            for r in recs:
                highest[r["partition"]] = max(highest.get(r["partition"], 0), r["value"]["ts"])
            return highest == {p: t2 for p in range(4)}

        poll(every_partition_at_t2, 60, "every partition raised to T2")
        recs = kafka_io.read_topic(bootstrap, topic)
        beats = [r for r in recs if kafka_io.is_heartbeat(r["value"])]
        assert beats and all(r["key"] == kafka_io.HEARTBEAT_DEVICE and r["value"]["readings"] == {} for r in beats)
        assert {r["value"]["ts"] for r in beats} <= {t1, t2}
        assert part_of(dev2) not in {r["partition"] for r in beats}
        assert len({r["value"]["seq"] for r in beats}) == len(beats)  # unique seq
        assert [r["value"]["device_id"] for r in recs if not kafka_io.is_heartbeat(r["value"])] in \
            ([dev1, dev2], [dev2, dev1])
        poll(lambda: bridge.stat("heartbeats") >= len(beats), 10, "heartbeats counted in the stats")
        assert bridge.stop() == 0
    finally:
        if bridge.proc.poll() is None:
            bridge.kill()
