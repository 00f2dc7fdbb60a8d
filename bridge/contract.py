"""The payload contract of docs/CONTRACT.md as pure functions: validation, timestamp units, DLQ.

This module is the hot path of the bridge: one :func:`validate` call per MQTT message. It has
no I/O except a rate-limited warning for stale timestamps (see :func:`validate`).

Every limit comes from :mod:`iotflink.schema`, the one definition of a reading that the Flink
jobs' source columns are generated from too (:func:`iotflink.schema.flink_columns_sql`), so
whatever :func:`validate` returns deserialises in every job:

* unit by magnitude of ``ts``: below 1e10 seconds, below 1e13 milliseconds, below 1e16
  microseconds, otherwise nanoseconds; normalised to integer epoch milliseconds;
* ``ts`` before 2020-01-01T00:00:00Z (:data:`TS_FLOOR_MS`) is rejected (most likely a unit
  error); more than 60 s (:data:`MAX_FUTURE_MS`) ahead of the bridge's clock is rejected
  (clock skew); more than 1 h (:data:`STALE_AFTER_MS`) old is accepted with a warning;
* ``seq`` and every ``drops`` counter must fit 0..2^63-1 (a Flink ``BIGINT``, signed 64-bit),
  reading values must be finite IEEE 754 doubles (Flink ``DOUBLE``);
* payloads over 64 KiB (:data:`MAX_PAYLOAD_BYTES`) are rejected before parsing.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import math
import time
from typing import Any

from iotflink import schema
from iotflink.errors import ValidationError
from iotflink.schema import (
    MAX_FUTURE_MS,
    MAX_PAYLOAD_BYTES,
    MAX_READINGS,
    STALE_AFTER_MS,
    TS_FLOOR_MS,
)

log = logging.getLogger(__name__)

__all__ = [
    "MAX_PAYLOAD_BYTES", "TS_FLOOR_MS", "MAX_FUTURE_MS", "STALE_AFTER_MS", "MAX_READINGS",
    "STALE_WARN_INTERVAL_S", "STALE_WARN_MAX_DEVICES", "REASONS", "TOPIC_PREFIX", "TOPIC_SUFFIX",
    "normalise_ts", "topic_device_id", "validate", "dead_letter", "encode_reading",
    "MAX_SAMPLES", "validate_message",
]

#: Most samples in one batch message (``samples`` list); 100 samples of 2 readings are about
#: 6 KB, far below :data:`MAX_PAYLOAD_BYTES`.
MAX_SAMPLES = 100

#: Seconds between two stale-timestamp warnings for the same device.
STALE_WARN_INTERVAL_S = 60.0
#: Most devices the stale-timestamp warning limiter remembers; beyond it the device warned
#: least recently is forgotten (it may then warn again before its interval is over, and its
#: count of suppressed warnings is lost). Bounds the limiter at about 3 MB.
STALE_WARN_MAX_DEVICES = 10_000

#: Every reason code :func:`validate` can raise, in the order the checks run. The field
#: checks run field by field (device_id, seq, ts, readings, drops), each type before range,
#: so ``bad_type``, ``out_of_range`` and a reading's ``non_finite`` interleave there.
REASONS = (
    "too_large",
    "bad_topic",
    "malformed_json",
    "non_finite",
    "not_object",
    "missing_field",
    "bad_type",
    "out_of_range",
    "device_mismatch",
    "ts_too_old",
    "ts_in_future",
)

TOPIC_PREFIX = "sensors/"
TOPIC_SUFFIX = "/telemetry"
_DEVICE_ID_RE = schema.DEVICE_ID_RE
_SENSOR_RE = schema.NAME_RE
_REQUIRED = schema.REQUIRED_FIELDS
_SEQ_MAX = schema.SEQ_MAX
_DROPS_MAX = schema.DROPS_MAX
_MAX_DROPS = schema.MAX_DROPS
_S_BELOW, _MS_BELOW, _US_BELOW = schema.TS_SECONDS_BELOW, schema.TS_MILLIS_BELOW, schema.TS_MICROS_BELOW

# stale-ts warning rate limiter, an LRU of at most STALE_WARN_MAX_DEVICES entries:
# device_id -> [last warning monotonic s, suppressed count]; least recently warned first.
_stale_warned: collections.OrderedDict[str, list[float]] = collections.OrderedDict()


def _reject_constant(name: str) -> Any:
    # json.loads calls this for the non-standard literals NaN, Infinity and -Infinity.
    raise ValidationError("non_finite", f"JSON literal {name} is not a finite number")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def normalise_ts(ts: int | float) -> int:
    """Return ``ts`` as integer epoch milliseconds, telling its unit by magnitude.

    Rule (:data:`iotflink.schema.TS_SECONDS_BELOW` and the two after it), on ``abs(ts)``:
    ``< 1e10`` seconds, ``< 1e13`` milliseconds, ``< 1e16`` microseconds, otherwise
    nanoseconds. Integers are converted with exact integer arithmetic (floor), floats are
    rounded to the nearest millisecond.

    Args:
        ts: an int or float (not bool), assumed finite.
    Returns:
        epoch milliseconds (int).
    """
    mag = -ts if ts < 0 else ts
    if type(ts) is int:
        if mag < _S_BELOW:
            return ts * 1000
        if mag < _MS_BELOW:
            return ts
        if mag < _US_BELOW:
            return ts // 1000
        return ts // 1_000_000
    if mag < _S_BELOW:
        return int(round(ts * 1000.0))
    if mag < _MS_BELOW:
        return int(round(ts))
    if mag < _US_BELOW:
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


def _brief(v: Any, limit: int = 40) -> str:
    # a detail quotes at most the head of an input value (a JSON integer may have 4,300 digits)
    if type(v) is int and v.bit_length() > 128:
        return f"<{v.bit_length()}-bit integer>"
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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

    Checks run in the order of :data:`REASONS`; the first failure is raised. The result
    passes :func:`iotflink.schema.check_kafka_value` (a property the tests and
    ``bench/fuzz_contract.py`` check on hostile input), so it fits the Flink columns of
    :func:`iotflink.schema.flink_columns_sql`.

    Args:
        mqtt_topic: the MQTT topic, ``sensors/{device_id}/telemetry``.
        payload: the raw MQTT payload (UTF-8 JSON object, at most 64 KiB).
        now_ms: the bridge's clock, epoch ms (``ingest_ms`` of the result).
    Returns:
        the ``sensor-readings`` value: ``{"device_id": str, "seq": int, "ts": int (epoch ms),
        "readings": {name: float}, "ingest_ms": int, "drops": {name: int}}`` (``drops``
        only when the payload has it). Unknown payload fields are not passed on.
    Raises:
        ValidationError: with ``reason`` one of :data:`REASONS` and a human ``detail``
            (``out_of_range``: ``seq`` or a ``drops`` counter outside 0..2^63-1).

    A ``ts`` more than 1 h old is accepted but logged as a warning, at most once per device
    every :data:`STALE_WARN_INTERVAL_S` (with the count of suppressed warnings; the limiter
    remembers at most :data:`STALE_WARN_MAX_DEVICES` devices).
    """
    topic_dev, doc = _parse(mqtt_topic, payload)
    return _reading(doc, topic_dev, now_ms)


