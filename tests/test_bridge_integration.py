"""The bridge process (``python -m bridge``) against a real Mosquitto and a real Kafka, started
on free ports by :mod:`iotflink.stack`.

Checks: every valid message reaches ``sensor-readings`` and every invalid one ``sensor-dlq``,
exactly once; a message that arrives while Kafka is down is not acked until Kafka confirms it,
both when Kafka comes back under the running bridge and when the bridge is killed meanwhile
(the broker redelivers it to the next bridge process); SIGTERM stops the bridge cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from iotflink.settings import PROJECT_ROOT
from test_bridge_support import Publisher, poll

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def reading(dev: str, seq: int) -> bytes:
    return json.dumps({"device_id": dev, "seq": seq, "ts": now_ms() - 500, "readings": {"temp_c": 20.5}}).encode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from iotflink.stack import Stack, free_port_settings  # noqa: PLC0415

    cfg = free_port_settings(tmp_path_factory.mktemp("stack") / "run")
    st = Stack(cfg)
    try:
        st.start(services=("kafka", "mosquitto"))
        st.create_topics()
        yield st
    finally:
        st.stop(services=("kafka", "mosquitto"))


class BridgeProc:
    """``python -m bridge`` as a child process with the stack's environment."""

    def __init__(self, stack, client_id: str, workdir: Path) -> None:
        self.stats_file = workdir / f"bridge-{uuid.uuid4().hex[:6]}.json"
        self.log = self.stats_file.with_suffix(".log")
        env = dict(os.environ)
        env.update(stack.s.to_env())
        env["IOTFLINK_MQTT_CLIENT_ID"] = client_id
        env["PYTHONPATH"] = str(PROJECT_ROOT)
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


def readings_of(bootstrap: str, dev: str) -> list[int]:
    return sorted(json.loads(r.value)["seq"] for r in read_all(bootstrap, "sensor-readings")
                  if r.key == dev.encode())


def test_bridge_end_to_end_exactly_once_and_no_ack_while_kafka_is_down(stack, tmp_path):
    bootstrap = stack.s.kafka_bootstrap
    client_id = f"bridge-it-{uuid.uuid4().hex[:6]}"
    dev = f"it-{uuid.uuid4().hex[:6]}"
    topic = f"sensors/{dev}/telemetry"
    bridge = BridgeProc(stack, client_id, tmp_path)
    pub = Publisher(stack.s.mqtt_port, client_id=f"pub-{dev}")
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
