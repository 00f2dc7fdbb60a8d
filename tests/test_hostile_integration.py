"""Hostile input on the real stack: nothing a device sends, nor a bad record in Kafka, stops a job.

An isolated stack (Kafka KRaft, Mosquitto, the bridge, a Flink standalone cluster) runs on free
loopback ports, with the window job and the ``bearing_failure`` rule job (both read
``sensor-readings``). A device publishes valid readings at QoS 1 with hostile but well-formed
messages between them (integers past int64 in ``seq`` and ``drops``, a value beyond the double
range, deep nesting, a 60,000-character sensor name, a topic/payload device mismatch, and a
retained poison message); records the bridge never wrote (an integer past BIGINT, text that
is not JSON, a record without ``ts``) go straight into ``sensor-readings``. Then the bridge is
restarted: the retained poison must not come back.

Asserted:
- both jobs are RUNNING with 0 restarts;
- every valid reading is counted: in an aggregate's ``count``, in ``sensor-late`` or in
  ``sensor-duplicates``;
- every hostile MQTT message is in ``sensor-dlq`` with its reason, exactly once (the retained
  one was not replayed on the bridge's reconnect);
- every record written straight to Kafka is in the window job's DLQ and in ``rules-dlq`` with
  its reason and its exact bytes.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import paho.mqtt.client as mqtt
import pytest

from iotflink import kafka_io
from iotflink.poll import wait_for
from iotflink.runtime import rules_cli
from iotflink.runtime.flinkctl import FlinkCtl
from iotflink.runtime.mqtt_auth import configure_paho
from iotflink.settings import RulesSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

DEVICE = "p-1"
TOPIC = f"sensors/{DEVICE}/telemetry"
N_VALID = 200


def _reading(seq: int, ts_ms: int, value: float) -> bytes:
    return json.dumps({"device_id": DEVICE, "seq": seq, "ts": ts_ms, "readings": {"temp_c": value}}).encode()


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def hostile_messages(ts_ms: int) -> list[tuple[str, bytes, bool, str]]:
    """(topic, payload, retain, expected sensor-dlq reason) of every hostile MQTT message."""
    base = {"device_id": DEVICE, "seq": 1, "ts": ts_ms}
    return [
        (TOPIC, json.dumps({**base, "seq": 2**63, "readings": {"temp_c": 1.0}}).encode(), False, "out_of_range"),
        (TOPIC, json.dumps({**base, "readings": {"temp_c": 1.0}, "drops": {"outbox": 2**64}}).encode(), False,
         "out_of_range"),
        (TOPIC, (json.dumps(base)[:-1] + ', "readings": {"temp_c": 1e309}}').encode(), False, "non_finite"),
        (TOPIC, (json.dumps(base)[:-1] + ', "readings": {"temp_c": ' + _nested(100) + "}}").encode(), False,
         "bad_type"),
        (TOPIC, (json.dumps(base)[:-1] + ', "readings": {"temp_c": ' + _nested(30_000) + "}}").encode(), False,
         "malformed_json"),
        (TOPIC, json.dumps({**base, "readings": {"t" * 60_000: 1.0}}).encode(), False, "bad_type"),
        (TOPIC, json.dumps({**base, "device_id": "victim-2", "readings": {"temp_c": 1.0}}).encode(), False,
         "device_mismatch"),
        (TOPIC, json.dumps({**base, "seq": 2**63 + 7, "readings": {"temp_c": 1.0}}).encode(), True, "out_of_range"),
    ]


#: Records written straight to sensor-readings (not by the bridge), and the job DLQ reason.
DIRECT_POISON = [
    (b'{"device_id":"p-1","seq":9223372036854775808,"ts":1767225600000,"readings":{"temp_c":1.0}}', "parse_error"),
    (b"this is not JSON", "parse_error"),
    (b'{"device_id":"p-1","seq":5,"readings":{"temp_c":1.0}}', "missing_field"),
]


def _publish(stack, messages: list[tuple[str, bytes, bool]]) -> None:
    """Publish at QoS 1 as :data:`DEVICE` (its provisioned credential), one at a time, each
    waited for (PUBACK) before the next."""
    cred = stack.provision([DEVICE])[DEVICE]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hostile-test", protocol=mqtt.MQTTv5)
    configure_paho(client, cred, stack.s.mqtt_ca_file)
    client.connect(stack.s.mqtt_host, stack.s.mqtt_port)
    client.loop_start()
    try:
        for topic, payload, retain in messages:
            info = client.publish(topic, payload, qos=1, retain=retain)
            info.wait_for_publish(timeout=30)
            assert info.is_published(), f"no PUBACK for a {len(payload)}-byte message"
    finally:
        client.disconnect()
        client.loop_stop()


def test_hostile_input_never_stops_the_pipeline(stack, monkeypatch):
    cfg = stack.s
    for key, value in cfg.to_env().items():  # every from_env() below sees this stack
        monkeypatch.setenv(key, value)
    ctl = FlinkCtl(cfg)
    rcfg = RulesSettings.from_env()
    out = io.StringIO()
    with ThreadPoolExecutor(max_workers=1) as pool:  # the window job's `flink run` beside the rule's
        window_f = pool.submit(ctl.submit, "sensor_windows",
                               env_overrides={"IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": "5000"})
        assert rules_cli.deploy(rcfg, ("bearing_failure",), out=out) == 0, out.getvalue()
        window_job = window_f.result()
    rule_job = rules_cli.rule_jobs(ctl)["bearing_failure"][0]["jid"]
    ctl.wait_running(window_job)
    ctl.wait_running(rule_job)

    now_ms = time.time_ns() // 1_000_000
    start_ms = now_ms - 20 * 60_000
    hostile = hostile_messages(start_ms)
    plan: list[tuple[str, bytes, bool]] = []
    valid_values = 0
    for i in range(N_VALID):
        plan.append((TOPIC, _reading(i + 1, start_ms + i * 1000, 20.0 + i % 7), False))
        valid_values += 1
        if i % 20 == 10 and i // 20 < len(hostile):
            topic, payload, retain, _ = hostile[i // 20]
            plan.append((topic, payload, retain))
    assert sum(1 for _, p, _ in plan if any(p == h[1] for h in hostile)) == len(hostile)
    _publish(stack, plan)

    from kafka import KafkaProducer  # noqa: PLC0415

    producer = KafkaProducer(bootstrap_servers=cfg.kafka_bootstrap, acks="all")
    for raw, _ in DIRECT_POISON:
        producer.send(cfg.topics.readings, key=DEVICE.encode(), value=raw)
    producer.flush()
    producer.close()

    wait_for(lambda: stack.bridge_stats()["forwarded"] >= N_VALID, 120, what="the bridge to forward every reading")
    wait_for(lambda: stack.bridge_stats()["dead_lettered"] >= len(hostile), 60, what="the bridge to dead-letter")

    # the retained poison is still held by the broker; a restarted bridge must not replay it
    stack.stop_service("bridge")
    stack.start(("bridge",))
    marker_ts = start_ms + N_VALID * 1000
    _publish(stack, [(TOPIC, _reading(N_VALID + 1, marker_ts, 1.0), False)])
    valid_values += 1
    wait_for(lambda: stack.bridge_stats()["forwarded"] >= 1, 120, what="the restarted bridge to forward the marker")
    assert stack.bridge_stats()["dead_lettered"] == 0, "the retained poison came back after the reconnect"

    # every hostile MQTT message is in sensor-dlq once, with its reason
    dlq = [r["value"] for r in kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.dlq)]
    assert Counter(d["reason"] for d in dlq) == Counter(h[3] for h in hostile), [(d["reason"], d["detail"]) for d in dlq]

    # both jobs read past the direct poison: dead letters with reason and exact bytes
    def job_dlq(topic: str) -> list[dict]:
        return [r["value"] for r in kafka_io.read_topic(cfg.kafka_bootstrap, topic)]

    wait_for(lambda: len(job_dlq(cfg.topics.window_dlq)) >= len(DIRECT_POISON), 120,
             what="the window job's dead letters to be committed")
    wait_for(lambda: len(job_dlq(cfg.topics.rules_dlq)) >= len(DIRECT_POISON), 120,
             what="the rule job's dead letters")
    want = sorted(DIRECT_POISON)
    window_dlq = job_dlq(cfg.topics.window_dlq)
    assert sorted((base64.b64decode(d["raw"]), d["reason"]) for d in window_dlq) == want
    assert {d["source"] for d in window_dlq} == {"sensor_windows"}
    assert all(d["kafka_partition"] is not None and d["kafka_offset"] is not None for d in window_dlq)
    rules_dlq = job_dlq(cfg.topics.rules_dlq)
    assert sorted((base64.b64decode(d["raw"]), d["reason"]) for d in rules_dlq) == want
    assert {(d["rule_id"], d["source_table"]) for d in rules_dlq} == {("bearing_failure", "readings")}

    health = {h.job_id: h for h in ctl.job_health()}
    for job in (window_job, rule_job):
        assert health[job].state == "RUNNING", health[job]
        # numRestarts metric, else the exception history: None would mean neither was readable
        assert health[job].restarts == 0, health[job]

    # every valid reading is counted once: aggregate count, sensor-late or sensor-duplicates
    wait_for(lambda: ctl.source_records_read(window_job) >= N_VALID + 1 + len(DIRECT_POISON), 120,
             what="the window job to read every record")
    ctl.drain_bounded_replay(window_job, cfg.kafka_bootstrap, cfg.topics.readings, marker_ts)
    aggs = kafka_io.latest_by_key(kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.aggregates))
    late = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.late)
    dups = [r["value"] for r in kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.duplicates)]
    counted = sum(a["count"] for a in aggs.values()) + len(late)
    assert counted == valid_values, (counted, len(late), len(dups))
    assert all(d["device_id"] == DEVICE for d in dups)
    assert rules_cli.stop(rcfg, "bearing_failure", out=io.StringIO()) == 0
