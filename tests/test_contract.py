"""Unit tests of bridge.contract: timestamp units, every DLQ reason, dead-letter encoding."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from hypothesis import given
from hypothesis import settings as hsettings

from bridge import contract
from bridge.contract import (
    MAX_PAYLOAD_BYTES,
    TS_FLOOR_MS,
    dead_letter,
    normalise_ts,
    topic_device_id,
    validate,
)
from iotflink.errors import IotFlinkError, ValidationError
from tests import strategies as sts

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
TOPIC = "sensors/dev-1/telemetry"


def payload(**over) -> bytes:
    doc = {"device_id": "dev-1", "seq": 1, "ts": NOW_MS - 1000, "readings": {"temp_c": 21.5}}
    doc.update(over)
    doc = {k: v for k, v in doc.items() if v is not _DROP}
    return json.dumps(doc).encode()


_DROP = object()


def reason_of(topic: str, raw: bytes, now_ms: int = NOW_MS) -> str:
    with pytest.raises(ValidationError) as info:
        validate(topic, raw, now_ms)
    assert isinstance(info.value, IotFlinkError)
    return info.value.reason


# ---------------------------------------------------------------- timestamp units
@pytest.mark.parametrize(
    "ts, expected_ms",
    [
        (1_767_225_600, 1_767_225_600_000),  # seconds
        (9_999_999_999, 9_999_999_999_000),  # largest seconds value
        (10_000_000_000, 10_000_000_000),  # 1e10: milliseconds
        (1_767_225_600_123, 1_767_225_600_123),  # milliseconds
        (9_999_999_999_999, 9_999_999_999_999),  # largest ms value
        (10_000_000_000_000, 10_000_000_000),  # 1e13: microseconds
        (1_767_225_600_123_456, 1_767_225_600_123),  # microseconds (floor)
        (9_999_999_999_999_999, 9_999_999_999_999),  # largest us value
        (10_000_000_000_000_000, 10_000_000_000),  # 1e16: nanoseconds
        (1_767_225_600_123_456_789, 1_767_225_600_123),  # nanoseconds, exact (beyond 2**53)
        (1_767_225_600.1234, 1_767_225_600_123),  # float seconds, rounded to ms
        (1_767_225_600.9999, 1_767_225_601_000),
        (1.767225600123e12, 1_767_225_600_123),  # float ms
        (1.767225600123456e15, 1_767_225_600_123),  # float us
        (1.767225600123e18, 1_767_225_600_123),  # float ns
        (0, 0),
    ],
)
def test_normalise_ts_by_magnitude(ts, expected_ms):
    assert normalise_ts(ts) == expected_ms
    assert type(normalise_ts(ts)) is int


@pytest.mark.parametrize("unit_factor", [1, 1000, 1_000_000, 1_000_000_000])
def test_same_instant_in_every_unit_is_accepted(unit_factor):
    seconds = (NOW_MS - 5000) // 1000
    out = validate(TOPIC, payload(ts=seconds * unit_factor), NOW_MS)
    assert out["ts"] == seconds * 1000


# ---------------------------------------------------------------- valid payloads
def test_valid_payload_is_normalised():
    raw = json.dumps({"device_id": "dev-1", "seq": 42, "ts": (NOW_MS - 2000) // 1000,
                      "readings": {"h_rms_g": 1, "v_rms_g": 0.43}, "drops": {"buffer": 0, "outbox": 3},
                      "extra": "ignored"}).encode()
    out = validate(TOPIC, raw, NOW_MS)
    assert out == {"device_id": "dev-1", "seq": 42, "ts": NOW_MS - 2000,
                   "readings": {"h_rms_g": 1.0, "v_rms_g": 0.43}, "ingest_ms": NOW_MS,
                   "drops": {"buffer": 0, "outbox": 3}}
    assert type(out["readings"]["h_rms_g"]) is float


def test_topic_device_id():
    assert topic_device_id("sensors/femto-b1_1/telemetry") == "femto-b1_1"
    assert topic_device_id("sensors/a.b_C-9/telemetry") == "a.b_C-9"
    assert topic_device_id("sensors//telemetry") is None
    assert topic_device_id("sensors/a/b/telemetry") is None
    assert topic_device_id("sensors/" + "x" * 65 + "/telemetry") is None
    assert topic_device_id("other/dev/telemetry") is None


# ---------------------------------------------------------------- every reason
_REJECTION_CASES = [
        (b"{not json", "malformed_json"),
        (b"", "malformed_json"),
        (b'{"device_id": "dev-1"', "malformed_json"),
        (b"\xff\xfe{}", "malformed_json"),  # not UTF-8
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (b"42", "not_object"),
        (b"null", "not_object"),
        (payload(device_id=_DROP), "missing_field"),
        (payload(seq=_DROP), "missing_field"),
        (payload(ts=_DROP), "missing_field"),
        (payload(readings=_DROP), "missing_field"),
        (payload(device_id=7), "bad_type"),
        (payload(device_id="bad id"), "bad_type"),
        (payload(seq="1"), "bad_type"),
        (payload(seq=1.5), "bad_type"),
        (payload(seq=-1), "out_of_range"),
        (payload(seq=2**63), "out_of_range"),  # one past Flink BIGINT
        (payload(seq=2**64), "out_of_range"),
        (payload(seq=-(2**63) - 1), "out_of_range"),
        (b'{"device_id":"dev-1","seq":9223372036854775808,"ts":1767225599000,"readings":{"t":1}}',
         "out_of_range"),
        (payload(seq=10**4000), "out_of_range"),  # just within CPython's 4,300-digit parse limit
        (payload(seq=True), "bad_type"),  # bools are not numbers
        (payload(ts="1767225599000"), "bad_type"),
        (payload(ts=True), "bad_type"),
        (payload(ts=None), "bad_type"),
        (payload(readings=[1.0]), "bad_type"),
        (payload(readings={}), "bad_type"),
        (payload(readings={f"s{i}": 1.0 for i in range(65)}), "bad_type"),
        (payload(readings={"temp_c": "21.5"}), "bad_type"),
        (payload(readings={"temp_c": True}), "bad_type"),
        (payload(readings={"temp_c": False}), "bad_type"),
        (payload(readings={"temp_c": None}), "bad_type"),
        (payload(readings={"temp_c": {"v": 1}}), "bad_type"),
        (payload(readings={"Temp": 1.0}), "bad_type"),
        (payload(readings={"1temp": 1.0}), "bad_type"),
        (payload(drops=[0]), "bad_type"),
        (payload(drops={"buffer": -1}), "out_of_range"),
        (payload(drops={"buffer": 2**63}), "out_of_range"),
        (payload(drops={"buffer": 0, "outbox": 2**64 + 5}), "out_of_range"),
        (payload(drops={"buffer": 1.5}), "bad_type"),
        (payload(drops={"buffer": True}), "bad_type"),
        (payload(drops={"Buffer": 1}), "bad_type"),
        (payload(drops={"\ud800": 1}), "bad_type"),  # a lone surrogate could not be re-encoded
        (payload(drops={f"d{i}": 1 for i in range(65)}), "bad_type"),
        (payload(device_id="dev-2"), "device_mismatch"),
        (payload(ts=TS_FLOOR_MS - 1), "ts_too_old"),
        (payload(ts=1_000), "ts_too_old"),  # 1970 in seconds
        (payload(ts=-5), "ts_too_old"),
        (payload(ts=NOW_MS + 60_001), "ts_in_future"),
]


@pytest.mark.parametrize("raw, reason", _REJECTION_CASES)
def test_rejections(raw, reason):
    assert reason_of(TOPIC, raw) == reason


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_literals_are_non_finite(literal):
    raw = b'{"device_id":"dev-1","seq":1,"ts":1767225599000,"readings":{"temp_c":' + literal + b"}}"
    assert reason_of(TOPIC, raw) == "non_finite"
    raw_ts = b'{"device_id":"dev-1","seq":1,"ts":' + literal + b',"readings":{"temp_c":1}}'
    assert reason_of(TOPIC, raw_ts) == "non_finite"


def test_overflowing_numbers_are_non_finite():
    # 1e400 parses as float('inf') without any literal; a huge int overflows a double
    raw = b'{"device_id":"dev-1","seq":1,"ts":1767225599000,"readings":{"temp_c":1e400}}'
    assert reason_of(TOPIC, raw) == "non_finite"
    raw = b'{"device_id":"dev-1","seq":1,"ts":1767225599000,"readings":{"temp_c":' + b"9" * 400 + b"}}"
    assert reason_of(TOPIC, raw) == "non_finite"
    raw = b'{"device_id":"dev-1","seq":1,"ts":-1e400,"readings":{"temp_c":1}}'
    assert reason_of(TOPIC, raw) == "non_finite"


@pytest.mark.parametrize("topic", ["sensors/dev-1/status", "dev-1/telemetry", "sensors/a b/telemetry", ""])
def test_bad_topic(topic):
    assert reason_of(topic, payload()) == "bad_topic"


# ---------------------------------------------------------------- boundaries
def _padded(size: int) -> bytes:
    base = payload()
    pad = size - len(base) - len(b',"pad":""')
    raw = base[:-1] + b',"pad":"' + b"x" * pad + b'"}'
    assert len(raw) == size
    return raw


def test_64_kib_boundary():
    assert validate(TOPIC, _padded(MAX_PAYLOAD_BYTES), NOW_MS)["seq"] == 1
    assert reason_of(TOPIC, _padded(MAX_PAYLOAD_BYTES + 1)) == "too_large"


def test_too_large_is_checked_before_parsing():
    assert reason_of(TOPIC, b"\xff" * (MAX_PAYLOAD_BYTES + 1)) == "too_large"
    assert reason_of("bad topic", b"{" * (MAX_PAYLOAD_BYTES + 1)) == "too_large"


def test_ts_floor_is_inclusive():
    assert TS_FLOOR_MS == 1_577_836_800_000  # 2020-01-01T00:00:00Z
    assert validate(TOPIC, payload(ts=TS_FLOOR_MS), NOW_MS)["ts"] == TS_FLOOR_MS
    assert validate(TOPIC, payload(ts=TS_FLOOR_MS // 1000), NOW_MS)["ts"] == TS_FLOOR_MS  # same, in s
    assert reason_of(TOPIC, payload(ts=TS_FLOOR_MS - 1)) == "ts_too_old"


def test_future_bound_is_60_s_inclusive():
    assert validate(TOPIC, payload(ts=NOW_MS + 60_000), NOW_MS)["ts"] == NOW_MS + 60_000
    assert reason_of(TOPIC, payload(ts=NOW_MS + 60_001)) == "ts_in_future"
    # unit errors that land far in the future: ms read as s would be year 2286+
    assert reason_of(TOPIC, payload(ts=9_999_999_999)) == "ts_in_future"


def test_stale_ts_is_accepted_with_a_warning(caplog):
    contract._stale_warned.clear()
    old = NOW_MS - 3_600_001
    with caplog.at_level(logging.WARNING, logger="bridge.contract"):
        assert validate(TOPIC, payload(ts=old), NOW_MS)["ts"] == old
        assert validate(TOPIC, payload(ts=old, seq=2), NOW_MS)["seq"] == 2  # rate-limited
    warnings = [r for r in caplog.records if "late data" in r.getMessage()]
    assert len(warnings) == 1 and "dev-1" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bridge.contract"):
        validate(TOPIC, payload(ts=NOW_MS - 3_600_000), NOW_MS)  # exactly 1 h: no warning
    assert not caplog.records


def test_stale_warning_limiter_is_a_bounded_lru(monkeypatch, caplog):
    contract._stale_warned.clear()
    monkeypatch.setattr(contract, "STALE_WARN_MAX_DEVICES", 3)
    old = NOW_MS - 2 * 3_600_000

    def stale(dev: str, seq: int = 1) -> None:
        raw = payload(device_id=dev, seq=seq, ts=old)
        assert validate(f"sensors/{dev}/telemetry", raw, NOW_MS)["device_id"] == dev

    with caplog.at_level(logging.WARNING, logger="bridge.contract"):
        for dev in ("d1", "d2", "d3"):
            stale(dev)
        stale("d1", 2)  # rate-limited, and d1 becomes the most recently seen
        stale("d4")  # evicts d2, the least recently seen
        assert list(contract._stale_warned) == ["d3", "d1", "d4"]
        assert contract._stale_warned["d1"][1] == 1  # one suppressed warning kept
        stale("d2")  # forgotten: warns again, evicts d3
        assert list(contract._stale_warned) == ["d1", "d4", "d2"]
    warned = [r.getMessage().split()[3] for r in caplog.records if "late data" in r.getMessage()]
    assert warned == ["d1", "d2", "d3", "d4", "d2"]


def test_stale_warning_limiter_holds_at_most_10000_devices():
    assert contract.STALE_WARN_MAX_DEVICES == 10_000
    contract._stale_warned.clear()
    logger = logging.getLogger("bridge.contract")
    level = logger.level
    logger.setLevel(logging.ERROR)  # 10,500 first warnings: not the point here
    try:
        for i in range(10_500):
            contract._warn_stale(f"dev-{i}", NOW_MS - 7_200_000, NOW_MS)
    finally:
        logger.setLevel(level)
    assert len(contract._stale_warned) == 10_000
    assert "dev-499" not in contract._stale_warned and "dev-500" in contract._stale_warned
    assert next(reversed(contract._stale_warned)) == "dev-10499"
    contract._stale_warned.clear()


# ---------------------------------------------------------------- dead letters
def test_dead_letter_keeps_utf8_text():
    raw = '{"device_id": "café", broken'.encode()
    dl = dead_letter(TOPIC, raw, "malformed_json", "detail", NOW_MS)
    assert dl == {"reason": "malformed_json", "detail": "detail", "source": "bridge", "mqtt_topic": TOPIC,
                  "raw": '{"device_id": "café", broken', "raw_bytes": len(raw), "received_ms": NOW_MS}
    json.dumps(dl)


def test_dead_letter_base64_for_binary():
    raw = b"\x00\xff\xfe binary \x80"
    dl = dead_letter(TOPIC, raw, "malformed_json", "not UTF-8", NOW_MS)
    assert "raw" not in dl
    assert base64.b64decode(dl["raw_b64"]) == raw
    assert dl["raw_bytes"] == len(raw)


def test_dead_letter_of_oversized_payload_is_truncated():
    raw = ("é" * MAX_PAYLOAD_BYTES).encode()  # 2 bytes per char: the cut splits one
    dl = dead_letter(TOPIC, raw, "too_large", "", NOW_MS)
    assert dl["truncated"] is True and dl["raw_bytes"] == len(raw)
    assert len(dl["raw"].encode()) <= MAX_PAYLOAD_BYTES
    assert raw.startswith(dl["raw"].encode())
    binary = b"\xff" * (MAX_PAYLOAD_BYTES * 2)
    dl = dead_letter(TOPIC, binary, "too_large", "", NOW_MS)
    assert base64.b64decode(dl["raw_b64"]) == binary[:MAX_PAYLOAD_BYTES]


def test_reasons_are_complete_and_in_check_order():
    assert contract.REASONS == (
        "too_large", "bad_topic", "malformed_json", "non_finite", "not_object", "missing_field",
        "bad_type", "out_of_range", "device_mismatch", "ts_too_old", "ts_in_future")


def test_huge_integer_beyond_the_parse_limit_is_malformed_json():
    # CPython refuses to parse integers of more than 4,300 digits (ValueError)
    assert reason_of(TOPIC, payload(seq=_DROP)[:-1] + b', "seq": ' + b"9" * 5000 + b"}") == "malformed_json"


def test_int64_boundaries_are_accepted():
    out = validate(TOPIC, payload(seq=2**63 - 1, drops={"buffer": 2**63 - 1, "outbox": 0}), NOW_MS)
    assert out["seq"] == 2**63 - 1 and out["drops"] == {"buffer": 2**63 - 1, "outbox": 0}
    assert validate(TOPIC, payload(seq=0), NOW_MS)["seq"] == 0


def test_rejection_details_stay_short_for_huge_integers():
    with pytest.raises(ValidationError) as info:
        validate(TOPIC, payload(seq=10**4000), NOW_MS)
    assert len(info.value.detail) < 200


def test_contract_limits_come_from_the_schema():
    from iotflink import schema  # noqa: PLC0415

    assert contract.MAX_PAYLOAD_BYTES is schema.MAX_PAYLOAD_BYTES
    assert contract.TS_FLOOR_MS == schema.TS_FLOOR_MS
    assert contract.MAX_FUTURE_MS == schema.MAX_FUTURE_MS
    assert contract.STALE_AFTER_MS == schema.STALE_AFTER_MS
    assert contract.MAX_READINGS == schema.MAX_READINGS
    assert contract._DEVICE_ID_RE is schema.DEVICE_ID_RE
    assert contract._SENSOR_RE is schema.NAME_RE
    assert contract._REQUIRED == schema.REQUIRED_FIELDS


def test_every_reason_has_a_rejection_case():
    covered = {reason for _raw, reason in _REJECTION_CASES}
    covered |= {"too_large", "bad_topic", "non_finite"}  # tested by their own functions below
    assert covered == set(contract.REASONS)


def test_validation_error_chains_its_cause():
    with pytest.raises(ValidationError) as info:
        validate(TOPIC, b"{oops", NOW_MS)
    assert isinstance(info.value.__cause__, ValueError)


# --------------------------------------------------------------------- encode_reading


@hsettings(max_examples=300, deadline=None)
@given(sts.valid_messages())
def test_encode_reading_is_the_json_of_the_validated_value(message):
    topic, payload = message
    value = contract.validate(topic, payload, sts.NOW_MS)
    encoded = contract.encode_reading(value)
    assert json.loads(encoded) == value
    assert encoded == json.dumps(value, separators=(",", ":")).encode()


# --------------------------------------------------------------------- batches
def _batch(samples, seq=10, dev="dev-a", **extra) -> bytes:
    return json.dumps({"device_id": dev, "seq": seq, "samples": samples, **extra}).encode()


def test_batch_explodes_into_one_reading_per_sample_with_consecutive_seqs():
    now = sts.NOW_MS
    samples = [{"ts": now - 300 + 100 * i, "readings": {"temp_c": 20.0 + i}} for i in range(3)]
    out = contract.validate_message("sensors/dev-a/telemetry", _batch(samples, drops={"outbox": 2}), now)
    assert [v["seq"] for v in out] == [10, 11, 12]
    assert [v["ts"] for v in out] == [now - 300, now - 200, now - 100]
    assert [v["readings"]["temp_c"] for v in out] == [20.0, 21.0, 22.0]
    assert "drops" not in out[0] and out[2]["drops"] == {"outbox": 2}
    assert all(v["device_id"] == "dev-a" and v["ingest_ms"] == now for v in out)


def test_a_bad_sample_is_its_own_error_and_the_good_ones_stay():
    now = sts.NOW_MS
    samples = [{"ts": now, "readings": {"temp_c": 1.0}}, {"ts": now, "readings": {"temp_c": "x"}},
               "not an object", {"readings": {"temp_c": 2.0}}, {"ts": now, "readings": {"temp_c": 3.0}}]
    out = contract.validate_message("sensors/dev-a/telemetry", _batch(samples), now)
    assert [type(v).__name__ for v in out] == ["dict", "ValidationError", "ValidationError", "ValidationError", "dict"]
    assert [out[i].reason for i in (1, 2, 3)] == ["bad_type", "not_object", "missing_field"]
    assert out[1].detail.startswith("samples[1] (seq 11): ")
    assert out[4]["seq"] == 14


@pytest.mark.parametrize("payload, reason", [
    (_batch([]), "bad_type"),
    (_batch([{"ts": 1, "readings": {"a": 1}}] * (contract.MAX_SAMPLES + 1)), "bad_type"),
    (_batch({"ts": 1}), "bad_type"),
    (_batch([{"ts": sts.NOW_MS, "readings": {"a": 1}}], ts=sts.NOW_MS), "bad_type"),
    (_batch([{"ts": sts.NOW_MS, "readings": {"a": 1}}] * 2, seq=2**63 - 1), "out_of_range"),
    (_batch([{"ts": sts.NOW_MS, "readings": {"a": 1}}], dev="dev-b"), "device_mismatch"),
    (json.dumps({"seq": 1, "samples": []}).encode(), "missing_field"),
])
def test_a_bad_batch_envelope_rejects_the_whole_message(payload, reason):
    with pytest.raises(ValidationError) as info:
        contract.validate_message("sensors/dev-a/telemetry", payload, sts.NOW_MS)
    assert info.value.reason == reason


def test_a_message_without_samples_is_one_reading():
    raw = json.dumps({"device_id": "dev-a", "seq": 1, "ts": sts.NOW_MS, "readings": {"a": 1.5}}).encode()
    assert contract.validate_message("sensors/dev-a/telemetry", raw, sts.NOW_MS) == [
        contract.validate("sensors/dev-a/telemetry", raw, sts.NOW_MS)]
