"""Property tests: whatever a device sends, the bridge either dead-letters it with a known
reason or forwards a value that the Flink JSON format reads into the columns of
iotflink.schema.flink_columns_sql (integers within BIGINT, finite doubles).

Deterministic: the hypothesis profile in tests/conftest.py derandomizes every test.
"""

from __future__ import annotations

import json
import math
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import contract
from bridge.service import _encode_json
from iotflink import schema
from iotflink.errors import ValidationError
from tests.strategies import NOW_MS, hostile_messages, kafka_values, valid_messages, valid_payload_docs

_SLOW = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.large_base_example])


class _IntToken(int):
    """An integer read from a JSON integer token (no fraction, no exponent)."""


class _FloatToken(float):
    """A number read from a JSON token with a fraction or an exponent."""


def _reject_constant(name: str):
    raise AssertionError(f"JSON literal {name} is not valid JSON (RFC 8259) and Flink cannot read it")


def _columns(columns_sql: str) -> dict[str, str]:
    out = {}
    for line in columns_sql.split(",\n"):
        name, typ = line.strip().split(" ", 1)
        out[name] = typ
    return out


_MAP_RE = re.compile(r"MAP<STRING, (\w+)>")


def _fits(value, flink_type: str, where: str) -> None:
    if value is None:
        return  # every column is nullable
    if flink_type == "STRING":
        assert type(value) is str, where
    elif flink_type == "BIGINT":
        assert type(value) is _IntToken, f"{where}: {value!r} is not a JSON integer"
        assert schema.INT64_MIN <= value <= schema.INT64_MAX, f"{where}: {value} does not fit BIGINT"
    elif flink_type == "DOUBLE":
        assert type(value) in (_IntToken, _FloatToken), f"{where}: {value!r} is not a number"
        assert math.isfinite(float(value)), f"{where}: {value!r} is not a finite double"
    else:
        m = _MAP_RE.fullmatch(flink_type)
        assert m, f"no check for Flink type {flink_type}"
        assert type(value) is dict, where
        for k, v in value.items():
            _fits(v, m.group(1), f"{where}.{k}")


def assert_flink_readable(body: bytes) -> dict:
    """Parse ``body`` as the Flink JSON format reads a ``sensor-readings`` value into the
    columns of :func:`schema.flink_columns_sql` and assert every column's value fits its type.
    Returns the parsed document."""
    doc = json.loads(body, parse_int=_IntToken, parse_float=_FloatToken, parse_constant=_reject_constant)
    assert type(doc) is dict
    for name, flink_type in _columns(schema.flink_columns_sql()).items():
        _fits(doc.get(name), flink_type, name)
    return doc


def _check_accepted(value: dict) -> None:
    schema.check_kafka_value(value)
    json.dumps(value, allow_nan=False)
    doc = assert_flink_readable(_encode_json(value).encode())
    assert doc == value  # the JSON round trip keeps every value exactly


# ---------------------------------------------------------------- (a) validate's outcomes
@_SLOW
@given(hostile_messages())
def test_validate_rejects_with_a_known_reason_or_returns_a_schema_value(message):
    topic, payload = message
    try:
        value = contract.validate(topic, payload, NOW_MS)
    except ValidationError as exc:
        assert exc.reason in contract.REASONS
        return
    _check_accepted(value)


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_rejected_or_valid(payload):
    try:
        value = contract.validate("sensors/dev-1/telemetry", payload, NOW_MS)
    except ValidationError as exc:
        assert exc.reason in contract.REASONS
        return
    _check_accepted(value)


@given(valid_payload_docs())
def test_every_valid_payload_is_forwarded_unchanged_but_for_ts_and_types(doc):
    topic = f"sensors/{doc['device_id']}/telemetry"
    value = contract.validate(topic, json.dumps(doc).encode(), NOW_MS)
    _check_accepted(value)
    assert value["device_id"] == doc["device_id"] and value["seq"] == doc["seq"]
    assert value["ts"] == contract.normalise_ts(doc["ts"]) and value["ingest_ms"] == NOW_MS
    assert value["readings"] == {k: float(v) for k, v in doc["readings"].items()}
    assert value.get("drops") == doc.get("drops")


# ---------------------------------------------------------------- (b) what the jobs read
@_SLOW
@given(st.one_of(valid_messages(), hostile_messages()))
def test_forwarded_values_fit_the_flink_columns(message):
    topic, payload = message
    try:
        value = contract.validate(topic, payload, NOW_MS)
    except ValidationError:
        return
    doc = assert_flink_readable(_encode_json(value).encode())
    for name in ("seq", "ts", "ingest_ms"):
        assert schema.INT64_MIN <= doc[name] <= schema.INT64_MAX
    for v in doc.get("drops", {}).values():
        assert 0 <= v <= schema.INT64_MAX
    assert all(math.isfinite(v) for v in doc["readings"].values())


@given(kafka_values())
def test_kafka_values_strategy_yields_schema_values(value):
    _check_accepted(value)


def test_flink_check_catches_the_reported_record():
    body = b'{"device_id":"p-1","seq":9223372036854775808,"ts":1767225599000,"readings":{"t":1.0},"ingest_ms":1}'
    try:
        assert_flink_readable(body)
    except AssertionError as exc:
        assert "BIGINT" in str(exc)
    else:
        raise AssertionError("seq 2^63 passed the BIGINT check")
