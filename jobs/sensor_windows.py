"""Job ``sensor_windows``: event-time windows per (device_id, sensor), in Flink SQL: tumbling,
sliding, or daily in a named time zone (``IOTFLINK_WINDOW_KIND``, section "Window kinds").

Pipeline (every operator is a JVM operator; no Python on the hot path)::

    sensor-readings (JSON, key device_id)
      -> event time = payload ts (epoch ms); watermark per partition = ts - out_of_orderness,
         never decreasing; idle timeout idleness_ms (0 = none, required at parallelism > 1)
      -> watermark heartbeats (device_id __heartbeat__, no value) dropped: their event time
         has moved the watermark already
      -> dedup: copy_no := COUNT(*) OVER (PARTITION BY device_id, seq ORDER BY PROCTIME())
                keyed state, one BIGINT per (device_id, seq), state TTL dedup_ttl_ms
         |-- copy_no > 1  -> sensor-duplicates  (append, the whole dropped reading)
         `-- copy_no = 1
      -> explode readings map -> (device_id, seq, ts, sensor, value)
      -> flag: window_start_ms, is_late := window_start_ms + size - 1 + allowed_lateness
                                           <= CURRENT_WATERMARK   (NULL watermark: not late)
         |-- is_late      -> sensor-late        (append, one record per sensor value)
         `-- not is_late  -> GROUP BY device_id, sensor, TUMBLE(rowtime, size)
                             with allowed lateness (late firings update the window)
                          [-> throttle(): Python UDF, only with the slow-sink switch on]
                          -> sensor-aggregates  (upsert, key device_id/sensor/window_start_ms)

Deduplication: the bridge delivers at least once (docs/CONTRACT.md), so a reading
can reach ``sensor-readings`` twice with the same ``(device_id, seq)``. The job numbers the
copies of each ``(device_id, seq)`` in arrival order and passes on only copy 1; every later
copy goes, whole, to ``sensor-duplicates`` (exactly-once like every sink): a dropped duplicate
is counted and kept, never lost silently, and the accounting closes::

    records(sensor-readings)        = unique readings + records(sensor-duplicates)
    sum(count) + records(sensor-late) = values in unique readings
                                      = values(sensor-readings) - values(sensor-duplicates)

Variants measured on the Flink 2.2 planner (see ``tests/test_dedup_minicluster.py``):

- ``ROW_NUMBER() OVER (PARTITION BY device_id, seq ORDER BY <proctime>) = 1`` becomes
  ``Deduplicate(keep=FirstRow, order=PROCTIME, outputInsertOnly=true)``: append-only and the
  rowtime attribute survives (the event-time window downstream still works), but a dropped
  copy leaves no trace except operator metrics that restart from 0 after every failover.
- ``... ORDER BY rowtime) = 1`` becomes ``RowTimeDeduplicateKeepFirstRowFunction``: append-only
  only because it holds every reading until the watermark passes it (adds the out-of-orderness
  bound to the latency), and it silently drops a reading behind the watermark (counter
  ``numLateRecordsDropped`` only), so late values would vanish instead of reaching sensor-late:
  it breaks the exact late split. Rejected.
- ``COUNT(*) OVER (... ORDER BY <proctime> ROWS UNBOUNDED PRECEDING)`` (chosen) becomes
  ``ProcTimeUnboundedPrecedingFunction``: one BIGINT accumulator per key, append-only, rowtime
  kept, and every row carries its copy number, so the same operator and the same checkpoint
  yield both the unique stream and the duplicates stream.

State TTL: Flink SQL state TTL is processing time (``StateTtlConfig`` OnCreateAndWrite,
NeverReturnExpired). The accumulator is rewritten by every copy, so a key expires
``dedup_ttl_ms`` after its *last* copy; a copy arriving later is copy 1 again (not dropped).
``table.exec.state.ttl`` is set to ``dedup_ttl_ms``; the only operator of this job that reads
it is the dedup (the legacy group window cleans its state with event-time timers, the sinks
keep no SQL state, ``upsert-materialize`` is off), which ``tests/test_dedup_minicluster.py``
checks in the compiled plan. :func:`iotflink.testing.window_model.dedup_ttl` justifies the default
and sizes the state.

Lateness is judged after the dedup, so a late duplicate is a duplicate (counted once, in
sensor-duplicates), not a second late value.

Why the late split is exact (every value lands in exactly one of an aggregate's count or
sensor-late), at any parallelism: the legacy group window drops an element iff
``window.maxTimestamp() + allowedLateness <= currentWatermark`` (Flink 2.2,
``InternalWindowProcessFunction.isWindowLate``), with ``maxTimestamp = end - 1``. The flag
applies the same test with the watermark of the Calc that sees the record first
(``CURRENT_WATERMARK`` reads ``TableStreamOperator.currentWatermark``: the last watermark that
Calc processed). So the split is exact iff the window's watermark, when the record reaches it,
is never ahead of the watermark the flag saw.

1. At parallelism 1 every window subtask reads one channel, fed by the one flag Calc, in
   order: its watermark at a record is exactly the last one the flag forwarded before it.
2. At parallelism > 1 a window subtask merges the channels of every flag subtask in a
   ``StatusWatermarkValve``. While every channel is active, the valve's watermark is the
   minimum of the last watermark of each channel and only grows (Flink docs, "Timely Stream
   Processing", watermarks in parallel streams: an operator's event time is the minimum of its
   input streams' event times). A channel delivers a flag subtask's watermarks and records in
   the order that subtask emitted them, and a subtask's watermark only grows; so when a record
   flagged by subtask F with watermark ``w`` arrives, the last watermark received from F is
   ``<= w``, and the window's minimum is ``<=`` that. The window is never ahead of the flag:
   a value the flag let through is never late for the window (``numLateRecordsDropped`` stays
   0), and a value the flag sent to sensor-late never reaches the window.
3. Step 2 fails only through idleness. A channel marked idle leaves the minimum, and one that
   becomes active again is ignored until it catches up; a flag subtask goes idle when all its
   inputs do, i.e. when every Kafka partition is idle for ``idleness_ms``. If one flag subtask
   lags behind another across such a switch, the window adopts the leader's watermark while
   the laggard's records, flagged with its older watermark, are still on their way: the
   window drops them. That is how ``make demo`` lost 11 to 256 values at parallelism 2 with
   an idle timeout. Hence at parallelism > 1 the job has no idle timeout
   (``IOTFLINK_IDLENESS_MS=0``, enforced by :meth:`WindowJobSettings.from_env`), and then
   nothing marks a channel idle: the Kafka source emits ``IDLE`` only through the idle
   timeout of its watermark strategy (Flink 2.2 ``SourceOperator`` /
   ``ProgressiveTimestampsAndWatermarks``: a split output is marked idle by
   ``WatermarksWithIdleness`` only; an unbounded Kafka split never finishes), and the
   operators after it only forward what their inputs say. Every subtask restarts together
   after a failure (one pipelined region: the exchanges are all-to-all), from watermark
   ``Long.MIN_VALUE``, so the argument holds again from the restart on.
4. Without an idle timeout a partition that gets no records holds the watermark back for
   ever, so quiet partitions need records with event time: the bridge writes watermark
   heartbeats (``device_id = __heartbeat__``, empty ``readings``, ``docs/CONTRACT.md``) to each
   partition without a reading for ``IOTFLINK_BRIDGE_HEARTBEAT_QUIET_MS`` (5 s), with the
   lowest of the highest event times of the active partitions
   (:class:`iotflink.kafka_io.PartitionClock`). That moves the watermark exactly as the idle
   timeout did (the minimum over the active partitions), from the readings' own timestamps
   (a replay of old data works). The job drops heartbeat rows right after the source: their
   event time has already moved the partition's watermark, and they hold no value and no
   dedup key. A Kafka source instance without a partition would never emit a watermark, so
   ``source_parallelism`` may not exceed the partition count (from_env checks it). Without
   heartbeats (the bridge stopped, a writer that does not send them) windows wait; no value
   is miscounted.

``tests/test_window_parallel.py`` runs the job at parallelism 2 and 4 on a MiniCluster through
the case that broke it: every partition quiet, then one partition far ahead while the others
come back with readings behind the watermark, then all running on with stragglers. Every value
whose verdict the reference model fixes is late iff the model says so, every aggregate equals
all values minus those in sensor-late, and ``numLateRecordsDropped`` is 0.

Submission (:func:`main`, what ``flink run`` calls): through a cache of the job's compiled plan
(:func:`execute`, :func:`jobs.common.execute_cached`, ``IOTFLINK_PLAN_CACHE_DIR``): a job
version submitted again with the same settings loads its optimised plan instead of planning the
SQL, with the same operators and uids (README, "Start-up of the window job").

State backend (``IOTFLINK_WINDOW_STATE_BACKEND``, :func:`state_configuration`): RocksDB with
incremental checkpoints by default, or the heap (``hashmap``) for state that fits it, which costs
less CPU per reading. Neither changes the plan or the late split: the window operator's drop
test and its watermark are the same on both. The MiniCluster window tests run on the heap
(``tests/test_window_parallel.py``, ``tests/test_sensor_windows.py``,
``tests/test_window_kinds.py``), the dedup test on RocksDB (``tests/test_dedup_minicluster.py``),
the end-to-end tests on the cluster's RocksDB.

Window kinds (``IOTFLINK_WINDOW_KIND``, :class:`iotflink.settings.WindowJobSettings`). The
pipeline above is the tumbling one; the others change only the flag's Calc and the window
aggregate. For every kind the unit of the accounting is the (value, window) pair::

    sum(count) + records(sensor-late) = sum over unique values of the number of its windows

and a late record names the window it missed (``window_start_ms``, ``window_end_ms``). The flag
makes every late decision; the window operator must never drop what the flag let through,
which holds when its drop test for a pair is the flag's test on its (never later, point 2)
watermark.

- ``tumbling`` (default): one window ``[start, start + size)`` per value, aligned to the epoch.
- ``sliding``: windows of ``size`` (``IOTFLINK_WINDOW_SIZE_MS``) starting every ``slide``
  (``IOTFLINK_WINDOW_SLIDE_MS``, dividing the size): each value is in ``n = size / slide``
  windows. The flag's Calc explodes each value into its ``n`` pairs (``CROSS JOIN UNNEST`` of
  an ``ARRAY`` of the ``n`` window starts computed from ``ts``; an array that reads ``ts``
  keeps the UNNEST a correlate, a constant one would become a join and lose the rowtime
  attribute) and flags each pair against its own window, with the tumbling test:
  ``start + size - 1 + allowed_lateness <= CURRENT_WATERMARK``. A value late for its earlier
  windows and on time for its later ones is in sensor-late once per missed window and counted
  in the others.

  Flink's own HOP on the values would not do: the legacy group window
  (``PanedWindowProcessFunction.assignActualWindows``) adds a value to each of its windows
  that is not late by *its own* watermark, which at parallelism > 1 may be behind the
  flag's: a pair in sensor-late would then be counted by the window as well. So the on-time
  pairs are aggregated with ``GROUP BY device_id, sensor, window_start_ms, HOP(rowtime, slide,
  size)`` and only the HOP window whose start is the group's ``window_start_ms`` is kept (a
  Calc after the aggregate drops the others, which hold subsets). In the group of ``w`` every
  pair has ``ts`` in ``[w, w + size)``, so HOP window ``[w, w + size)`` holds all of them. The
  operator drops none of them: it keeps a pair in its pane (``slide`` long) unless the pane's
  last window ``[floor(ts, slide), + size)`` is late, and it triggers ``[w, w + size)`` unless
  that window is late; both end at or after ``w + size``, so both cleanup times are at least
  the pair's, which the flag found above its watermark, which is at least the operator's. So
  ``[w, w + size)`` fires when the watermark passes ``w + size - 1`` with exactly the on-time
  pairs of ``w``, and re-fires on each pair within the allowed lateness, like a tumbling
  window. Cost: ``n`` pairs per value, and each pair's group triggers ``n`` HOP windows, so
  about ``n^2`` window-trigger calls per value; settings cap ``n`` at 12
  (:data:`iotflink.settings.MAX_SLIDING_WINDOWS_PER_VALUE`); ``bench/window_kinds_bench.py``
  measures it. ``tests/test_window_kinds_parallel.py`` runs it at parallelism 2 on Kafka across
  the idle/active switch of ``tests/test_window_parallel.py``: the late pairs are exactly the
  reference's and ``numLateRecordsDropped`` is 0.
- ``daily``: the local calendar days of ``IOTFLINK_WINDOW_TIME_ZONE`` (an IANA name). Flink
  2.2's legacy ``TUMBLE(rowtime, INTERVAL '1' DAY)`` on a ``TIMESTAMP_LTZ`` rowtime with
  ``table.local-time-zone`` set to the zone assigns windows on local wall-clock time and
  turns their ends back into epoch time (``TimeWindowUtil.toUtcTimestampMills`` /
  ``toEpochMillsForTimer``; Flink docs, "Time Zone", daylight saving time support): the days
  run from local midnight to local midnight, 23 h and 25 h across DST changes (seen on this
  build for America/New_York on 2026-03-08 and 2026-11-01, ``tests/test_window_kinds.py``).
  So for this kind the job sets ``table.local-time-zone`` to the zone (UTC otherwise) and
  groups by that window. The flag computes the same day from the same rowtime in SQL:
  ``local_date = CAST(CAST(rowtime AS TIMESTAMP(3)) AS DATE)`` (local wall-clock date),
  ``window_start_ms`` / ``window_end_ms`` = ``UNIX_TIMESTAMP(<date> / <date + 1 day>,
  'yyyy-MM-dd') * 1000`` (the epoch ms of the two local midnights, parsed in the session
  zone), late iff ``window_end_ms - 1 + allowed_lateness <= CURRENT_WATERMARK``. The window
  operator drops a value iff ``toEpochMillsForTimer(local end - 1 ms) + allowed_lateness`` is
  at or below its watermark; that is the next midnight - 1 ms unless the UTC offset changes
  within the hour after local 23:59:59.999 (Flink's rules for skipped and repeated local
  times then differ from the midnight's), so ``from_env`` refuses zones with an offset change
  within 90 min of midnight (e.g. America/Havana, America/Santiago). Aggregates and late
  records carry ``local_date`` (``YYYY-MM-DD``); ``window_size_ms`` is not used.
- ``session``: per (device_id, sensor), a session closes after ``IOTFLINK_WINDOW_GAP_MS``
  without a value; output ``window_start_ms`` = its first value's ``ts``, ``window_end_ms`` =
  its last value's ``ts`` + gap. Flink SQL's legacy ``SESSION`` window has no late firing
  (``WindowEmitStrategy``: "Session window doesn't support EMIT strategy"), so this kind
  needs ``allowed_lateness_ms = 0`` (``from_env`` checks it) and a session is final when it
  fires. The flag judges each value by its own gap window: late iff ``ts + gap - 1 <=
  CURRENT_WATERMARK``; a late record carries ``[ts, ts + gap)`` as its window. The window
  operator (``MergingWindowProcessFunction``) merges ``[ts, ts + gap)`` with the open sessions
  it touches and drops the value only if the merged session is late; the merged session ends
  at or after ``ts + gap``, so it never drops a value the flag let through, and merging moves
  accumulators without counting anything twice. What a merge means here:

  * an on-time value that touches two open sessions joins them into one (one output row);
  * a value whose own gap window is closed goes to sensor-late even when it falls inside a
    session that is still open, or between two sessions it would have joined: lateness is
    decided by the value's own window, not by the session it would extend (the session is
    keyed state the flag's Calc cannot see);
  * a session that fired is gone (cleaned at its end - 1, no allowed lateness): an on-time
    value within the gap after its last value starts a new session, which overlaps the fired
    one in time (two rows; each value in one of them).

  :class:`iotflink.testing.window_model.SessionModel` is this behaviour as a reference model;
  ``tests/test_window_kinds.py`` checks the job against it value by value.

Slow-sink demo switch (backpressure): with ``IOTFLINK_SLOW_SINK_FILE=<path>`` in the
environment of the submitting client, ``build()`` puts the Python UDF ``udfs/throttle.py``
(``PythonCalc``) between the window aggregate and the ``sensor-aggregates`` sink, and sets
``python.fn-execution.bundle.size=100`` / ``bundle.time=100`` (ms). While ``<path>`` exists on the
TaskManager's host, each aggregate row sleeps ``IOTFLINK_SLOW_SINK_MS`` (default 20 ms; the file
is checked at most every 200 ms). Unset or empty (default): no Python operator in the plan.
How to drive it (as in the one-off check on a free-port stack; a 1 s window makes every reading its own
aggregate)::

    ctl.submit("sensor_windows", env_overrides={"IOTFLINK_SLOW_SINK_FILE": "/tmp/slow",
               "IOTFLINK_WINDOW_SIZE_MS": "1000", "IOTFLINK_OUT_OF_ORDERNESS_MS": "0"})
    touch /tmp/slow      # + produce > 50 aggregates/s per window subtask
    GET /jobs/<jid>/vertices/<vid>/backpressure   # vertices upstream of the
        # "GroupWindowAggregate[..] -> PythonCalc[..] -> ..." vertex: the source, "Calc[2]",
        # "OverAggregate[..] -> ..." report backpressureLevel "high"; the PythonCalc vertex
        # itself is busy, not backpressured ("ok")
    rm /tmp/slow         # rows pass at full speed within 200 ms; the lag drains

Submit to the standalone cluster (from the project root, with the stack's configuration)::

    FLINK_CONF_DIR=.run/flink/conf .venv/lib/python3.11/site-packages/pyflink/bin/flink run -d \\
        -py jobs/sensor_windows.py -pyfs .run/pyfiles.zip

where ``.run/pyfiles.zip`` holds the packages ``jobs``, ``udfs``, ``iotflink`` (built by
``iotflink.runtime.flinkctl.FlinkCtl.pyfiles_zip``); or simply ``iotflink job submit
sensor_windows``. Settings come from ``IOTFLINK_*`` environment variables
(:class:`iotflink.settings.WindowJobSettings`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from iotflink import schema
from iotflink.errors import JobError
from iotflink.kafka_io import HEARTBEAT_DEVICE
from iotflink.settings import WindowJobSettings
from jobs.common import (
    create_table_env,
    execute_cached,
    job_configuration,
    json_dlq_options,
    kafka_coordinates_sql,
    plan_cache_key,
    sql_interval,
    sql_str,
    with_clause,
)

log = logging.getLogger(__name__)

JOB_NAME = "sensor_windows"

#: Physical columns of the readings source: the ``sensor-readings`` value as defined once in
#: :mod:`iotflink.schema` (docs/CONTRACT.md), then the dead-letter columns filled by the
#: ``json-dlq`` format (jvm/: NULL on a good record; reason, detail and the raw bytes on a record
#: the job cannot read, whose data columns are then NULL).
SOURCE_COLUMNS = "\n" + schema.flink_columns_sql() + """,
  dlq_reason STRING,
  dlq_detail STRING,
  dlq_raw BYTES"""

#: Columns of the job's dead-letter sink (topic ``sensor-windows-dlq``): one row per record of
#: ``sensor-readings`` the job could not read. ``raw`` is the record's value, base64 in JSON.
DLQ_COLUMNS = """
  source STRING,
  reason STRING,
  detail STRING,
  kafka_partition INT,
  kafka_offset BIGINT,
  `raw` BYTES"""

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


#: Extra column of sensor-late with ``IOTFLINK_LATE_WATERMARK_COLUMN=true``: the watermark
#: that judged the value late (JSON text in UTC such as ``"2026-01-01 00:03:06Z"``; ``.SSS`` only when not 0), so
#: ``watermark - ts`` says how late it was.
LATE_WATERMARK_COLUMN = """,
  `watermark` TIMESTAMP_LTZ(3)"""

#: Columns of the sensor-duplicates sink: one row per dropped copy of a reading (the reading's
#: columns as :mod:`iotflink.schema` defines them, without ``drops``, and its copy number).
DUPLICATE_COLUMNS = "\n" + schema.flink_columns_sql(names=("device_id", "seq", "ts", "readings", "ingest_ms")) + """,
  copy_no BIGINT"""


#: Extra column of the aggregates and late records of daily windows: the window's calendar day
#: in the job's time zone (``YYYY-MM-DD``).
LOCAL_DATE_COLUMN = """,
  local_date STRING"""


def late_columns(cfg: WindowJobSettings) -> str:
    """Columns of the sensor-late sink for ``cfg``: :data:`LATE_COLUMNS`, plus
    :data:`LATE_WATERMARK_COLUMN` when ``cfg.late_watermark_column``, plus
    :data:`LOCAL_DATE_COLUMN` for daily windows."""
    return (LATE_COLUMNS + (LATE_WATERMARK_COLUMN if cfg.late_watermark_column else "")
            + (LOCAL_DATE_COLUMN if cfg.window_kind == "daily" else ""))


def aggregate_columns(cfg: WindowJobSettings) -> str:
    """Columns of the sensor-aggregates sink for ``cfg``: :data:`AGGREGATE_COLUMNS`, plus
    :data:`LOCAL_DATE_COLUMN` for daily windows."""
    return AGGREGATE_COLUMNS + (LOCAL_DATE_COLUMN if cfg.window_kind == "daily" else "")


# --------------------------------------------------------------------------- DDL
def source_format_options(prefix: str = "") -> dict[str, str]:
    """Options of the ``json-dlq`` value format of the readings source (``prefix``: ``"value."``
    for Kafka, ``""`` for the filesystem connector; :func:`jobs.common.json_dlq_options`): an
    integer beyond BIGINT, a wrong type, text that is not JSON, a missing required field
    (:data:`iotflink.schema.REQUIRED_FIELDS`), a non-finite or null reading becomes a
    dead-letter row instead of failing the job.
    """
    return json_dlq_options(schema.REQUIRED_FIELDS, prefix)


def source_schema(cfg: WindowJobSettings, kafka: bool = True) -> str:
    """Schema part of a readings source DDL: physical columns, Kafka coordinates, ``rowtime``
    and the watermark.

    ``rowtime`` is ``TO_TIMESTAMP_LTZ(ts, 3)`` (epoch ms); a dead-letter row has no ``ts`` and
    gets epoch 0, which never advances the watermark (the maximum of the rows seen) and never
    reaches a window (the job routes it to its DLQ first). The watermark is
    ``rowtime - out_of_orderness_ms``. ``kafka_partition`` / ``kafka_offset`` are the record's
    Kafka metadata (``kafka=True``) or NULL (filesystem sources of tests and benchmarks).
    """
    return (f"{SOURCE_COLUMNS},\n{kafka_coordinates_sql(kafka)},\n  rowtime AS TO_TIMESTAMP_LTZ(COALESCE(ts, 0), 3),\n"
            f"  WATERMARK FOR rowtime AS rowtime - {sql_interval(cfg.out_of_orderness_ms)}")


def file_source_ddl(cfg: WindowJobSettings, name: str, path: Path | str,
                    extra: Mapping[str, str] | None = None) -> str:
    """``CREATE TABLE`` of a readings source over JSON lines in ``path`` (file or directory),
    with the same schema and format as the Kafka source (tests, benchmarks); ``extra``: more
    filesystem connector options (e.g. ``source.monitor-interval``)."""
    opts = {"connector": "filesystem", "path": str(path), **source_format_options(), **(extra or {})}
    return f"CREATE TABLE {name} ({source_schema(cfg, kafka=False)}\n) {with_clause(opts)}"


def kafka_source_ddl(cfg: WindowJobSettings, name: str = "readings") -> str:
    """``CREATE TABLE`` of the ``sensor-readings`` Kafka source.

    Consumer group ``cfg.consumer_group``; starts from the group's committed offsets (committed
    on each checkpoint), else ``cfg.offset_reset``; reads ``read_committed``; runs with
    ``cfg.source_parallelism``. The value format is ``json-dlq`` (:func:`source_format_options`):
    a record the job cannot read becomes a dead-letter row, which :func:`build` writes to the
    job's DLQ, and the job goes on.
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
        **source_format_options("value."),
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
    return (f"CREATE TABLE {name} ({aggregate_columns(cfg)},\n"
            f"  PRIMARY KEY (device_id, sensor, window_start_ms) NOT ENFORCED\n) {with_clause(opts)}")


