"""Throughput of the window job per window kind, against tumbling, in one run.

Every kind runs :func:`jobs.sensor_windows.build` exactly as ``main()`` builds it (dedup, late
flag, window aggregate; JVM operators only) over the same generated JSON-lines file
(:func:`bench.window_job_bench.generate_events`: 50 devices, 2 values per event, one event per
device every 100 ms of event time, 1 % of the events past the allowed lateness) into
``blackhole`` sinks, on a local MiniCluster with RocksDB and exactly-once checkpoints, as the
window job bench does. Kinds (``--kinds``, comma list):

- ``tumbling``: 1 min windows (the job's default);
- ``sliding5``: 5 min sliding by 1 min (5 windows per value);
- ``sliding12``: 1 h sliding by 5 min (12 windows per value);
- ``daily``: local days of America/New_York;
- ``session``: sessions per (device, sensor) closed by a 30 s gap (allowed lateness 0, which
  session windows need; the others keep the job's 2 min).

Rounds run the kinds in ABBA order (forward, then backward, ...) so that a drift of the
machine's load during the run falls on every kind alike, after one uncounted tumbling run (the
first job in the JVM also pays for class loading and JIT). events/s = input events / the job's
net runtime (``JobExecutionResult.getNetRuntime``, deployment included); per kind the median
over the rounds and its ratio to tumbling's median.

Usage::

    .venv/bin/python bench/window_kinds_bench.py                       # 200,000 events, 2 rounds
    .venv/bin/python bench/window_kinds_bench.py --events 500000 --rounds 4 --json
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

from window_job_bench import _conf, write_events_file

from iotflink.settings import WindowJobSettings
from jobs import common
from jobs import sensor_windows as sw
from jobs.common import create_table_env

MIN = 60_000

#: name -> settings changes from the job's defaults
KINDS: dict[str, dict] = {
    "tumbling": {"window_kind": "tumbling", "window_size_ms": MIN},
    "sliding5": {"window_kind": "sliding", "window_size_ms": 5 * MIN, "window_slide_ms": MIN},
    "sliding12": {"window_kind": "sliding", "window_size_ms": 60 * MIN, "window_slide_ms": 5 * MIN},
    "daily": {"window_kind": "daily", "time_zone": "America/New_York"},
    "session": {"window_kind": "session", "window_gap_ms": 30_000, "allowed_lateness_ms": 0},
}


def run_kind(cfg: WindowJobSettings, path: Path) -> float:
    """Run the job of ``cfg`` bounded over the file ``path`` into blackhole sinks; net runtime (s)."""
    t_env = create_table_env(_conf(cfg, f"bench_{cfg.window_kind}", kafka=False))
    t_env.execute_sql(sw.file_source_ddl(cfg, "src", path))
    t_env.execute_sql(f"CREATE TABLE bh_agg ({sw.aggregate_columns(cfg)}\n) WITH ('connector' = 'blackhole')")
    t_env.execute_sql(f"CREATE TABLE bh_late ({sw.late_columns(cfg)}\n) WITH ('connector' = 'blackhole')")
    result = common.execute(t_env, sw.build(t_env, cfg, "src", "bh_agg", "bh_late"))
    return result.get_job_client().get_job_execution_result().result().get_net_runtime() / 1000.0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every kind ``--rounds`` times on one input, print the comparison."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=2, help="ABBA rounds (each runs every kind once)")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma list of {', '.join(KINDS)}")
    p.add_argument("--devices", type=int, default=50)
    p.add_argument("--readings", type=int, default=2, choices=(1, 2, 3), help="sensor values per event")
    p.add_argument("--late-share", type=float, default=0.01, help="share of events past the allowed lateness")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="do not run one uncounted tumbling job first")
    p.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown or "tumbling" not in kinds:
        p.error(f"--kinds: unknown {sorted(unknown)} or no tumbling (the reference)")

    base = replace(WindowJobSettings.from_env({}), parallelism=args.parallelism, idleness_ms=0)
    cfgs = {k: replace(base, **KINDS[k]) for k in kinds}
    runtimes: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="window-kinds-bench-") as tmp:
        path = Path(tmp) / "events.json"
        write_events_file(path, args.events, args, cfgs["tumbling"])  # late share past 1 min + lateness
        if args.warmup:  # the first job in the JVM also pays for class loading and JIT: not counted
            run_kind(cfgs["tumbling"], path)
        for r in range(args.rounds):
            for k in (kinds if r % 2 == 0 else list(reversed(kinds))):
                runtimes[k].append(run_kind(cfgs[k], path))
                print(f"round {r + 1} {k:>9}: {args.events / runtimes[k][-1]:>8.0f} events/s "
                      f"({runtimes[k][-1]:.1f} s net)", flush=True)
    results = {"events": args.events, "values_per_event": args.readings, "rounds": args.rounds,
               "parallelism": args.parallelism, "cpus": os.cpu_count(), "load_avg_1m_end": os.getloadavg()[0],
               "kinds": {}}
    ref = args.events / statistics.median(runtimes["tumbling"])
    for k in kinds:
        rate = args.events / statistics.median(runtimes[k])
        windows = cfgs[k].window_size_ms // cfgs[k].slide_ms if cfgs[k].window_kind == "sliding" else 1
        results["kinds"][k] = {**{f: v for f, v in KINDS[k].items() if f != "window_kind"},
                               "kind": cfgs[k].window_kind, "windows_per_value": windows,
                               "events_per_s": round(rate), "vs_tumbling": round(rate / ref, 3),
                               "net_runtime_s": [round(x, 2) for x in runtimes[k]]}
        print(f"{k:>9}: {rate:>8.0f} events/s (median of {args.rounds}), {rate / ref:5.2f} x tumbling, "
              f"{windows} window(s) per value")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
