"""The bridge under Kafka failures and hostile input, with a fake MQTT client and a fake Kafka
producer (no broker, no Kafka): every failure kind is retried or dead-lettered, never ends the
bridge, holds the acks back in arrival order while it lasts, and shows in the stats; the byte
bound holds messages back until Kafka confirms. Synchronisation is by polling a condition;
the bridge's retry backoff is shortened to milliseconds."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge import contract
from bridge.service import MAX_PACKET_BYTES, MQTT_PACKET_ALLOWANCE_BYTES, PRODUCER_DEFAULTS, TOO_LARGE_KEEP_BYTES, Bridge, message_cost
from iotflink.settings import PROJECT_ROOT, BridgeSettings
from tests.test_bridge_support import FakeMqttClient, FakeProducer, poll

pytestmark = pytest.mark.timeout(60)

TOPIC = "sensors/dev-a/telemetry"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def good(seq: int, n_readings: int = 1, dev: str = "dev-a") -> bytes:
    readings = {f"s{i:02d}_" + "x" * 56: 20.5 for i in range(n_readings)} if n_readings > 1 else {"temp_c": 20.5}
    return json.dumps({"device_id": dev, "seq": seq, "ts": now_ms() - 1000, "readings": readings}).encode()


def make_bridge(fake: FakeProducer, **settings_kw) -> Bridge:
    cfg = BridgeSettings(mqtt_host="127.0.0.1", mqtt_port=1, topic_filter="sensors/+/telemetry",
                         client_id=f"unit-{uuid.uuid4().hex[:6]}", kafka_bootstrap="unused:9092",
                         readings_topic="sensor-readings", dlq_topic="sensor-dlq", **settings_kw)
    b = Bridge(cfg, producer_factory=fake.factory, client_factory=FakeMqttClient,
               retry_backoff_s=(0.001, 0.01))
    b.start()
    return b


def sent(fake: FakeProducer, topic: str | None = None) -> list[dict]:
    """Values of the records the fake producer accepted (optionally of one topic), in order."""
    return [json.loads(v) for t, _k, v, _f in list(fake.records) if topic is None or t == topic]


def pending_futures(fake: FakeProducer, n: int, what: str) -> list:
    """Poll until the fake producer holds exactly ``n`` unconfirmed records; their futures."""
    return poll(lambda: (lambda f: f if len(f) == n else None)(fake.pending()), 10, what)


def test_sync_metadata_timeout_is_retried_until_kafka_is_back(tmp_path):
    fake = FakeProducer(auto=True)
    outage = threading.Event()
    outage.set()
    fake.send_error = lambda topic, key, value: (
        KafkaTimeoutError("Failed to update metadata after 10.0 secs.") if outage.is_set() else None)
    b = make_bridge(fake)
    stats_file = tmp_path / "stats.json"
    exit_status: list[int] = []
    runner = threading.Thread(target=lambda: exit_status.append(
        b.run_until(stats_file=stats_file, stats_interval_s=0.01)), daemon=True)
    runner.start()
    b.client.deliver(TOPIC, good(1), mid=1)
    b.client.deliver(TOPIC, good(2), mid=2)

    def blocked_in_file():
        try:
            st = json.loads(stats_file.read_text())
        except (OSError, ValueError):
            return None
        return st if st["kafka_blocked"] and st["kafka_blocked"]["failures"] >= 3 else None

    st = poll(blocked_in_file, 20, "kafka_blocked with 3 failures in the stats file")
    assert st["kafka_blocked"]["topic"] == "sensor-readings"
    assert "KafkaTimeoutError: Failed to update metadata" in st["kafka_blocked"]["error"]
    assert st["kafka_blocked"]["since_ms"] <= st["kafka_blocked"]["last_ms"]
    assert st["kafka_blocked"]["since"].endswith("Z") and st["kafka_blocked"]["since"][:2] == "20"
    assert st["acked"] == 0 and st["pending"] == 2 and st["dlq_blocked"] is None
    # head-of-line: message 2 is not sent before message 1
    assert {a[2] and json.loads(a[2])["seq"] for a in fake.attempts} == {1}
    assert fake.records == []
    outage.clear()
    poll(lambda: b.stats()["acked"] == 2, 20, "both acked after Kafka came back")
    st = b.stats()
    assert b.client.acks == [1, 2]
    assert [v["seq"] for v in sent(fake)] == [1, 2]
    assert st["forwarded"] == 2 and st["kafka_blocked"] is None and st["pending"] == 0
    assert st["kafka_errors"] == st["resent"] >= 3 and st["inflight_bytes"] == 0
    assert st["received"] == st["forwarded"] + st["dead_lettered"] + st["pending"]
    b.request_stop()
    runner.join(30)
    assert exit_status == [0]


def test_missing_dlq_topic_stops_acks_says_so_and_resumes(caplog):
    fake = FakeProducer(auto=True)
    dlq_missing = threading.Event()
    dlq_missing.set()
    fake.send_error = lambda topic, key, value: (
        KafkaTimeoutError("Failed to update metadata after 10.0 secs.")
        if topic == "sensor-dlq" and dlq_missing.is_set() else None)
    b = make_bridge(fake)
    with caplog.at_level(logging.WARNING, logger="bridge.service"):
        b.client.deliver(TOPIC, good(1), mid=1)
        b.client.deliver(TOPIC, b"{broken", mid=2)
        b.client.deliver(TOPIC, good(3), mid=3)
        st = poll(lambda: (lambda s: s if s["dlq_blocked"] and s["dlq_blocked"]["failures"] >= 2 else None)(
            b.stats()), 20, "dlq_blocked")
        assert st["dlq_blocked"]["topic"] == "sensor-dlq" and "KafkaTimeoutError" in st["dlq_blocked"]["error"]
        assert st["kafka_blocked"] is None
        assert b.client.acks == [1]  # acks stop at the message whose dead letter cannot be written
        assert st["pending"] == 2 and st["forwarded"] == 1 and st["dead_lettered"] == 0
        assert [v["seq"] for v in sent(fake, "sensor-readings")] == [1]  # 3 waits behind 2
        assert any("sensor-dlq" in r.getMessage() and "dead-letter topic cannot be written" in r.getMessage()
                   and r.levelno == logging.ERROR for r in caplog.records)
        dlq_missing.clear()
        poll(lambda: b.stats()["acked"] == 3, 20, "acks resume once the DLQ topic exists")
        assert any("again" in r.getMessage() and "acks resume" in r.getMessage() for r in caplog.records)
    st = b.stats()
    assert b.client.acks == [1, 2, 3]
    assert st["dlq_blocked"] is None and st["dlq_reasons"] == {"malformed_json": 1}
    assert [v["seq"] for v in sent(fake, "sensor-readings")] == [1, 3]
    assert sent(fake, "sensor-dlq")[0]["raw"] == "{broken"
    b.stop()


def _too_large_for(limit: int):
    """A send_error that refuses a record over ``limit`` bytes, as kafka-python's
    ``max_request_size`` check does (synchronously, before the record is queued)."""
    def check(topic, key, value):
        size = len(value) + len(key or b"") + 70
        if size > limit:
            return MessageSizeTooLargeError(f"The message is {size} bytes when serialized which is larger "
                                            "than the maximum request size you have configured with the "
                                            "max_request_size configuration")
        return None
    return check


def test_too_large_sync_goes_to_the_dlq_truncated():
    fake = FakeProducer(auto=True)
    fake.send_error = _too_large_for(4096)
    b = make_bridge(fake)
    big_reading = good(1, n_readings=64)  # valid, but its record is ~4.6 KB
    hostile = b"\x01" * 20_000  # invalid; its dead letter escapes each byte to \u0001 (120 KB)
    b.client.deliver(TOPIC, big_reading, mid=1)
    b.client.deliver(TOPIC, hostile, mid=2)
    b.client.deliver(TOPIC, good(3), mid=3)
    poll(lambda: b.stats()["acked"] == 3, 20, "all acked")
    st = b.stats()
    assert b.client.acks == [1, 2, 3]
    assert st["forwarded"] == 1 and st["dead_lettered"] == 2 and st["kafka_errors"] == 2
    assert st["dlq_reasons"] == {"record_too_large": 2}
    assert st["kafka_blocked"] is None and st["dlq_blocked"] is None and st["inflight_bytes"] == 0
    d1, d2 = sent(fake, "sensor-dlq")
    assert d1["reason"] == d2["reason"] == "record_too_large"
    assert d1["truncated"] is d2["truncated"] is True and d1["source"] == "bridge"
    assert d1["mqtt_topic"] == TOPIC and d1["raw_bytes"] == len(big_reading)
    assert big_reading.decode().startswith(d1["raw"]) and len(d1["raw"].encode()) <= TOO_LARGE_KEEP_BYTES
    refused = [a for a in fake.attempts if a[3] is not None]
    size1 = len(refused[0][2]) + len(refused[0][1])
    assert f"sensor-readings record of {size1} bytes" in d1["detail"]
    assert d2["raw_bytes"] == 20_000 and d2["raw"] == "\x01" * (TOO_LARGE_KEEP_BYTES // 6)
    assert d2["detail"].startswith("dead letter (malformed_json: ")
    assert len(_encoded(d2)) < 4096 - 70
    assert [v["seq"] for v in sent(fake, "sensor-readings")] == [3]
    b.stop()


def _encoded(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_too_large_and_timeout_async_are_dead_lettered_or_resent():
    fake = FakeProducer(auto=False)
    b = make_bridge(fake)
    b.client.deliver(TOPIC, good(1), mid=1)
    b.client.deliver(TOPIC, good(2), mid=2)
    f1, f2 = pending_futures(fake, 2, "2 sent")
    size = len(fake.records[0][2]) + len(fake.records[0][1])
    # the broker refuses record 1 (message.max.bytes): it goes to the DLQ instead
    f1.fail(MessageSizeTooLargeError("MESSAGE_SIZE_TOO_LARGE"))
    # record 2's batch expires (delivery timeout): it is sent again
    f2.fail(KafkaTimeoutError("Expiring 1 record(s) for sensor-readings-0: delivery timeout"))
    pending_futures(fake, 2, "dead letter and re-send sent")
    assert b.stats()["acked"] == 0
    topics = [t for t, _k, _v, f in fake.records if f.state is None]
    assert topics == ["sensor-dlq", "sensor-readings"]  # in arrival order
    for f in fake.pending():
        f.succeed()
    poll(lambda: b.stats()["acked"] == 2, 10, "both acked")
    st = b.stats()
    assert b.client.acks == [1, 2]
    assert st["forwarded"] == 1 and st["dead_lettered"] == 1 and st["resent"] == 2
    assert st["kafka_errors"] == 2 and st["dlq_reasons"] == {"record_too_large": 1}
    assert st["kafka_blocked"] is None
    # a non-retriable error may leave kafka-python's idempotent producer in a fatal state
    assert st["producer_restarts"] == 1 and fake.created == 2
    poll(lambda: fake.closes == 1, 10, "the replaced producer closed")
    letter = sent(fake, "sensor-dlq")[0]
    assert letter["reason"] == "record_too_large" and letter["truncated"] is True
    assert f"sensor-readings record of {size} bytes" in letter["detail"]
    assert "MessageSizeTooLargeError" in letter["detail"]
    # the re-send duplicates record 2 (at-least-once; the job de-duplicates on (device_id, seq))
    assert [v["seq"] for v in sent(fake, "sensor-readings")] == [1, 2, 2]
    b.stop()


def test_records_failed_by_a_fatal_producer_are_resent_through_a_new_one():
    """kafka-python's idempotent producer answers the broker's MESSAGE_TOO_LARGE with a fatal
    state that fails every later record with the same exception: only the first record is too
    large; the others are sent again, as readings, through a new producer."""
    fake = FakeProducer(auto=False)
    b = make_bridge(fake)
    for mid in (1, 2, 3):
        b.client.deliver(TOPIC, good(mid), mid=mid)
    futs = pending_futures(fake, 3, "3 sent")
    fatal = MessageSizeTooLargeError("MESSAGE_SIZE_TOO_LARGE")
    for f in futs:
        f.fail(fatal)
    again = pending_futures(fake, 3, "dead letter and 2 re-sends sent")
    assert [t for t, _k, _v, f in fake.records if f.state is None] == ["sensor-dlq", "sensor-readings",
                                                                       "sensor-readings"]
    for f in again:
        f.succeed()
    poll(lambda: b.stats()["acked"] == 3, 10, "all acked")
    st = b.stats()
    assert b.client.acks == [1, 2, 3] and st["producer_restarts"] == 1 and fake.created == 2
    assert st["forwarded"] == 2 and st["dead_lettered"] == 1 and st["dlq_reasons"] == {"record_too_large": 1}
    assert st["kafka_blocked"] is None and st["kafka_errors"] == 3 and st["resent"] == 3
    b.stop()


def test_a_dead_letter_still_too_large_blocks_the_dlq_instead_of_looping():
    fake = FakeProducer(auto=True)
    refuse = threading.Event()
    refuse.set()
    fake.send_error = lambda topic, key, value: (
        MessageSizeTooLargeError("MESSAGE_SIZE_TOO_LARGE") if refuse.is_set() else None)
    b = make_bridge(fake)
    b.client.deliver(TOPIC, good(1), mid=1)
    st = poll(lambda: (lambda s: s if s["dlq_blocked"] and s["dlq_blocked"]["failures"] >= 2 else None)(
        b.stats()), 20, "dlq_blocked")
    assert "MessageSizeTooLargeError" in st["dlq_blocked"]["error"] and st["acked"] == 0
    refuse.clear()
    poll(lambda: b.stats()["acked"] == 1, 20, "acked once Kafka takes it")
    assert sent(fake)[0]["reason"] == "record_too_large"
    b.stop()


def test_byte_bound_holds_messages_back_until_kafka_confirms():
    fake = FakeProducer(auto=False)
    hostile = b"\x01" * 30_000  # dead letter of ~180 KB: cost ~0.4 MB
    b = make_bridge(fake, max_inflight_bytes=500_000)
    b.client.deliver(TOPIC, hostile, mid=1)
    st = b.stats()
    assert st["received"] == 1 and 300_000 < st["inflight_bytes"] <= 500_000
    second = b.client.deliver_in_thread(TOPIC, hostile, mid=2)
    poll(lambda: b.stats()["admission_blocked"] == "bytes", 10, "on_message waiting for the byte bound")
    st = b.stats()
    assert st["received"] == 1 and st["inflight_bytes_waits"] == 1 and second.is_alive()
    pending_futures(fake, 1, "first sent")[0].succeed()
    second.join(10)
    assert not second.is_alive()
    pending_futures(fake, 1, "second sent")[0].succeed()
    st = b.stats()
    assert st["received"] == st["acked"] == 2 and st["inflight_bytes"] == 0
    assert st["admission_blocked"] is None and b.client.acks == [1, 2]
    b.stop()


def test_message_larger_than_the_byte_bound_passes_alone():
    fake = FakeProducer(auto=False)
    b = make_bridge(fake, max_inflight_bytes=1_000)
    b.client.deliver(TOPIC, good(1, n_readings=10), mid=1)  # costs more than 1,000 bytes
    assert b.stats()["received"] == 1 and b.stats()["inflight_bytes"] > 1_000
    second = b.client.deliver_in_thread(TOPIC, good(2), mid=2)
    poll(lambda: b.stats()["admission_blocked"] == "bytes", 10, "second waits for the first")
    pending_futures(fake, 1, "first sent")[0].succeed()
    second.join(10)
    pending_futures(fake, 1, "second sent")[0].succeed()
    assert b.stats()["acked"] == 2 and b.client.acks == [1, 2]
    b.stop()


def test_message_bound_waits_too():
    fake = FakeProducer(auto=False)
    b = make_bridge(fake, max_inflight=1)
    b.client.deliver(TOPIC, good(1), mid=1)
    second = b.client.deliver_in_thread(TOPIC, good(2), mid=2)
    poll(lambda: b.stats()["admission_blocked"] == "messages", 10, "second waits for the first's ack")
    pending_futures(fake, 1, "first sent")[0].succeed()
    second.join(10)
    pending_futures(fake, 1, "second sent")[0].succeed()
    assert b.stats()["acked"] == 2 and b.stats()["inflight_messages_waits"] == 1
    b.stop()


def test_stop_releases_a_waiting_on_message_without_counting_it():
    fake = FakeProducer(auto=False)
    b = make_bridge(fake, max_inflight=1)
    b.client.deliver(TOPIC, good(1), mid=1)
    second = b.client.deliver_in_thread(TOPIC, good(2), mid=2)
    poll(lambda: b.stats()["admission_blocked"] == "messages", 10, "second waiting")
    b.stop(flush_timeout_s=1)
    second.join(10)
    st = b.stats()
    assert not second.is_alive() and st["received"] == 1 and st["acked"] == 0 and st["pending"] == 1


def test_cost_of_the_worst_hostile_message_and_the_default_bound():
    """Largest message the broker lets through (max_packet_size), made of control characters
    that its dead letter escapes 6-fold: the default byte bound holds about 19 of them."""
    topic_len = len(TOPIC)
    payload = b"\x01" * (MAX_PACKET_BYTES - 5 - 4 - topic_len)
    fake = FakeProducer(auto=False)
    b = make_bridge(fake)
    b.client.deliver(TOPIC, payload, mid=1)
    cost = b.stats()["inflight_bytes"]
    pending_futures(fake, 1, "dead letter sent")
    assert cost == message_cost(len(payload), topic_len, len(fake.records[0][2]) + len(b"dev-a"))
    assert 800_000 < cost < 900_000
    default = BridgeSettings.from_env({}).max_inflight_bytes
    assert default == 16 * 1024 * 1024 and 18 <= default // cost <= 20
    honest = message_cost(len(good(1)), topic_len, 200)
    assert 1000 * honest * 20 < default  # an honest full window stays far below the byte bound
    b.stop()


def test_a_lost_connections_messages_do_not_hold_the_next_connections_window():
    """After a reconnect the broker redelivers up to Receive Maximum messages. The records of
    the lost connection that Kafka has not confirmed (their acks will be dropped) must not count
    against the new connection's window: if they did, on_message (paho's network thread) would
    wait for Kafka right after the reconnect, send no keepalive, and lose the connection again."""
    fake = FakeProducer(auto=False)
    b = make_bridge(fake, max_inflight=3)
    for mid in (1, 2, 3):
        b.client.deliver(TOPIC, good(mid), mid=mid)
    old = pending_futures(fake, 3, "3 records of the first connection sent")
    b.client.disconnect()  # the connection is lost with all three unconfirmed
    b.client.connect(session_present=True)
    # the broker redelivers the three on the new connection: each is admitted without waiting
    for mid in (1, 2, 3):
        t = b.client.deliver_in_thread(TOPIC, good(mid), mid=mid)
        t.join(5)
        assert not t.is_alive(), f"on_message waited for Kafka on redelivered message {mid}"
    new = pending_futures(fake, 6, "the redelivered records sent too")[3:]
    st = b.stats()
    assert st["received"] == 6 and st["inflight_messages_waits"] == 0 and st["pending_messages"] == 6
    # the new connection's own window still holds: a fourth message waits for an ack
    fourth = b.client.deliver_in_thread(TOPIC, good(4), mid=4)
    poll(lambda: b.stats()["admission_blocked"] == "messages", 5, "fourth message waits for the window")
    assert b.stats()["received"] == 6
    for f in old:
        f.succeed()  # the lost connection's records confirmed: their acks are dropped
    assert b.client.acks == [] and b.stats()["ack_dropped"] == 3
    assert b.stats()["received"] == 6  # and they did not free the new connection's window
    new[0].succeed()  # the first redelivered message acked: the fourth is admitted
    fourth.join(5)
    assert not fourth.is_alive() and b.client.acks == [1]
    for f in fake.pending():
        f.succeed()
    st = b.stats()
    assert b.client.acks == [1, 2, 3, 4] and st["received"] == 7 and st["acked"] == 4 and st["ack_dropped"] == 3
    b.stop()


def test_subscription_never_replays_retained_messages():
    fake = FakeProducer(auto=True)
    b = make_bridge(fake)
    (topic_filter, options), = b.client.subscriptions
    assert topic_filter == "sensors/+/telemetry" and options.QoS == 1
    assert options.retainHandling == SubscribeOptions.RETAIN_DO_NOT_SEND == 2
    b.client.connect(session_present=True)  # a reconnect subscribes again, the same way
    assert [o.retainHandling for _t, o in b.client.subscriptions] == [2, 2]
    b.stop()


def test_settings_and_limits():
    env = {"IOTFLINK_BRIDGE_MAX_INFLIGHT_BYTES": "12345"}
    assert BridgeSettings.from_env(env).max_inflight_bytes == 12345
    with pytest.raises(ValueError):
        make_bridge(FakeProducer(), max_inflight_bytes=0)
    assert MAX_PACKET_BYTES == contract.MAX_PAYLOAD_BYTES + MQTT_PACKET_ALLOWANCE_BYTES == 66_560
    assert PRODUCER_DEFAULTS["max_block_ms"] <= 30_000


@pytest.mark.parametrize("conf", ["mosquitto.conf", "mosquitto.docker.conf"])
def test_mosquitto_refuses_packets_over_the_contract_maximum(conf):
    lines = [ln.split() for ln in (PROJECT_ROOT / "deploy" / conf).read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    values = [int(ln[1]) for ln in lines if ln[0] == "max_packet_size"]
    assert values == [MAX_PACKET_BYTES]
