"""Throughput cost of reading sensor-readings with the ``json-dlq`` format instead of ``json``.

The window job (exactly :func:`jobs.sensor_windows.build`, dedup on, blackhole sinks) reads the
same generated JSON-lines file three ways, in one run:

- ``json`` (before): Flink's JSON format. The dead-letter columns are absent from the records,
  so they read as NULL and every row passes the job's filter: the pipeline of the job before
  the change, which fails on the first unreadable record.
- ``json-dlq`` (after): the format the job ships with; every record readable.
- ``json-dlq+poison``: the same file with ``--poison-share`` of extra unreadable records
  (integers beyond BIGINT, text that is not JSON) between the readings; they go to the DLQ
  sink (a blackhole here) and the job goes on. ``json`` cannot run this input at all.

Rounds run in ABBA order (``json``, ``json-dlq``, ``json-dlq``, ``json``, ...) so drift in the
machine's load hits both alike; the figure is the median events/s per variant and the ratio of
the medians. events/s = readings in the file / the job's net runtime
(``JobExecutionResult.getNetRuntime``, deployment included; use files that run well over 10 s).

Usage::

    .venv/bin/python bench/dlq_format_bench.py --events 1000000 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from window_job_bench import write_events_file

from iotflink.settings import WindowJobSettings
from jobs import common
from jobs import sensor_windows as sw
from jobs.common import create_table_env, job_configuration, with_clause

log = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results" / "dlq_format.json"

#: Unreadable records mixed in for ``json-dlq+poison``.
POISON_LINES = (
    b'{"device_id":"p-1","seq":9223372036854775808,"ts":1767225600000,"readings":{"temp_c":1.0}}',
    b"not json",
)


def _run(cfg: WindowJobSettings, path: Path, fmt: str, checkpoint_dir: Path) -> float:
    """One bounded job over ``path`` with value format ``fmt``; its net runtime (s)."""
    conf = job_configuration(cfg, f"bench_dlq_{fmt}", use_kafka=False, extra={
        "state.backend.type": "rocksdb", "execution.checkpointing.dir": checkpoint_dir.as_uri()})
    t_env = create_table_env(conf)
    if fmt == "json":
        opts = {"connector": "filesystem", "path": str(path), "format": "json",
                "json.fail-on-missing-field": "false", "json.ignore-parse-errors": "false"}
        t_env.execute_sql(f"CREATE TABLE src ({sw.source_schema(cfg, kafka=False)}\n) {with_clause(opts)}")
    else:
        t_env.execute_sql(sw.file_source_ddl(cfg, "src", path))
    t_env.execute_sql(f"CREATE TABLE bh_agg ({sw.AGGREGATE_COLUMNS}\n) WITH ('connector' = 'blackhole')")
    t_env.execute_sql(f"CREATE TABLE bh_late ({sw.LATE_COLUMNS}\n) WITH ('connector' = 'blackhole')")
    t_env.execute_sql(f"CREATE TABLE bh_dups ({sw.DUPLICATE_COLUMNS}\n) WITH ('connector' = 'blackhole')")
    t_env.execute_sql(f"CREATE TABLE bh_dlq ({sw.DLQ_COLUMNS}\n) WITH ('connector' = 'blackhole')")
    result = common.execute(t_env, sw.build(t_env, cfg, "src", "bh_agg", "bh_late", "bh_dups", "bh_dlq"))
    return result.get_job_client().get_job_execution_result().result().get_net_runtime() / 1000.0


def _with_poison(src: Path, dst: Path, share: float) -> int:
    """Copy ``src`` to ``dst`` with an unreadable line after every ``1/share`` lines; their count."""
    every = max(1, round(1 / share))
    added = 0
    with src.open("rb") as fin, dst.open("wb") as fout:
        for i, line in enumerate(fin, 1):
            fout.write(line)
            if i % every == 0:
                fout.write(POISON_LINES[added % len(POISON_LINES)] + b"\n")
                added += 1
    return added


def main(argv: list[str] | None = None) -> int:
    """Run the variants in ABBA rounds, print the table, write :data:`RESULTS`; exit status 0."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=2, help="ABBA rounds (each runs json and json-dlq twice)")
    p.add_argument("--poison-share", type=float, default=0.01)
    p.add_argument("--devices", type=int, default=50)
    p.add_argument("--readings", type=int, default=2, choices=(1, 2, 3))
    p.add_argument("--late-share", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--window-ms", type=int, default=60_000)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = replace(WindowJobSettings(), window_size_ms=args.window_ms, parallelism=1)
    runs: dict[str, list[float]] = {"json": [], "json-dlq": [], "json-dlq+poison": []}
    with tempfile.TemporaryDirectory(prefix="dlq-bench-") as tmp:
        clean = Path(tmp) / "clean.json"
        write_events_file(clean, args.events, args, cfg)
        poisoned = Path(tmp) / "poisoned.json"
        added = _with_poison(clean, poisoned, args.poison_share)
        order = []
        for _ in range(args.rounds):
            order += ["json", "json-dlq", "json-dlq+poison", "json-dlq+poison", "json-dlq", "json"]
        for i, variant in enumerate(order):
            path = poisoned if variant.endswith("poison") else clean
            fmt = "json" if variant == "json" else "json-dlq"
            runtime = _run(cfg, path, fmt, Path(tmp) / f"chk{i}")
            runs[variant].append(args.events / runtime)
            print(f"round {i + 1:>2}/{len(order)} {variant:<16} {args.events / runtime:>10,.0f} readings/s "
                  f"({runtime:.2f} s net)", flush=True)
    med = {v: statistics.median(x) for v, x in runs.items()}
    result = {
        "events": args.events, "readings_per_event": args.readings, "poison_records": added,
        "rounds": args.rounds, "order": "ABBA", "parallelism": 1, "cpus": os.cpu_count(),
        "events_per_s": {v: [round(x) for x in xs] for v, xs in runs.items()},
        "median_events_per_s": {v: round(m) for v, m in med.items()},
        "json_dlq_over_json": round(med["json-dlq"] / med["json"], 3),
        "poisoned_over_json": round(med["json-dlq+poison"] / med["json"], 3),
        "command": "bench/dlq_format_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(f"\n{'variant':<16} {'median readings/s':>18}")
    for v, m in med.items():
        print(f"{v:<16} {m:>18,.0f}")
    print(f"json-dlq / json: {result['json_dlq_over_json']:.3f}   "
          f"json-dlq with {added} unreadable records / json: {result['poisoned_over_json']:.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
