"""Each detection rule of ``sql/rules/`` on crafted event sequences, on a local MiniCluster.

One bounded job per rule runs every scenario of that rule at once: each scenario has its own
key (device or card) and its own stretch of event time, and rows are written in arrival
order. The watermark is the DDL's (10 s out-of-orderness) and is emitted after every row
(``jobs.rules.local_env``), so "late" is exact. Per rule the tests check: a match; the
near-misses at each bound of the pattern (a span just inside or outside the time limit, one
event too few, a success interleaved); out-of-order arrival inside the watermark bound (still matches);
arrival past it (no alert, and the row is in ``rules_late`` -- never dropped silently).
Unreadable records (:data:`POISON`) are interleaved with every rule's rows: each lands in
``rules_dlq`` with its reason and raw bytes, and the rule's alerts are exactly those of the
clean input (the job went on).
"""

from __future__ import annotations

import base64
import json

import pytest

from iotflink.kafka_io import heartbeat_value
from iotflink.settings import PROJECT_ROOT, RulesSettings
from iotflink.testing.rules_harness import BoundedRun, run_bounded_many
from jobs.rules import alert_id, discover_rules, local_env, parse_rule_file, split_statements

pytestmark = pytest.mark.minicluster

RULES_DIR = PROJECT_ROOT / "sql" / "rules"
HOUR = 3_600_000
BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z, epoch ms
CFG = RulesSettings()
BOUND = CFG.out_of_orderness_ms  # 10 s


#: Unreadable records per source table: (raw bytes, expected dead-letter reason).
POISON = {
    "readings": [
        (b'{"device_id":"p-1","seq":9223372036854775808,"ts":1767225600000,"readings":{"t":1.0}}', "parse_error"),
        (b"not json", "parse_error"),
        (b'{"device_id":"p-1","seq":1,"ts":1767225600000,"readings":{"t":"Infinity"}}', "non_finite"),
        (b'{"seq":1,"ts":1767225600000,"readings":{"t":1.0}}', "missing_field"),
    ],
    "transactions": [
        (b'{"txn_id":"x","seq":99999999999999999999,"card_id":"0-0","ts":1767225600000,"event_type":"purchase"}',
         "parse_error"),
        (b"\xff\x00\x01", "parse_error"),
        (b'{"txn_id":"x","seq":1,"ts":1767225600000,"event_type":"purchase"}', "missing_field"),
        (b'{"txn_id":"x","seq":1,"card_id":"0-0","ts":1767225600000,"event_type":"purchase","amount_usd":"NaN"}',
         "non_finite"),
    ],
}


