"""Scenario ``payment-fraud``: "3 or more failed transactions on one card within 5 min", on two
paths: a processing-time path that alerts fast, and the event-time path that gives the exact
record for audit; the alert latency of the fast path measured end to end, both paths reconciled.

Data (generated, seeded, in real time): :data:`CARDS` cards, card transactions at
:data:`RATE_PER_S` per second (short run: :data:`SHORT_RATE_PER_S`) for :data:`DURATION_S` s,
written to Kafka with event time = the wall-clock time of writing. A transaction is declined
with probability :data:`P_DECLINE`; :data:`BURSTS` cards (short: :data:`SHORT_BURSTS`) each
get an injected burst of 3 declined purchases 0.5 s to a tenth of the run apart, starting
between a quarter and half of the run. The writer is :func:`iotflink.simulation.txn_load.write_paced`
(records encoded from a template, librdkafka's idempotent producer, paced in bursts of 1 ms;
``--writers N`` processes with the cards split among them); it reports the rate the broker
acknowledged, how far it fell behind the plan and its CPU per transaction. Each record's Kafka
timestamp is its ``ts``: the moment it was handed to the producer (its ingestion).
``python -m iotflink.simulation.scenarios.payment_fraud --rate N --duration-s S`` runs another
rate (README, "Scenarios", for the rates this machine held).

Jobs (``jobs/rules/``, one rule each, on the scenario's own topics):

- event time: ``sql/rules/card_failed_burst.sql`` (``MATCH_RECOGNIZE`` ordered by event
  time, emits when the watermark passes the third failure: exact, the audit record);
- processing time: :func:`proctime_rule` derives ``card_failed_burst_proctime`` from the
  event-time rule file at run time (one definition of the pattern): the same pattern ordered
  by ``PROCTIME()``, so it emits when the third failure arrives.

Measured: per fast-path alert, the Kafka timestamp of the alert record minus the Kafka
timestamp of the transaction that completed it (set by the writer to the moment it handed the
transaction to its producer): ingestion to the alert in Kafka, on one host clock; p50 / p99 / max.

Claims checked: every transaction written is in the topic once; the event-time path's alerts
equal the matches computed here from the transactions (:func:`reference_matches`: per card,
three consecutive declines, the third less than 5 min after the first, matching resumes after
the third), so every injected burst is found; the fast path's alerts are the same matches (reconciled by card and the three
transactions); its latency p99 is at most 100 ms (the field's target; reported even when
missed; a timing check, which the tests do not assert).
"""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

from iotflink.poll import poll, wait_for
from iotflink.settings import PROJECT_ROOT
from iotflink.simulation import txn_load
from iotflink.simulation.monitor import percentile
from iotflink.simulation.scenarios.base import Outcome, Say, Scenario, ScenarioError, reset_topics, submit_all

if TYPE_CHECKING:
    from iotflink.runtime.stack import Stack

NAME = "payment-fraud"
#: The event-time rule the fast path is derived from.
EVENT_RULE_FILE = PROJECT_ROOT / "sql" / "rules" / "card_failed_burst.sql"

#: The edits that make the processing-time fast path of the event-time rule (each must apply).
PROCTIME_EDITS = (
    # its own name: pipeline, view, alert id, rule_id and the late/DLQ rows
    ("card_failed_burst", "card_failed_burst_proctime"),
    # arrival order instead of event time: a match is emitted when its third failure arrives,
    # without waiting for the watermark
    ("FROM (SELECT * FROM transactions WHERE", "FROM (SELECT *, PROCTIME() AS proc_time FROM transactions WHERE"),
    ("ORDER BY event_time, seq", "ORDER BY proc_time"),
    # network buffers flushed after at most 5 ms instead of Flink's default 100 ms (Flink docs,
    # "Network Buffer Tuning" / execution.buffer-timeout.interval)
    ("SET 'pipeline.name' = 'rule:card_failed_burst_proctime';",
     "SET 'pipeline.name' = 'rule:card_failed_burst_proctime';\nSET 'execution.buffer-timeout.interval' = '5 ms';"),
)


def proctime_rule(event_sql: str) -> str:
    """The fast path's rule file (text) from the event-time rule's (``EVENT_RULE_FILE``): the
    edits of :data:`PROCTIME_EDITS`, applied in order.

    Raises:
        ScenarioError: an edit finds nothing to change (the event-time rule was rewritten; the
            edits must follow it).
    """
    out = event_sql
    for old, new in PROCTIME_EDITS:
        if old not in out:
            raise ScenarioError(f"{EVENT_RULE_FILE.name}: no {old!r} to derive the processing-time rule from")
        out = out.replace(old, new)
    return out
