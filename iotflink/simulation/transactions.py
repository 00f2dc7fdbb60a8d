"""Replay IBM TabFormer user 0 into the ``transactions`` topic, with injected fraud scenarios.

Source: ``data/tabformer/User0_credit_card_transactions.csv`` (synthetic, Apache-2.0; see
``data/ATTRIBUTION.md``): 19,963 transactions of user 0's 5 cards, 2002-2020, minute
resolution, amounts in USD (negative = refund), ``Errors?`` = decline reasons.

Event record (Kafka value, JSON; key = ``card_id``), the ``transactions`` table of
``sql/ddl.sql``::

    {"txn_id": "tf-<csv row>" | "inj-<scenario>-<n>", "seq": replay order (0, 1, ...),
     "user_id": 0, "card_id": "0-<card>", "ts": event time, epoch ms UTC,
     "event_type": "purchase" | "refund" | "address_change", "amount_usd": float (USD),
     "use_chip", "merchant_name", "merchant_city", "merchant_state", "zip", "mcc",
     "errors": decline reason(s) or null, "new_address": str (address_change only) or null,
     "is_fraud_label": TabFormer's own label (informational, not read by the rules)}

Times: the CSV's Year/Month/Day/Time is taken as UTC and kept (no shift: the stream, its
alerts and their ids are the same on every run). Several transactions of one card in the same
minute get 1 s apart in file order, so every card's event times are distinct and ordered.
The replay is in event-time order (nothing late).

Injected scenarios (``random.Random(seed)``; each in a gap of at least 6 h in the card's own
activity, so natural events do not join the pattern), one kind per rule:

- ``failed_burst``: 3 declined purchases within 100-200 s -> rule ``card_failed_burst``;
- ``address_change``: a purchase of 600-1,500 USD, an address change 30-180 s later, a
  purchase of 20-200 USD 1-15 min after that -> rule ``card_address_change``;
- ``velocity``: 3 approved purchases of 400-700 USD within 4 min -> rule ``card_velocity``
  (5x a historical 5-min average that is below 100 USD on every card with 20 purchases).

The ground truth (JSON, :func:`ground_truth`) lists every scenario with its events and the
alert id the rule must produce (``jobs.rules.alert_id``); it is written next to the replay.

Run::

    iotflink transactions             # replay into Kafka, write the ground truth
    iotflink transactions --jsonl F   # write the stream to a file instead
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import logging
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iotflink.errors import IotFlinkError
from iotflink.settings import TransactionSettings

log = logging.getLogger(__name__)

SCENARIO_RULES = {"failed_burst": "card_failed_burst", "address_change": "card_address_change",
                  "velocity": "card_velocity"}
MIN_GAP_MS = 6 * 3_600_000
DECLINES = ("Bad PIN", "Insufficient Balance", "Bad CVV", "Bad Expiration")


class TransactionReplayError(IotFlinkError):
    """The TabFormer file cannot be read, or the replay to Kafka failed."""


def _alert_id(rule_id: str, key: str, times: Sequence[int]) -> str:
    # the same definition as jobs.rules.alert_id (kept here so the replayer needs no PyFlink)
    return hashlib.sha256("|".join([rule_id, key, *map(str, times)]).encode()).hexdigest()


def load_tabformer(path: Path) -> list[dict[str, Any]]:
    """The CSV's transactions as event dicts (without ``seq``), in event-time order.

    Raises:
        TransactionReplayError: the file is missing or a row is malformed.
    """
    events: list[dict[str, Any]] = []
    last_minute: dict[str, tuple[int, int]] = {}
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            for i, r in enumerate(csv.DictReader(fh)):
                hh, mm = r["Time"].split(":")
                minute = int(datetime(int(r["Year"]), int(r["Month"]), int(r["Day"]), int(hh), int(mm),
                                      tzinfo=UTC).timestamp() * 1000)
                card = f"{r['User']}-{r['Card']}"
                prev_minute, k = last_minute.get(card, (None, -1))
                k = k + 1 if prev_minute == minute else 0
                last_minute[card] = (minute, k)
                amount = float(r["Amount"].lstrip("$"))
                errors = r["Errors?"].strip().rstrip(",") or None
                events.append({
                    "txn_id": f"tf-{i}", "user_id": int(r["User"]), "card_id": card,
                    "ts": minute + k * 1000,
                    "event_type": "refund" if amount < 0 else "purchase",
                    "amount_usd": amount, "use_chip": r["Use Chip"], "merchant_name": r["Merchant Name"],
                    "merchant_city": r["Merchant City"], "merchant_state": r["Merchant State"] or None,
                    "zip": r["Zip"] or None, "mcc": int(r["MCC"]), "errors": errors, "new_address": None,
                    "is_fraud_label": r["Is Fraud?"] == "Yes",
                })
    except (OSError, KeyError, ValueError) as exc:
        raise TransactionReplayError(f"cannot read TabFormer file {path}: {exc}") from exc
    events.sort(key=lambda e: (e["ts"], e["card_id"]))
    return events


@dataclass
class Scenario:
    """One injected fraud scenario: its kind, card, events and the alert the rule must raise."""

    scenario_id: str
    kind: str
    card_id: str
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rule_id(self) -> str:
        """The rule that must detect it."""
        return SCENARIO_RULES[self.kind]

    def expected_alert_times(self) -> list[int]:
        """Matched event times (ms) of the alert: all events, or the last one for velocity."""
        times = [e["ts"] for e in self.events]
        return times[-1:] if self.kind == "velocity" else times

    def to_json(self) -> dict[str, Any]:
        """The scenario's ground-truth entry."""
        times = self.expected_alert_times()
        return {"scenario_id": self.scenario_id, "kind": self.kind, "rule_id": self.rule_id,
                "card_id": self.card_id, "txn_ids": [e["txn_id"] for e in self.events],
                "seqs": [e["seq"] for e in self.events], "event_times_ms": [e["ts"] for e in self.events],
                "amounts_usd": [e["amount_usd"] for e in self.events],
                "expected_alert_id": _alert_id(self.rule_id, self.card_id, times)}


