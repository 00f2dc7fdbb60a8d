"""The TabFormer replayer, and the three card rules on its replayed stream (MiniCluster).

The rules run on exactly the records the replayer sends to Kafka (``build_stream``), in
replay order. Checks: every injected scenario is found (its expected alert id is present),
and every other alert is explained: ``card_failed_burst`` and ``card_address_change`` raise
nothing else (TabFormer has no 3-failure burst and no address changes), and each
``card_velocity`` alert equals a purchase that the velocity definition, recomputed here in
plain Python, flags (natural spend bursts of the data set, or injected scenarios).
"""

from __future__ import annotations

import collections
import json
from dataclasses import replace

import pytest

from iotflink.settings import PROJECT_ROOT, RulesSettings, TransactionSettings
from iotflink.simulation.transactions import SCENARIO_RULES, build_stream, ground_truth, load_tabformer, main
from iotflink.testing.rules_harness import BoundedRun, run_bounded_many
from jobs.rules import alert_id, local_env, parse_rule_file

CFG = TransactionSettings.from_env({})
RULES = ("card_failed_burst", "card_address_change", "card_velocity")


@pytest.fixture(scope="module")
def replay():
    return build_stream(CFG)


def test_stream_is_deterministic_and_ordered(replay):
    stream, scenarios = replay
    again, again_sc = build_stream(CFG)
    assert stream == again and [s.to_json() for s in scenarios] == [s.to_json() for s in again_sc]
    other, _ = build_stream(replace(CFG, seed=CFG.seed + 1))
    assert other != stream
    assert [e["seq"] for e in stream] == list(range(len(stream)))
    assert [e["ts"] for e in stream] == sorted(e["ts"] for e in stream)
    per_card = collections.defaultdict(list)
    for e in stream:
        per_card[e["card_id"]].append(e["ts"])
    assert all(len(ts) == len(set(ts)) for ts in per_card.values())  # distinct times per card
    assert len(stream) == 19_963 + 3 * 3 * CFG.scenarios_per_kind


def test_scenarios_are_isolated_and_typed(replay):
    stream, scenarios = replay
    assert collections.Counter(s.kind for s in scenarios) == {k: CFG.scenarios_per_kind for k in SCENARIO_RULES}
    by_card = collections.defaultdict(list)
    for e in stream:
        by_card[e["card_id"]].append(e)
    for sc in scenarios:
        ids = {e["txn_id"] for e in sc.events}
        t0, t1 = sc.events[0]["ts"], sc.events[-1]["ts"]
        near = [e for e in by_card[sc.card_id] if t0 - 3_600_000 < e["ts"] < t1 + 3_600_000]
        assert {e["txn_id"] for e in near} == ids, sc.scenario_id  # nothing else within 1 h
        kinds = [e["event_type"] for e in sc.events]
        if sc.kind == "address_change":
            assert kinds == ["purchase", "address_change", "purchase"] and sc.events[0]["amount_usd"] > 500
        else:
            assert kinds == ["purchase"] * 3 and t1 - t0 < 300_000
        assert all(bool(e["errors"]) == (sc.kind == "failed_burst") for e in sc.events)


def test_main_writes_stream_and_ground_truth(tmp_path, replay):
    out, gt = tmp_path / "txn.jsonl", tmp_path / "gt.json"
    assert main(["--jsonl", str(out), "--ground-truth", str(gt)]) == 0
    lines = out.read_text().splitlines()
    stream, scenarios = replay
    assert len(lines) == len(stream) and json.loads(lines[0]) == stream[0]
    doc = json.loads(gt.read_text())
    assert doc == json.loads(json.dumps(ground_truth(CFG, stream, scenarios)))
    assert doc["tabformer_fraud_labels"] == 27


def test_tabformer_declines_have_no_burst():
    """data/README: no card has 3 failed transactions within 5 minutes on its own."""
    per_card = collections.defaultdict(list)
    for e in load_tabformer(CFG.data_path):
        if e["errors"]:
            per_card[e["card_id"]].append(e["ts"])
    for ts in per_card.values():
        assert all(b - a >= 300_000 for a, b in zip(ts, ts[2:]))


def velocity_flags(stream, k: float, min_history: int, window_ms: int = 300_000, rel: float = 0.0):
    """The velocity definition in plain Python: set of (card_id, ts) of flagged purchases.

    ``rel`` widens (+) or narrows (-) the threshold to bracket float rounding.
    """
    flagged = set()
    per_card = collections.defaultdict(list)
    for e in stream:
        if e["event_type"] == "purchase" and not e["errors"] and e["amount_usd"] > 0:
            per_card[e["card_id"]].append(e)
    for card, evs in per_card.items():
        prior = []
        lo = 0
        for i, e in enumerate(evs):
            while evs[lo]["ts"] < e["ts"] - window_ms:
                lo += 1
            spend = sum(x["amount_usd"] for x in evs[lo:i + 1])
            if len(prior) >= min_history and spend >= k * (sum(prior) / len(prior)) * (1 - rel):
                flagged.add((card, e["ts"]))
            prior.append(spend)
    return flagged


@pytest.mark.minicluster
@pytest.mark.slow
def test_card_rules_on_replayed_tabformer(tmp_path, replay):
    stream, scenarios = replay
    runs = [BoundedRun(parse_rule_file(PROJECT_ROOT / "sql" / "rules" / f"{r}.sql"), tmp_path / r,
                       transactions=stream, database=f"tf_{r}") for r in RULES]
    run_bounded_many(local_env(), RulesSettings(), runs)
    alerts = {run.rule.rule_id: run.alerts for run in runs}
    for run in runs:
        assert run.late == []  # the replay is in event-time order
        for a in run.alerts:
            assert a["alert_id"] == alert_id(a["rule_id"], a["alert_key"], [e["ts_ms"] for e in a["events"]])
    ids = {r: {a["alert_id"] for a in alerts[r]} for r in RULES}
    assert all(len(ids[r]) == len(alerts[r]) for r in RULES)  # no duplicate alerts
    expected = collections.defaultdict(set)
    for sc in scenarios:
        expected[sc.rule_id].add(sc.to_json()["expected_alert_id"])
    # 1. every injected scenario is found
    for r in RULES:
        assert expected[r] <= ids[r], (r, expected[r] - ids[r])
    # 2. every other alert is explained
    assert ids["card_failed_burst"] == expected["card_failed_burst"]
    assert ids["card_address_change"] == expected["card_address_change"]
    velocity = parse_rule_file(PROJECT_ROOT / "sql" / "rules" / "card_velocity.sql").params
    got = {(a["alert_key"], a["detection_ms"]) for a in alerts["card_velocity"]}
    strict = velocity_flags(stream, velocity["k"], int(velocity["min_history"]), rel=-1e-9)
    loose = velocity_flags(stream, velocity["k"], int(velocity["min_history"]), rel=1e-9)
    assert strict <= got <= loose
    injected_times = {(sc.card_id, e["ts"]) for sc in scenarios for e in sc.events}
    natural = got - injected_times
    print(f"velocity alerts: {len(got)}, on injected events: {len(got & injected_times)}, "
          f"natural spend bursts: {len(natural)}")