def kafka_late_sink_ddl(cfg: WindowJobSettings, name: str = "late") -> str:
    """``CREATE TABLE`` of the ``sensor-late`` Kafka sink (append; key = device_id as text;
    columns :func:`late_columns`)."""
    opts = {"connector": "kafka", **_kafka_sink_options(cfg, cfg.topics.late, "late"),
            "key.format": "raw", "key.fields": "device_id",
            "value.format": "json", "value.fields-include": "ALL"}
    return f"CREATE TABLE {name} ({late_columns(cfg)}\n) {with_clause(opts)}"


def kafka_dlq_sink_ddl(cfg: WindowJobSettings, name: str = "dlq") -> str:
    """``CREATE TABLE`` of the job's dead-letter sink, topic ``cfg.topics.window_dlq`` (append,
    no key, :data:`DLQ_COLUMNS`; exactly-once like every sink of the job)."""
    opts = {"connector": "kafka", **_kafka_sink_options(cfg, cfg.topics.window_dlq, "dlq"),
            "value.format": "json"}
    return f"CREATE TABLE {name} ({DLQ_COLUMNS}\n) {with_clause(opts)}"


def kafka_duplicates_sink_ddl(cfg: WindowJobSettings, name: str = "duplicates") -> str:
    """``CREATE TABLE`` of the ``sensor-duplicates`` Kafka sink (append; key = device_id as
    text; :data:`DUPLICATE_COLUMNS`: the dropped reading and its copy number, 2, 3, ...)."""
    opts = {"connector": "kafka", **_kafka_sink_options(cfg, cfg.topics.duplicates, "duplicates"),
            "key.format": "raw", "key.fields": "device_id",
            "value.format": "json", "value.fields-include": "ALL"}
    return f"CREATE TABLE {name} ({DUPLICATE_COLUMNS}\n) {with_clause(opts)}"


