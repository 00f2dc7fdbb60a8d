"""The payload contract of docs/CONTRACT.md as pure functions: validation, timestamp units, DLQ.

This module is the hot path of the bridge: one :func:`validate` call per MQTT message. It has
no I/O except a rate-limited warning for stale timestamps (see :func:`validate`).

Thresholds (all from /work/shared/DOMAIN.md "Timestamps" and docs/CONTRACT.md):

* unit by magnitude of ``ts``: below 1e10 seconds, below 1e13 milliseconds, below 1e16
  microseconds, otherwise nanoseconds; normalised to integer epoch milliseconds;
* ``ts`` before 2020-01-01T00:00:00Z (:data:`TS_FLOOR_MS`) is rejected (most likely a unit
  error); more than 60 s (:data:`MAX_FUTURE_MS`) ahead of the bridge's clock is rejected
  (clock skew); more than 1 h (:data:`STALE_AFTER_MS`) old is accepted with a warning;
* payloads over 64 KiB (:data:`MAX_PAYLOAD_BYTES`) are rejected before parsing.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import time
from typing import Any

from iotflink.errors import ValidationError

log = logging.getLogger(__name__)

#: Largest accepted MQTT payload, bytes (64 KiB). Checked before parsing.
MAX_PAYLOAD_BYTES = 64 * 1024
#: 2020-01-01T00:00:00Z in epoch ms: earlier timestamps are rejected (``ts_too_old``).
TS_FLOOR_MS = 1_577_836_800_000
#: A ``ts`` more than this ahead of the bridge's clock is rejected (``ts_in_future``), ms.
MAX_FUTURE_MS = 60_000
#: A ``ts`` more than this behind the bridge's clock is accepted with a warning, ms.
STALE_AFTER_MS = 3_600_000
#: Most entries in ``readings``.
MAX_READINGS = 64
#: Seconds between two stale-timestamp warnings for the same device.
STALE_WARN_INTERVAL_S = 60.0

#: Every reason code :func:`validate` can raise, in the order the checks run.
REASONS = (
    "too_large",
    "bad_topic",
    "malformed_json",
    "non_finite",
    "not_object",
    "missing_field",
    "bad_type",
    "device_mismatch",
    "ts_too_old",
    "ts_in_future",
)

TOPIC_PREFIX = "sensors/"
TOPIC_SUFFIX = "/telemetry"
_DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SENSOR_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_REQUIRED = ("device_id", "seq", "ts", "readings")

# stale-ts warning rate limiter: device_id -> [last warning monotonic s, suppressed count]
_stale_warned: dict[str, list[float]] = {}


def _reject_constant(name: str) -> Any:
    # json.loads calls this for the non-standard literals NaN, Infinity and -Infinity.
    raise ValidationError("non_finite", f"JSON literal {name} is not a finite number")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def normalise_ts(ts: int | float) -> int:
    """Return ``ts`` as integer epoch milliseconds, telling its unit by magnitude.

    Rule (DOMAIN.md "Timestamps"), on ``abs(ts)``: ``< 1e10`` seconds, ``< 1e13``
    milliseconds, ``< 1e16`` microseconds, otherwise nanoseconds. Integers are converted
    with exact integer arithmetic (floor), floats are rounded to the nearest millisecond.

    Args:
        ts: an int or float (not bool), assumed finite.
    Returns:
        epoch milliseconds (int).
    """
    mag = -ts if ts < 0 else ts
    if type(ts) is int:
        if mag < 10_000_000_000:
            return ts * 1000
        if mag < 10_000_000_000_000:
            return ts
        if mag < 10_000_000_000_000_000:
            return ts // 1000
        return ts // 1_000_000
    if mag < 1e10:
        return int(round(ts * 1000.0))
    if mag < 1e13:
        return int(round(ts))
    if mag < 1e16:
        return int(round(ts / 1000.0))
    return int(round(ts / 1_000_000.0))


def topic_device_id(mqtt_topic: str) -> str | None:
    """Return the device id of a ``sensors/{device_id}/telemetry`` topic, else None."""
    if not (mqtt_topic.startswith(TOPIC_PREFIX) and mqtt_topic.endswith(TOPIC_SUFFIX)):
        return None
    dev = mqtt_topic[len(TOPIC_PREFIX) : -len(TOPIC_SUFFIX)]
    return dev if _DEVICE_ID_RE.fullmatch(dev) else None


def _is_number(v: Any) -> bool:
    t = type(v)
    return t is float or t is int  # bool is a subclass of int: excluded on purpose


def _finite_float(v: Any, what: str) -> float:
    try:
        f = float(v)
    except OverflowError as exc:  # an int beyond the double range
        raise ValidationError("non_finite", f"{what} overflows a double") from exc
    if not math.isfinite(f):  # e.g. 1e400 parses as inf without a literal
        raise ValidationError("non_finite", f"{what} is not finite")
    return f


def validate(mqtt_topic: str, payload: bytes, now_ms: int) -> dict:
    """Validate one MQTT message against docs/CONTRACT.md and build its Kafka value.

    Checks run in the order of :data:`REASONS`; the first failure is raised.

    Args:
        mqtt_topic: the MQTT topic, ``sensors/{device_id}/telemetry``.
        payload: the raw MQTT payload (UTF-8 JSON object, at most 64 KiB).
        now_ms: the bridge's clock, epoch ms (``ingest_ms`` of the result).
    Returns:
        the ``sensor-readings`` value: ``{"device_id": str, "seq": int, "ts": int (epoch ms),
        "readings": {name: float}, "ingest_ms": int, "drops": {name: int}}`` (``drops``
        only when the payload has it). Unknown payload fields are not passed on.
    Raises:
        ValidationError: with ``reason`` one of :data:`REASONS` and a human ``detail``.

    A ``ts`` more than 1 h old is accepted but logged as a warning, at most once per device
    every :data:`STALE_WARN_INTERVAL_S` (with the count of suppressed warnings).
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValidationError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    topic_dev = topic_device_id(mqtt_topic)
    if topic_dev is None:
        raise ValidationError("bad_topic", f"topic {mqtt_topic!r} is not sensors/{{device_id}}/telemetry")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError("malformed_json", f"payload is not UTF-8: {exc}") from exc
    try:
        doc = _decoder.decode(text)
    except ValueError as exc:  # JSONDecodeError, and int digit limits
        raise ValidationError("malformed_json", str(exc)) from exc
    except RecursionError as exc:
        raise ValidationError("malformed_json", "nesting too deep") from exc
    if type(doc) is not dict:
        raise ValidationError("not_object", f"top-level JSON is {type(doc).__name__}, not an object")
    for name in _REQUIRED:
        if name not in doc:
            raise ValidationError("missing_field", f"field {name!r} is missing")

    device_id = doc["device_id"]
    if type(device_id) is not str or not _DEVICE_ID_RE.fullmatch(device_id):
        raise ValidationError("bad_type", "device_id must be a string matching [A-Za-z0-9_.-]{1,64}")
    seq = doc["seq"]
    if type(seq) is not int or seq < 0:
        raise ValidationError("bad_type", "seq must be an integer >= 0")
    ts = doc["ts"]
    if not _is_number(ts):
        raise ValidationError("bad_type", "ts must be a number")
    if type(ts) is float:
        _finite_float(ts, "ts")
    readings = doc["readings"]
    if type(readings) is not dict:
        raise ValidationError("bad_type", "readings must be an object")
    if not 1 <= len(readings) <= MAX_READINGS:
        raise ValidationError("bad_type", f"readings must have 1..{MAX_READINGS} entries, has {len(readings)}")
    out_readings: dict[str, float] = {}
    for name, value in readings.items():
        if not _SENSOR_RE.fullmatch(name):
            raise ValidationError("bad_type", f"sensor name {name!r} does not match [a-z][a-z0-9_]{{0,63}}")
        if not _is_number(value):
            raise ValidationError("bad_type", f"readings.{name} must be a number, got {type(value).__name__}")
        out_readings[name] = _finite_float(value, f"readings.{name}")
    drops = doc.get("drops")
    if drops is not None:
        if type(drops) is not dict or len(drops) > MAX_READINGS:
            raise ValidationError("bad_type", f"drops must be an object of at most {MAX_READINGS} entries")
        for name, value in drops.items():
            if not _SENSOR_RE.fullmatch(name):
                raise ValidationError("bad_type", f"drops name {name!r} does not match [a-z][a-z0-9_]{{0,63}}")
            if type(value) is not int or value < 0:
                raise ValidationError("bad_type", f"drops.{name} must be an integer >= 0")

    if device_id != topic_dev:
        raise ValidationError("device_mismatch", f"payload device_id {device_id!r} != topic device {topic_dev!r}")

    ts_ms = normalise_ts(ts)
    if ts_ms < TS_FLOOR_MS:
        raise ValidationError("ts_too_old", f"ts {ts!r} -> {ts_ms} ms is before 2020-01-01T00:00:00Z")
    if ts_ms > now_ms + MAX_FUTURE_MS:
        raise ValidationError("ts_in_future", f"ts {ts!r} -> {ts_ms} ms is {ts_ms - now_ms} ms ahead of the bridge clock")
    if now_ms - ts_ms > STALE_AFTER_MS:
        _warn_stale(device_id, ts_ms, now_ms)

    value = {"device_id": device_id, "seq": seq, "ts": ts_ms, "readings": out_readings, "ingest_ms": now_ms}
    if drops is not None:
        value["drops"] = drops
    return value


