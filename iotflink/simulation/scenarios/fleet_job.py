"""The fleet job of the ``fleet`` scenario (submitted with ``flink run -py``; see
:mod:`iotflink.simulation.scenarios.fleet`): a fleet of trucks reporting every ``--period-s`` seconds,
kept in sliding windows of ``--window-min`` minutes by ``--slide-min``, as Flink SQL (no Python
on the hot path)::

    datagen "fill"   id = 0 .. trucks*window/period - 1 at --fill-rate rows/s (one window of events)
      UNION ALL
    datagen "steady" id = fill .. , trucks/period rows/s                      (the fleet's real rate)
      -> truck = id % trucks, event time = base + (id / trucks) * period, watermark = event time
      -> HOP(event time, slide, window) GROUP BY truck
      -> blackhole

``--state raw``: per window ``COUNT(*)`` and ``ARRAY_AGG`` of latitude, longitude, speed, fuel
and the timestamp, so the window state holds every reading of the window (the "raw window data"
of checkpoint sizing: 4 doubles and an 8-byte timestamp per event; the truck id is the state's
key, stored once per key and window slice). ``--state stats``: ``COUNT``, ``AVG``/``MAX`` of
speed, ``MIN``/``AVG`` of fuel (running statistics: a few numbers per truck and slice).

``--incremental true|false`` chooses RocksDB incremental or full checkpoints; every other
setting is the project's (:func:`jobs.common.job_configuration`: RocksDB, exactly-once,
``--interval-ms``).
"""

from __future__ import annotations

import argparse
import logging
import sys

#: Event time of the first fill row: 2026-01-01T00:00:00Z (epoch ms).
BASE_TS = 1_767_225_600_000


def fleet_sql(trucks: int, period_s: int, window_min: int, slide_min: int, state: str = "raw",
              steady_max_s: int = 1800, fill_rate: int = 4000) -> tuple[list[str], str, int]:
    """DDL statements, the INSERT, and the fill size (events in one window) of the fleet job.

    The datagen ``sequence`` generator materialises its whole range on the heap when it opens
    (about 24 bytes per value), so the steady source covers ``steady_max_s`` seconds of the
    fleet's rate, not an open-ended range. ``fill_rate`` (rows/s) must stay below what the job
    can process: a datagen source blocked by backpressure delays checkpoints.

    Raises:
        ValueError: ``state`` is not ``raw`` or ``stats``, or a non-positive size.
    """
    from jobs.common import with_clause  # noqa: PLC0415

    if state not in ("raw", "stats"):
        raise ValueError(f"state must be raw or stats, not {state!r}")
    if min(trucks, period_s, window_min, slide_min, fill_rate, steady_max_s) <= 0:
        raise ValueError("trucks, period, window, slide, fill rate and steady seconds must be positive")
    period_ms = period_s * 1000
    fill = trucks * (window_min * 60 // period_s)
    steady_rate = max(1, trucks // period_s)

    def gen(name: str, start: int, end: int, rate: int) -> str:
        opts = {"connector": "datagen", "fields.id.kind": "sequence", "fields.id.start": str(start),
                "fields.id.end": str(end), "rows-per-second": str(rate),
                "fields.lat.min": "40", "fields.lat.max": "50", "fields.lon.min": "0", "fields.lon.max": "10",
                "fields.speed.min": "0", "fields.speed.max": "130", "fields.fuel.min": "0", "fields.fuel.max": "100"}
        return (f"CREATE TABLE {name} (id BIGINT, lat DOUBLE, lon DOUBLE, speed DOUBLE, fuel DOUBLE,\n"
                f"  ts_ms AS {BASE_TS} + (id / {trucks}) * {period_ms},\n"
                f"  ts AS TO_TIMESTAMP_LTZ({BASE_TS} + (id / {trucks}) * {period_ms}, 3),\n"
                f"  WATERMARK FOR ts AS ts) {with_clause(opts)}")

    if state == "raw":
        cols = "n BIGINT, lat ARRAY<DOUBLE>, lon ARRAY<DOUBLE>, speed ARRAY<DOUBLE>, fuel ARRAY<DOUBLE>, ts_ms ARRAY<BIGINT>"
        aggs = "COUNT(*), ARRAY_AGG(lat), ARRAY_AGG(lon), ARRAY_AGG(speed), ARRAY_AGG(fuel), ARRAY_AGG(ts_ms)"
    else:
        cols = "n BIGINT, speed_avg DOUBLE, speed_max DOUBLE, fuel_min DOUBLE, fuel_avg DOUBLE"
        aggs = "COUNT(*), AVG(speed), MAX(speed), MIN(fuel), AVG(fuel)"
    ddl = [gen("fill", 0, fill - 1, fill_rate),
           gen("steady", fill, fill + steady_rate * steady_max_s, steady_rate),
           f"CREATE TABLE sink (truck BIGINT, window_start TIMESTAMP(3), {cols}) WITH ('connector' = 'blackhole')",
           "CREATE TEMPORARY VIEW readings AS SELECT * FROM fill UNION ALL SELECT * FROM steady"]
    insert = (f"INSERT INTO sink SELECT id % {trucks} AS truck, window_start, {aggs} "
              f"FROM TABLE(HOP(TABLE readings, DESCRIPTOR(ts), INTERVAL '{slide_min}' MINUTES, "
              f"INTERVAL '{window_min}' MINUTES)) GROUP BY id % {trucks}, window_start, window_end")
    return ddl, insert, fill


def main(argv: list[str] | None = None) -> None:
    """Build and submit the fleet job (``flink run -py .../fleet_job.py --trucks N ...``)."""
    from iotflink.settings import WindowJobSettings  # noqa: PLC0415
    from jobs.common import create_table_env, job_configuration  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="fleet_job")
    p.add_argument("--name", required=True, help="pipeline.name")
    p.add_argument("--trucks", type=int, required=True)
    p.add_argument("--period-s", type=int, default=5)
    p.add_argument("--window-min", type=int, default=60)
    p.add_argument("--slide-min", type=int, default=5)
    p.add_argument("--state", choices=("raw", "stats"), default="raw")
    p.add_argument("--incremental", choices=("true", "false"), default="true")
    p.add_argument("--interval-ms", type=int, default=30_000)
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--fill-rate", type=int, default=4000)
    p.add_argument("--steady-max-s", type=int, default=1800)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    cfg = WindowJobSettings(parallelism=a.parallelism, checkpoint_interval_ms=a.interval_ms)
    extra = {"execution.checkpointing.incremental": a.incremental,
             "execution.checkpointing.min-pause": "1 s",
             # an expired checkpoint during the fill must not fail the job over (and refill it)
             "execution.checkpointing.tolerable-failed-checkpoints": "100"}
    t_env = create_table_env(job_configuration(cfg, a.name, use_kafka=False, extra=extra))
    ddl, insert, _ = fleet_sql(a.trucks, a.period_s, a.window_min, a.slide_min, a.state, a.steady_max_s,
                               a.fill_rate)
    for stmt in ddl:
        t_env.execute_sql(stmt)
    t_env.execute_sql(insert)


if __name__ == "__main__":
    main(sys.argv[1:])