CARDS = 2000
RATE_PER_S, SHORT_RATE_PER_S = 10_000, 300
DURATION_S, SHORT_DURATION_S = 30, 10
BURSTS, SHORT_BURSTS = 40, 10
P_DECLINE = 0.0005
WITHIN_MS = 300_000
LATENCY_P99_TARGET_MS = 100.0
SEED = 7
TOPIC = "scenario-payment-fraud"
PATHS = {"event": "card_failed_burst", "proctime": "card_failed_burst_proctime"}
#: The card of the warm-up burst (3 declines written before the plan, seqs after the plan's).
WARMUP_CARD = "card-warmup"


def path_env(path: str) -> dict[str, str]:
    """``IOTFLINK_*`` overrides of one path's rule job: its own alerts, late, DLQ topics and group."""
    return {"IOTFLINK_TOPIC_TRANSACTIONS": TOPIC, "IOTFLINK_TOPIC_ALERTS": f"{TOPIC}-alerts-{path}",
            "IOTFLINK_TOPIC_RULES_LATE": f"{TOPIC}-late-{path}", "IOTFLINK_TOPIC_RULES_DLQ": f"{TOPIC}-dlq-{path}",
            "IOTFLINK_RULES_CONSUMER_GROUP": f"iotflink-scenario-fraud-{path}",
            "IOTFLINK_RULES_CHECKPOINT_INTERVAL_MS": "5000"}


def plan(rate: float, duration_s: int, bursts: int, seed: int = SEED) -> list[tuple[float, str, bool]]:
    """The transactions to write: ``(offset s from the start, card_id, declined)`` in time order:
    ``rate x duration_s`` at even spacing on random cards, each declined with probability
    :data:`P_DECLINE`, plus ``bursts`` injected bursts (3 declines on one card each,
    distinct cards). Same arguments, same plan."""
    rng = random.Random(seed)
    cards = [f"card-{i:04d}" for i in range(CARDS)]
    out = [(i / rate, rng.choice(cards), rng.random() < P_DECLINE) for i in range(int(rate * duration_s))]
    for card in rng.sample(cards, bursts):
        t = rng.uniform(0.25, 0.5) * duration_s  # after the jobs' start-up, ending inside the run
        for _ in range(3):
            out.append((t, card, True))
            t += rng.uniform(0.5, 0.1 * duration_s)
    out.sort(key=lambda x: x[0])
    return out


def reference_matches(txns: list[dict]) -> set[tuple[str, tuple[int, int, int]]]:
    """The matches of "3 consecutive declines of a card, the third less than 5 min after the
    first" (``AFTER MATCH SKIP PAST LAST ROW``): ``{(card_id, (seq1, seq2, seq3))}``, from the
    transactions alone (ordered by event time, then seq)."""
    by_card: dict[str, list[dict]] = {}
    for t in sorted(txns, key=lambda t: (t["ts"], t["seq"])):
        if t["errors"]:
            by_card.setdefault(t["card_id"], []).append(t)
    out = set()
    for card, fails in by_card.items():
        i = 0
        while i + 2 < len(fails):
            if fails[i + 2]["ts"] - fails[i]["ts"] < WITHIN_MS:
                out.add((card, tuple(f["seq"] for f in fails[i:i + 3])))
                i += 3
            else:
                i += 1
    return out


def _alert_match(alert: dict) -> tuple[str, tuple[int, ...]]:
    return alert["alert_key"], tuple(int(e["seq"]) for e in alert["events"])


