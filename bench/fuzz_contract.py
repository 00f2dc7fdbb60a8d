"""Fuzz benchmark of the payload contract: hostile payloads through the contract and the bridge.

Usage::

    .venv/bin/python bench/fuzz_contract.py [--count 100000] [--seed 1] [--chunk 5000]
        [--out bench/results/fuzz_contract.json]

Generates ``--count`` MQTT messages (topic, payload), seeded and deterministic (case ``i`` comes
from ``random.Random(f"{seed}:{i}")`` alone, so any case can be rebuilt), mostly valid readings
with one targeted mutation, plus the edge cases of the schema (:mod:`iotflink.schema`):
integers around +-2^63 and +-2^64 in ``seq``, ``drops`` and ``ts``, doubles such as 1e308,
5e-324 and -0.0, overflowing numbers (1e400, 400-digit integers), ``NaN``/``Infinity`` literals,
integers past CPython's 4,300-digit parse limit, deep nesting, long and unicode strings, bools
and nulls, duplicate keys, wrong topics, payloads around 64 KiB, random bytes and byte flips.
Categories take turns in a fixed cycle (:data:`CYCLE`, 50 cases long), so any run of at least
50 cases holds every category, and with them every reason code of
:data:`bridge.contract.REASONS`.

Every message goes through two paths:

1. ``contract.validate`` (the pure contract), timed alone;
2. the bridge's message handler: :class:`bridge.service.Bridge` with a fake MQTT client and a
   producer that confirms each record at once, messages handed to ``on_message``
   (``Bridge._on_message``) one by one, timed from the first hand-over until every record of
   the chunk was confirmed and acked.

Property violations (any one makes the exit status 1):

* ``unexpected_exception``: ``validate`` raised something other than ``ValidationError``;
* ``unknown_reason``: a reason not in ``REASONS``;
* ``forwarded_fails_schema``: a forwarded value fails :func:`iotflink.schema.check_kafka_value`;
* ``forwarded_not_flink_readable``: its JSON is not what the Flink JSON format reads into the
  columns of :func:`iotflink.schema.flink_columns_sql` (an integer outside BIGINT, a
  non-finite double, a ``NaN`` literal) or does not round-trip;
* ``expectation_mismatch``: a targeted case (e.g. ``seq`` = 2^63 on an otherwise valid
  reading: ``out_of_range``) got another outcome;
* bridge only: ``handler_exception`` (an exception escaped ``on_message``),
  ``count_mismatch`` (messages in != forwarded + dead-lettered, or not all acked, or records !=
  messages), ``internal_error`` (a dead letter the contract did not foresee),
  ``dead_letter_bad`` (a DLQ record that is not JSON, has another reason, or whose
  ``raw``/``raw_b64`` is not the payload), ``paths_disagree`` (another outcome or value than
  ``validate`` gave for the same message).

Prints a table; writes JSON to ``--out`` (payloads, outcomes per reason, violations with up to
5 examples each, seconds, payloads/s, per path).
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import logging
import math
import os
import platform
import random
import string
import struct
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from bridge import contract
from bridge.service import Bridge
from iotflink import schema
from iotflink.errors import ValidationError
from iotflink.poll import PollTimeout, poll
from iotflink.settings import BridgeSettings

ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger("bench.fuzz_contract")

#: The bridge clock of every run: 2026-01-01T00:00:00Z, epoch ms.
NOW_MS = 1_767_225_600_000
READINGS_TOPIC, DLQ_TOPIC = "sensor-readings", "sensor-dlq"
FORWARDED = "forwarded"

# ---------------------------------------------------------------- value pools
_ID_CHARS = string.ascii_letters + string.digits + "_.-"
_NAME_HEAD, _NAME_TAIL = string.ascii_lowercase, string.ascii_lowercase + string.digits + "_"
_DEVICES = ("dev-1", "p-1", "femto-b1_1", "nab-machine", "occupancy-office", "A.b_C-9")
_SENSORS = ("temp_c", "h_rms_g", "v_rms_g", "peak_abs_g", "humidity_pct", "light_lux", "co2_ppm",
            "humidity_ratio", "temp")
_EDGE_DOUBLE_TEXT = ("0.0", "-0.0", "0", "-0", "5e-324", "-5e-324", "2.2250738585072014e-308",
                     "1.7976931348623157e308", "-1.7976931348623157e308", "1e308", "1E+2", "1e-7",
                     "0.1", "9007199254740993", "9223372036854775808", "18446744073709551616",
                     "-18446744073709551617", "1" + "0" * 300, "123456789.123456789e-300")
_SEQ_OVER = (str(2**63), str(2**63 + 1), str(2**64 - 1), str(2**64), str(2**64 + 1), str(10**19),
             str(10**30), "1" + "0" * 4000, "-1", str(-(2**63)), str(-(2**63) - 1), str(-(2**64)))
_NON_FINITE_TEXT = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "2e308", "1E999",
                    "9" * 400, "-" + "9" * 400)
_INT_TYPE_BAD = ("1.5", "1.0", '"1"', "true", "false", "null", "[]", "{}", "1e400", "-0.0",
                 "9.3e18", "1e2", '"9223372036854775808"', "[1]")
_VALUE_TYPE_BAD = ("true", "false", "null", '"1.5"', "[]", "{}", "[1.0]", '{"v":1}', '""')
_BAD_NAMES = ("Temp", "1temp", "temp-c", "temp c", "", "_x", "a" * 65, "t\\u00ebmp", "\\ud800",
              "temp\\n", "TEMP_C", "t\\u0000")
_BAD_IDS = ('"a b"', '""', '"' + "x" * 65 + '"', '"d\\u00e9v"', '"a/b"', '"a+b"', '"#"', "7",
            "null", "true", "[]", '{"id":"dev-1"}', '"dev-1\\n"')
_EDGE_ANY = (_SEQ_OVER + _NON_FINITE_TEXT + _INT_TYPE_BAD + _EDGE_DOUBLE_TEXT
             + ('"x"', '"' + "y" * 300 + '"', '"\\ud83d\\ude00"', '"\\udc00"', "0", "1",
                str(2**63 - 1), str(schema.TS_FLOOR_MS), str(NOW_MS), "[" * 50 + "]" * 50,
                '{"a":{"b":{"c":[1,2,{"d":null}]}}}'))


class Case:
    """One generated MQTT message.

    Attributes:
        index: position in the run (``random.Random(f"{seed}:{index}")`` rebuilds it).
        category: generator category (:data:`CATEGORIES`).
        expected: the outcome the category guarantees (``"forwarded"`` or a reason), or None.
        topic: MQTT topic as bytes (UTF-8, or not: paho then fails to decode it).
        payload: the MQTT payload.
    """

    __slots__ = ("index", "category", "expected", "topic", "payload")

    def __init__(self, index: int, category: str, expected: str | None, topic: bytes, payload: bytes) -> None:
        self.index, self.category, self.expected, self.topic, self.payload = index, category, expected, topic, payload


class _Doc:
    """A reading as ordered (key, JSON text) pairs: mutations edit the text of one field."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.device = _device(rng)
        n = rng.choice((1, 1, 2, 3, 5, rng.randint(1, schema.MAX_READINGS)))
        names = dict.fromkeys(_name(rng) for _ in range(n))  # unique, in a fixed order (no set)
        self.readings: list[tuple[str, str]] = [(json.dumps(k), _double_text(rng)) for k in names]
        self.fields: list[list[str]] = [
            ["device_id", json.dumps(self.device)],
            ["seq", _seq_text(rng)],
            ["ts", _ts_text(rng, schema.TS_FLOOR_MS, NOW_MS + schema.MAX_FUTURE_MS)],
            ["readings", ""],
        ]
        if rng.random() < 0.4:
            k = rng.choice((0, 1, 2, 3, schema.MAX_DROPS))
            drops = {_name(rng): rng.choice((0, 1, rng.randrange(2**63))) for _ in range(k)}
            self.fields.append(["drops", "{" + ",".join(f"{json.dumps(a)}:{b}" for a, b in drops.items()) + "}"])
        if rng.random() < 0.1:
            self.fields.append(["firmware", json.dumps("1.2." + str(rng.randrange(100)))])

    def set(self, key: str, text: str) -> None:
        for f in self.fields:
            if f[0] == key:
                f[1] = text
                return
        self.fields.append([key, text])

    def remove(self, key: str) -> None:
        self.fields = [f for f in self.fields if f[0] != key]

    def readings_text(self) -> str:
        return "{" + ",".join(f"{k}:{v}" for k, v in self.readings) + "}"

    def text(self) -> str:
        parts = []
        for key, val in self.fields:
            parts.append(f'"{key}":{self.readings_text() if key == "readings" and val == "" else val}')
        return "{" + ",".join(parts) + "}"

    def payload(self) -> bytes:
        return self.text().encode()

    def topic(self) -> bytes:
        return f"sensors/{self.device}/telemetry".encode()


