"""Bridge tests against a real Mosquitto (started here on a free port) and a fake Kafka
producer whose confirmations the test controls. No Kafka needed; see
tests/test_bridge_integration.py for the real-Kafka test."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kafka.errors import KafkaTimeoutError

from bridge.service import Bridge
from iotflink.settings import BridgeSettings
from tests.test_bridge_support import FakeProducer, Mosquitto, Publisher, poll

pytestmark = pytest.mark.timeout(120)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def good(dev: str, seq: int) -> bytes:
    return json.dumps({"device_id": dev, "seq": seq, "ts": now_ms() - 1000, "readings": {"temp_c": 20.0 + seq}}).encode()


@pytest.fixture()
def broker(tmp_path):
    m = Mosquitto(tmp_path / "mqtt").start()
    yield m
    m.stop()


def settings(port: int, max_inflight: int = 100, client_id: str | None = None) -> BridgeSettings:
    return BridgeSettings(mqtt_host="127.0.0.1", mqtt_port=port, topic_filter="sensors/+/telemetry",
                          client_id=client_id or f"bridge-test-{uuid.uuid4().hex[:6]}",
                          kafka_bootstrap="unused:9092", readings_topic="sensor-readings", dlq_topic="sensor-dlq",
                          max_inflight=max_inflight)


def wait_subscribed(port: int, b: Bridge) -> None:
    """Publish probes until one reaches the bridge (the SUBACK is asynchronous)."""
    pub = Publisher(port, client_id=f"probe-{uuid.uuid4().hex[:6]}")
    try:
        def probe():
            pub.publish("sensors/probe/telemetry", good("probe", 0))
            time.sleep(0.05)
            return b.stats()["received"] > 0
        poll(probe, 10, "subscription active")
    finally:
        pub.close()


def test_valid_and_invalid_messages_each_reach_one_topic_and_are_acked(broker):
    fake = FakeProducer(auto=True)
    b = Bridge(settings(broker.port), producer_factory=fake.factory)
    b.start()
    poll(lambda: b.stats()["connects"] >= 1, 10, "bridge connected")
    wait_subscribed(broker.port, b)
    base = b.stats()["received"]
    pub = Publisher(broker.port)
    cases = [
        ("sensors/dev-a/telemetry", good("dev-a", 1), "sensor-readings", None),
        ("sensors/dev-a/telemetry", good("dev-a", 2), "sensor-readings", None),
        ("sensors/dev-a/telemetry", b"{broken", "sensor-dlq", "malformed_json"),
        ("sensors/dev-a/telemetry", b"\xff\x00binary", "sensor-dlq", "malformed_json"),
        ("sensors/dev-a/telemetry", good("dev-b", 3), "sensor-dlq", "device_mismatch"),
        ("sensors/dev-a/telemetry", b'{"device_id":"dev-a","seq":1,"ts":NaN,"readings":{"t":1}}', "sensor-dlq", "non_finite"),
        ("sensors/dev-a/telemetry", b"x" * (64 * 1024 + 1), "sensor-dlq", "too_large"),
    ]
    for topic, raw, _dest, _reason in cases:
        pub.publish(topic, raw)
    poll(lambda: b.stats()["acked"] >= base + len(cases), 15, "all acked")
    pub.close()
    st = b.stats()
    assert st["subscribed"] == 1 and st["connects"] == 1
    assert st["received"] == base + len(cases)
    assert st["forwarded"] + st["dead_lettered"] == st["received"] == st["acked"]
    assert st["pending"] == 0 and st["kafka_errors"] == 0
    recs = [(t, k, json.loads(v)) for t, k, v, _f in fake.records if not (k or b"").startswith(b"probe")]
    assert len(recs) == len(cases)
    for (_topic, _raw, dest, reason), (t, k, v) in zip(cases, recs):
        assert t == dest
        assert k == b"dev-a"
        if reason:
            assert v["reason"] == reason and v["source"] == "bridge" and v["mqtt_topic"] == topic
        else:
            assert v["device_id"] == "dev-a" and v["ts"] > 0 and "ingest_ms" in v
    assert "raw_b64" in recs[3][2]
    assert st["dlq_reasons"] == {"malformed_json": 2, "device_mismatch": 1, "non_finite": 1, "too_large": 1}
    assert fake.config["acks"] == "all" and fake.config["enable_idempotence"] is True
    assert fake.config["linger_ms"] == b.settings.linger_ms == BridgeSettings.from_env({}).linger_ms
    b.stop()


def test_ack_waits_for_kafka_in_arrival_order_and_backpressure_bounds_inflight(broker):
    fake = FakeProducer(auto=False)
    cfg = settings(broker.port, max_inflight=5)
    b = Bridge(cfg, producer_factory=fake.factory)
    b.start()
    poll(lambda: b.stats()["connects"] >= 1, 10, "bridge connected")
    pub = Publisher(broker.port)
    # the subscription is live when the first message arrives
    poll(lambda: (pub.publish("sensors/dev-a/telemetry", good("dev-a", 0)), time.sleep(0.05),
                  b.stats()["received"] > 0)[-1], 10, "subscription active")
    first_batch = b.stats()["received"]
    for seq in range(1, 20):
        pub.publish("sensors/dev-a/telemetry", good("dev-a", seq))
    total = first_batch + 19
    poll(lambda: pub.acked >= total, 10, "broker accepted every publish")
    poll(lambda: b.stats()["received"] >= 5, 10, "5 in flight")
    time.sleep(0.5)  # an absence check: give the broker the chance to exceed the bound
    st = b.stats()
    assert st["received"] == 5 and st["pending"] == 5 and st["acked"] == 0  # Receive Maximum 5
    futs = poll(lambda: (lambda f: f if len(f) == 5 else None)(fake.pending()), 10, "5 records sent")
    futs[1].succeed()  # out of order: #1 confirmed before #0 -> nothing acked yet
    assert b.stats()["acked"] == 0
    futs[0].succeed()  # now #0 and #1 are acked, in order
    assert b.stats()["acked"] == 2
    # confirm the rest as they come; the broker sends the queued ones as permits free up
    def drain():
        for f in fake.pending():
            f.succeed()
        return b.stats()["acked"] >= total
    poll(drain, 15, "all messages acked")
    st = b.stats()
    assert st["received"] == st["forwarded"] == st["acked"] == total
    assert [json.loads(v)["seq"] for _t, _k, v, _f in fake.records] == list(range(total))  # in order
    pub.close()
    b.stop()


def test_kafka_failure_is_resent_not_fatal_and_unacked_messages_are_redelivered(broker):
    """A failed record is sent again (backoff) instead of ending the bridge; its message and
    the ones after it stay un-acked meanwhile, so a bridge stopped then loses nothing."""
    client_id = f"bridge-redeliver-{uuid.uuid4().hex[:6]}"
    fake = FakeProducer(auto=False)
    b = Bridge(settings(broker.port, client_id=client_id), producer_factory=fake.factory,
               retry_backoff_s=(0.01, 0.05))
    b.start()
    poll(lambda: b.stats()["connects"] >= 1, 10, "bridge connected")
    pub = Publisher(broker.port)
    poll(lambda: (pub.publish("sensors/dev-a/telemetry", good("dev-a", 0)), time.sleep(0.05),
                  b.stats()["received"] > 0)[-1], 10, "subscription active")
    n_probe = b.stats()["received"]
    for seq in range(1, 4):
        pub.publish("sensors/dev-a/telemetry", good("dev-a", seq))
    poll(lambda: b.stats()["received"] == n_probe + 3, 10, "messages received")
    futs = poll(lambda: (lambda f: f if len(f) == n_probe + 3 else None)(fake.pending()), 10, "all sent")
    head = futs[0]
    futs[1].succeed()  # a later one succeeds, but the head fails: nothing may be acked
    head.fail(KafkaTimeoutError("Batch for TopicPartition(sensor-readings, 0) expired"))
    # the head's record is sent again (after the backoff), and the bridge keeps running
    resent = poll(lambda: [f for _t, _k, v, f in fake.records[n_probe + 3:]], 10, "head re-sent")
    st = b.stats()
    assert st["acked"] == 0 and st["kafka_errors"] == 1 and st["resent"] == 1 and not st["fatal"]
    assert st["kafka_blocked"]["topic"] == "sensor-readings"
    assert "KafkaTimeoutError" in st["kafka_blocked"]["error"]
    assert fake.records[n_probe + 3][2] == fake.records[0][2]  # the same record again
    # stop while the re-send is unconfirmed: nothing more is acked than Kafka confirmed
    b.request_stop()
    assert b.run_until(stats_interval_s=0.05) == 0
    assert b.stats()["acked"] == 0 and resent[0].state is None
    # a new bridge process with the same client id gets every message again (dup flag)
    fake2 = FakeProducer(auto=True)
    b2 = Bridge(settings(broker.port, client_id=client_id), producer_factory=fake2.factory)
    b2.start()
    poll(lambda: b2.stats()["acked"] >= n_probe + 3, 15, "redelivered messages acked")
    st2 = b2.stats()
    assert st2["redelivered"] == n_probe + 3
    assert sorted(json.loads(v)["seq"] for _t, _k, v, _f in fake2.records) == list(range(n_probe + 3))
    b2.stop()
    pub.close()


def test_persistent_session_queues_while_bridge_is_down_and_survives_broker_restart(tmp_path):
    broker = Mosquitto(tmp_path / "mqtt").start()
    client_id = f"bridge-session-{uuid.uuid4().hex[:6]}"
    try:
        fake = FakeProducer(auto=True)
        b = Bridge(settings(broker.port, client_id=client_id), producer_factory=fake.factory)
        b.start()
        poll(lambda: b.stats()["connects"] >= 1, 10, "bridge connected")
        wait_subscribed(broker.port, b)
        b.stop()  # session (and subscription) stay at the broker
        pub = Publisher(broker.port)
        for seq in range(10):
            pub.publish("sensors/dev-q/telemetry", good("dev-q", seq))
        poll(lambda: pub.acked >= 10, 10, "queued at the broker")
        pub.close()
        broker.stop()  # persisted to disk
        broker.start()  # same port
        fake2 = FakeProducer(auto=True)
        b2 = Bridge(settings(broker.port, client_id=client_id), producer_factory=fake2.factory)
        b2.start()
        poll(lambda: b2.stats()["acked"] >= 10, 15, "queued messages delivered after restart")
        got = sorted(json.loads(v)["seq"] for _t, k, v, _f in fake2.records if k == b"dev-q")
        assert got == list(range(10))
        # the broker restarts under a running bridge: it reconnects and re-subscribes
        broker.stop()
        poll(lambda: b2.stats()["disconnects"] >= 1, 10, "disconnect seen")
        broker.start()
        poll(lambda: b2.stats()["connects"] >= 2, 20, "reconnected with backoff")
        pub = Publisher(broker.port, client_id="after-restart")
        pub.publish("sensors/dev-r/telemetry", good("dev-r", 0))
        poll(lambda: any(k == b"dev-r" for _t, k, _v, _f in fake2.records), 10, "message after reconnect")
        pub.close()
        b2.stop()
    finally:
        broker.stop()


def test_retained_telemetry_is_forwarded_once_and_never_replayed_on_reconnect(broker):
    """Retain handling 2: a retained message stored before the subscription is not sent; one
    published while the bridge is subscribed arrives once, like any message; re-subscribing
    (reconnect with the persistent session, or a fresh session) replays neither."""
    dev = f"ret-{uuid.uuid4().hex[:6]}"
    topic = f"sensors/{dev}/telemetry"
    client_id = f"bridge-retain-{uuid.uuid4().hex[:6]}"
    pub = Publisher(broker.port, client_id=f"pub-{dev}")
    pub.publish(topic, good(dev, 1), retain=True)  # stored before any bridge subscribed
    poll(lambda: pub.acked >= 1, 10, "retained message stored")

    def seqs(fake):
        return [json.loads(v)["seq"] for _t, k, v, _f in list(fake.records) if k == dev.encode()]

    def marker_through(b, fake, seq):
        # the broker sends retained messages right after the SUBACK, before anything published
        # later: once this marker is through, a replayed retained message would be too
        poll(lambda: b.stats()["subscribed"] >= 1, 10, "subscribed")
        pub.publish(topic, good(dev, seq))
        poll(lambda: seq in seqs(fake) and b.stats()["pending"] == 0, 10, f"marker {seq} forwarded")

    fake = FakeProducer(auto=True)
    b = Bridge(settings(broker.port, client_id=client_id), producer_factory=fake.factory)
    b.start()
    marker_through(b, fake, 100)
    pub.publish(topic, good(dev, 2), retain=True)  # published while subscribed: delivered once
    poll(lambda: 2 in seqs(fake) and b.stats()["pending"] == 0, 10, "retained message forwarded")
    b.stop()
    assert seqs(fake) == [100, 2]

    fake2 = FakeProducer(auto=True)  # the same session again: re-subscribes on connect
    b2 = Bridge(settings(broker.port, client_id=client_id), producer_factory=fake2.factory)
    b2.start()
    marker_through(b2, fake2, 101)
    b2.stop()
    assert seqs(fake2) == [101]

    fake3 = FakeProducer(auto=True)  # a new session: a new subscription
    b3 = Bridge(settings(broker.port), producer_factory=fake3.factory)
    b3.start()
    marker_through(b3, fake3, 102)
    b3.stop()
    assert seqs(fake3) == [102]
    pub.close()


def test_unexpected_error_is_dead_lettered_and_the_bridge_keeps_running(broker, monkeypatch):
    from bridge import contract  # noqa: PLC0415

    real = contract.validate_message

    def flaky(topic, raw, now):
        if b"boom" in raw:
            raise RuntimeError("bug")
        return real(topic, raw, now)

    monkeypatch.setattr(contract, "validate_message", flaky)
    fake = FakeProducer(auto=True)
    b = Bridge(settings(broker.port), producer_factory=fake.factory)
    b.start()
    poll(lambda: b.stats()["connects"] >= 1, 10, "bridge connected")
    wait_subscribed(broker.port, b)
    n = b.stats()["acked"]
    pub = Publisher(broker.port)
    pub.publish("sensors/dev-a/telemetry", b'{"boom": 1}')
    pub.publish("sensors/dev-a/telemetry", good("dev-a", 1))
    poll(lambda: b.stats()["acked"] >= n + 2, 10, "both acked")
    st = b.stats()
    assert st["dlq_reasons"] == {"internal_error": 1} and st["forwarded"] == n + 1
    assert json.loads(fake.records[-2][2])["reason"] == "internal_error"
    pub.close()
    b.stop()


def test_stats_file_is_written(broker, tmp_path):
    fake = FakeProducer(auto=True)
    b = Bridge(settings(broker.port), producer_factory=fake.factory)
    b.start()
    path = tmp_path / "stats.json"
    b.request_stop()
    assert b.run_until(stats_file=path, stats_interval_s=0.05) == 0
    st = json.loads(path.read_text())
    assert {"received", "forwarded", "dead_lettered", "acked", "kafka_errors", "pending"} <= set(st)


def test_max_inflight_must_fit_receive_maximum():
    with pytest.raises(ValueError):
        Bridge(settings(1, max_inflight=0), producer_factory=FakeProducer().factory)


def test_replayer_publishes_through_the_bridge_without_dead_letters(broker):
    from iotflink.simulation.replay import build_messages, publish  # noqa: PLC0415

    fake = FakeProducer(auto=True)
    b = Bridge(settings(broker.port), producer_factory=fake.factory)
    b.start()
    poll(lambda: b.stats()["connects"] >= 1, 10, "bridge connected")
    wait_subscribed(broker.port, b)
    n = b.stats()["acked"]
    msgs = build_messages(["nab", "femto", "occupancy"], limit=100, delay_fraction=0.1, delay_ms=5000, seed=1)
    # this test's broker allows anonymous clients: no credentials
    summary = publish(msgs, "127.0.0.1", broker.port, window=50, credentials=dict.fromkeys({m.device_id for m in msgs}))
    assert summary["acked"] == summary["total"] == 300
    assert summary["published"] == {"nab-machine": 100, "femto-b1_1": 100, "occupancy-office": 100}
    poll(lambda: b.stats()["acked"] >= n + 300, 15, "replay forwarded")
    st = b.stats()
    assert st["forwarded"] == n + 300 and st["dead_lettered"] == 0
    got = [(json.loads(v)["device_id"], json.loads(v)["seq"]) for t, _k, v, _f in fake.records
           if t == "sensor-readings" and not json.loads(v)["device_id"].startswith("probe")]
    assert got == [(m.device_id, m.seq) for m in msgs]  # one client, QoS 1: publish order kept
    b.stop()