def run(stack: Stack, short: bool, say: Say, rate: float | None = None, duration_s: int | None = None,
        writers: int = 1, client: str = "confluent") -> Outcome:
    """Run the scenario on ``stack`` (Kafka and Flink); ``short``: 300 transactions/s for 10 s.
    ``rate`` (transactions/s) and ``duration_s`` replace the plan's (``main``'s ``--rate``);
    ``writers`` writer processes and the Kafka ``client`` of :func:`iotflink.simulation.txn_load.write_paced`.

    Raises:
        ScenarioError: an alert names a transaction that is not in the topic.
        TxnLoadError: the writer failed; TimeoutError: a path's alerts did not come in 180 s.
    """
    from iotflink import kafka_io  # noqa: PLC0415
    from iotflink.runtime.flinkctl import FlinkCtl  # noqa: PLC0415

    plan_rate, plan_duration, bursts = (SHORT_RATE_PER_S, SHORT_DURATION_S, SHORT_BURSTS) if short else \
        (RATE_PER_S, DURATION_S, BURSTS)
    rate = rate if rate is not None else plan_rate
    duration = duration_s if duration_s is not None else plan_duration
    ctl = FlinkCtl(stack.s)
    envs = {p: path_env(p) for p in PATHS}
    reset_topics(stack, [TOPIC, *(envs[p][k] for p in PATHS for k in
                                  ("IOTFLINK_TOPIC_ALERTS", "IOTFLINK_TOPIC_RULES_LATE", "IOTFLINK_TOPIC_RULES_DLQ"))],
                 [envs[p]["IOTFLINK_RULES_CONSUMER_GROUP"] for p in PATHS])
    stack.create_topics(names=[TOPIC, *(envs[p][k] for p in PATHS for k in
                                        ("IOTFLINK_TOPIC_ALERTS", "IOTFLINK_TOPIC_RULES_LATE",
                                         "IOTFLINK_TOPIC_RULES_DLQ"))])
    fast_dir = stack.s.run_dir / "scenario-payment-fraud-rules"
    fast_dir.mkdir(parents=True, exist_ok=True)
    (fast_dir / f"{PATHS['proctime']}.sql").write_text(proctime_rule(EVENT_RULE_FILE.read_text()))
    jobs = {}
    try:
        for p, rule in PATHS.items():
            say(f"submitting jobs.rules --rule {rule} ({p} path)")
        jobs.update(submit_all(ctl, {p: ("rules", ["--rule", rule] + (["--rules-dir", str(fast_dir)]
                                                                     if p == "proctime" else []), envs[p])
                                     for p, rule in PATHS.items()}))
        for j in jobs.values():
            ctl.wait_running(j)

        def alerts(p: str) -> list[dict]:
            return [r for r in kafka_io.read_topic(stack.s.kafka_bootstrap, envs[p]["IOTFLINK_TOPIC_ALERTS"])
                    if r["value"]]

        txplan = plan(rate, duration, bursts)
        # warm-up: a burst on a card of its own, then the plan once the fast path has alerted it
        # (RUNNING comes before the source reads; its start-up is not the steady latency)
        txn_load.write_paced(stack.s.kafka_bootstrap, TOPIC, [(0.0, len(txplan) + i, WARMUP_CARD, True)
                                                              for i in range(3)],
                             client=client, client_id="iotflink-scenario-fraud-warmup")
        warm = poll(lambda: [a for a in alerts("proctime") if a["value"]["alert_key"] == WARMUP_CARD], 120,
                        interval_s=0.2, what="the processing-time path's alert of the warm-up burst")
        say(f"warm-up: the processing-time path alerted a burst on {WARMUP_CARD} "
            f"{warm[0]['timestamp'] - int(warm[0]['value']['detection_ms'])} ms after its third decline "
            "(its start-up; not in the latency figures)")
        say(f"writing {len(txplan)} transactions of {CARDS} cards at {rate:g}/s for {duration} s, "
            f"{bursts} injected bursts of 3 declines ({writers} {client} writer(s); load average "
            f"{os.getloadavg()[0]:.1f})")
        load0 = os.getloadavg()
        wrote = txn_load.write_paced(stack.s.kafka_bootstrap, TOPIC,
                                     [(off, seq, card, d) for seq, (off, card, d) in enumerate(txplan)],
                                     writers, client=client, client_id="iotflink-scenario-fraud")
        load1 = os.getloadavg()
        achieved = wrote.rate_per_s
        say(f"wrote {wrote.acked} transactions in {wrote.took_s:.1f} s: {achieved:.0f}/s acknowledged; "
            f"at most {wrote.behind_max_ms:.0f} ms behind the plan; writer CPU "
            f"{wrote.cpu_us_per_record:.1f} us per transaction; load average {load1[0]:.1f}")
        txns = {r["value"]["seq"]: r for r in txn_load.read_records(stack.s.kafka_bootstrap, TOPIC)}
        expected = reference_matches([r["value"] for r in txns.values()])
        last_ts = max(r["value"]["ts"] for r in txns.values())
        say(f"reference: {len(expected)} matches from the transactions (the warm-up's included); ending the "
            "event-time stream with heartbeats past the last transaction")

        with kafka_io.Heartbeat(stack.s.kafka_bootstrap, TOPIC, last_ts + 3_600_000):
            for p in PATHS:
                wait_for(lambda p=p: len({_alert_match(a["value"]) for a in alerts(p)}) >= len(expected), 180,
                         interval_s=1.0, what=f"the {p} path's alerts")
        got = {p: alerts(p) for p in PATHS}
        late = {p: len(kafka_io.read_topic(stack.s.kafka_bootstrap, envs[p]["IOTFLINK_TOPIC_RULES_LATE"]))
                for p in PATHS}
    finally:
        for j in jobs.values():
            try:
                ctl.cancel(j)
            except Exception as exc:  # noqa: BLE001 - cleaning up
                say(f"cancelling {j}: {exc}")
    matches = {p: {_alert_match(a["value"]) for a in got[p]} for p in PATHS}
    latencies = []
    for a in got["proctime"]:
        if a["value"]["alert_key"] == WARMUP_CARD:
            continue
        third = txns.get(int(a["value"]["events"][2]["seq"]))
        if third is None:
            raise ScenarioError(f"alert {a['value']['alert_id']} names a transaction not in {TOPIC}")
        latencies.append(a["timestamp"] - third["timestamp"])
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    warmup_ms = warm[0]["timestamp"] - int(warm[0]["value"]["detection_ms"])
    say("")
    say(f"alerts: event-time path {len(got['event'])} ({len(matches['event'])} distinct), processing-time path "
        f"{len(got['proctime'])} ({len(matches['proctime'])} distinct); reference {len(expected)}")
    say(f"processing-time path latency (transaction in Kafka -> alert in Kafka): p50 {p50} ms, p99 {p99} ms, "
        f"max {max(latencies) if latencies else None} ms over {len(latencies)} alerts")
    out = Outcome()
    out.figures = {"rate_target_per_s": rate, "rate_achieved_per_s": round(achieved, 1),
                   "writer_client": client, "writers": writers, "writer_behind_max_ms": wrote.behind_max_ms,
                   "writer_cpu_us_per_txn": round(wrote.cpu_us_per_record or 0.0, 1),
                   "load_avg_1_5_15_writing_start": [round(x, 2) for x in load0],
                   "load_avg_1_5_15_writing_end": [round(x, 2) for x in load1],
                   "transactions": len(txplan), "transactions_in_topic": len(txns),
                   "late_event": late["event"], "late_proctime": late["proctime"],
                   "cards": CARDS, "injected_bursts": bursts,
                   "reference_matches": len(expected), "event_alerts": len(got["event"]),
                   "proctime_alerts": len(got["proctime"]), "latency_p50_ms": p50, "latency_p99_ms": p99,
                   "latency_max_ms": max(latencies) if latencies else None,
                   "latency_alerts": len(latencies), "warmup_alert_latency_ms": warmup_ms}
    out.check("every transaction written is in the topic once",
              len(txns) == len(txplan) + 3 == wrote.acked + 3 and set(txns) == set(range(len(txplan) + 3)),
              f"{wrote.acked} acknowledged, {len(txns)} distinct seqs in {TOPIC} of {len(txplan)} planned + 3 warm-up")
    out.check("the event-time path's alerts are exactly the reference matches (the audit record)",
              matches["event"] == expected,
              f"{len(matches['event'] & expected)}/{len(expected)} found, {len(matches['event'] - expected)} extra")
    out.check("both paths' alerts reconciled (same card, same three transactions)",
              matches["proctime"] == matches["event"],
              f"only event-time: {len(matches['event'] - matches['proctime'])}, only processing-time: "
              f"{len(matches['proctime'] - matches['event'])}")
    out.check(f"processing-time path: alert latency p99 at most {LATENCY_P99_TARGET_MS:g} ms "
              f"(at {achieved:.0f} transactions/s written, this run's rate)",
              p99 is not None and p99 <= LATENCY_P99_TARGET_MS, f"p50 {p50} ms, p99 {p99} ms", timing=True)
    return out


