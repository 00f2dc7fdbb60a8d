"""The paced transaction writer's pure parts (no services): the template encoding equals
``json.dumps`` of the record, and the split by card keeps each card in one share, in order."""

from __future__ import annotations

import json

import pytest

from iotflink.simulation import txn_load
from iotflink.simulation.scenarios import payment_fraud


@pytest.mark.parametrize("declined", [False, True])
@pytest.mark.parametrize(("seq", "card", "ts"), [(0, "card-0000", 0), (123456, "card-1999", 1_764_300_000_123),
                                                 (7, 'odd "card" \\ é', 1)])
def test_template_encoding_is_json_dumps_of_the_record(seq, card, ts, declined):
    encoded = txn_load.encode_txn(seq, json.dumps(card).encode(), declined, ts)
    assert encoded == json.dumps(txn_load.txn_value(seq, card, declined, ts)).encode()
    value = json.loads(encoded)
    assert (value["seq"], value["card_id"], value["ts"]) == (seq, card, ts)
    assert value["txn_id"] == f"sc-{seq}" and (value["errors"] is not None) == declined


def test_split_by_card_keeps_every_card_in_one_share_in_plan_order():
    txns = [(off, seq, card, d) for seq, (off, card, d) in enumerate(payment_fraud.plan(200, 5, 3))]
    shares = txn_load.split_by_card(txns, 3)
    assert sorted(t for s in shares for t in s) == sorted(txns)  # every transaction once
    owner = {}
    for i, share in enumerate(shares):
        assert [t[1] for t in share] == sorted(t[1] for t in share)  # plan order within a share
        for t in share:
            assert owner.setdefault(t[2], i) == i  # one share per card
    assert all(shares) and txn_load.split_by_card(txns, 1) == [txns]
    with pytest.raises(ValueError):
        txn_load.split_by_card(txns, 0)