def _parse(mqtt_topic: str, payload: bytes) -> tuple[str, dict]:
    # The checks every message passes first: size, topic, UTF-8 JSON object.
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
    return topic_dev, doc


def _reading(doc: dict, topic_dev: str, now_ms: int) -> dict:
    # The field checks of one reading (validate's, from missing_field on).
    for name in _REQUIRED:
        if name not in doc:
            raise ValidationError("missing_field", f"field {name!r} is missing")

    device_id = doc["device_id"]
    if type(device_id) is not str or not _DEVICE_ID_RE.fullmatch(device_id):
        raise ValidationError("bad_type", f"device_id must be a string matching {schema.DEVICE_ID_PATTERN}")
    seq = doc["seq"]
    if type(seq) is not int:
        raise ValidationError("bad_type", f"seq must be an integer, got {type(seq).__name__}")
    if not 0 <= seq <= _SEQ_MAX:
        raise ValidationError("out_of_range", f"seq {_brief(seq)} is outside 0..2^63-1 (Flink BIGINT)")
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
            raise ValidationError("bad_type", f"sensor name {_brief(name)} does not match {schema.NAME_PATTERN}")
        if not _is_number(value):
            raise ValidationError("bad_type", f"readings.{name} must be a number, got {type(value).__name__}")
        out_readings[name] = _finite_float(value, f"readings.{name}")
    drops = doc.get("drops")
    if drops is not None:
        if type(drops) is not dict or len(drops) > _MAX_DROPS:
            raise ValidationError("bad_type", f"drops must be an object of at most {_MAX_DROPS} entries")
        for name, value in drops.items():
            if not _SENSOR_RE.fullmatch(name):
                raise ValidationError("bad_type", f"drops name {_brief(name)} does not match {schema.NAME_PATTERN}")
            if type(value) is not int:
                raise ValidationError("bad_type", f"drops.{name} must be an integer, got {type(value).__name__}")
            if not 0 <= value <= _DROPS_MAX:
                raise ValidationError("out_of_range", f"drops.{name} {_brief(value)} is outside 0..2^63-1 (Flink BIGINT)")

    if device_id != topic_dev:
        raise ValidationError("device_mismatch", f"payload device_id {device_id!r} != topic device {topic_dev!r}")

    ts_ms = normalise_ts(ts)
    if ts_ms < TS_FLOOR_MS:
        raise ValidationError("ts_too_old", f"ts {_brief(ts)} -> {_brief(ts_ms)} ms is before 2020-01-01T00:00:00Z")
    if ts_ms > now_ms + MAX_FUTURE_MS:
        raise ValidationError("ts_in_future", f"ts {_brief(ts)} -> {_brief(ts_ms)} ms is more than "
                                              f"{MAX_FUTURE_MS} ms ahead of the bridge clock")
    if now_ms - ts_ms > STALE_AFTER_MS:
        _warn_stale(device_id, ts_ms, now_ms)

    value = {"device_id": device_id, "seq": seq, "ts": ts_ms, "readings": out_readings, "ingest_ms": now_ms}
    if drops is not None:
        value["drops"] = drops
    return value