# --------------------------------------------------------------------------- pipeline
def configure_windowing(t_env, cfg: WindowJobSettings) -> None:
    """Set the table options the window semantics depend on.

    - ``table.exec.emit.late-fire.enabled`` / ``late-fire.delay = 0`` /
      ``table.exec.emit.allow-lateness``: the legacy group window keeps each window
      ``allowed_lateness_ms`` after it fired and re-fires on every late element (an update
      of the same key). Experimental in Flink 2.2 but present; the window TVF has no lateness.
      With ``allowed_lateness_ms == 0`` late firing is off (Flink requires lateness > 0 for it).
    - ``table.exec.source.idle-timeout``: a source split without records for ``idleness_ms``
      stops holding the watermark back; ``0 ms`` (``idleness_ms == 0``, required at
      parallelism > 1) is no idle timeout: no channel of the job is ever marked idle, and
      quiet partitions are moved by watermark heartbeats (module docstring).
    - ``table.exec.sink.upsert-materialize = NONE``: the aggregate's updates are already keyed
      by the sink's primary key (window_start_ms is a grouping key), so the planner's
      materializer would only add unbounded state.
    - ``table.exec.state.ttl = dedup_ttl_ms``: the TTL of the dedup's keyed state (the only
      operator of this job that reads the option; see the module doc).
    - ``pipeline.object-reuse = true``: chained operators hand rows on without a deep copy
      (``CopyingChainingOutput`` copies every row with its ``RowDataSerializer`` otherwise,
      strings and the readings map included). Flink's planner turns it on itself for every
      batch SQL job (Flink 2.2 ``DefaultExecutor.configureBatchSpecificProperties``); this job
      has no user function on its hot path (the slow-sink UDF runs in a Python worker, which
      gets serialized rows), and its operators keep in state only what they serialize (RocksDB)
      or build themselves (accumulators, the dedup's count). The window tests run with it
      (exact late split at parallelism 1, 2 and 4, every window kind). Measured with
      ``bench/peers_bench.py`` (README, "Where the window job's CPU goes").
    """
    tc = t_env.get_config()
    tc.set("pipeline.object-reuse", "true")
    if cfg.allowed_lateness_ms > 0:
        tc.set("table.exec.emit.late-fire.enabled", "true")
        tc.set("table.exec.emit.late-fire.delay", "0 ms")
    else:
        tc.set("table.exec.emit.late-fire.enabled", "false")
    # always explicit: unset, the planner falls back to the state TTL (WindowEmitStrategy), which
    # is the dedup TTL here, and would keep fired windows open for it
    tc.set("table.exec.emit.allow-lateness", f"{cfg.allowed_lateness_ms} ms")
    tc.set("table.exec.source.idle-timeout", f"{cfg.idleness_ms} ms")
    tc.set("table.exec.sink.upsert-materialize", "NONE")
    if cfg.dedup:
        tc.set("table.exec.state.ttl", f"{cfg.dedup_ttl_ms} ms")
    # windows on the TIMESTAMP_LTZ rowtime align to this zone's local time: the epoch for
    # tumbling and sliding windows, local midnights for daily ones
    tc.set("table.local-time-zone", cfg.time_zone if cfg.window_kind == "daily" else "UTC")