def _gaps(events: list[dict[str, Any]], card: str, min_history: int) -> list[int]:
    """Start times (ms) of quiet slots of ``card``: 3 h after an event followed by a >= 6 h gap."""
    own = [e for e in events if e["card_id"] == card]
    approved = 0
    slots = []
    for a, b in itertools.pairwise(own):
        if a["event_type"] == "purchase" and not a["errors"]:
            approved += 1
        if approved >= min_history and b["ts"] - a["ts"] >= MIN_GAP_MS:
            slots.append(a["ts"] + 3 * 3_600_000)
    return slots


def inject(events: list[dict[str, Any]], seed: int, per_kind: int) -> tuple[list[dict[str, Any]], list[Scenario]]:
    """Add ``per_kind`` scenarios of each kind; returns (all events with ``seq``, scenarios).

    Deterministic for a given ``seed``. Scenario cards are drawn among cards with at least 40
    approved purchases; each scenario takes its own quiet slot (see :func:`_gaps`).
    """
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    for e in events:
        if e["event_type"] == "purchase" and not e["errors"]:
            counts[e["card_id"]] = counts.get(e["card_id"], 0) + 1
    cards = sorted(c for c, n in counts.items() if n >= 40)
    slots = {c: _gaps(events, c, 20) for c in cards}
    last_event = {e["card_id"]: e for e in events}
    scenarios: list[Scenario] = []
    injected: list[dict[str, Any]] = []
    for kind in ("failed_burst", "address_change", "velocity"):
        for n in range(per_kind):
            card = rng.choice([c for c in cards if slots[c]])
            t = slots[card].pop(rng.randrange(len(slots[card])))
            sid = f"{kind}-{n}"
            proto = dict(last_event[card])
            sc = Scenario(sid, kind, card)

            def ev(ts: int, event_type: str, amount: float, errors: str | None = None,
                   new_address: str | None = None) -> None:
                # ev is called within this iteration only, so the loop's variables are current
                e = dict(proto, txn_id=f"inj-{sid}-{len(sc.events)}", ts=ts, event_type=event_type,  # noqa: B023
                         amount_usd=round(amount, 2), errors=errors, new_address=new_address,
                         is_fraud_label=True)
                sc.events.append(e)  # noqa: B023

            if kind == "failed_burst":
                t1 = t + rng.randint(30, 90) * 1000
                t2 = t + rng.randint(100, 200) * 1000
                for ts in (t, t1, t2):
                    ev(ts, "purchase", rng.uniform(50, 300), errors=rng.choice(DECLINES))
            elif kind == "address_change":
                ta = t + rng.randint(30, 180) * 1000
                tq = ta + rng.randint(60, 900) * 1000
                ev(t, "purchase", rng.uniform(600, 1500))
                ev(ta, "address_change", 0.0,
                   new_address=f"{rng.randint(1, 9999)} Elm St, Springfield {rng.randint(10000, 99999)}")
                ev(tq, "purchase", rng.uniform(20, 200))
            else:
                for ts in (t, t + rng.randint(40, 100) * 1000, t + rng.randint(120, 240) * 1000):
                    ev(ts, "purchase", rng.uniform(400, 700))
            scenarios.append(sc)
            injected.extend(sc.events)
    stream = sorted(events + injected, key=lambda e: (e["ts"], e["card_id"]))
    for seq, e in enumerate(stream):
        e["seq"] = seq
    return stream, scenarios