def validate_message(mqtt_topic: str, payload: bytes, now_ms: int) -> list[dict | ValidationError]:
    """Validate one MQTT message that carries one reading or a batch of samples.

    A message without a ``samples`` member is one reading: the result is ``[validate(...)]``.
    A batch (docs/CONTRACT.md, "Batches") is ``{"device_id", "seq", "samples": [{"ts",
    "readings"}, ...], "drops"?}``: sample ``i`` becomes the reading ``{"device_id", "seq":
    seq + i, "ts", "readings"}`` (``drops``, cumulative counters, goes with the last sample
    only), checked exactly as a single reading. The envelope's faults (size, topic, JSON,
    ``device_id``, ``seq``, ``samples`` not a list of 1..:data:`MAX_SAMPLES` objects, a
    ``ts`` or ``readings`` beside ``samples``, ``seq + len(samples) - 1`` beyond 2^63-1) are
    raised for the whole message; a faulty sample is returned as its own
    :class:`ValidationError` in its place (detail ``samples[i] (seq n): ...``), so the good
    samples of a message are kept.

    Args:
        mqtt_topic / payload / now_ms: as for :func:`validate`.
    Returns:
        one item per sample (one for a single reading): the ``sensor-readings`` value, or the
        sample's ValidationError.
    Raises:
        ValidationError: a fault of the message as a whole (reason one of :data:`REASONS`).
    """
    topic_dev, doc = _parse(mqtt_topic, payload)
    samples = doc.get("samples")
    if samples is None:
        return [_reading(doc, topic_dev, now_ms)]
    for name in ("device_id", "seq"):
        if name not in doc:
            raise ValidationError("missing_field", f"field {name!r} is missing")
    device_id, seq = doc["device_id"], doc["seq"]
    if type(device_id) is not str or not _DEVICE_ID_RE.fullmatch(device_id):
        raise ValidationError("bad_type", f"device_id must be a string matching {schema.DEVICE_ID_PATTERN}")
    if type(seq) is not int:
        raise ValidationError("bad_type", f"seq must be an integer, got {type(seq).__name__}")
    if type(samples) is not list or not 1 <= len(samples) <= MAX_SAMPLES:
        raise ValidationError("bad_type", f"samples must be a list of 1..{MAX_SAMPLES} objects")
    if not 0 <= seq <= _SEQ_MAX - len(samples) + 1:
        raise ValidationError("out_of_range", f"seq {_brief(seq)} + {len(samples)} samples is outside "
                                              "0..2^63-1 (Flink BIGINT)")
    if "ts" in doc or "readings" in doc:
        raise ValidationError("bad_type", "a batch carries ts and readings per sample, not beside samples")
    if device_id != topic_dev:
        raise ValidationError("device_mismatch", f"payload device_id {device_id!r} != topic device {topic_dev!r}")
    drops = doc.get("drops")
    last = len(samples) - 1
    out: list[dict | ValidationError] = []
    for i, sample in enumerate(samples):
        try:
            if type(sample) is not dict:
                raise ValidationError("not_object", f"sample is {type(sample).__name__}, not an object")
            one = {"device_id": device_id, "seq": seq + i}
            if "ts" in sample:
                one["ts"] = sample["ts"]
            if "readings" in sample:
                one["readings"] = sample["readings"]
            if i == last and drops is not None:
                one["drops"] = drops
            out.append(_reading(one, topic_dev, now_ms))
        except ValidationError as exc:
            out.append(ValidationError(exc.reason, f"samples[{i}] (seq {seq + i}): {exc.detail}"))
    return out