def _kind_queries(cfg: WindowJobSettings, readings_from: str, first_copy: str) -> tuple[str, str, str]:
    """The three queries that differ by window kind: ``(flagged, windowed, late)``.

    ``flagged`` (view ``sensor_windows_flagged``): one row per (value, window) pair with
    ``window_start_ms``, ``wm`` and ``is_late`` (+ ``window_end_ms``, ``local_date`` for daily
    windows); ``windowed`` (view ``sensor_windows_windowed``): the aggregate of the on-time
    pairs per window; ``late``: the late pairs as :func:`late_columns` rows. The tumbling
    queries are the job's original text (same plan, same operator uids).
    """
    size, lateness, kind = cfg.window_size_ms, cfg.allowed_lateness_ms, cfg.window_kind
    aggs = "COUNT(*) AS `count`, MIN(`value`) AS `min`, MAX(`value`) AS `max`, AVG(`value`) AS `mean`"
    wm_col = ", wm AS `watermark`" if cfg.late_watermark_column else ""
    values = f"{readings_from} CROSS JOIN UNNEST(readings) AS r(sensor, val)"

    def late_pairs(length_ms: int) -> str:
        """The late pairs of a kind whose windows end ``length_ms`` after their start."""
        return f"""
            SELECT device_id, seq, sensor, ts, `value`, window_start_ms,
                   window_start_ms + {length_ms} AS window_end_ms, ingest_ms{wm_col}
            FROM sensor_windows_flagged
            WHERE is_late"""

    def flagged_pairs(ws: str, length_ms: int, pairs_from: str) -> str:
        """One row per (value, window) pair read from ``pairs_from``: the window starts at ``ws``
        (SQL, ms) and ends ``length_ms`` later; the pair is late once the watermark has passed
        its end - 1 + allowed lateness (the window operator's own test, module docstring)."""
        return f"""
            SELECT device_id, seq, ts, r.sensor AS sensor, r.val AS `value`, ingest_ms, rowtime,
                   {ws} AS window_start_ms,
                   CURRENT_WATERMARK(rowtime) AS wm,
                   COALESCE(TO_TIMESTAMP_LTZ({ws} + {length_ms - 1 + lateness}, 3)
                            <= CURRENT_WATERMARK(rowtime), FALSE) AS is_late
            FROM {pairs_from}
            {first_copy}"""

    if kind == "tumbling":
        ws = f"(ts - MOD(MOD(ts, {size}) + {size}, {size}))"  # floor_mod: also right for ts < 0
        flagged = flagged_pairs(ws, size, values)
        windowed = f"""
            SELECT device_id, sensor, window_start_ms, window_start_ms + {size} AS window_end_ms,
                   COUNT(*) AS `count`, MIN(`value`) AS `min`, MAX(`value`) AS `max`,
                   AVG(`value`) AS `mean`
            FROM sensor_windows_flagged
            WHERE NOT is_late
            GROUP BY device_id, sensor, window_start_ms, TUMBLE(rowtime, {sql_interval(size)})"""
        late = late_pairs(size)
        return flagged, windowed, late
    if kind == "sliding":
        slide = cfg.slide_ms
        last = f"ts - MOD(MOD(ts, {slide}) + {slide}, {slide})"
        # the array reads ts, so the UNNEST is a correlate (a constant array would become a
        # join, which loses the rowtime attribute)
        starts = ", ".join(f"{last} - {k * slide}" for k in range(size // slide))
        ws = "w.start_ms"
        flagged = flagged_pairs(ws, size, f"{values} CROSS JOIN UNNEST(ARRAY[{starts}]) AS w(start_ms)")
        # the pairs of window_start_ms w go to the group of key w; of the HOP windows of that
        # group, only [w, w + size) holds all of them and is kept (module docstring)
        windowed = f"""
            SELECT device_id, sensor, window_start_ms, window_start_ms + {size} AS window_end_ms,
                   `count`, `min`, `max`, `mean`
            FROM (SELECT device_id, sensor, window_start_ms,
                         HOP_START(rowtime, {sql_interval(slide)}, {sql_interval(size)}) AS hop_start, {aggs}
                  FROM sensor_windows_flagged
                  WHERE NOT is_late
                  GROUP BY device_id, sensor, window_start_ms,
                           HOP(rowtime, {sql_interval(slide)}, {sql_interval(size)}))
            WHERE hop_start = CAST(TO_TIMESTAMP_LTZ(window_start_ms, 3) AS TIMESTAMP(3))"""
        late = late_pairs(size)
        return flagged, windowed, late
    if kind == "session":
        gap = cfg.window_gap_ms
        flagged = flagged_pairs("ts", gap, values)  # the value's own window [ts, ts + gap)
        # a session starts at its first value and ends gap after its last (SESSION_START/END)
        windowed = f"""
            SELECT device_id, sensor, MIN(ts) AS window_start_ms, MAX(ts) + {gap} AS window_end_ms, {aggs}
            FROM sensor_windows_flagged
            WHERE NOT is_late
            GROUP BY device_id, sensor, SESSION(rowtime, {sql_interval(gap)})"""
        late = late_pairs(gap)
        return flagged, windowed, late
    # daily: local calendar days of table.local-time-zone (= cfg.time_zone, configure_windowing)
    day = "CAST(CAST(rowtime AS TIMESTAMP(3)) AS DATE)"
    start = f"UNIX_TIMESTAMP(CAST({day} AS STRING), 'yyyy-MM-dd') * 1000"
    end = f"UNIX_TIMESTAMP(CAST({day} + INTERVAL '1' DAY AS STRING), 'yyyy-MM-dd') * 1000"
    flagged = f"""
        SELECT device_id, seq, ts, r.sensor AS sensor, r.val AS `value`, ingest_ms, rowtime,
               {start} AS window_start_ms, {end} AS window_end_ms,
               CAST({day} AS STRING) AS local_date,
               CURRENT_WATERMARK(rowtime) AS wm,
               COALESCE(TO_TIMESTAMP_LTZ({end} + {lateness - 1}, 3)
                        <= CURRENT_WATERMARK(rowtime), FALSE) AS is_late
        FROM {values}
        {first_copy}"""
    windowed = f"""
        SELECT device_id, sensor, window_start_ms, window_end_ms, {aggs}, local_date
        FROM sensor_windows_flagged
        WHERE NOT is_late
        GROUP BY device_id, sensor, window_start_ms, window_end_ms, local_date,
                 TUMBLE(rowtime, INTERVAL '1' DAY)"""
    late = f"""
        SELECT device_id, seq, sensor, ts, `value`, window_start_ms, window_end_ms, ingest_ms{wm_col},
               local_date
        FROM sensor_windows_flagged
        WHERE is_late"""
    return flagged, windowed, late


def build(t_env, cfg: WindowJobSettings, source: str, aggregates_sink: str, late_sink: str,
          duplicates_sink: str | None = None, dlq_sink: str | None = None):
    """Add the window pipeline from table ``source`` to the sinks; returns a ``StatementSet``.

    Args:
        t_env: a streaming ``TableEnvironment`` (see :func:`jobs.common.create_table_env`).
        cfg: window kind and its sizes, allowed lateness, idleness, dedup TTL (all ms),
            slow-sink switch.
        source: name of a registered table with :func:`source_schema` (columns device_id,
            seq, ts (epoch ms), readings MAP<STRING, DOUBLE>, ingest_ms; rowtime + watermark).
        aggregates_sink: table with :func:`aggregate_columns` of ``cfg`` accepting updates
            (upsert on device_id, sensor, window_start_ms).
        late_sink: append table with :func:`late_columns` of ``cfg``.
        duplicates_sink: append table with :data:`DUPLICATE_COLUMNS` receiving every dropped
            copy. ``None`` (benchmarks only) drops duplicates without writing them; ``main()``
            always passes one.
        dlq_sink: append table with :data:`DLQ_COLUMNS` receiving every record the job could
            not read (``dlq_reason`` set by the ``json-dlq`` format). ``None`` (benchmarks
            only) drops them; ``main()`` always passes one.

    Statements are added in the order duplicates, late, aggregates, dead letters: exec node ids (and so the
    operator uids, ``table.exec.uid.generation=ALWAYS``) are numbered in that order, so a
    change on the aggregates path (e.g. the slow-sink switch) shifts no uid of the other
    branches, and a change of a Calc's columns shifts none at all (see
    ``tests/test_savepoint_upgrade.py``).

    Returns:
        a ``StatementSet`` holding every INSERT (one job); call ``execute()`` on it.

    Raises:
        JobError: the planner rejected the pipeline (message of the planner attached).
    """
    configure_windowing(t_env, cfg)
    raw_source = source
    try:
        # Records the job can read; the others (dlq_reason set) go only to the DLQ sink.
        # Watermark heartbeats stop here: their event time has moved the watermark already.
        valid = t_env.sql_query(f"""
            SELECT device_id, seq, ts, readings, ingest_ms, rowtime FROM {source}
            WHERE dlq_reason IS NULL AND device_id <> {sql_str(HEARTBEAT_DEVICE)}""")
        t_env.create_temporary_view("sensor_windows_valid", valid)
        source = "sensor_windows_valid"
        if cfg.dedup:
            # Dedup: copy number of each (device_id, seq) in arrival order; one BIGINT of keyed
            # state per key, expiring dedup_ttl_ms (processing time) after its last copy.
            dedup = t_env.sql_query(f"""
                SELECT device_id, seq, ts, readings, ingest_ms, rowtime,
                       COUNT(*) OVER (PARTITION BY device_id, seq ORDER BY arrival
                                      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS copy_no
                FROM (SELECT *, PROCTIME() AS arrival FROM {source})""")
            t_env.create_temporary_view("sensor_windows_dedup", dedup)
            readings_from, first_copy = "sensor_windows_dedup", "WHERE copy_no = 1"
        else:
            # without dedup the flag's Calc reads the source directly: every copy is counted
            readings_from, first_copy = source, ""
        # One Calc computes the flag once per (value, window) pair; both branches only read it.
        flagged_sql, windowed_sql, late_sql = _kind_queries(cfg, readings_from, first_copy)
        flagged = t_env.sql_query(flagged_sql)
        t_env.create_temporary_view("sensor_windows_flagged", flagged)
        window_start = "window_start_ms"
        if cfg.slow_sink_file:
            # small bundles: a checkpoint waits for the rows buffered in the Python worker
            # (100 rows x 20 ms = 2 s while slow); larger ones would hide the backpressure
            t_env.get_config().set("python.fn-execution.bundle.size", "100")
            t_env.get_config().set("python.fn-execution.bundle.time", "100")  # ms (a plain long)
            from udfs.throttle import throttle_udf  # noqa: PLC0415 - only with the switch on

            t_env.create_temporary_function(
                "sensor_windows_throttle", throttle_udf(cfg.slow_sink_file, cfg.slow_sink_ms))
            window_start = "sensor_windows_throttle(window_start_ms)"
        windowed = t_env.sql_query(windowed_sql)
        t_env.create_temporary_view("sensor_windows_windowed", windowed)
        local_date = ", local_date" if cfg.window_kind == "daily" else ""
        aggregates = t_env.sql_query(f"""
            SELECT device_id, sensor, {window_start} AS window_start_ms, window_end_ms,
                   `count`, `min`, `max`, `mean`{local_date}
            FROM sensor_windows_windowed""")
        late = t_env.sql_query(late_sql)
        stmts = t_env.create_statement_set()
        if duplicates_sink is not None and cfg.dedup:
            duplicates = t_env.sql_query("""
                SELECT device_id, seq, ts, readings, ingest_ms, copy_no
                FROM sensor_windows_dedup
                WHERE copy_no > 1""")
            stmts.add_insert(duplicates_sink, duplicates)
        stmts.add_insert(late_sink, late)
        stmts.add_insert(aggregates_sink, aggregates)
        if dlq_sink is not None:
            dead = t_env.sql_query(f"""
                SELECT {sql_str(cfg.job_name)} AS source, dlq_reason AS reason, dlq_detail AS detail,
                       kafka_partition, kafka_offset, dlq_raw AS `raw`
                FROM {raw_source}
                WHERE dlq_reason IS NOT NULL""")
            stmts.add_insert(dlq_sink, dead)
    except Exception as exc:  # py4j wraps planner errors; keep the cause
        raise JobError(f"cannot build {cfg.job_name}: {exc}") from exc
    return stmts


#: Names of the job's tables in its table environment: source, then the sinks in the order
#: :func:`build` takes them (aggregates, late, duplicates, dead letters).
JOB_TABLES: tuple[str, ...] = ("readings", "aggregates", "late", "duplicates", "dlq")


def job_ddl(cfg: WindowJobSettings) -> list[str]:
    """The ``CREATE TABLE`` statements of the Kafka job's :data:`JOB_TABLES`, in that order."""
    src, agg, late, dup, dlq = JOB_TABLES
    return [kafka_source_ddl(cfg, src), kafka_aggregates_sink_ddl(cfg, agg), kafka_late_sink_ddl(cfg, late),
            kafka_duplicates_sink_ddl(cfg, dup), kafka_dlq_sink_ddl(cfg, dlq)]


def state_configuration(cfg: WindowJobSettings) -> dict[str, str]:
    """The job's own Flink configuration of its keyed state: ``state.backend.type`` =
    ``cfg.state_backend`` (``rocksdb``, the cluster's default, or ``hashmap``).

    RocksDB keeps state on local disk with incremental checkpoints: any size. The heap
    (``hashmap``) skips serializing a key and a value and the JNI call on each state access, and
    cost 0.6 to 0.74 of RocksDB's CPU per reading after the first read in three runs (README,
    "Where the window job's CPU goes"), but the whole state must fit the TaskManager's heap and every checkpoint
    writes all of it. The dedup state dominates: one key per (device_id, seq) for
    ``dedup_ttl_ms`` (:func:`iotflink.testing.window_model.dedup_ttl`).
    """
    return {"state.backend.type": cfg.state_backend}


def create_job(cfg: WindowJobSettings, extra: Mapping[str, str] | None = None):
    """The Kafka job as ``main()`` builds it (on a plan cache miss): ``(t_env, statement_set)``,
    not executed.

    Tests compile its plan (:func:`compiled_plan`) to assert what actually runs (sink
    guarantees, transactional ids, state TTL).

    Raises:
        JobError: connector jar missing, or the pipeline cannot be built.
    """
    t_env = create_table_env(job_configuration(cfg, cfg.job_name, use_kafka=True,
                                               extra={**state_configuration(cfg), **(extra or {})}))
    for ddl in job_ddl(cfg):
        t_env.execute_sql(ddl)
    return t_env, build(t_env, cfg, *JOB_TABLES)


def plan_key(t_env, cfg: WindowJobSettings) -> str:
    """The plan cache key (:func:`jobs.common.plan_cache_key`) of the Kafka job with ``cfg``;
    sets the job's table options in ``t_env`` first (:func:`configure_windowing`), since they
    are part of the key. ``cfg.plan_cache_dir`` is not: the plan does not depend on it.
    """
    configure_windowing(t_env, cfg)
    # this module's code too: under `flink run -py` it is __main__, not jobs.sensor_windows
    return plan_cache_key(t_env, [Path(__file__).read_text(), repr(replace(cfg, plan_cache_dir="")), *job_ddl(cfg)])


def execute(t_env, cfg: WindowJobSettings, cache_dir: Path | None, on_step=None):
    """Submit the Kafka job (its DDL already run in ``t_env``) through the compiled plan cache.

    The plan is loaded from ``cache_dir`` when this job version with these settings was
    submitted before, else built (:func:`build`), compiled and stored
    (:func:`jobs.common.execute_cached`); ``cache_dir=None`` builds and executes without a
    cache. The Python UDF of the slow-sink switch cannot be compiled into a plan, so with the
    switch on the job is always built.

    Returns:
        the ``TableResult`` of the submission.

    Raises:
        JobError: the pipeline cannot be built.
    """
    if cfg.slow_sink_file:
        cache_dir = None
    if cache_dir is None:
        configure_windowing(t_env, cfg)
        key = ""
    else:
        key = plan_key(t_env, cfg)
    return execute_cached(t_env, lambda: build(t_env, cfg, *JOB_TABLES), key, cache_dir, cfg.job_name,
                          on_step=on_step)


def compiled_plan(stmts) -> dict:
    """The compiled plan (``StatementSet.compilePlan()``) of ``stmts`` as JSON.

    It lists every exec node with its id, every sink's resolved table options, and every
    stateful node's state TTL. Python UDFs cannot be compiled (slow-sink switch off only).
    """
    import json  # noqa: PLC0415

    return json.loads(stmts._j_statement_set.compilePlan().asJsonString())  # noqa: SLF001


def main(argv: list[str] | None = None) -> None:
    """Run the job against Kafka with :meth:`WindowJobSettings.from_env` (what ``flink run`` calls).

    Raises:
        ConfigError: invalid ``IOTFLINK_*`` settings.
        JobError: connector jar missing, or the pipeline cannot be built.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = WindowJobSettings.from_env()
    log.info("settings: %s", cfg)
    t_env = create_table_env(job_configuration(cfg, cfg.job_name, use_kafka=True, extra=state_configuration(cfg)))
    for ddl in job_ddl(cfg):
        t_env.execute_sql(ddl)
    result = execute(t_env, cfg, Path(cfg.plan_cache_dir) if cfg.plan_cache_dir else None)
    client = result.get_job_client()
    log.info("submitted %s: job id %s", JOB_NAME, client.get_job_id() if client else "?")


__all__ = ["build", "create_job", "state_configuration", "compiled_plan", "main", "execute", "plan_key", "job_ddl", "JOB_TABLES",
           "aggregate_columns", "LOCAL_DATE_COLUMN",
           "source_schema", "source_format_options", "file_source_ddl", "kafka_source_ddl", "kafka_dlq_sink_ddl",
           "kafka_aggregates_sink_ddl", "kafka_late_sink_ddl",
           "kafka_duplicates_sink_ddl", "late_columns", "sql_str", "AGGREGATE_COLUMNS", "LATE_COLUMNS", "LATE_WATERMARK_COLUMN",
           "DUPLICATE_COLUMNS", "DLQ_COLUMNS", "SOURCE_COLUMNS", "JOB_NAME"]


if __name__ == "__main__":
    main(sys.argv[1:])
