"""The payment-fraud load generator alone: the rate each writer variant holds at a target rate, in
one run (same Kafka, same plan, one variant after the other).

Usage (needs Kafka; ``--start-stack`` starts one on free ports and stops it after)::

    .venv/bin/python bench/fraud_writer_bench.py --start-stack [--rate 10000] [--duration-s 10]
        [--variants kafka-python/json/1,kafka-python/template/1,kafka-python/template/3,confluent/template/1,confluent/template/2]
        [--out bench/results/fraud_writer.json]

A variant is ``client/encoding/writers`` (:func:`iotflink.simulation.txn_load.write_paced`):
``kafka-python/json/1`` is the scenario's former writer (one kafka-python producer, a dict and
``json.dumps`` per record); ``template`` encodes each record from a bytes template; ``writers``
> 1 splits the cards among that many processes. Every variant writes the payment-fraud plan
(:func:`iotflink.simulation.scenarios.payment_fraud.plan`: ``rate x duration_s`` transactions
of 2,000 cards plus injected bursts) to a topic of its own (4 partitions, like the scenario's)
and reports: the rate acknowledged (transactions / time from the start to the last
acknowledgement), the most a transaction was written after its planned time, the writers' CPU
per transaction, and the load average. The records are then read back and checked: every
planned seq once, and each card's transactions in plan order in its partition (per-card order,
which the fraud rules need). Prints a table; writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from iotflink import kafka_io
from iotflink.runtime.stack import Stack, free_port_settings
from iotflink.settings import StackSettings
from iotflink.simulation.scenarios import payment_fraud
from iotflink.simulation.txn_load import read_records, write_paced

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VARIANTS = ("kafka-python/json/1,kafka-python/template/1,kafka-python/template/3,"
                    "confluent/template/1,confluent/template/2")


def check_topic(bootstrap: str, topic: str, planned: int) -> dict:
    """Read ``topic`` back: ``{"records", "distinct_seqs", "missing", "card_order_breaks"}``
    (a break: a card's transaction after one with a higher seq in the same partition)."""
    recs = read_records(bootstrap, topic)
    seqs = [r["value"]["seq"] for r in recs]
    last: dict[str, int] = {}
    breaks = 0
    for r in recs:  # partition then offset order
        v = r["value"]
        if last.get(v["card_id"], -1) > v["seq"]:
            breaks += 1
        last[v["card_id"]] = v["seq"]
    return {"records": len(recs), "distinct_seqs": len(set(seqs)), "missing": planned - len(set(seqs)),
            "card_order_breaks": breaks}


def main(argv: list[str] | None = None) -> int:
    """Run the variants; exit 0 when every variant wrote and read back every transaction in order."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=10_000.0, help="target transactions/s")
    ap.add_argument("--duration-s", type=int, default=10)
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help="client/encoding/writers, comma-separated")
    ap.add_argument("--start-stack", action="store_true", help="start Kafka on free ports (iotflink.runtime.stack)")
    ap.add_argument("--bootstrap", help="Kafka bootstrap (default: the stack settings')")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fraud_writer.json")
    args = ap.parse_args(argv)
    cfg = StackSettings.from_env()
    started = None
    if args.start_stack:
        cfg = free_port_settings(Path(tempfile.mkdtemp(prefix="fraud-writer-bench-")) / "run", cfg)
        started = Stack(cfg)
        started.start(services=("kafka",), progress=lambda m: print(f"[stack] {m}", flush=True))
    bootstrap = args.bootstrap or cfg.kafka_bootstrap
    txns = [(off, seq, card, declined) for seq, (off, card, declined) in
            enumerate(payment_fraud.plan(args.rate, args.duration_s, payment_fraud.BURSTS))]
    print(f"[bench] {len(txns)} transactions per variant: {args.rate:g}/s for {args.duration_s} s "
          f"on {os.cpu_count()} cores; load average {os.getloadavg()}", flush=True)
    runs = []
    ok = True
    try:
        for variant in args.variants.split(","):
            client, encoding, writers = variant.split("/")
            topic = f"bench-txn-{client}-{encoding}-{writers}"
            kafka_io.delete_topics_and_groups(bootstrap, [topic], [], client_id="iotflink-bench")
            kafka_io.create_topics(bootstrap, {topic: 4}, 1, client_id="iotflink-bench")
            load0 = os.getloadavg()[0]
            res = write_paced(bootstrap, topic, txns, int(writers), client=client, encoding=encoding)
            load1 = os.getloadavg()[0]
            check = check_topic(bootstrap, topic, len(txns))
            good = check["missing"] == 0 and check["records"] == len(txns) and check["card_order_breaks"] == 0
            ok = ok and good
            run = {"variant": variant, "client": client, "encoding": encoding, "writers": int(writers),
                   "transactions": len(txns), "rate_target_per_s": args.rate,
                   "rate_acked_per_s": round(res.rate_per_s, 1), "took_s": round(res.took_s, 2),
                   "behind_max_ms": res.behind_max_ms,
                   "cpu_us_per_record": round(res.cpu_us_per_record or 0, 1),
                   "per_writer": [{"records": w.records, "end_s": round(w.end_s, 2), "cpu_s": round(w.cpu_s, 2),
                                   "behind_max_ms": w.behind_max_ms} for w in res.writers],
                   "load_avg_1min": [load0, load1], "read_back": check, "ok": good}
            runs.append(run)
            print(f"[bench] {variant:26s} {run['rate_acked_per_s']:9.0f}/s acked (target {args.rate:g}), "
                  f"behind at most {res.behind_max_ms:8.1f} ms, CPU {run['cpu_us_per_record']:6.1f} us/txn, "
                  f"load {load0:.1f}->{load1:.1f}; read back {check}", flush=True)
            kafka_io.delete_topics_and_groups(bootstrap, [topic], [], client_id="iotflink-bench")
    finally:
        if started is not None:
            started.stop(services=("kafka",))
    doc = {"bench": "fraud_writer", "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "host": platform.node(), "cpus": os.cpu_count(), "rate_target_per_s": args.rate,
           "duration_s": args.duration_s, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"[bench] written to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