def encode_reading(value: dict) -> bytes:
    """The compact JSON (UTF-8) of a :func:`validate` result, built directly as text.

    Equal, as JSON, to ``json.dumps(value, separators=(",", ":"))`` (a property test checks
    it), and about three times faster: :func:`validate` guarantees that ``device_id`` and
    every sensor and ``drops`` name match :data:`iotflink.schema.DEVICE_ID_PATTERN` /
    :data:`iotflink.schema.NAME_PATTERN` (no character needs escaping), that every reading is
    a finite float (``repr`` is JSON's number form, as :mod:`json` writes it) and that
    ``seq``, ``ts``, ``ingest_ms`` and the drops counters are ints.

    Args:
        value: a :func:`validate` result (one reading).
    Returns:
        the Kafka record value, bytes.
    """
    readings = ",".join([f'"{name}":{x!r}' for name, x in value["readings"].items()])
    text = (f'{{"device_id":"{value["device_id"]}","seq":{value["seq"]},"ts":{value["ts"]},'
            f'"readings":{{{readings}}},"ingest_ms":{value["ingest_ms"]}')
    drops = value.get("drops")
    if drops is not None:
        text += ',"drops":{' + ",".join([f'"{name}":{n}' for name, n in drops.items()]) + "}"
    return (text + "}").encode()


def _warn_stale(device_id: str, ts_ms: int, now_ms: int) -> None:
    # Called from the bridge's one paho thread only. LRU: a device moves to the end on every
    # stale reading; the front (least recently seen) is dropped past STALE_WARN_MAX_DEVICES.
    now = time.monotonic()
    state = _stale_warned.get(device_id)
    if state is not None:
        _stale_warned.move_to_end(device_id)
        if now - state[0] < STALE_WARN_INTERVAL_S:
            state[1] += 1
            return
        suppressed = int(state[1])
        state[0], state[1] = now, 0
    else:
        suppressed = 0
        _stale_warned[device_id] = [now, 0]
        while len(_stale_warned) > STALE_WARN_MAX_DEVICES:
            _stale_warned.popitem(last=False)
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
