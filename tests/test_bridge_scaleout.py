"""Two bridge processes (``stack start --bridges 2``) sharing the load of a real Mosquitto
through an MQTT v5 shared subscription, into a real Kafka.

Checks: both processes take messages (each with its own credential / client id / session);
every published message lands in ``sensor-readings`` or ``sensor-dlq`` (at-least-once: the
count of distinct ``(device_id, seq)`` equals the published count, duplicates are counted and
reported, none missing); the summed stats balance (``records = forwarded + dead_lettered``,
all acked); a batch (SenML pack) is exploded into one record per sample.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import time

import pytest

from iotflink.kafka_io import HEARTBEAT_DEVICE, read_topic
from iotflink.runtime.stack import Stack
from tests.test_bridge_support import poll, stack_publisher

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

#: Services of the module's ``stack`` fixture (tests/conftest.py); the bridges are started by
#: the test, with ``bridges=2``.
STACK_SERVICES = ("kafka", "mosquitto")

DEVICES = [f"scale-dev-{i}" for i in range(6)]
PER_DEVICE = 300
BAD_EVERY = 50  # every 50th message of a device is invalid (ts in the far future)


@pytest.fixture(scope="module")
def bridges(stack):
    two = Stack(dataclasses.replace(stack.s, bridges=2))
    two.start(("bridge",))
    try:
        yield two
    finally:
        two.stop_service("bridge")


def test_two_bridges_share_the_load_and_every_message_lands_once(bridges):
    now = time.time_ns() // 1_000_000
    publishers = {dev: stack_publisher(bridges, dev) for dev in DEVICES}
    expected_ok, expected_bad = set(), set()
    try:
        for seq in range(PER_DEVICE):
            for dev in DEVICES:
                ts = now - 60_000 + seq * 100
                if seq % BAD_EVERY == BAD_EVERY - 1:
                    ts = now + 3_600_000  # ts_in_future: a dead letter
                    expected_bad.add((dev, seq))
                else:
                    expected_ok.add((dev, seq))
                doc = {"device_id": dev, "seq": seq, "ts": ts, "readings": {"temp_c": 20.0 + seq % 7}}
                publishers[dev].publish(f"sensors/{dev}/telemetry", json.dumps(doc).encode())
        # one batch per device after the single readings: 5 samples, the 3rd one bad
        for dev in DEVICES:
            samples = [{"ts": now - 10_000 + i, "readings": {"temp_c": 1.0 * i}} for i in range(5)]
            samples[2]["readings"] = {"temp_c": "hot"}
            for i in range(5):
                (expected_bad if i == 2 else expected_ok).add((dev, PER_DEVICE + i))
            doc = {"device_id": dev, "seq": PER_DEVICE, "samples": samples}
            publishers[dev].publish(f"sensors/{dev}/telemetry", json.dumps(doc).encode())
        total = len(DEVICES) * (PER_DEVICE + 1)
        poll(lambda: sum(p.acked for p in publishers.values()) == total, 60, "publisher PUBACKs")
        poll(lambda: bridges.bridge_stats().get("acked", 0) >= total, 120, "both bridges acked everything")
    finally:
        for p in publishers.values():
            p.close()

    per_bridge = bridges.bridge_stats_all()
    assert len(per_bridge) == 2
    assert all(st["received"] > 0 for st in per_bridge), [st["received"] for st in per_bridge]
    summed = bridges.bridge_stats()
    assert summed["records"] == summed["forwarded"] + summed["dead_lettered"] + summed["pending"]
    assert summed["pending"] == 0

    readings = [r["value"] for r in read_topic(bridges.s.kafka_bootstrap, bridges.s.topics.readings)
                if r["key"] != HEARTBEAT_DEVICE and r["value"]["device_id"] in DEVICES]
    got_ok = collections.Counter((v["device_id"], v["seq"]) for v in readings)
    dlq = [r["value"] for r in read_topic(bridges.s.kafka_bootstrap, bridges.s.topics.dlq)]
    got_bad = collections.Counter()
    for letter in dlq:
        doc = json.loads(letter["raw"])
        if doc.get("device_id") in DEVICES:
            got_bad[(doc["device_id"], doc["seq"] + letter.get("sample_index", 0))] += 1
    assert set(got_ok) == expected_ok
    assert set(got_bad) == expected_bad
    assert {r["reason"] for r in dlq if json.loads(r["raw"]).get("device_id") in DEVICES} == {"ts_in_future", "bad_type"}
    assert summed["batches"] == len(DEVICES)
    assert summed["records"] == summed["received"] + 4 * len(DEVICES)
    duplicates = sum(got_ok.values()) - len(got_ok) + sum(got_bad.values()) - len(got_bad)
    print(f"per bridge received {[st['received'] for st in per_bridge]}, duplicates {duplicates}")


LEAVE_DEVICES = [f"leave-dev-{i}" for i in range(4)]
LEAVE_PER_DEVICE = 100


def test_a_member_stopped_gracefully_leaves_the_group_and_the_other_gets_every_message(bridges):
    """SIGTERM to bridge-1: it unsubscribes, acks what it holds and ends its session, so
    Mosquitto gives every later message to bridge 0. (Had bridge-1 kept its session in the
    group, Mosquitto would queue about half of them there, and bridge 0 would never get them.)"""
    bridges.stop_service("bridge-1", instance_only=True)
    gone = json.loads(bridges.bridge_stats_files()[1].read_text())  # written as it stopped
    assert gone["pending"] == 0 and gone["acked"] == gone["received"], gone
    assert "left the shared subscription group" in bridges.log_file("bridge-1").read_text()
    survivor = bridges.bridge_stats_files()[0]
    received_before = json.loads(survivor.read_text())["received"]
    now = time.time_ns() // 1_000_000
    publishers = {dev: stack_publisher(bridges, dev) for dev in LEAVE_DEVICES}
    try:
        for seq in range(LEAVE_PER_DEVICE):
            for dev in LEAVE_DEVICES:
                doc = {"device_id": dev, "seq": seq, "ts": now - 30_000 + seq * 100, "readings": {"temp_c": 21.5}}
                publishers[dev].publish(f"sensors/{dev}/telemetry", json.dumps(doc).encode())
        total = len(LEAVE_DEVICES) * LEAVE_PER_DEVICE
        poll(lambda: sum(p.acked for p in publishers.values()) == total, 60, "publisher PUBACKs")
        poll(lambda: json.loads(survivor.read_text())["received"] - received_before >= total, 60,
             "bridge 0 to receive every message published after bridge-1 left")
    finally:
        for p in publishers.values():
            p.close()
    readings = {(r["value"]["device_id"], r["value"]["seq"])
                for r in read_topic(bridges.s.kafka_bootstrap, bridges.s.topics.readings)
                if r["key"] != HEARTBEAT_DEVICE and r["value"]["device_id"] in LEAVE_DEVICES}
    assert readings == {(dev, seq) for dev in LEAVE_DEVICES for seq in range(LEAVE_PER_DEVICE)}
