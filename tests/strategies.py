"""Hypothesis strategies for sensor readings: valid payloads, Kafka values and hostile input.

Shared by the property tests of the contract (tests/test_schema_properties.py) and tests of the
jobs' JSON source format. Every limit comes from :mod:`iotflink.schema`.

Strategies (each a function returning a ``SearchStrategy``):

* :func:`valid_payload_docs` -> ``dict``: an MQTT payload document the bridge accepts at
  ``now_ms`` (``ts`` in any unit, ``drops`` sometimes, unknown fields sometimes);
* :func:`valid_messages` -> ``(topic: str, payload: bytes)``: the same, encoded, with its topic;
* :func:`kafka_values` -> ``dict``: a ``sensor-readings`` value as the bridge builds it
  (passes :func:`iotflink.schema.check_kafka_value`), biased to the edges of every range;
* :func:`hostile_messages` -> ``(topic, payload)``: anything a device or attacker could send:
  arbitrary bytes, JSON-ish text with edge-case numbers (around +-2^63 and +-2^64, 1e308,
  5e-324, -0.0, 1e400, 4,300+ digit integers), ``NaN``/``Infinity`` literals, duplicate keys,
  deep nesting, long and unicode strings, bools and nulls, and valid payloads with one field
  mutated; :func:`hostile_payloads` -> ``bytes``: their payloads alone.

JSON text is written by :func:`to_json_text`, which, unlike :mod:`json`, can emit duplicate
keys (:class:`Obj`) and any number literal verbatim (:class:`Raw`).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from iotflink import schema

#: Default bridge clock of the strategies: 2026-01-01T00:00:00Z, epoch ms.
NOW_MS = 1_767_225_600_000

#: Integers at the edges of the 64-bit ranges (Flink BIGINT) and of the double's exact range.
#: The first ones are the most hostile: hypothesis draws early elements more often.
EDGE_INTS = (
    2**63, 2**64, -(2**63) - 1, 2**63 - 1, 2**64 + 1, 2**63 + 1, 2**64 - 1,
    -(2**63), -(2**64), -(2**64) - 1, -(2**63) + 1, 2**63 - 2,
    0, 1, -1, 2**31 - 1, 2**31, 2**32, 2**53, 2**53 + 1,
    10**19, 10**20, 10**308, 2**1024,
)
#: Finite doubles at the edges of IEEE 754 binary64: zeros, subnormals, the extremes.
EDGE_DOUBLES = (
    0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-308, 1e-7, 0.1,
    1.7976931348623157e308, -1.7976931348623157e308, 1e308, -1e308,
    2.0**53, 2.0**63, 2.0**64, -(2.0**63), 1e16, 1.5e300,
)
#: Number literals written verbatim into JSON text (RFC 8259 numbers, and some that are not).
EDGE_NUMBER_LITERALS = (
    "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "-9223372036854775809", "18446744073709551615", "18446744073709551616",
    "-18446744073709551616", "123456789012345678901234567890", "1" + "0" * 400,
    "9" * 4300, "9" * 4301,  # CPython's integer parse limit is 4,300 digits
    "1e308", "1.7976931348623157e308", "1.8e308", "1e400", "-1e400", "1E+999",
    "5e-324", "2e-324", "1e-400", "-0.0", "-0", "0e0", "0E-0", "1E+2", "1.0", "1.5e3",
    "01", "1.", ".5", "+1", "0x10", "1e", "--1", "1_000",
    "NaN", "Infinity", "-Infinity", "nan", "inf",
)


class Raw(str):
    """A JSON token written verbatim by :func:`to_json_text` (e.g. ``1e400``, ``NaN``)."""


class Obj(list):
    """A JSON object as a list of ``(key, value)`` pairs: keys may repeat."""


def to_json_text(node: Any) -> str:
    """JSON text of ``node``: ``Raw`` verbatim, ``Obj`` with its pairs in order (duplicates
    kept), ``dict``/``list``/``str``/``int``/``float``/``bool``/``None`` as :mod:`json` writes
    them (floats may come out as ``NaN``/``Infinity``). Strings are ASCII-escaped, so a lone
    surrogate becomes the escape ``\\ud800``.
    """
    if isinstance(node, Raw):
        return str(node)
    if isinstance(node, Obj):
        return "{" + ",".join(f"{to_json_text(str(k))}:{to_json_text(v)}" for k, v in node) + "}"
    if isinstance(node, dict):
        return "{" + ",".join(f"{to_json_text(str(k))}:{to_json_text(v)}" for k, v in node.items()) + "}"
    if isinstance(node, (list, tuple)):
        return "[" + ",".join(to_json_text(v) for v in node) + "]"
    if type(node) is int and node.bit_length() > 14_000:  # str() of > 4,300 digits raises
        return "9" * 4301
    return json.dumps(node)


def encode(node: Any) -> bytes:
    """:func:`to_json_text` as UTF-8 bytes (``surrogatepass``: a raw lone surrogate becomes
    bytes that are not UTF-8, as a broken device could send)."""
    return to_json_text(node).encode("utf-8", "surrogatepass")


def pick(*strategies: st.SearchStrategy) -> st.SearchStrategy:
    """One of ``strategies``, each with the same weight. (``st.one_of`` flattens nested
    ``one_of`` branches, so a branch that is itself a union of many, like
    :func:`hostile_values`, would crowd out a single ``sampled_from``.)"""
    return st.sampled_from(strategies).flatmap(lambda s: s)


# ---------------------------------------------------------------- valid leaves
def device_ids() -> st.SearchStrategy[str]:
    """``device_id`` values the schema accepts (ASCII ``[A-Za-z0-9_.-]``, 1..64 chars)."""
    return st.one_of(
        st.sampled_from(["dev-1", "femto-b1_1", "nab-machine", "a", "A.b_C-9", "x" * schema.DEVICE_ID_MAX_LEN]),
        st.from_regex(schema.DEVICE_ID_RE, fullmatch=True),
    )


def sensor_names() -> st.SearchStrategy[str]:
    """Sensor and drop-counter names the schema accepts (``[a-z][a-z0-9_]{0,63}``)."""
    return st.one_of(
        st.sampled_from(["temp_c", "h_rms_g", "v_rms_g", "t", "co2_ppm", "a" * schema.NAME_MAX_LEN]),
        st.from_regex(schema.NAME_RE, fullmatch=True),
    )


def finite_doubles() -> st.SearchStrategy[float]:
    """Finite IEEE 754 doubles, biased to zeros, subnormals and the extremes."""
    return st.one_of(st.sampled_from(EDGE_DOUBLES), st.floats(allow_nan=False, allow_infinity=False))


def reading_values() -> st.SearchStrategy[int | float]:
    """JSON numbers a reading may carry: finite doubles, and integers within the double range
    (the bridge converts them to the nearest double)."""
    return st.one_of(
        finite_doubles(),
        st.sampled_from([0, 1, -1, 2**53 + 1, 2**63, -(2**64), 10**308]),
        st.integers(min_value=-(2**70), max_value=2**70),
    )


def uint63s() -> st.SearchStrategy[int]:
    """Integers 0..2^63-1 (``seq``, ``drops`` counters), biased to both ends."""
    return st.one_of(
        st.sampled_from([0, 1, 2**31, 2**32, 2**53 + 1, 2**63 - 2, schema.SEQ_MAX]),
        st.integers(min_value=0, max_value=schema.SEQ_MAX),
    )


@st.composite
def payload_ts(draw, now_ms: int = NOW_MS) -> int | float:
    """A payload ``ts`` the bridge accepts at ``now_ms``: an instant in
    [TS_FLOOR_MS, now_ms + MAX_FUTURE_MS] written in s, ms, us or ns, as an integer or a float
    (floats keep a 1 s margin from both bounds for their rounding)."""
    lo, hi = schema.TS_FLOOR_MS, now_ms + schema.MAX_FUTURE_MS
    edge = draw(st.sampled_from([None, None, None, lo, hi, now_ms, now_ms - schema.STALE_AFTER_MS - 1]))
    if edge is not None:
        return edge
    as_float = draw(st.booleans())
    ms = draw(st.integers(min_value=lo + 1000, max_value=hi - 1000) if as_float else st.integers(lo, hi))
    unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
    if unit == "s":
        return ms / 1000.0 if as_float else ms // 1000  # TS_FLOOR_MS is a whole second
    if unit == "ms":
        return float(ms) if as_float else ms
    if unit == "us":
        return ms * 1000.0 if as_float else ms * 1000 + draw(st.integers(0, 999))
    return ms * 1e6 if as_float else ms * 1_000_000 + draw(st.integers(0, 999_999))


# ---------------------------------------------------------------- valid documents
@st.composite
def valid_payload_docs(draw, now_ms: int = NOW_MS, device_id: str | None = None) -> dict:
    """An MQTT payload document :func:`bridge.contract.validate` accepts at ``now_ms``.

    Returns ``{"device_id", "seq", "ts", "readings", ["drops"], [unknown fields]}``; keep the
    payload within 64 KiB (at most 64 readings of names up to 64 chars: about 6 KiB).
    """
    doc: dict[str, Any] = {
        "device_id": device_id if device_id is not None else draw(device_ids()),
        "seq": draw(uint63s()),
        "ts": draw(payload_ts(now_ms)),
        "readings": draw(st.dictionaries(sensor_names(), reading_values(), min_size=1,
                                         max_size=draw(st.sampled_from([1, 3, schema.MAX_READINGS])))),
    }
    if draw(st.booleans()):
        doc["drops"] = draw(st.dictionaries(sensor_names(), uint63s(), max_size=draw(
            st.sampled_from([0, 2, schema.MAX_DROPS]))))
    elif draw(st.integers(0, 9)) == 0:
        doc["drops"] = None  # JSON null: same as absent
    if draw(st.integers(0, 4)) == 0:
        doc["firmware"] = draw(st.text(max_size=20))  # unknown fields are ignored
    return doc


def valid_messages(now_ms: int = NOW_MS) -> st.SearchStrategy[tuple[str, bytes]]:
    """``(topic, payload)`` pairs :func:`bridge.contract.validate` accepts at ``now_ms``."""
    return valid_payload_docs(now_ms).map(
        lambda d: (f"sensors/{d['device_id']}/telemetry", json.dumps(d, allow_nan=False).encode()))


@st.composite
def kafka_values(draw, min_ingest_ms: int = schema.TS_FLOOR_MS, max_ingest_ms: int = 4_102_444_800_000) -> dict:
    """``sensor-readings`` values as the bridge builds them (they pass
    :func:`iotflink.schema.check_kafka_value`): ``ts`` epoch ms in [TS_FLOOR_MS, ingest_ms +
    60 s], ``readings`` finite floats, ``drops`` 0..2^63-1 when present. ``ingest_ms`` is drawn
    from [min_ingest_ms, max_ingest_ms] (default: 2020 to 2100)."""
    ingest_ms = draw(st.integers(min_value=min_ingest_ms, max_value=max_ingest_ms))
    hi = ingest_ms + schema.MAX_FUTURE_MS
    ts = draw(st.one_of(st.sampled_from([schema.TS_FLOOR_MS, hi, ingest_ms]),
                        st.integers(min_value=schema.TS_FLOOR_MS, max_value=hi)))
    value: dict[str, Any] = {
        "device_id": draw(device_ids()),
        "seq": draw(uint63s()),
        "ts": ts,
        "readings": draw(st.dictionaries(sensor_names(), finite_doubles(), min_size=1,
                                         max_size=schema.MAX_READINGS)),
        "ingest_ms": ingest_ms,
    }
    if draw(st.booleans()):
        value["drops"] = draw(st.dictionaries(sensor_names(), uint63s(), max_size=schema.MAX_DROPS))
    return value


# ---------------------------------------------------------------- hostile input
def edge_numbers() -> st.SearchStrategy[Any]:
    """Numbers at and beyond every limit: edge ints, edge doubles, NaN/inf, verbatim literals."""
    return st.one_of(
        st.sampled_from(EDGE_INTS),
        st.sampled_from(EDGE_DOUBLES),
        st.sampled_from(EDGE_NUMBER_LITERALS).map(Raw),
        st.integers(),
        st.floats(),  # NaN and +-inf included: json writes them as literals
    )


def hostile_strings() -> st.SearchStrategy[str]:
    """Strings: unicode (incl. lone surrogates), near-valid names, long ones."""
    return st.one_of(
        st.text(max_size=80),
        st.sampled_from(["", " ", "Temp", "1temp", "temp-c", "temp c", "tëmp", "temp_c\n", "\ud800",
                         "\x00", "sensors/dev-1", "+", "#", "a" * 65, "x" * 65]),
        st.integers(1, 70_000).map(lambda n: "y" * n),
    )


def hostile_values() -> st.SearchStrategy[Any]:
    """Any JSON-ish value: nulls, bools, edge numbers, strings, nested arrays and objects
    (with duplicate keys), and deep nesting."""
    leaves = st.one_of(
        st.none(), st.booleans(), edge_numbers(), hostile_strings(),
        # unescaped text: a lone surrogate turns into bytes that are not UTF-8 (see encode)
        hostile_strings().map(lambda s: Raw(json.dumps(s, ensure_ascii=False))),
    )
    nested = st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.lists(kids, max_size=4),
            st.dictionaries(st.one_of(sensor_names(), hostile_strings()), kids, max_size=4),
            st.lists(st.tuples(st.sampled_from(["a", "temp_c", "seq"]), kids), max_size=4).map(Obj),
        ),
        max_leaves=12,
    )
    deep = st.integers(min_value=1, max_value=5000).flatmap(
        lambda n: st.sampled_from([Raw("[" * n + "]" * n), Raw('{"a":' * n + "1" + "}" * n), Raw("[" * n)]))
    return st.one_of(nested, deep)


def _edge_pool() -> st.SearchStrategy[Any]:
    # one draw from every edge value at once: ints, doubles, verbatim literals, other types
    pool = (EDGE_INTS + EDGE_DOUBLES + tuple(Raw(x) for x in EDGE_NUMBER_LITERALS)
            + (None, True, False, "1", "", [], {}, [1], {"a": 1}))
    return st.sampled_from(pool)


def int_field_values() -> st.SearchStrategy[Any]:
    """Values for an integer field (``seq``, a ``drops`` counter): mostly the edges of the
    64-bit ranges, also any integer and any hostile value."""
    return pick(st.sampled_from(EDGE_INTS), _edge_pool(), st.sampled_from(EDGE_INTS),
                st.integers(), hostile_values())


def ts_values(now_ms: int = NOW_MS) -> st.SearchStrategy[Any]:
    """Values for ``ts``: the bounds of the accepted window in every unit, one off each bound,
    the unit thresholds, the 64-bit edges, non-finite and non-number values."""
    lo, hi = schema.TS_FLOOR_MS, now_ms + schema.MAX_FUTURE_MS
    window = [hi + 1, lo - 1, lo, hi, lo // 1000 - 1, lo // 1000, hi // 1000, hi // 1000 + 1,
              lo * 1000 - 1, hi * 1000 + 1000, lo * 1_000_000 - 1, hi * 1_000_000 + 1_000_000,
              lo / 1000.0, hi / 1000.0 + 1.0, float(lo) - 1.0, float(hi) + 1.0, lo * 1e6, hi * 1e6 + 1e6,
              schema.TS_SECONDS_BELOW - 1, schema.TS_SECONDS_BELOW, schema.TS_MILLIS_BELOW - 1,
              schema.TS_MILLIS_BELOW, schema.TS_MICROS_BELOW - 1, schema.TS_MICROS_BELOW, -lo, -hi]
    return pick(st.sampled_from(window), _edge_pool(), st.sampled_from(window), payload_ts(now_ms),
                hostile_values())


#: Reading values beyond a finite double, first: JSON text or integers that overflow it.
NON_FINITE = (Raw("1e400"), Raw("NaN"), 2**1024, Raw("-Infinity"), Raw("1.8e308"), Raw("Infinity"),
              Raw("-1e400"), -(2**1024), 10**400)


def reading_field_values() -> st.SearchStrategy[Any]:
    """Values for a reading: overflow and non-finite first, edge doubles and integers, other
    types."""
    return pick(st.sampled_from(NON_FINITE), _edge_pool(), st.sampled_from(EDGE_DOUBLES),
                st.floats(), hostile_values())


@st.composite
def _mutated_valid(draw, now_ms: int) -> tuple[str, bytes]:
    """A valid payload with one mutation, on its matching topic (so the deep checks run)."""
    doc = draw(valid_payload_docs(now_ms))
    dev = doc["device_id"]
    topic = f"sensors/{dev}/telemetry"
    pairs = Obj(doc.items())
    kind = draw(st.sampled_from([
        "seq", "ts", "reading", "drops", "device_id", "seq", "ts", "reading", "drops", "ts",
        "reading_name", "readings", "any_field", "drop_field", "duplicate", "oversize", "truncate",
        "flip", "topic"]))

    def put(key: str, value: Any) -> None:
        nonlocal pairs
        pairs = Obj([(k, v) for k, v in pairs if k != key] + [(key, value)])

    if kind == "seq":
        put("seq", draw(int_field_values()))
    elif kind == "drops":  # a drops object with an edge counter next to valid ones
        drops = Obj((doc.get("drops") or {}).items())
        drops.insert(draw(st.integers(0, len(drops))), (draw(sensor_names()), draw(int_field_values())))
        put("drops", drops)
    elif kind == "ts":
        put("ts", draw(ts_values(now_ms)))
    elif kind in ("reading", "reading_name"):  # one reading entry with an edge value or name
        readings = Obj(doc["readings"].items())
        name = draw(pick(hostile_strings(), _edge_pool().map(str))) if kind == "reading_name" else draw(sensor_names())
        value = draw(reading_field_values()) if kind == "reading" else draw(finite_doubles())
        readings.insert(draw(st.integers(0, len(readings))), (name, value))
        put("readings", readings)
    elif kind == "device_id":
        put("device_id", draw(pick(device_ids().filter(lambda d: d != dev), hostile_strings(),
                                   _edge_pool())))
    elif kind == "readings":
        put("readings", draw(pick(_edge_pool(), hostile_values(), st.just({}),
                                       st.dictionaries(sensor_names(), finite_doubles(),
                                                       min_size=schema.MAX_READINGS + 1,
                                                       max_size=schema.MAX_READINGS + 2))))
    elif kind == "any_field":  # any field, known or not, gets any value
        i = draw(st.integers(0, len(pairs) - 1))
        pairs[i] = (pairs[i][0], draw(pick(_edge_pool(), hostile_values())))
    elif kind == "drop_field":
        del pairs[draw(st.integers(0, len(pairs) - 1))]
    elif kind == "duplicate":  # the same key twice: JSON parsers differ on which wins
        key = draw(st.sampled_from(["device_id", "seq", "ts", "readings", "drops"]))
        extra = (key, draw(pick(_edge_pool(), hostile_values())))
        pairs.insert(draw(st.integers(0, len(pairs))), extra)
    raw = encode(pairs)
    if kind == "oversize":  # pad with an ignored field to the 64 KiB boundary, or past it
        size = schema.MAX_PAYLOAD_BYTES + draw(st.sampled_from([-1, 0, 1, 1000]))
        pad = size - len(raw) - len(b',"pad":""')
        if pad >= 0:
            raw = raw[:-1] + b',"pad":"' + b"x" * pad + b'"}'
    elif kind == "truncate":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    elif kind == "flip":
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1:]
    elif kind == "topic":
        topic = draw(hostile_topics(dev))
    return topic, raw


def hostile_topics(device_id: str = "dev-1") -> st.SearchStrategy[str]:
    """MQTT topics, mostly wrong: another device, other levels, bad ids, unicode."""
    return st.one_of(
        st.sampled_from([f"sensors/{device_id}/status", f"{device_id}/telemetry", "sensors//telemetry",
                         "sensors/a b/telemetry", "sensors/a/b/telemetry", "sensors/dev-2/telemetry",
                         "sensors/" + "x" * 65 + "/telemetry", "", "sensors/+/telemetry"]),
        hostile_strings().map(lambda s: f"sensors/{s}/telemetry"),
        st.text(max_size=40),
    )


def hostile_messages(now_ms: int = NOW_MS) -> st.SearchStrategy[tuple[str, bytes]]:
    """``(topic, payload)`` pairs of every kind of bad (and some good) input; see the module
    docstring. About 70 % are valid payloads with one field mutated, on their own topic, so the
    deep checks (ranges, ts window, device match) are reached."""
    plain_topic = st.sampled_from(["sensors/dev-1/telemetry", "sensors/p-1/telemetry"])
    mutated = _mutated_valid(now_ms)
    return pick(
        mutated,
        st.tuples(plain_topic, st.binary(max_size=300)),
        mutated,
        st.tuples(plain_topic, hostile_values().map(encode)),
        mutated,
        st.tuples(plain_topic, st.dictionaries(
            st.sampled_from(["device_id", "seq", "ts", "readings", "drops", "x"]),
            pick(hostile_values(), st.just("dev-1"), st.just({"t": 1.0})), max_size=6).map(encode)),
        mutated,
        valid_messages(now_ms),
        mutated, mutated, mutated,
    )


def hostile_payloads(now_ms: int = NOW_MS) -> st.SearchStrategy[bytes]:
    """Payloads of :func:`hostile_messages` alone."""
    return hostile_messages(now_ms).map(lambda m: m[1])