def _device(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(_DEVICES)
    n = rng.choice((1, 2, 8, 16, schema.DEVICE_ID_MAX_LEN, rng.randint(1, schema.DEVICE_ID_MAX_LEN)))
    return "".join(rng.choice(_ID_CHARS) for _ in range(n))


def _name(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(_SENSORS)
    n = rng.choice((1, 2, 8, schema.NAME_MAX_LEN, rng.randint(1, schema.NAME_MAX_LEN)))
    return rng.choice(_NAME_HEAD) + "".join(rng.choice(_NAME_TAIL) for _ in range(n - 1))


def _double_text(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.5:
        return repr(round(rng.uniform(-1000.0, 1000.0), rng.randint(0, 6)))
    if r < 0.7:
        return rng.choice(_EDGE_DOUBLE_TEXT)
    if r < 0.85:
        return str(rng.randint(-(2**70), 2**70))
    bits = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]  # any double
    return repr(bits) if math.isfinite(bits) else "1.5"


def _seq_text(rng: random.Random) -> str:
    return str(rng.choice((0, 1, rng.randrange(1000), rng.randrange(2**32), rng.randrange(2**63),
                           2**63 - 1, 2**53 + 1)))


def _ts_text(rng: random.Random, lo_ms: int, hi_ms: int) -> str:
    """A ``ts`` whose instant lies in [lo_ms, hi_ms] (epoch ms), in a random unit and form."""
    ms = rng.choice((lo_ms, hi_ms, rng.randint(lo_ms, hi_ms), rng.randint(lo_ms, hi_ms)))
    unit = rng.choice(("s", "ms", "us", "ns"))
    if rng.random() < 0.3 and lo_ms + 2000 <= hi_ms:  # a float, 1 s away from the bounds
        ms = min(max(ms, lo_ms + 1000), hi_ms - 1000)
        return repr({"s": ms / 1000.0, "ms": float(ms), "us": ms * 1000.0, "ns": ms * 1e6}[unit])
    if unit == "s":
        s = -((-ms) // 1000) if ms < 0 else ms // 1000  # toward zero: stays within the bounds
        s = s if lo_ms <= s * 1000 <= hi_ms else s + 1
        return str(s)
    if unit == "ms":
        return str(ms)
    if unit == "us":
        return str(ms * 1000 + (rng.randrange(1000) if ms >= 0 else 0))
    return str(ms * 1_000_000 + (rng.randrange(1_000_000) if ms >= 0 else 0))


# ---------------------------------------------------------------- categories
Gen = Callable[[random.Random], tuple[bytes, bytes, str | None]]


def _valid(rng: random.Random):
    d = _Doc(rng)
    return d.topic(), d.payload(), FORWARDED


def _valid_edge(rng: random.Random):
    d = _Doc(rng)
    kind = rng.randrange(7)
    if kind == 0:
        d.set("seq", str(schema.SEQ_MAX))
        d.set("drops", '{"buffer":%d,"outbox":0}' % schema.DROPS_MAX)
    elif kind == 1:
        d.set("ts", rng.choice((str(schema.TS_FLOOR_MS), str(NOW_MS + schema.MAX_FUTURE_MS),
                                str(schema.TS_FLOOR_MS // 1000), str(schema.TS_FLOOR_MS * 1_000_000))))
    elif kind == 2:
        d.readings = [(json.dumps(f"s{i}_" + "z" * (schema.NAME_MAX_LEN - 3 - len(str(i)))), t)
                      for i, t in enumerate(rng.choice(_EDGE_DOUBLE_TEXT[:13]) for _ in range(schema.MAX_READINGS))]
    elif kind == 3:  # duplicate keys: the last one wins and is valid
        d.fields.insert(0, ["seq", rng.choice(_SEQ_OVER)])
        d.fields.insert(0, ["readings", '{"t":"x"}'])
    elif kind == 4:  # exactly 64 KiB with an ignored field
        raw = d.payload()
        pad = schema.MAX_PAYLOAD_BYTES - len(raw) - len(b',"pad":""')
        return d.topic(), raw[:-1] + b',"pad":"' + b"x" * pad + b'"}', FORWARDED
    elif kind == 5:
        d.set("drops", "null")  # null counts as absent
    else:
        d.readings = [('"t"', rng.choice(("-0.0", "5e-324", "1.7976931348623157e308", "1e-320")))]
    return d.topic(), d.payload(), FORWARDED


def _seq_out_of_range(rng):
    d = _Doc(rng)
    d.set("seq", rng.choice(_SEQ_OVER + (str(rng.randrange(2**63, 2**64)), str(rng.randrange(2**64, 2**300)),
                                         str(-rng.randrange(1, 2**70)))))
    return d.topic(), d.payload(), "out_of_range"


def _drops_out_of_range(rng):
    d = _Doc(rng)
    bad = rng.choice(_SEQ_OVER + (str(rng.randrange(2**63, 2**64)),))
    d.set("drops", '{"buffer":0,"%s":%s}' % (_name(rng), bad) if rng.random() < 0.5 else '{"outbox":%s}' % bad)
    return d.topic(), d.payload(), "out_of_range"


def _int_bad_type(rng):
    d = _Doc(rng)
    if rng.random() < 0.7:
        d.set("seq", rng.choice(_INT_TYPE_BAD))  # floats too: seq is an integer
    else:
        d.set("ts", rng.choice(('"1"', "true", "false", "null", "[]", "{}", '"1767225600000"')))
    return d.topic(), d.payload(), "bad_type"


def _non_finite(rng):
    d = _Doc(rng)
    where = rng.randrange(3)
    if where == 0:  # one reading (a name no other reading has) overflows a double
        d.readings = [r for r in d.readings if r[0] != '"x_nonfinite"'][: schema.MAX_READINGS - 1]
        d.readings.insert(rng.randint(0, len(d.readings)), ('"x_nonfinite"', rng.choice(_NON_FINITE_TEXT)))
    elif where == 1:
        d.set("ts", rng.choice(("NaN", "Infinity", "-Infinity", "1e400", "-1e400")))
    else:
        d.set(rng.choice(("seq", "device_id", "firmware")), rng.choice(("NaN", "Infinity", "-Infinity")))
    return d.topic(), d.payload(), "non_finite"


def _readings_bad(rng):
    d = _Doc(rng)
    kind = rng.randrange(4)
    if kind == 0:
        i = rng.randrange(len(d.readings))
        d.readings[i] = (d.readings[i][0], rng.choice(_VALUE_TYPE_BAD))
    elif kind == 1:
        d.readings.append(('"%s"' % rng.choice(_BAD_NAMES), "1.0"))
        d.readings = d.readings[-schema.MAX_READINGS:]
    elif kind == 2:
        d.readings = [] if rng.random() < 0.5 else [(f'"r{i}"', "1.0") for i in range(rng.randint(65, 70))]
    else:
        d.set("readings", rng.choice(("[1.0]", '"x"', "1", "null", "true", '[{"t":1}]')))
    return d.topic(), d.payload(), "bad_type"


def _device_bad(rng):
    d = _Doc(rng)
    d.set("device_id", rng.choice(_BAD_IDS))
    return d.topic(), d.payload(), "bad_type"


def _drops_bad(rng):
    d = _Doc(rng)
    d.set("drops", rng.choice(('[]', '"x"', "1", '{"B":1}', '{"a":1.5}', '{"a":true}', '{"a":null}',
                               '{"a":"1"}', '{"a":[1]}', "{" + ",".join(f'"d{i}":1' for i in range(65)) + "}")))
    return d.topic(), d.payload(), "bad_type"


def _device_mismatch(rng):
    d = _Doc(rng)
    other = d.device + rng.choice(("x", "-2", "."))
    other = other[-schema.DEVICE_ID_MAX_LEN:] if len(other) > schema.DEVICE_ID_MAX_LEN else other
    if other == d.device:
        other = "other"
    return f"sensors/{other}/telemetry".encode(), d.payload(), "device_mismatch"


def _missing(rng):
    d = _Doc(rng)
    d.remove(rng.choice(schema.REQUIRED_FIELDS))
    return d.topic(), d.payload(), "missing_field"


def _not_object(rng):
    return b"sensors/dev-1/telemetry", rng.choice((b"[]", b"[1,2]", b'"text"', b"42", b"null", b"true",
                                                   b"-0.0", b"1e400", b'[{"device_id":"dev-1"}]', b"  7 ")), "not_object"


def _malformed(rng):
    d = _Doc(rng)
    raw = d.payload()
    kind = rng.randrange(7)
    if kind == 0:
        raw = raw[: rng.randrange(len(raw))]  # a strict prefix of an object is never JSON
    elif kind == 1:
        bad = rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80"))
        i = raw.index(b'"device_id":"') + len(b'"device_id":"')
        raw = raw[:i] + bad + raw[i:]
    elif kind == 2:
        n = rng.choice((1001, 5000, 30000))
        d.set("readings", "[" * n + "]" * n)
        raw = d.payload()
    elif kind == 3:
        d.set(rng.choice(("seq", "ts", "firmware")), "9" * rng.randint(4301, 6000))
        raw = d.payload()
    elif kind == 4:
        raw = raw + rng.choice((b"x", b",", b"}", b"{}", b"\x00"))
    elif kind == 5:
        raw = raw.replace(b'"', b"'", 2) if rng.random() < 0.5 else raw[:-1] + b",}"
    else:
        raw = rng.choice((b"", b" ", b"{", b"}", b"{]", b'{"a":}', b"{'a':1}", b"\xef\xbb\xbf{}", b"{/*c*/}"))
    return d.topic(), raw, "malformed_json"


def _too_large(rng):
    d = _Doc(rng)
    raw = d.payload()
    size = schema.MAX_PAYLOAD_BYTES + rng.choice((1, 2, 100, rng.randint(1, 5000)))
    if rng.random() < 0.3:
        return d.topic(), rng.randbytes(size), "too_large"
    return d.topic(), raw[:-1] + b',"pad":"' + b"x" * (size - len(raw) - 9) + b'"}', "too_large"


def _bad_topic(rng):
    d = _Doc(rng)
    dev = d.device.encode()
    topic = rng.choice((b"sensors/" + dev + b"/status", dev + b"/telemetry", b"sensors//telemetry",
                        b"sensors/a b/telemetry", b"sensors/+/telemetry", b"sensors/#/telemetry",
                        b"sensors/" + b"x" * 65 + b"/telemetry", b"", b"x", b"sensors/a/b/telemetry",
                        b"sensors/\xff/telemetry", b"sensors/d\xc3\xa9v/telemetry", b"SENSORS/" + dev + b"/telemetry"))
    return topic, d.payload(), "bad_topic"


def _ts_too_old(rng):
    d = _Doc(rng)
    if rng.random() < 0.5:  # the instants 1970-04-26 .. 2019 read the same in every unit band
        d.set("ts", _ts_text(rng, 10**10, schema.TS_FLOOR_MS - 1))
    elif rng.random() < 0.5:
        d.set("ts", _ts_text(rng, -(2**40), -1))
    else:
        d.set("ts", rng.choice(("0", "-0.0", "5e-324", "-1", str(schema.TS_FLOOR_MS - 1), str(schema.TS_FLOOR_MS // 1000 - 1),
                                str(-(2**63)), str(-(2**64)), "-1e308", str(10**10), str(10**13), str(10**16),
                                str(schema.TS_FLOOR_MS * 1000 - 1000), "1577836799.4994")))
    return d.topic(), d.payload(), "ts_too_old"


def _ts_in_future(rng):
    d = _Doc(rng)
    if rng.random() < 0.5:
        d.set("ts", _ts_text(rng, NOW_MS + schema.MAX_FUTURE_MS + 1, 9_000_000_000_000))
    else:
        d.set("ts", rng.choice((str(NOW_MS + schema.MAX_FUTURE_MS + 1), str(10**10 - 1), str(10**13 - 1),
                                str(10**16 - 1), str(2**63), str(2**64), str(2**63 - 1), "1e308",
                                "1.7976931348623157e308", str(10**4000), "9999999999.5")))
    return d.topic(), d.payload(), "ts_in_future"


def _edge_field(rng):
    d = _Doc(rng)
    kind = rng.randrange(4)
    if kind == 0:
        d.set(rng.choice(("device_id", "seq", "ts", "readings", "drops", "firmware")), rng.choice(_EDGE_ANY))
    elif kind == 1:
        i = rng.randrange(len(d.readings))
        d.readings[i] = (d.readings[i][0], rng.choice(_EDGE_ANY))
    elif kind == 2:
        d.set("drops", '{"c":%s}' % rng.choice(_EDGE_ANY))
    else:
        d.set("ts", rng.choice(_EDGE_ANY))
    return d.topic(), d.payload(), None


def _duplicate_keys(rng):
    d = _Doc(rng)
    key = rng.choice(("device_id", "seq", "ts", "readings", "drops"))
    d.fields.insert(rng.randint(0, len(d.fields)), [key, rng.choice(_EDGE_ANY)])
    if rng.random() < 0.3:
        d.readings.append((d.readings[0][0], rng.choice(_EDGE_ANY)))
    return d.topic(), d.payload(), None


def _byte_mutation(rng):
    d = _Doc(rng)
    raw = bytearray(d.payload())
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(raw))
        op = rng.randrange(3)
        if op == 0:
            raw[i] = rng.randrange(256)
        elif op == 1:
            raw.insert(i, rng.choice(b'0123456789-+.eE"{}[],:\\ \x00\xff'))
        elif len(raw) > 1:
            del raw[i]
    return d.topic(), bytes(raw), None


def _random_bytes(rng):
    return b"sensors/dev-1/telemetry", rng.randbytes(rng.choice((0, 1, 8, 64, 300))), None


def _json_soup(rng):
    def value(depth: int) -> str:
        r = rng.random()
        if depth > 3 or r < 0.5:
            return rng.choice(_EDGE_ANY)
        if r < 0.75:
            return "[" + ",".join(value(depth + 1) for _ in range(rng.randint(0, 3))) + "]"
        keys = ("device_id", "seq", "ts", "readings", "drops", "temp_c", "x")
        return "{" + ",".join(f'"{rng.choice(keys)}":{value(depth + 1)}' for _ in range(rng.randint(0, 5))) + "}"
    return b"sensors/dev-1/telemetry", value(0).encode(), None


#: Generator categories: name -> (function, cycle slots out of :data:`CYCLE`'s 50).
CATEGORIES: dict[str, tuple[Gen, int]] = {
    "valid": (_valid, 8),
    "valid_edge": (_valid_edge, 3),
    "seq_out_of_range": (_seq_out_of_range, 3),
    "drops_out_of_range": (_drops_out_of_range, 2),
    "int_bad_type": (_int_bad_type, 2),
    "non_finite": (_non_finite, 2),
    "readings_bad": (_readings_bad, 2),
    "device_bad": (_device_bad, 1),
    "drops_bad": (_drops_bad, 1),
    "device_mismatch": (_device_mismatch, 1),
    "missing_field": (_missing, 1),
    "not_object": (_not_object, 1),
    "malformed": (_malformed, 2),
    "too_large": (_too_large, 1),
    "bad_topic": (_bad_topic, 1),
    "ts_too_old": (_ts_too_old, 2),
    "ts_in_future": (_ts_in_future, 2),
    "edge_field": (_edge_field, 6),
    "duplicate_keys": (_duplicate_keys, 3),
    "byte_mutation": (_byte_mutation, 4),
    "random_bytes": (_random_bytes, 1),
    "json_soup": (_json_soup, 1),
}
#: Category of case ``i``: ``CYCLE[i % len(CYCLE)]`` (categories interleaved, deterministic).
CYCLE: tuple[str, ...] = tuple(
    name for _slot, name in sorted(
        ((k + 0.5) / slots, name) for name, (_f, slots) in CATEGORIES.items() for k in range(slots)))


def generate(count: int, seed: int, start: int = 0) -> Iterator[Case]:
    """Cases ``start .. start + count - 1`` of the run with ``seed`` (each built from
    ``random.Random(f"{seed}:{i}")`` alone: deterministic, and any one can be rebuilt)."""
    for i in range(start, start + count):
        name = CYCLE[i % len(CYCLE)]
        rng = random.Random(f"{seed}:{i}")
        topic, payload, expected = CATEGORIES[name][0](rng)
        yield Case(i, name, expected, topic, payload)


# ---------------------------------------------------------------- checks
class _Int(int):
    """An integer read from a JSON integer token."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"literal {name} is not JSON")


_COLUMNS = [line.strip().split(" ", 1) for line in schema.flink_columns_sql().split(",\n")]


def _flink_problem(value: Any, flink_type: str, where: str) -> str | None:
    if value is None:
        return None
    if flink_type == "STRING":
        return None if type(value) is str else f"{where} is not a string"
    if flink_type == "BIGINT":
        if type(value) is not _Int:
            return f"{where} = {value!r} is not a JSON integer"
        return None if schema.INT64_MIN <= value <= schema.INT64_MAX else f"{where} does not fit BIGINT"
    if flink_type == "DOUBLE":
        if type(value) not in (_Int, float) or not math.isfinite(float(value)):
            return f"{where} = {value!r} is not a finite double"
        return None
    inner = flink_type[len("MAP<STRING, "):-1]
    if type(value) is not dict:
        return f"{where} is not an object"
    for k, v in value.items():
        problem = _flink_problem(v, inner, f"{where}.{k}")
        if problem:
            return problem
    return None


def flink_readable(body: bytes, expected: dict | None = None) -> str | None:
    """None when ``body`` reads into the Flink columns of :func:`schema.flink_columns_sql`
    (and equals ``expected`` when given), else what is wrong."""
    try:
        doc = json.loads(body, parse_int=_Int, parse_constant=_reject_constant)
    except ValueError as exc:
        return f"not JSON: {exc}"
    if type(doc) is not dict:
        return "not an object"
    for name, flink_type in _COLUMNS:
        problem = _flink_problem(doc.get(name), flink_type, name)
        if problem:
            return problem
    if expected is not None and doc != expected:
        return "JSON round trip changed the value"
    return None


def _decode_topic(topic: bytes) -> str:
    # what the bridge does with a topic paho cannot decode
    try:
        return topic.decode("utf-8")
    except UnicodeDecodeError:
        return repr(topic)


class _Path:
    """Tallies of one path: outcomes per reason, violations with examples, time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.payloads = 0
        self.outcomes: collections.Counter = collections.Counter()
        self.violations: collections.Counter = collections.Counter()
        self.examples: dict[str, list[dict]] = collections.defaultdict(list)
        self.seconds = 0.0

    def violation(self, kind: str, case: Case | None, detail: str) -> None:
        self.violations[kind] += 1
        if len(self.examples[kind]) < 5:
            ex: dict[str, Any] = {"detail": detail[:300]}
            if case is not None:
                ex.update(index=case.index, category=case.category, expected=case.expected,
                          topic=_decode_topic(case.topic)[:100], payload_head=case.payload[:200].decode("utf-8", "replace"),
                          payload_bytes=len(case.payload))
            self.examples[kind].append(ex)

    def report(self) -> dict:
        return {
            "payloads": self.payloads,
            "outcomes": dict(sorted(self.outcomes.items(), key=lambda kv: _outcome_order(kv[0]))),
            "violations": dict(self.violations),
            "violations_total": sum(self.violations.values()),
            "violation_examples": {k: v for k, v in self.examples.items()},
            "seconds": round(self.seconds, 3),
            "rate_per_s": round(self.payloads / self.seconds, 1) if self.seconds else None,
        }


def _outcome_order(name: str) -> int:
    order = (FORWARDED,) + contract.REASONS + ("internal_error", "record_too_large")
    return order.index(name) if name in order else len(order)


# ---------------------------------------------------------------- path 1: contract.validate
def run_contract(cases: list[Case], tally: _Path) -> list[tuple[str, dict | None]]:
    """Validate every case (timed), then check the outcomes (not timed).

    Returns the outcome of each case: ``("forwarded", value)`` or ``(reason, None)``.
    """
    results: list[Any] = []
    validate = contract.validate
    t0 = time.perf_counter()
    for case in cases:
        try:
            results.append(validate(_decode_topic(case.topic), case.payload, NOW_MS))
        except ValidationError as exc:
            results.append(exc)
        except Exception as exc:  # noqa: BLE001 - that is the finding
            results.append(("unexpected", exc))
    tally.seconds += time.perf_counter() - t0
    out: list[tuple[str, dict | None]] = []
    for case, res in zip(cases, results):
        tally.payloads += 1
        if isinstance(res, tuple):
            tally.outcomes["unexpected_exception"] += 1
            tally.violation("unexpected_exception", case, repr(res[1]))
            out.append(("unexpected_exception", None))
            continue
        if isinstance(res, ValidationError):
            outcome, value = res.reason, None
            if outcome not in contract.REASONS:
                tally.violation("unknown_reason", case, outcome)
        else:
            outcome, value = FORWARDED, res
            try:
                schema.check_kafka_value(value)
            except ValidationError as exc:
                tally.violation("forwarded_fails_schema", case, str(exc))
            try:
                body = json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
                problem = flink_readable(body, value)
            except (ValueError, TypeError) as exc:
                problem = f"not JSON-encodable: {exc}"
            if problem:
                tally.violation("forwarded_not_flink_readable", case, problem)
        tally.outcomes[outcome] += 1
        if case.expected is not None and outcome != case.expected:
            tally.violation("expectation_mismatch", case, f"expected {case.expected}, got {outcome}")
        out.append((outcome, value))
    return out


# ---------------------------------------------------------------- path 2: the bridge's handler
class _DoneFuture:
    """A kafka-python future that has already succeeded: callbacks run at once."""

    def add_callback(self, fn, *args):
        fn(*args, None)
        return self

    def add_errback(self, _fn, *_args):
        return self


_DONE = _DoneFuture()


class _AckingProducer:
    """Stands in for ``KafkaProducer``: keeps each record, confirms it immediately."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes]] = []

    def factory(self, **_config):
        return self

    def send(self, topic, value=None, key=None):
        self.records.append((topic, key, value))
        return _DONE

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        pass


class _FakeMqttClient:
    """Stands in for paho's ``Client``: connects and grants QoS 1 at ``loop_start``; counts acks."""

    def __init__(self, *_args, **_kwargs) -> None:
        self.acks = 0
        self.on_connect = self.on_disconnect = self.on_subscribe = self.on_message = None

    def reconnect_delay_set(self, *_args) -> None:
        pass

    def connect_async(self, *_args, **_kwargs) -> None:
        pass

    def loop_start(self) -> None:
        flags = type("ConnectFlags", (), {"session_present": False})()
        self.on_connect(self, None, flags, ReasonCode(PacketTypes.CONNACK, "Success"), None)

    def loop_stop(self) -> None:
        pass

    def subscribe(self, _topic, options=None):
        self.on_subscribe(self, None, 1, [ReasonCode(PacketTypes.SUBACK, identifier=1)], None)
        return mqtt.MQTT_ERR_SUCCESS, 1

    def ack(self, _mid: int, _qos: int) -> int:
        self.acks += 1
        return mqtt.MQTT_ERR_SUCCESS

    def disconnect(self) -> None:
        flags = type("DisconnectFlags", (), {"is_disconnect_packet_from_server": False})()
        self.on_disconnect(self, None, flags, ReasonCode(PacketTypes.DISCONNECT, "Normal disconnection"), None)


class BridgeHarness:
    """A :class:`Bridge` with the fakes above, started, fed one message at a time."""

    def __init__(self, max_inflight: int = 1000) -> None:
        self.producer = _AckingProducer()
        cfg = BridgeSettings(mqtt_host="127.0.0.1", mqtt_port=1, topic_filter="sensors/+/telemetry",
                             client_id=f"fuzz-{uuid.uuid4().hex[:6]}", kafka_bootstrap="unused:9092",
                             readings_topic=READINGS_TOPIC, dlq_topic=DLQ_TOPIC, max_inflight=max_inflight)
        self.bridge = Bridge(cfg, producer_factory=self.producer.factory, client_factory=_FakeMqttClient,
                             clock_ms=lambda: NOW_MS)
        self.bridge.start()
        self.client = self.bridge.client
        self.mid = 0

    def message(self, case: Case) -> mqtt.MQTTMessage:
        self.mid = self.mid % 65535 + 1
        msg = mqtt.MQTTMessage(self.mid, case.topic)
        msg.payload, msg.qos = case.payload, 1
        return msg

    def wait_idle(self, received: int, timeout_s: float = 120.0) -> dict:
        try:
            return poll(self.bridge.stats, timeout_s, interval_s=0.0005, what="the bridge idle", retry_on=(),
                        until=lambda st: st["received"] >= received and st["pending"] == 0)
        except PollTimeout as exc:
            return exc.last

    def stop(self) -> None:
        self.bridge.stop(flush_timeout_s=5)


def run_bridge(cases: list[Case], harness: BridgeHarness, tally: _Path,
               contract_out: list[tuple[str, dict | None]]) -> None:
    """Hand every case to the bridge's ``on_message`` (timed until all are acked), then check
    the records, the counters and agreement with :func:`run_contract`'s outcomes."""
    before = harness.bridge.stats()
    acks_before = harness.client.acks
    harness.producer.records = []
    msgs = [harness.message(c) for c in cases]
    on_message = harness.client.on_message
    escaped: list[tuple[Case, BaseException]] = []
    t0 = time.perf_counter()
    for case, msg in zip(cases, msgs):
        try:
            on_message(harness.client, None, msg)
        except Exception as exc:  # noqa: BLE001 - that is the finding
            escaped.append((case, exc))
    st = harness.wait_idle(before["received"] + len(cases) - len(escaped))
    tally.seconds += time.perf_counter() - t0
    tally.payloads += len(cases)
    for case, exc in escaped:
        tally.outcomes["handler_exception"] += 1
        tally.violation("handler_exception", case, repr(exc))

    d = {k: st[k] - before[k] for k in ("received", "forwarded", "dead_lettered", "acked")}
    acked = harness.client.acks - acks_before
    records = harness.producer.records
    if not (d["received"] == len(cases) == d["forwarded"] + d["dead_lettered"] == d["acked"] == acked == len(records)) \
            or st["pending"]:
        tally.violation("count_mismatch", None, f"in {len(cases)}, received {d['received']}, forwarded "
                        f"{d['forwarded']} + dead-lettered {d['dead_lettered']}, acked {d['acked']}/{acked}, "
                        f"records {len(records)}, pending {st['pending']}")
    if len(records) != len(cases) or escaped:
        return  # records cannot be matched to cases one to one
    for case, (topic, _key, body), (c_outcome, c_value) in zip(cases, records, contract_out):
        if topic == READINGS_TOPIC:
            outcome = FORWARDED
            problem = flink_readable(body)
            if problem:
                tally.violation("forwarded_not_flink_readable", case, problem)
            try:
                doc = json.loads(body, parse_constant=_reject_constant)
            except ValueError:
                doc = None  # reported by flink_readable above
            try:
                schema.check_kafka_value(doc)
            except ValidationError as exc:
                tally.violation("forwarded_fails_schema", case, str(exc))
            if c_outcome == FORWARDED and doc != c_value:
                tally.violation("paths_disagree", case, "the forwarded value differs from validate's")
        else:
            try:
                letter = json.loads(body)
                outcome = letter["reason"]
                kept = base64.b64decode(letter["raw_b64"]) if "raw_b64" in letter else letter["raw"].encode()
            except (ValueError, KeyError, TypeError) as exc:
                tally.violation("dead_letter_bad", case, f"unreadable dead letter: {exc!r}")
                tally.outcomes["dead_letter_bad"] += 1
                continue
            if not (kept == case.payload or (letter.get("truncated") and case.payload.startswith(kept))):
                tally.violation("dead_letter_bad", case, "raw of the dead letter is not the payload")
            if outcome == "internal_error":
                tally.violation("internal_error", case, letter.get("detail", ""))
            elif outcome not in contract.REASONS:
                tally.violation("unknown_reason", case, outcome)
        tally.outcomes[outcome] += 1
        if outcome != c_outcome:
            tally.violation("paths_disagree", case, f"bridge {outcome}, validate {c_outcome}")


# ---------------------------------------------------------------- run
def run(count: int, seed: int, chunk: int = 5000) -> dict:
    """Fuzz ``count`` cases through both paths, ``chunk`` cases at a time (generation and
    checks are not timed). Returns the report (see the module docstring)."""
    contract_log = logging.getLogger("bridge.contract")
    level = contract_log.level
    contract_log.setLevel(logging.ERROR)  # stale-ts warnings: not the subject here
    paths = {"contract.validate": _Path("contract.validate"), "Bridge._on_message": _Path("Bridge._on_message")}
    categories: collections.Counter = collections.Counter()
    payload_bytes = 0
    harness = BridgeHarness()
    gen_s = 0.0
    try:
        for start in range(0, count, chunk):
            t0 = time.perf_counter()
            cases = list(generate(min(chunk, count - start), seed, start))
            gen_s += time.perf_counter() - t0
            for c in cases:
                categories[c.category] += 1
                payload_bytes += len(c.payload)
            outcomes = run_contract(cases, paths["contract.validate"])
            run_bridge(cases, harness, paths["Bridge._on_message"], outcomes)
    finally:
        harness.stop()
        contract_log.setLevel(level)
    reports = {name: p.report() for name, p in paths.items()}
    return {
        "count": count,
        "seed": seed,
        "now_ms": NOW_MS,
        "payload_bytes_avg": round(payload_bytes / count, 1) if count else 0,
        "categories": dict(categories),
        "generate_rate_per_s": round(count / gen_s, 1) if gen_s else None,
        "paths": reports,
        "violations_total": sum(r["violations_total"] for r in reports.values()),
        "every_reason_seen": sorted(set(contract.REASONS) - set(reports["contract.validate"]["outcomes"])) == [],
        "command": "bench/fuzz_contract.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()]},
    }


def print_table(report: dict) -> None:
    """Outcomes per reason and violations of both paths, side by side."""
    names = list(report["paths"])
    rows = sorted({k for p in report["paths"].values() for k in p["outcomes"]}, key=_outcome_order)
    width = 30
    print(f"fuzz_contract: {report['count']} payloads, seed {report['seed']}, "
          f"{report['payload_bytes_avg']} bytes on average")
    print(f"{'outcome':<{width}}" + "".join(f"{n:>22}" for n in names))
    for r in rows:
        print(f"{r:<{width}}" + "".join(f"{report['paths'][n]['outcomes'].get(r, 0):>22}" for n in names))
    kinds = sorted({k for p in report["paths"].values() for k in p["violations"]})
    print(f"{'violations':<{width}}" + "".join(f"{report['paths'][n]['violations_total']:>22}" for n in names))
    for k in kinds:
        print(f"  {k:<{width - 2}}" + "".join(f"{report['paths'][n]['violations'].get(k, 0):>22}" for n in names))
    print(f"{'payloads/s':<{width}}" + "".join(f"{report['paths'][n]['rate_per_s'] or 0:>22,.0f}" for n in names))
    for n in names:
        for kind, examples in report["paths"][n]["violation_examples"].items():
            print(f"[{n}] {kind}: {examples[0]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--count", type=int, default=100_000, help="payloads (default 100000)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the generator (default 1)")
    ap.add_argument("--chunk", type=int, default=5000, help="cases per chunk (default 5000)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz_contract.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = run(args.count, args.seed, args.chunk)
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {args.out}")
    return 1 if report["violations_total"] else 0


if __name__ == "__main__":
    sys.exit(main())