def _warn_stale(device_id: str, ts_ms: int, now_ms: int) -> None:
    now = time.monotonic()
    state = _stale_warned.get(device_id)
    if state is not None and now - state[0] < STALE_WARN_INTERVAL_S:
        state[1] += 1
        return
    suppressed = int(state[1]) if state is not None else 0
    _stale_warned[device_id] = [now, 0]
    log.warning(
        "late data: device %s ts %d is %.1f h old (accepted; %d more such warnings suppressed)",
        device_id, ts_ms, (now_ms - ts_ms) / 3_600_000, suppressed,
    )


def _raw_field(payload: bytes) -> tuple[str, str]:
    try:
        return "raw", payload.decode("utf-8")
    except UnicodeDecodeError:
        return "raw_b64", base64.b64encode(payload).decode("ascii")


def dead_letter(mqtt_topic: str, payload: bytes, reason: str, detail: str, now_ms: int) -> dict:
    """Build the ``sensor-dlq`` value for a rejected MQTT message.

    Args:
        mqtt_topic: the MQTT topic the message came on.
        payload: the raw MQTT payload.
        reason / detail: from the :class:`ValidationError`.
        now_ms: the bridge's clock, epoch ms.
    Returns:
        ``{"reason", "detail", "source": "bridge", "mqtt_topic", "raw" | "raw_b64",
        "raw_bytes", "received_ms"}``: ``raw`` is the payload as text when it is valid UTF-8,
        otherwise ``raw_b64`` holds it base64-encoded. ``raw_bytes`` is the payload's size.
        A payload over 64 KiB is cut to its first 64 KiB (``"truncated": true``) so the
        dead letter always fits in a Kafka record.
    """
    truncated = len(payload) > MAX_PAYLOAD_BYTES
    kept = payload[:MAX_PAYLOAD_BYTES] if truncated else payload
    field, raw = _raw_field(kept)
    if truncated and field == "raw_b64":
        # the cut may split a multi-byte UTF-8 character: drop up to 3 trailing bytes
        for cut in (1, 2, 3):
            try:
                field, raw = "raw", kept[:-cut].decode("utf-8")
                break
            except UnicodeDecodeError:
                continue
    value = {
        "reason": reason,
        "detail": detail,
        "source": "bridge",
        "mqtt_topic": mqtt_topic,
        field: raw,
        "raw_bytes": len(payload),
        "received_ms": now_ms,
    }
    if truncated:
        value["truncated"] = True
    return value