def _with_poison(rows: list, table: str) -> list:
    """``rows`` with the poison records of ``table`` spread between them, and an end-of-stream
    heartbeat (:func:`iotflink.kafka_io.heartbeat_value`) at the end, which must be read, not
    dead-lettered, by both sources."""
    out = list(rows)
    for i, (raw, _) in enumerate(POISON[table]):
        out.insert(min(len(out), (i + 1) * max(1, len(rows) // (len(POISON[table]) + 1)) + i), raw)
    last_ts = max(r["ts"] for r in rows)
    out.append(heartbeat_value(0, last_ts + 31 * 24 * HOUR))
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run the four rules on their crafted inputs in ONE MiniCluster job; rule id -> BoundedRun."""
    t_env = local_env()
    runs = {}
    for rule_id, build_case in (("bearing_failure", _bearing_case), ("card_failed_burst", _failed_burst_case),
                                ("card_address_change", _address_change_case), ("card_velocity", _velocity_case)):
        rows, expected = build_case()
        run = BoundedRun(parse_rule_file(RULES_DIR / f"{rule_id}.sql"), tmp_path_factory.mktemp(rule_id),
                         database=f"t_{rule_id}")
        if rule_id == "bearing_failure":
            run.readings = _with_poison(rows, "readings")
        else:
            run.transactions = _with_poison(rows, "transactions")
        runs[rule_id] = (run, expected)
    run_bounded_many(t_env, CFG, [r for r, _ in runs.values()])
    for run, _ in runs.values():  # every unreadable record is in rules_dlq, with its reason
        table = "readings" if run.rule.rule_id == "bearing_failure" else "transactions"
        got = sorted((base64.b64decode(d["raw"]), d["reason"]) for d in run.dlq)
        assert got == sorted(POISON[table]), run.rule.rule_id
        assert {(d["rule_id"], d["source_table"]) for d in run.dlq} == {(run.rule.rule_id, table)}
    for run, _ in runs.values():
        for a in run.alerts:  # every alert carries its deterministic id
            assert a["rule_id"] == run.rule.rule_id
            assert a["alert_id"] == alert_id(a["rule_id"], a["alert_key"], [e["ts_ms"] for e in a["events"]])
            assert a["detection_ms"] == max(e["ts_ms"] for e in a["events"])
            assert isinstance(json.loads(a["details"]), dict)
        for rec in run.late:
            assert rec["rule_id"] == run.rule.rule_id
    return runs


def _by_key(alerts):
    out: dict[str, list[tuple[int, ...]]] = {}
    for a in alerts:
        out.setdefault(a["alert_key"], []).append(tuple(e["ts_ms"] for e in a["events"]))
    return out


# ----------------------------------------------------------------------------- bearing
class _Device:
    """Builds the readings of one device: 0.5 g every 10 s for the rule's run-in and baseline
    window (30 + 60 min), then a scenario."""

    def __init__(self, device_id: str, start_ms: int) -> None:
        self.id, self.seq, self.rows = device_id, 0, []
        for i in range(540):  # baseline: median 0.5 g -> spike threshold 1.5 x 0.5 = 0.75 g
            self.vib(start_ms + i * 10_000, 0.5)
        self.t = start_ms + 6_000_000  # scenario time zero, after the baseline window's end (5,400 s)

    def _add(self, ts: int, readings: dict) -> dict:
        row = {"device_id": self.id, "seq": self.seq, "ts": ts, "readings": readings, "ingest_ms": ts}
        self.seq += 1
        self.rows.append(row)
        return row

    def vib(self, ts: int, h: float) -> dict:
        return self._add(ts, {"h_rms_g": h, "v_rms_g": h * 0.8, "peak_abs_g": h * 4})

    def temp(self, ts: int, c: float) -> dict:
        return self._add(ts, {"temp_c": c})


def _bearing_case():
    """Rows in arrival order; expected: device -> matched (spike, T0, R) times or None, late seqs."""
    expected: dict[str, tuple[int, int, int] | None] = {}
    rows: list[dict] = []
    late_seqs: dict[str, int] = {}

    def device(name: str, n: int) -> _Device:
        return _Device(name, BASE + n * 4 * HOUR)

    d = device("match", 0)  # spike, T0 at +1 s (70.0), rise to 70.4 at +30 s
    t = d.t
    d.vib(t, 2.0), d.temp(t + 1000, 70.0), d.vib(t + 10_000, 0.5), d.temp(t + 20_000, 70.05), d.temp(t + 30_000, 70.4)
    d.temp(t + 120_000, 70.4)
    expected[d.id] = (t, t + 1000, t + 30_000)
    rows += d.rows

    d = device("rise_at_59s", 1)
    t = d.t
    d.vib(t, 2.0), d.temp(t + 1000, 70.0), d.temp(t + 59_000, 70.5), d.temp(t + 120_000, 70.5)
    expected[d.id] = (t, t + 1000, t + 59_000)
    rows += d.rows

    d = device("rise_at_60s", 2)  # WITHIN 60 s: the match must end less than 60 s after the spike
    t = d.t
    d.vib(t, 2.0), d.temp(t + 1000, 70.0), d.temp(t + 60_000, 70.5), d.temp(t + 120_000, 70.5)
    expected[d.id] = None
    rows += d.rows

    d = device("rise_at_61s", 3)
    t = d.t
    d.vib(t, 2.0), d.temp(t + 1000, 70.0), d.temp(t + 30_000, 70.05), d.temp(t + 61_000, 70.5)
    d.temp(t + 120_000, 70.5)
    expected[d.id] = None
    rows += d.rows

    d = device("wrong_order", 4)  # the temperature rises first, then the spike
    t = d.t
    d.temp(t - 30_000, 70.0), d.temp(t - 10_000, 70.5), d.vib(t, 2.0), d.temp(t + 20_000, 70.5)
    d.temp(t + 120_000, 70.5)
    expected[d.id] = None
    rows += d.rows

    d = device("small_spike", 5)  # 0.7 g < 1.5 x 0.5 g
    t = d.t
    d.vib(t, 0.7), d.temp(t + 1000, 70.0), d.temp(t + 30_000, 71.0), d.temp(t + 120_000, 71.0)
    expected[d.id] = None
    rows += d.rows

    d = device("small_rise", 6)  # rise 0.05 C < 0.1 C
    t = d.t
    d.vib(t, 2.0), d.temp(t + 1000, 70.0), d.temp(t + 30_000, 70.05), d.temp(t + 120_000, 70.05)
    expected[d.id] = None
    rows += d.rows

    d = device("out_of_order", 7)  # arrival S, R, T0: T0 is 4 s behind R, inside the 10 s bound
    t = d.t
    d.vib(t, 2.0)
    t0 = {"device_id": d.id, "seq": 10_000, "ts": t + 1000, "readings": {"temp_c": 70.0}, "ingest_ms": t + 5000}
    d.temp(t + 5000, 70.6)
    d.rows.append(t0)
    d.temp(t + 120_000, 70.6)
    expected[d.id] = (t, t + 1000, t + 5000)
    rows += d.rows

    d = device("late", 8)  # R (t + 5 s) arrives after t + 40 s: watermark t + 30 s has passed it
    t = d.t
    d.vib(t, 2.0), d.temp(t + 1000, 70.0), d.temp(t + 25_000, 70.0), d.temp(t + 40_000, 70.0)
    late = {"device_id": d.id, "seq": 20_000, "ts": t + 5000, "readings": {"temp_c": 70.9}, "ingest_ms": t + 41_000}
    d.rows.append(late)
    d.temp(t + 120_000, 70.0)
    expected[d.id] = None
    late_seqs[d.id] = 20_000
    rows += d.rows
    return rows, (expected, late_seqs)


def test_bearing_failure_crafted(results):
    run, (expected, late_seqs) = results["bearing_failure"]
    alerts, late = run.alerts, run.late
    got = _by_key(alerts)
    for device, want in expected.items():
        assert got.get(device, []) == ([want] if want else []), device
    assert set(got) <= set(expected)
    assert {(r["record_key"], r["seq"]) for r in late} == set(late_seqs.items())
    rec = late[0]
    assert rec["rule_id"] == "bearing_failure" and rec["source_table"] == "readings"
    assert json.loads(rec["record"]) == {"temp_c": 70.9}
    (match,) = [a for a in alerts if a["alert_key"] == "match"]
    assert [e["name"] for e in match["events"]] == ["h_rms_g", "temp_c", "temp_c"]
    assert [e["value"] for e in match["events"]] == [2.0, 70.0, 70.4]
    assert json.loads(match["details"])["baseline_g"] == pytest.approx(0.5)


# ----------------------------------------------------------------------------- cards
class _Cards:
    """Transactions in arrival order, one card per scenario."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.seq = 0

    def add(self, card: str, ts: int, event_type: str = "purchase", amount: float = 20.0,
            errors: str | None = None, arrive_later: bool = False) -> dict:
        row = {"txn_id": f"t{self.seq}", "seq": self.seq, "user_id": 0, "card_id": card, "ts": ts,
               "event_type": event_type, "amount_usd": amount, "use_chip": "Chip Transaction",
               "merchant_name": "1", "merchant_city": "La Verne", "merchant_state": "CA", "zip": "91750",
               "mcc": 5300, "errors": errors, "new_address": "1 Main St, Reno NV" if event_type == "address_change" else None}
        self.seq += 1
        if not arrive_later:
            self.rows.append(row)
        return row


def _t(n: int) -> int:
    return BASE + n * 6 * HOUR


def _failed_burst_case():
    c = _Cards()
    s = 1000
    fail = "Bad PIN,"
    for dt in (0, 60, 120):
        c.add("match", _t(0) + dt * s, errors=fail)
    for dt in (0, 60):
        c.add("two_failures", _t(1) + dt * s, errors=fail)
    for dt in (0, 150, 301):  # 5 min + 1 s
        c.add("span_5m01s", _t(2) + dt * s, errors=fail)
    for dt in (0, 150, 299):
        c.add("span_4m59s", _t(3) + dt * s, errors=fail)
    for dt in (0, 150, 300):  # exactly 5 min: WITHIN needs less
        c.add("span_5m00s", _t(4) + dt * s, errors=fail)
    c.add("interleaved", _t(5), errors=fail)
    c.add("interleaved", _t(5) + 30 * s)
    c.add("interleaved", _t(5) + 60 * s, errors="Insufficient Balance,")
    c.add("interleaved", _t(5) + 90 * s, amount=-5.0, event_type="refund")
    c.add("interleaved", _t(5) + 120 * s, errors=fail)
    for dt in (0, 10, 20, 30, 40, 50):  # 6 failures: two alerts (skip past last row)
        c.add("six_failures", _t(6) + dt * s, errors=fail)
    c.add("out_of_order", _t(7), errors=fail)  # arrival 0, 30, 25 s: 25 s is 5 s behind
    c.add("out_of_order", _t(7) + 30 * s, errors=fail)
    c.add("out_of_order", _t(7) + 25 * s, errors=fail)
    c.add("late", _t(8), errors=fail)
    c.add("late", _t(8) + 60 * s, errors=fail)
    c.add("late", _t(8) + 200 * s)
    late_row = c.add("late", _t(8) + 100 * s, errors=fail)  # 90 s behind the watermark
    c.add("late", _t(8) + 400 * s)
    return c.rows, late_row


def test_card_failed_burst_crafted(results):
    run, late_row = results["card_failed_burst"]
    alerts, late = run.alerts, run.late
    s, fail = 1000, "Bad PIN,"
    got = _by_key(alerts)
    m = [(_t(0), _t(0) + 60 * s, _t(0) + 120 * s)]
    assert got == {
        "match": m,
        "span_4m59s": [(_t(3), _t(3) + 150 * s, _t(3) + 299 * s)],
        "interleaved": [(_t(5), _t(5) + 60 * s, _t(5) + 120 * s)],
        "six_failures": [(_t(6), _t(6) + 10 * s, _t(6) + 20 * s), (_t(6) + 30 * s, _t(6) + 40 * s, _t(6) + 50 * s)],
        "out_of_order": [(_t(7), _t(7) + 25 * s, _t(7) + 30 * s)],
    }
    assert [(r["record_key"], r["seq"], r["rule_id"]) for r in late] == [("late", late_row["seq"], "card_failed_burst")]
    assert json.loads(late[0]["record"])["errors"] == fail


def _address_change_case():
    c = _Cards()
    m = 60_000
    c.add("match", _t(0), amount=800.0), c.add("match", _t(0) + m, "address_change", 0.0)
    c.add("match", _t(0) + 10 * m, amount=50.0)
    c.add("small_purchase", _t(1), amount=400.0), c.add("small_purchase", _t(1) + m, "address_change", 0.0)
    c.add("small_purchase", _t(1) + 10 * m, amount=50.0)
    c.add("wrong_order_apq", _t(2), "address_change", 0.0), c.add("wrong_order_apq", _t(2) + m, amount=800.0)
    c.add("wrong_order_apq", _t(2) + 2 * m, amount=50.0)
    c.add("wrong_order_pqa", _t(3), amount=800.0), c.add("wrong_order_pqa", _t(3) + m, amount=50.0)
    c.add("wrong_order_pqa", _t(3) + 2 * m, "address_change", 0.0)
    c.add("span_30m01s", _t(4), amount=800.0), c.add("span_30m01s", _t(4) + m, "address_change", 0.0)
    c.add("span_30m01s", _t(4) + 30 * m + 1000, amount=50.0)
    c.add("span_29m59s", _t(5), amount=800.0), c.add("span_29m59s", _t(5) + m, "address_change", 0.0)
    c.add("span_29m59s", _t(5) + 30 * m - 1000, amount=50.0)
    c.add("not_immediate", _t(6), amount=800.0), c.add("not_immediate", _t(6) + m, amount=20.0)
    c.add("not_immediate", _t(6) + 2 * m, "address_change", 0.0), c.add("not_immediate", _t(6) + 3 * m, amount=50.0)
    c.add("out_of_order", _t(7), amount=800.0)  # arrival P, Q, A: A is 4 s behind Q
    a = c.add("out_of_order", _t(7) + 8000, "address_change", 0.0, arrive_later=True)
    c.add("out_of_order", _t(7) + 12_000, amount=50.0)
    c.rows.append(a)
    c.add("late", _t(8), amount=800.0), c.add("late", _t(8) + m, "address_change", 0.0)
    q = c.add("late", _t(8) + 90_000, amount=50.0, arrive_later=True)
    c.add("late", _t(8) + 5 * m, "refund", -10.0)
    c.rows.append(q)  # arrives after the refund at +5 min: 200 s behind the watermark
    c.add("late", _t(8) + 60 * m, amount=20.0)
    return c.rows, q


def test_card_address_change_crafted(results):
    run, q = results["card_address_change"]
    alerts, late = run.alerts, run.late
    m = 60_000
    assert _by_key(alerts) == {
        "match": [(_t(0), _t(0) + m, _t(0) + 10 * m)],
        "span_29m59s": [(_t(5), _t(5) + m, _t(5) + 30 * m - 1000)],
        "out_of_order": [(_t(7), _t(7) + 8000, _t(7) + 12_000)],
    }
    assert [(r["record_key"], r["seq"]) for r in late] == [("late", q["seq"])]


def _tv(n: int) -> int:
    """Velocity scenarios span 31 h: start them 2 days apart."""
    return BASE + n * 48 * HOUR


def _velocity_case():
    c = _Cards()
    s = 1000
    _t = _tv

    def history(card: str, n: int) -> int:
        """25 purchases of 20 USD an hour apart: historical 5-min average 20 USD."""
        for i in range(25):
            c.add(card, _t(n) + i * HOUR, amount=20.0)
        return _t(n) + 30 * HOUR

    t = history("match", 0)  # 3 x 40 USD in 2 min: 120 >= 5 x (25*20 + 40 + 80) / 27 = 114.8
    for dt in (0, 60, 120):
        c.add("match", t + dt * s, amount=40.0)
    t = history("below_k", 1)  # 3 x 30 = 90 < 5 x ~21.4
    for dt in (0, 60, 120):
        c.add("below_k", t + dt * s, amount=30.0)
    t = history("span_5m01s", 2)  # the first 40 USD is 301 s before the third: only 80 in the window
    for dt in (0, 150, 301):
        c.add("span_5m01s", t + dt * s, amount=40.0)
    t = history("declined", 3)  # declined purchases are not spend
    for dt in (0, 60, 120):
        c.add("declined", t + dt * s, amount=40.0, errors="Insufficient Balance," if dt < 120 else None)
    for i in range(10):  # a new card: fewer than 20 earlier purchases, no baseline yet
        c.add("new_card", _t(4) + i * HOUR, amount=20.0)
    c.add("new_card", _t(4) + 10 * HOUR, amount=500.0)
    t = history("out_of_order", 5)  # arrival 0, 120, 115 s: 115 s is 5 s behind
    c.add("out_of_order", t, amount=40.0)
    c.add("out_of_order", t + 120 * s, amount=40.0)
    c.add("out_of_order", t + 115 * s, amount=40.0)
    t = history("late", 6)
    c.add("late", t, amount=40.0)
    c.add("late", t + 60 * s, amount=40.0)
    c.add("late", t + 200 * s, "refund", -1.0)
    late_row = c.add("late", t + 100 * s, amount=40.0)  # 90 s behind the watermark
    c.add("late", t + 2 * HOUR, amount=20.0)
    return c.rows, late_row


def test_card_velocity_crafted(results):
    run, late_row = results["card_velocity"]
    alerts, late = run.alerts, run.late
    got = _by_key(alerts)
    t_match = _tv(0) + 30 * HOUR + 120_000
    t_ooo = _tv(5) + 30 * HOUR + 120_000
    assert got == {"match": [(t_match,)], "out_of_order": [(t_ooo,)]}
    (a,) = [a for a in alerts if a["alert_key"] == "match"]
    details = json.loads(a["details"])
    assert details["spend_5m_usd"] == pytest.approx(120.0) and details["purchases_5m"] == 3
    assert details["hist_avg_usd"] == pytest.approx(620 / 27)
    assert [(r["record_key"], r["seq"]) for r in late] == [("late", late_row["seq"])]


# ----------------------------------------------------------------------------- files
def test_rule_files_have_headers_and_no_hosts():
    rules = discover_rules(RULES_DIR)
    assert {r.rule_id for r in rules} == {"bearing_failure", "bearing_impact_rise", "bearing_vibration_rise", "card_failed_burst",
                                          "card_address_change", "card_velocity"}
    for path in [*RULES_DIR.glob("*.sql"), PROJECT_ROOT / "sql" / "ddl.sql"]:
        text = path.read_text()
        for word in ("127.0.0.1", "localhost", "9092", "sensor-readings", "bootstrap.servers'"):
            assert word not in text, (path, word)


def test_split_statements_keeps_lines_and_statement_sets():
    sql = "-- c\nSET 'a' = 'b';\n\nCREATE VIEW v AS SELECT ';' AS x; -- ;\nEXECUTE STATEMENT SET\nBEGIN\n" \
          "INSERT INTO t SELECT 1;\nINSERT INTO u SELECT 2;\nEND;\n"
    stmts = split_statements(sql)
    assert [(s.kind, s.line) for s in stmts] == [("set", 2), ("sql", 4), ("statement_set", 5)]
    assert [(i.line, i.body()) for i in stmts[2].inserts] == [(7, "INSERT INTO t SELECT 1"), (8, "INSERT INTO u SELECT 2")]