def build_stream(cfg: TransactionSettings) -> tuple[list[dict[str, Any]], list[Scenario]]:
    """The replayed stream (events in replay order, with ``seq``) and its injected scenarios."""
    return inject(load_tabformer(cfg.data_path), cfg.seed, cfg.scenarios_per_kind)


def ground_truth(cfg: TransactionSettings, stream: Sequence[dict], scenarios: Sequence[Scenario]) -> dict:
    """The ground-truth document: seed, counts, and every scenario (see :meth:`Scenario.to_json`)."""
    return {"source": str(cfg.data_path), "seed": cfg.seed, "events": len(stream),
            "injected_events": sum(len(s.events) for s in scenarios),
            "tabformer_fraud_labels": sum(1 for e in stream if e["is_fraud_label"] and e["txn_id"].startswith("tf-")),
            "scenarios": [s.to_json() for s in scenarios]}


def write_jsonl(path: Path, stream: Iterable[dict]) -> None:
    """Write the stream as JSON lines (the Kafka values), in replay order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for e in stream:
            fh.write(json.dumps(e) + "\n")


def publish(cfg: TransactionSettings, stream: Sequence[dict]) -> int:
    """Send the stream to ``cfg.topic`` (key card_id, acks=all); returns the count sent.

    With ``cfg.speedup > 0`` the sends are paced so that event time runs ``speedup`` times
    faster than the wall clock; 0 sends as fast as the broker acknowledges.

    Raises:
        TransactionReplayError: Kafka unreachable or a send failed.
    """
    from kafka import KafkaProducer  # noqa: PLC0415
    from kafka.errors import KafkaError  # noqa: PLC0415

    try:
        producer = KafkaProducer(bootstrap_servers=cfg.kafka_bootstrap, acks="all", linger_ms=20,
                                 key_serializer=str.encode,
                                 value_serializer=lambda v: json.dumps(v).encode())
    except KafkaError as exc:
        raise TransactionReplayError(f"Kafka at {cfg.kafka_bootstrap} unreachable: {exc}") from exc
    start_wall, start_ts = time.monotonic(), stream[0]["ts"] if stream else 0
    try:
        futures = []
        for e in stream:
            if cfg.speedup > 0:
                due = start_wall + (e["ts"] - start_ts) / 1000 / cfg.speedup
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the replay, not synchronisation
            futures.append(producer.send(cfg.topic, key=e["card_id"], value=e))
        producer.flush()
        for f in futures:
            f.get(timeout=30)
    except KafkaError as exc:
        raise TransactionReplayError(f"replay to {cfg.topic} failed: {exc}") from exc
    finally:
        producer.close()
    log.info("replayed %d transactions into %s", len(stream), cfg.topic)
    return len(stream)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``iotflink transactions`` (its arguments, :func:`run`) on the CLI's subparsers."""
    parser = sub.add_parser("transactions", help="replay TabFormer card transactions (+ injected fraud) into Kafka",
                            description=__doc__.splitlines()[0])
    parser.add_argument("--jsonl", type=Path, help="write the stream to this file instead of Kafka")
    parser.add_argument("--ground-truth", type=Path, help="default: IOTFLINK_TXN_GROUND_TRUTH")
    parser.add_argument("--seed", type=int, help="default: IOTFLINK_TXN_SEED")
    parser.set_defaults(func=run, log_level=logging.INFO)
    return parser


def run(args: argparse.Namespace) -> int:
    """``iotflink transactions``: build the stream, write the ground truth, replay to Kafka
    (or to ``--jsonl``)."""
    cfg = TransactionSettings.from_env()
    if args.seed is not None:
        from dataclasses import replace  # noqa: PLC0415

        cfg = replace(cfg, seed=args.seed)
    stream, scenarios = build_stream(cfg)
    gt_path = args.ground_truth or cfg.ground_truth_path
    gt_path.parent.mkdir(parents=True, exist_ok=True)
    gt_path.write_text(json.dumps(ground_truth(cfg, stream, scenarios), indent=2), encoding="utf-8")
    log.info("ground truth: %d scenarios -> %s", len(scenarios), gt_path)
    if args.jsonl:
        write_jsonl(args.jsonl, stream)
        print(f"{len(stream)} transactions -> {args.jsonl}; ground truth -> {gt_path}")
    else:
        n = publish(cfg, stream)
        print(f"{n} transactions -> {cfg.topic} at {cfg.kafka_bootstrap}; ground truth -> {gt_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m iotflink.simulation.transactions ...``: the same as ``iotflink transactions ...``."""
    from iotflink import cli  # noqa: PLC0415 - the CLI imports this module

    return cli.main(["transactions", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
