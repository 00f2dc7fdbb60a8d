"""Job ``sensor_windows``: tumbling event-time windows per (device_id, sensor), in Flink SQL.

Pipeline (every operator is a JVM operator; no Python on the hot path)::

    sensor-readings (JSON, key device_id)
      -> event time = payload ts (epoch ms); watermark = max ts - out_of_orderness, idleness
      -> explode readings map -> (device_id, seq, ts, sensor, value)
      -> flag: window_start_ms, is_late := window_start_ms + size - 1 + allowed_lateness
                                           <= CURRENT_WATERMARK   (NULL watermark: not late)
         |-- is_late      -> sensor-late        (append, one record per sensor value)
         `-- not is_late  -> GROUP BY device_id, sensor, TUMBLE(rowtime, size)
                             with allowed lateness (late firings update the window)
                          -> sensor-aggregates  (upsert, key device_id/sensor/window_start_ms)

Why the late split is exact (every value lands in exactly one of an aggregate's count or
sensor-late): the legacy group window drops an element iff
``window.maxTimestamp() + allowedLateness <= currentWatermark`` (Flink 2.2,
``InternalWindowProcessFunction.isWindowLate``), with ``maxTimestamp = end - 1``. The flag
applies the same test with the watermark of the Calc that sees the record first. A window
instance's watermark is the minimum over its input channels, and each channel carries only
watermarks the upstream operator forwarded before the record, so it is never ahead of the
watermark the flag saw: a record the flag lets through is never dropped by the window. The
source runs with ``source_parallelism`` 1 (default): a single watermark generator, with
per-partition watermarks and idleness inside the Kafka source, whose combined watermark never
goes back. (With several source instances, one that was idle and becomes active again is
ignored by the window's watermark until it catches up: its records could then be judged
on time by the flag and dropped by the window.) ``tests/test_sensor_windows.py`` counts it.

Submit to the standalone cluster (from the project root, with the stack's configuration)::

    FLINK_CONF_DIR=.run/flink/conf .venv/lib/python3.11/site-packages/pyflink/bin/flink run -d \\
        -py jobs/sensor_windows.py -pyfs .run/pyfiles.zip

where ``.run/pyfiles.zip`` holds the packages ``jobs``, ``udfs``, ``iotflink`` (built by
``iotflink.flinkctl.FlinkCtl.pyfiles_zip``); or simply ``python -m iotflink.cli job submit
sensor_windows``. Settings come from ``IOTFLINK_*`` environment variables
(:class:`iotflink.settings.WindowJobSettings`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script by `flink run -py`: make `jobs` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iotflink.errors import JobError  # noqa: E402
from iotflink.settings import WindowJobSettings  # noqa: E402
from jobs.common import create_table_env, job_configuration, sql_interval, sql_str, with_clause  # noqa: E402

log = logging.getLogger(__name__)

JOB_NAME = "sensor_windows"

#: Largest value of a Java long: Flink's "no cleanup" time.
LONG_MAX = 2**63 - 1

#: Physical columns of the readings source (docs/CONTRACT.md, topic sensor-readings).
SOURCE_COLUMNS = """
  device_id STRING,
  seq BIGINT,
  ts BIGINT,
  readings MAP<STRING, DOUBLE>,
  ingest_ms BIGINT"""

#: Columns of the sensor-aggregates sink (its primary key is device_id, sensor, window_start_ms).
AGGREGATE_COLUMNS = """
  device_id STRING,
  sensor STRING,
  window_start_ms BIGINT,
  window_end_ms BIGINT,
  `count` BIGINT,
  `min` DOUBLE,
  `max` DOUBLE,
  `mean` DOUBLE"""

#: Columns of the sensor-late sink: one row per sensor value past the allowed lateness.
LATE_COLUMNS = """
  device_id STRING,
  seq BIGINT,
  sensor STRING,
  ts BIGINT,
  `value` DOUBLE,
  window_start_ms BIGINT,
  window_end_ms BIGINT,
  ingest_ms BIGINT"""


# --------------------------------------------------------------------------- window arithmetic
def window_bounds(ts_ms: int, size_ms: int) -> tuple[int, int]:
    """The tumbling window ``[start, end)`` holding event time ``ts_ms``, as Flink assigns it.

    Windows are aligned to the epoch (offset 0; the job sets ``table.local-time-zone=UTC``):
    ``start = ts - floor_mod(ts, size)``, also for negative ``ts``
    (``TimeWindow.getWindowStartWithOffset``).

    Args:
        ts_ms: event time, epoch ms.
        size_ms: window length, ms.

    Returns:
        ``(window_start_ms, window_end_ms)``; ``end = start + size``, exclusive.

    Raises:
        ValueError: ``size_ms`` is not positive.
    """
    if size_ms <= 0:
        raise ValueError(f"window size must be positive: {size_ms} ms")
    start = ts_ms - ts_ms % size_ms  # Python's % is floor_mod
    return start, start + size_ms


def cleanup_time(window_end_ms: int, allowed_lateness_ms: int) -> int:
    """Event time (ms) at which a window stops accepting elements and its state is dropped.

    ``window.maxTimestamp() + allowedLateness`` with ``maxTimestamp = end - 1``; saturates at
    :data:`LONG_MAX` like Flink.
    """
    value = window_end_ms - 1 + allowed_lateness_ms
    return LONG_MAX if value > LONG_MAX else value


def is_late(ts_ms: int, watermark_ms: int | None, size_ms: int, allowed_lateness_ms: int) -> bool:
    """Whether an event goes to the late side output instead of its window.

    The same test as Flink's window operator: ``cleanup_time(window) <= watermark``.

    Args:
        ts_ms: the event's time, epoch ms.
        watermark_ms: the current watermark, epoch ms; ``None`` before the first watermark
            (``CURRENT_WATERMARK`` is NULL then), which is never late.
        size_ms: window length, ms.
        allowed_lateness_ms: allowed lateness, ms (>= 0).
    """
    if watermark_ms is None:
        return False
    _, end = window_bounds(ts_ms, size_ms)
    return cleanup_time(end, allowed_lateness_ms) <= watermark_ms


# --------------------------------------------------------------------------- DDL
def source_schema(cfg: WindowJobSettings) -> str:
    """Schema part of a readings source DDL: physical columns, ``rowtime`` and the watermark.

    ``rowtime`` is ``TO_TIMESTAMP_LTZ(ts, 3)`` (epoch ms); the watermark is
    ``rowtime - out_of_orderness_ms``. Tests put the same schema on a filesystem source.
    """
    return (f"{SOURCE_COLUMNS},\n  rowtime AS TO_TIMESTAMP_LTZ(ts, 3),\n"
            f"  WATERMARK FOR rowtime AS rowtime - {sql_interval(cfg.out_of_orderness_ms)}")


def kafka_source_ddl(cfg: WindowJobSettings, name: str = "readings") -> str:
    """``CREATE TABLE`` of the ``sensor-readings`` Kafka source.

    Consumer group ``cfg.consumer_group``; starts from the group's committed offsets (committed
    on each checkpoint), else ``cfg.offset_reset``; reads ``read_committed``; runs with
    ``cfg.source_parallelism``. Malformed records fail the job (the bridge validated them and
    sends bad input to the DLQ, so one here is a bug, not data to skip silently).
    """
    opts = {
        "connector": "kafka",
        "topic": cfg.topics.readings,
        "properties.bootstrap.servers": cfg.kafka_bootstrap,
        "properties.group.id": cfg.consumer_group,
        "properties.isolation.level": "read_committed",
        "properties.auto.offset.reset": cfg.offset_reset,
        "scan.startup.mode": "group-offsets",
        "scan.parallelism": str(cfg.source_parallelism),
        "value.format": "json",
        "value.json.fail-on-missing-field": "false",
        "value.json.ignore-parse-errors": "false",
    }
    return f"CREATE TABLE {name} ({source_schema(cfg)}\n) {with_clause(opts)}"


def _kafka_sink_options(cfg: WindowJobSettings, topic: str, role: str) -> dict[str, str]:
    opts = {
        "topic": topic,
        "properties.bootstrap.servers": cfg.kafka_bootstrap,
        "sink.delivery-guarantee": cfg.delivery_guarantee,
    }
    if cfg.delivery_guarantee == "exactly-once":
        opts["sink.transactional-id-prefix"] = f"{cfg.transactional_id_prefix}-{role}"
        opts["properties.transaction.timeout.ms"] = str(cfg.transaction_timeout_ms)
    return opts


def kafka_aggregates_sink_ddl(cfg: WindowJobSettings, name: str = "aggregates") -> str:
    """``CREATE TABLE`` of the ``sensor-aggregates`` upsert-kafka sink.

    Key JSON ``{"device_id","sensor","window_start_ms"}``, value JSON with every column; a late
    firing writes a new value under the same key. Delivery guarantee, transactional id prefix
    and transaction timeout from ``cfg``.
    """
    opts = {"connector": "upsert-kafka", **_kafka_sink_options(cfg, cfg.topics.aggregates, "aggregates"),
            "key.format": "json", "value.format": "json", "value.fields-include": "ALL"}
    return (f"CREATE TABLE {name} ({AGGREGATE_COLUMNS},\n"
            f"  PRIMARY KEY (device_id, sensor, window_start_ms) NOT ENFORCED\n) {with_clause(opts)}")


def kafka_late_sink_ddl(cfg: WindowJobSettings, name: str = "late") -> str:
    """``CREATE TABLE`` of the ``sensor-late`` Kafka sink (append; key = device_id as text)."""
    opts = {"connector": "kafka", **_kafka_sink_options(cfg, cfg.topics.late, "late"),
            "key.format": "raw", "key.fields": "device_id",
            "value.format": "json", "value.fields-include": "ALL"}
    return f"CREATE TABLE {name} ({LATE_COLUMNS}\n) {with_clause(opts)}"


# --------------------------------------------------------------------------- pipeline
def configure_windowing(t_env, cfg: WindowJobSettings) -> None:
    """Set the table options the window semantics depend on.

    - ``table.exec.emit.late-fire.enabled`` / ``late-fire.delay = 0`` /
      ``table.exec.emit.allow-lateness``: the legacy group window keeps each window
      ``allowed_lateness_ms`` after it fired and re-fires on every late element (an update
      of the same key). Experimental in Flink 2.2 but present; the window TVF has no lateness.
      With ``allowed_lateness_ms == 0`` late firing is off (Flink requires lateness > 0 for it).
    - ``table.exec.source.idle-timeout``: a source split without records for ``idleness_ms``
      stops holding the watermark back.
    - ``table.exec.sink.upsert-materialize = NONE``: the aggregate's updates are already keyed
      by the sink's primary key (window_start_ms is a grouping key), so the planner's
      materializer would only add unbounded state.
    """
    tc = t_env.get_config()
    if cfg.allowed_lateness_ms > 0:
        tc.set("table.exec.emit.late-fire.enabled", "true")
        tc.set("table.exec.emit.late-fire.delay", "0 ms")
        tc.set("table.exec.emit.allow-lateness", f"{cfg.allowed_lateness_ms} ms")
    else:
        tc.set("table.exec.emit.late-fire.enabled", "false")
    tc.set("table.exec.source.idle-timeout", f"{cfg.idleness_ms} ms")
    tc.set("table.exec.sink.upsert-materialize", "NONE")
    tc.set("table.local-time-zone", "UTC")


def build(t_env, cfg: WindowJobSettings, source: str, aggregates_sink: str, late_sink: str):
    """Add the window pipeline from table ``source`` to ``aggregates_sink`` and ``late_sink``.

    Args:
        t_env: a streaming ``TableEnvironment`` (see :func:`jobs.common.create_table_env`).
        cfg: window size, allowed lateness and idleness (all ms).
        source: name of a registered table with :func:`source_schema` (columns device_id,
            seq, ts (epoch ms), readings MAP<STRING, DOUBLE>, ingest_ms; rowtime + watermark).
        aggregates_sink: table with :data:`AGGREGATE_COLUMNS` accepting updates
            (upsert on device_id, sensor, window_start_ms).
        late_sink: append table with :data:`LATE_COLUMNS`.

    Returns:
        a ``StatementSet`` holding both INSERTs (one job); call ``execute()`` on it.

    Raises:
        JobError: the planner rejected the pipeline (message of the planner attached).
    """
    configure_windowing(t_env, cfg)
    size, lateness = cfg.window_size_ms, cfg.allowed_lateness_ms
    ws = f"(ts - MOD(MOD(ts, {size}) + {size}, {size}))"  # floor_mod: also right for ts < 0
    try:
        # One Calc computes the flag once per value; both branches only read it.
        flagged = t_env.sql_query(f"""
            SELECT device_id, seq, ts, r.sensor AS sensor, r.val AS `value`, ingest_ms, rowtime,
                   {ws} AS window_start_ms,
                   COALESCE(TO_TIMESTAMP_LTZ({ws} + {size - 1 + lateness}, 3)
                            <= CURRENT_WATERMARK(rowtime), FALSE) AS is_late
            FROM {source} CROSS JOIN UNNEST(readings) AS r(sensor, val)""")
        t_env.create_temporary_view("sensor_windows_flagged", flagged)
        aggregates = t_env.sql_query(f"""
            SELECT device_id, sensor, window_start_ms, window_start_ms + {size} AS window_end_ms,
                   COUNT(*) AS `count`, MIN(`value`) AS `min`, MAX(`value`) AS `max`,
                   AVG(`value`) AS `mean`
            FROM sensor_windows_flagged
            WHERE NOT is_late
            GROUP BY device_id, sensor, window_start_ms, TUMBLE(rowtime, {sql_interval(size)})""")
        late = t_env.sql_query(f"""
            SELECT device_id, seq, sensor, ts, `value`, window_start_ms,
                   window_start_ms + {size} AS window_end_ms, ingest_ms
            FROM sensor_windows_flagged
            WHERE is_late""")
        stmts = t_env.create_statement_set()
        stmts.add_insert(aggregates_sink, aggregates)
        stmts.add_insert(late_sink, late)
    except Exception as exc:  # py4j wraps planner errors; keep the cause
        raise JobError(f"cannot build {JOB_NAME}: {exc}") from exc
    return stmts


def main(argv: list[str] | None = None) -> None:
    """Run the job against Kafka with :meth:`WindowJobSettings.from_env` (what ``flink run`` calls).

    Raises:
        ConfigError: invalid ``IOTFLINK_*`` settings.
        JobError: connector jar missing, or the pipeline cannot be built.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = WindowJobSettings.from_env()
    log.info("settings: %s", cfg)
    t_env = create_table_env(job_configuration(cfg, JOB_NAME, use_kafka=True))
    t_env.execute_sql(kafka_source_ddl(cfg, "readings"))
    t_env.execute_sql(kafka_aggregates_sink_ddl(cfg, "aggregates"))
    t_env.execute_sql(kafka_late_sink_ddl(cfg, "late"))
    result = build(t_env, cfg, "readings", "aggregates", "late").execute()
    client = result.get_job_client()
    log.info("submitted %s: job id %s", JOB_NAME, client.get_job_id() if client else "?")


__all__ = ["build", "main", "window_bounds", "cleanup_time", "is_late", "source_schema",
           "kafka_source_ddl", "kafka_aggregates_sink_ddl", "kafka_late_sink_ddl", "sql_str",
           "AGGREGATE_COLUMNS", "LATE_COLUMNS", "SOURCE_COLUMNS", "JOB_NAME"]


if __name__ == "__main__":
    main(sys.argv[1:])