SCENARIO = Scenario(NAME, "3 declines on one card within 5 min: a processing-time path (latency p99 measured "
                          "against 100 ms) and the exact event-time path for audit, reconciled", run)


def main(argv: list[str] | None = None) -> int:
    """``python -m iotflink.simulation.scenarios.payment_fraud [--rate N] [--duration-s S]
    [--writers N] [--client confluent|kafka-python] [--no-results]``: the full run at another
    rate (transactions/s written), length or writer; exit status 0 when every check held (the
    latency bound included), 1 otherwise."""
    import argparse  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from iotflink.settings import StackSettings  # noqa: PLC0415
    from iotflink.simulation import scenarios  # noqa: PLC0415

    p = argparse.ArgumentParser(prog=NAME, description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=RATE_PER_S, help=f"transactions/s (default {RATE_PER_S})")
    p.add_argument("--duration-s", type=int, default=DURATION_S, help=f"seconds of writing (default {DURATION_S})")
    p.add_argument("--writers", type=int, default=1, help="writer processes, the cards split among them (default 1)")
    p.add_argument("--client", choices=txn_load.CLIENTS, default="confluent", help="the writers' Kafka client")
    p.add_argument("--no-results", action="store_true")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    if a.rate <= 0 or a.duration_s <= 0 or a.writers < 1:
        p.error("--rate, --duration-s and --writers must be positive")
    return scenarios.run(NAME, StackSettings.from_env(), False, not a.no_results,
                         runner=lambda stack, say: run(stack, False, say, rate=a.rate, duration_s=a.duration_s,
                                                       writers=a.writers, client=a.client))

if __name__ == "__main__":
    raise SystemExit(main())
