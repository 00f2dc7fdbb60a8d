"""The schema of a sensor reading, defined once: every field's type, range, unit and meaning.

A reading travels as an MQTT payload from a device to the bridge, and as the JSON value of a
``sensor-readings`` Kafka record from the bridge to the Flink jobs. Both ends are derived
from this module:

* the bridge (:mod:`bridge.contract`) validates MQTT payloads with the limits and patterns
  below and builds the Kafka value;
* every Flink job that reads ``sensor-readings`` declares its source columns with
  :func:`flink_columns_sql`, so a value the bridge forwards always deserialises with the
  Flink JSON format;
* :func:`check_kafka_value` states, executable, what the bridge may forward (property tests
  and ``bench/fuzz_contract.py`` hold :func:`bridge.contract.validate` to it).

Why the ranges are what they are:

* Flink SQL ``BIGINT`` is a signed 64-bit integer, -2^63..2^63-1, and ``DOUBLE`` an IEEE 754
  binary64 (Flink documentation, "Data Types"). The Flink JSON format fails on a number that
  does not fit its column: an integer beyond 2^63-1 in a ``BIGINT`` column fails the
  deserialiser. The jobs read with ``json-dlq`` (jvm/), which turns such a record into a
  dead letter instead of failing the job; the schema makes sure the bridge never forwards one.
* JSON numbers are unbounded text (RFC 8259, section 6: "This specification allows
  implementations to set limits on the range and precision of numbers accepted"; ``NaN`` and
  ``Infinity`` are not JSON). The schema sets the limits: integers 0..2^63-1, doubles finite
  (IEEE 754 binary64, magnitude at most 1.7976931348623157e308).

The Kafka value (JSON object, one per reading; :data:`FIELDS`)::

    {"device_id": str, "seq": int, "ts": int (epoch ms), "readings": {name: float},
     "ingest_ms": int (epoch ms), "drops": {name: int}  (only when the device sent it)}

This module is pure: constants and functions, no I/O.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

from iotflink.errors import ValidationError

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- numeric ranges
#: Largest value of a Flink ``BIGINT`` (Java ``long``): 2^63-1.
INT64_MAX = 2**63 - 1
#: Smallest value of a Flink ``BIGINT``: -2^63.
INT64_MIN = -(2**63)
#: Largest finite IEEE 754 binary64 magnitude (Flink ``DOUBLE``).
DOUBLE_MAX = 1.7976931348623157e308

#: ``seq`` range, inclusive: 0..2^63-1 (a ``BIGINT`` that is never negative).
SEQ_MIN, SEQ_MAX = 0, INT64_MAX
#: Range of each ``drops`` counter, inclusive: 0..2^63-1.
DROPS_MIN, DROPS_MAX = 0, INT64_MAX
#: ``ingest_ms`` range, inclusive, epoch ms (the bridge's clock; any non-negative ``BIGINT``).
INGEST_MS_MIN, INGEST_MS_MAX = 0, INT64_MAX

# ---------------------------------------------------------------- payload
#: Largest accepted MQTT payload, bytes (64 KiB). The bridge checks it before parsing.
MAX_PAYLOAD_BYTES = 64 * 1024

# ---------------------------------------------------------------- timestamps
#: 2020-01-01T00:00:00Z in epoch ms: an earlier ``ts`` is rejected (``ts_too_old``).
TS_FLOOR_MS = 1_577_836_800_000
#: A ``ts`` more than this ahead of the bridge's clock is rejected (``ts_in_future``), ms.
MAX_FUTURE_MS = 60_000
#: A ``ts`` more than this behind the bridge's clock is accepted with a warning, ms (1 h).
STALE_AFTER_MS = 3_600_000
#: Unit of a payload ``ts`` by magnitude, on ``abs(ts)``: below this, seconds ...
TS_SECONDS_BELOW = 10**10
#: ... below this, milliseconds ...
TS_MILLIS_BELOW = 10**13
#: ... below this, microseconds; from here on, nanoseconds.
TS_MICROS_BELOW = 10**16

# ---------------------------------------------------------------- identifiers
#: Longest ``device_id``, characters (ASCII, so also bytes).
DEVICE_ID_MAX_LEN = 64
#: ``device_id``: ASCII letters, digits, ``_``, ``.``, ``-``; 1..64 characters. Also the MQTT
#: topic level and the Kafka key, so no ``/``, ``+``, ``#`` or whitespace.
DEVICE_ID_PATTERN = r"[A-Za-z0-9_.-]{1,%d}" % DEVICE_ID_MAX_LEN
DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
#: Longest sensor or drop-counter name, characters.
NAME_MAX_LEN = 64
#: Sensor and drop-counter names: a lower-case ASCII letter, then lower-case letters, digits
#: and ``_``; 1..64 characters. The suffix names the unit (``temp_c``, ``h_rms_g``).
NAME_PATTERN = r"[a-z][a-z0-9_]{0,%d}" % (NAME_MAX_LEN - 1)
NAME_RE = re.compile(NAME_PATTERN)
#: Entries in ``readings``: at least 1, at most this many.
MAX_READINGS = 64
#: Entries in ``drops``: at most this many (may be empty).
MAX_DROPS = 64


# ---------------------------------------------------------------- fields
@dataclass(frozen=True)
class FieldSpec:
    """One field of the ``sensor-readings`` Kafka value.

    Attributes:
        name: JSON key and Flink column name.
        flink_type: Flink SQL type of the column (``BIGINT``: signed 64-bit; ``DOUBLE``:
            IEEE 754 binary64; ``STRING``: UTF-8 text).
        required: True when every value has the field; False when it may be absent.
        origin: ``"payload"`` (the device sends it; the bridge checks and passes it on) or
            ``"bridge"`` (the bridge adds it).
        constraint: the field's range or charset, as the bridge enforces it.
        unit: unit of the value, or of the map's values ("" when it has none).
        description: what the field means.
    """

    name: str
    flink_type: str
    required: bool
    origin: str
    constraint: str
    unit: str
    description: str


#: The fields of the ``sensor-readings`` Kafka value, in column order.
FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "device_id", "STRING", True, "payload",
        f"string matching {DEVICE_ID_PATTERN} (ASCII, 1..{DEVICE_ID_MAX_LEN} chars); "
        "equals the MQTT topic's device id",
        "",
        "the node's id; also the Kafka record key",
    ),
    FieldSpec(
        "seq", "BIGINT", True, "payload",
        f"integer {SEQ_MIN}..2^63-1 ({SEQ_MAX})",
        "",
        "per-device sequence number, increasing, survives reboots; (device_id, seq) "
        "identifies a reading and its duplicates",
    ),
    FieldSpec(
        "ts", "BIGINT", True, "payload",
        f"integer epoch ms, >= {TS_FLOOR_MS} (2020-01-01T00:00:00Z) and at most "
        f"{MAX_FUTURE_MS} ms after ingest_ms; the payload may send s, ms, us or ns "
        f"(by magnitude: < 1e10 s, < 1e13 ms, < 1e16 us, else ns), the bridge converts",
        "ms since 1970-01-01T00:00:00Z",
        "event time stamped by the device",
    ),
    FieldSpec(
        "readings", "MAP<STRING, DOUBLE>", True, "payload",
        f"object of 1..{MAX_READINGS} entries; names match {NAME_PATTERN}; values finite "
        "IEEE 754 doubles (JSON integers are converted to the nearest double)",
        "given by each name's suffix",
        "sensor name -> measured value",
    ),
    FieldSpec(
        "ingest_ms", "BIGINT", True, "bridge",
        f"integer {INGEST_MS_MIN}..2^63-1",
        "ms since 1970-01-01T00:00:00Z",
        "the bridge's clock when it validated the message",
    ),
    FieldSpec(
        "drops", "MAP<STRING, BIGINT>", False, "payload",
        f"object of 0..{MAX_DROPS} entries; names match {NAME_PATTERN}; values integers "
        f"{DROPS_MIN}..2^63-1; absent when the payload has none (JSON null counts as absent)",
        "count",
        "firmware drop counters (e.g. buffer, outbox), passed through",
    ),
)

#: Field name -> spec.
FIELDS_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}

#: Fields an MQTT payload must have (the bridge's ``missing_field`` check, in this order).
REQUIRED_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required and f.origin == "payload")

#: Reason codes :func:`check_kafka_value` can raise.
VALUE_REASONS = ("not_object", "missing_field", "unknown_field", "bad_type", "out_of_range",
                 "non_finite", "ts_too_old", "ts_in_future")


def flink_columns_sql(indent: str = "  ", names: tuple[str, ...] | None = None) -> str:
    """The physical columns of the ``sensor-readings`` Kafka value for a Flink ``CREATE TABLE``.

    Args:
        indent: prefix of every line.
        names: only these fields, in this order (e.g. a sink that carries a reading on);
            default every field of :data:`FIELDS` in its order.
    Returns:
        one ``<indent><name> <TYPE>`` line per field, joined with ``",\\n"``,
        no trailing comma, no comment::

            device_id STRING,
            seq BIGINT,
            ts BIGINT,
            readings MAP<STRING, DOUBLE>,
            ingest_ms BIGINT,
            drops MAP<STRING, BIGINT>

    Columns are nullable: a value without ``drops`` reads as NULL.
    """
    specs = FIELDS if names is None else tuple(FIELDS_BY_NAME[n] for n in names)
    return ",\n".join(f"{indent}{f.name} {f.flink_type}" for f in specs)


def _is_int(v: Any) -> bool:
    return type(v) is int  # bool is a subclass of int: excluded on purpose


def _check_int(v: Any, what: str, lo: int, hi: int) -> None:
    if not _is_int(v):
        raise ValidationError("bad_type", f"{what} must be an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise ValidationError("out_of_range", f"{what} = {_short(v)} is outside {lo}..{hi}")


def _short(v: Any, limit: int = 40) -> str:
    # repr of a huge int is slow and long; a detail only needs its head
    if _is_int(v) and v.bit_length() > 128:
        return f"<{v.bit_length()}-bit integer>"
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_names(d: dict, what: str) -> None:
    for name in d:
        if type(name) is not str or not NAME_RE.fullmatch(name):
            raise ValidationError("bad_type", f"{what} name {_short(name)} does not match {NAME_PATTERN}")


def check_kafka_value(value: dict) -> None:
    """Raise unless ``value`` is a ``sensor-readings`` value as :data:`FIELDS` defines it.

    Checks the value the bridge builds (Python objects, before JSON encoding): exactly the
    keys of :data:`FIELDS` (``drops`` optional, no others); ``device_id`` a ``str`` matching
    :data:`DEVICE_ID_PATTERN`; ``seq``, ``ts``, ``ingest_ms`` and every ``drops`` value an
    ``int`` (not ``bool``) within its range; ``ts`` at or after :data:`TS_FLOOR_MS` and at most
    :data:`MAX_FUTURE_MS` after ``ingest_ms``; ``readings`` a ``dict`` of 1..64 entries whose
    values are finite ``float``. End-of-stream heartbeat records (empty ``readings``, no
    ``ingest_ms``) are not bridge values and do not pass.

    Args:
        value: the candidate Kafka value.
    Returns:
        None.
    Raises:
        ValidationError: ``reason`` one of :data:`VALUE_REASONS`, ``detail`` names the field.
    """
    if type(value) is not dict:
        raise ValidationError("not_object", f"value is {type(value).__name__}, not a dict")
    for spec in FIELDS:
        if spec.required and spec.name not in value:
            raise ValidationError("missing_field", f"field {spec.name!r} is missing")
    unknown = [k for k in value if k not in FIELDS_BY_NAME]
    if unknown:
        raise ValidationError("unknown_field", f"fields {sorted(map(str, unknown))} are not in the schema")

    device_id = value["device_id"]
    if type(device_id) is not str or not DEVICE_ID_RE.fullmatch(device_id):
        raise ValidationError("bad_type", f"device_id {_short(device_id)} does not match {DEVICE_ID_PATTERN}")
    _check_int(value["seq"], "seq", SEQ_MIN, SEQ_MAX)
    _check_int(value["ingest_ms"], "ingest_ms", INGEST_MS_MIN, INGEST_MS_MAX)
    ts = value["ts"]
    _check_int(ts, "ts", INT64_MIN, INT64_MAX)
    if ts < TS_FLOOR_MS:
        raise ValidationError("ts_too_old", f"ts {ts} ms is before {TS_FLOOR_MS} (2020-01-01T00:00:00Z)")
    if ts > value["ingest_ms"] + MAX_FUTURE_MS:
        raise ValidationError("ts_in_future", f"ts {ts} ms is more than {MAX_FUTURE_MS} ms after ingest_ms")

    readings = value["readings"]
    if type(readings) is not dict:
        raise ValidationError("bad_type", f"readings must be a dict, got {type(readings).__name__}")
    if not 1 <= len(readings) <= MAX_READINGS:
        raise ValidationError("bad_type", f"readings has {len(readings)} entries, not 1..{MAX_READINGS}")
    _check_names(readings, "readings")
    for name, v in readings.items():
        if type(v) is not float:
            raise ValidationError("bad_type", f"readings.{name} must be a float, got {type(v).__name__}")
        if not math.isfinite(v):
            raise ValidationError("non_finite", f"readings.{name} = {v!r} is not a finite double")

    if "drops" in value:
        drops = value["drops"]
        if type(drops) is not dict:
            raise ValidationError("bad_type", f"drops must be a dict, got {type(drops).__name__}")
        if len(drops) > MAX_DROPS:
            raise ValidationError("bad_type", f"drops has {len(drops)} entries, more than {MAX_DROPS}")
        _check_names(drops, "drops")
        for name, v in drops.items():
            _check_int(v, f"drops.{name}", DROPS_MIN, DROPS_MAX)
