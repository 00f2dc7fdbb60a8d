"""Unit tests of the window job's pure parts: window assignment, the late predicate, DDL, jar check,
the watermark heartbeats' event time (``iotflink.kafka_io.PartitionClock``).

No Flink cluster: these run in milliseconds.
"""

from __future__ import annotations

import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotflink.errors import ConfigError, JobError
from iotflink.kafka_io import PartitionClock
from iotflink.settings import WindowJobSettings
from iotflink.testing import window_model
from jobs import common
from jobs import sensor_windows as sw

MIN = 60_000


@pytest.mark.parametrize(
    ("ts", "size", "expected"),
    [
        (0, MIN, (0, MIN)),
        (1, MIN, (0, MIN)),
        (MIN - 1, MIN, (0, MIN)),            # last ms of a window
        (MIN, MIN, (MIN, 2 * MIN)),          # end is exclusive
        (1_767_225_659_999, MIN, (1_767_225_600_000, 1_767_225_660_000)),
        (1_767_225_660_000, MIN, (1_767_225_660_000, 1_767_225_720_000)),
        (-1, MIN, (-MIN, 0)),                # negative times floor, like Flink
        (-MIN, MIN, (-MIN, 0)),
        (-MIN - 1, MIN, (-2 * MIN, -MIN)),
        (7, 1, (7, 8)),
        (12_345, 10_000, (10_000, 20_000)),
    ],
)
def test_window_bounds(ts, size, expected):
    assert window_model.window_bounds(ts, size) == expected


@pytest.mark.parametrize("size", [0, -1])
def test_window_bounds_rejects_non_positive_size(size):
    with pytest.raises(ValueError):
        window_model.window_bounds(1, size)


def test_cleanup_time_is_max_timestamp_plus_lateness_and_saturates():
    assert window_model.cleanup_time(MIN, 0) == MIN - 1
    assert window_model.cleanup_time(MIN, 120_000) == MIN - 1 + 120_000
    assert window_model.cleanup_time(window_model.LONG_MAX, 10) == window_model.LONG_MAX


def test_is_late_boundaries():
    size, lateness = 10_000, 5_000
    # window [0, 10000): cleanup = 9999 + 5000 = 14999
    assert window_model.is_late(3_000, None, size, lateness) is False          # no watermark yet
    assert window_model.is_late(3_000, 14_998, size, lateness) is False        # one ms before cleanup
    assert window_model.is_late(3_000, 14_999, size, lateness) is True         # cleanup == watermark
    assert window_model.is_late(9_999, 14_999, size, lateness) is True         # whole window shares it
    assert window_model.is_late(10_000, 14_999, size, lateness) is False       # next window
    assert window_model.is_late(0, 9_998, size, 0) is False                    # no lateness: end - 1
    assert window_model.is_late(0, 9_999, size, 0) is True
    assert window_model.is_late(-1, -1, size, lateness) is False               # window [-10000, 0): 4999


@pytest.mark.parametrize(("ms", "literal"), [
    (0, "INTERVAL '0 00:00:00.000' DAY TO SECOND(3)"),
    (10_000, "INTERVAL '0 00:00:10.000' DAY TO SECOND(3)"),
    (120_500, "INTERVAL '0 00:02:00.500' DAY TO SECOND(3)"),
    (90_061_001, "INTERVAL '1 01:01:01.001' DAY TO SECOND(3)"),
])
def test_sql_interval(ms, literal):
    assert common.sql_interval(ms) == literal


def test_sql_interval_rejects_negative():
    with pytest.raises(ValueError):
        common.sql_interval(-1)


def _cfg(**kw) -> WindowJobSettings:
    return WindowJobSettings(**kw)


def test_kafka_sinks_are_exactly_once_with_prefix_and_timeout_below_broker_max():
    cfg = _cfg()
    for ddl, role in ((sw.kafka_aggregates_sink_ddl(cfg), "aggregates"), (sw.kafka_late_sink_ddl(cfg), "late")):
        assert "'sink.delivery-guarantee' = 'exactly-once'" in ddl
        assert f"'sink.transactional-id-prefix' = 'iotflink-sensor-windows-{role}'" in ddl
        assert "'properties.transaction.timeout.ms' = '600000'" in ddl
    assert cfg.transaction_timeout_ms < 15 * 60_000
    agg = sw.kafka_aggregates_sink_ddl(cfg)
    assert "'connector' = 'upsert-kafka'" in agg
    assert "PRIMARY KEY (device_id, sensor, window_start_ms) NOT ENFORCED" in agg


def test_at_least_once_sink_has_no_transactions():
    ddl = sw.kafka_late_sink_ddl(_cfg(delivery_guarantee="at-least-once"))
    assert "'sink.delivery-guarantee' = 'at-least-once'" in ddl
    assert "transactional-id-prefix" not in ddl


def test_kafka_source_reads_committed_with_group_offsets():
    ddl = sw.kafka_source_ddl(_cfg(consumer_group="g1", source_parallelism=1))
    for fragment in ("'properties.group.id' = 'g1'", "'properties.isolation.level' = 'read_committed'",
                     "'scan.startup.mode' = 'group-offsets'", "'scan.parallelism' = '1'",
                     "WATERMARK FOR rowtime AS rowtime - INTERVAL '0 00:00:10.000' DAY TO SECOND(3)"):
        assert fragment in ddl


@pytest.mark.parametrize(("var", "value"), [
    ("IOTFLINK_WINDOW_DELIVERY_GUARANTEE", "exactly_once"),
    ("IOTFLINK_KAFKA_TXN_TIMEOUT_MS", "3600000"),   # 1 h: the broker would refuse it
    ("IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS", "0"),
    ("IOTFLINK_WINDOW_OFFSET_RESET", "none"),
])
def test_settings_reject_bad_values(var, value):
    with pytest.raises(ConfigError):
        WindowJobSettings.from_env({var: value})


def test_job_configuration_checkpointing_and_interpreter():
    import sys  # noqa: PLC0415

    conf = common.job_configuration(_cfg(checkpoint_interval_ms=30_000), "j", use_kafka=False)
    assert conf["execution.checkpointing.interval"] == "30000 ms"
    assert conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert conf["state.backend.type"] == "rocksdb"
    assert conf["execution.checkpointing.incremental"] == "true"
    assert conf["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"
    assert conf["python.executable"] == sys.executable
    assert conf["table.exec.uid.generation"] == "ALWAYS"


# --------------------------------------------------------------------------- connector jar check
def _fake_home(tmp_path, monkeypatch):
    home = tmp_path / "flink"
    (home / "lib").mkdir(parents=True)
    monkeypatch.setattr(common, "flink_home", lambda: home)
    return home


def _write_jar(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("META-INF/services/org.apache.flink.table.factories.Factory", "x\n")


def test_jar_check_missing_names_both_paths(tmp_path, monkeypatch):
    home = _fake_home(tmp_path, monkeypatch)
    with pytest.raises(JobError) as err:
        common.kafka_connector_jar(tmp_path / "deps")
    assert str(home / "lib" / common.KAFKA_CONNECTOR_JAR) in str(err.value)
    assert str(tmp_path / "deps" / "flink" / common.KAFKA_CONNECTOR_JAR) in str(err.value)


def test_jar_check_empty_file_is_an_error(tmp_path, monkeypatch):
    home = _fake_home(tmp_path, monkeypatch)
    (home / "lib" / common.KAFKA_CONNECTOR_JAR).write_bytes(b"")
    with pytest.raises(JobError, match="empty or not a table factory jar"):
        common.kafka_connector_jar(tmp_path / "deps")


def test_jar_check_lib_or_deps(tmp_path, monkeypatch):
    home = _fake_home(tmp_path, monkeypatch)
    deps_jar = tmp_path / "deps" / "flink" / common.KAFKA_CONNECTOR_JAR
    _write_jar(deps_jar)
    assert common.kafka_connector_jar(tmp_path / "deps") == deps_jar      # ship via pipeline.jars
    _write_jar(home / "lib" / common.KAFKA_CONNECTOR_JAR)
    assert common.kafka_connector_jar(tmp_path / "deps") is None          # already on the classpath


def test_real_connector_jar_is_usable():
    """The project's own setup put a usable jar in place (lib or .deps)."""
    common.kafka_connector_jar()


def test_real_format_jar_is_usable():
    """Setup built the json-dlq format (jvm/) and put it in place (lib or .deps)."""
    common.format_jar()


# --------------------------------------------------------------------------- watermark heartbeats
def test_heartbeats_raise_quiet_partitions_to_the_lowest_active_one():
    clock = PartitionClock(quiet_ms=5_000)
    assert clock.due(range(4), 0) == {}                          # no event time known yet
    clock.observe(0, 100_000, now_ms=0)
    clock.observe(1, 50_000, now_ms=0)
    assert clock.due(range(4), 1_000) == {2: 50_000, 3: 50_000}  # never written: raised to H
    assert clock.due(range(4), 2_000) == {}                      # nothing raises them further
    clock.observe(0, 200_000, now_ms=3_000)                      # partition 1 quiet from 5 s on
    assert clock.heartbeat_ts(4_999) == 50_000
    assert clock.due(range(4), 5_500) == {1: 200_000, 2: 200_000, 3: 200_000}


def test_heartbeats_when_every_partition_is_quiet_take_the_highest():
    clock = PartitionClock(quiet_ms=5_000)
    clock.observe(0, 70_000, now_ms=0)
    clock.observe(1, 90_000, now_ms=0)
    assert clock.due(range(3), 5_000) == {0: 90_000, 2: 90_000}  # 1 holds 90 000 itself


def test_a_straggler_at_the_end_of_a_quiet_partition_gets_a_heartbeat():
    """Flink SQL's watermark generator takes the last row's watermark: a partition whose last
    reading is behind its highest is raised back to H even though H is not above its highest."""
    clock = PartitionClock(quiet_ms=5_000)
    clock.observe(0, 100_000, now_ms=0)
    clock.observe(0, 80_000, now_ms=0)   # straggler, last on partition 0
    clock.observe(1, 100_000, now_ms=0)
    assert clock.due([0, 1], 5_000) == {0: 100_000}


def test_failed_heartbeat_is_due_again():
    clock = PartitionClock(quiet_ms=1_000)
    clock.observe(0, 10_000, now_ms=0)
    assert clock.due([0, 1], 500) == {1: 10_000}
    assert clock.due([0, 1], 600) == {}
    clock.forget(1)
    assert clock.due([0, 1], 700) == {1: 10_000}


def test_partition_clock_rejects_a_non_positive_quiet_period():
    with pytest.raises(ValueError):
        PartitionClock(quiet_ms=0)


_steps = st.lists(st.tuples(st.integers(0, 3_000),                 # wall ms since the last step
                            st.lists(st.tuples(st.integers(0, 3), st.integers(0, 100_000)), max_size=4)),
                  min_size=1, max_size=40)


@given(_steps)
def test_heartbeats_move_the_watermark_exactly_as_an_idle_timeout_would(steps):
    """Out-of-orderness aside, a partition's watermark is at most the highest event time written
    to it (readings and heartbeats), and once it is quiet at least that of its last record
    (Flink SQL's generator takes the last row's). So with heartbeats the job's watermark (the
    minimum over partitions) never passes what a source idle timeout of ``quiet_ms`` gives (the
    minimum over the active partitions, or the maximum when all are idle; Flink never lowers an
    emitted watermark, hence the running maximum), and after each round of heartbeats every
    quiet partition's last record is at least that, so the watermark reaches it once the active
    partitions' do."""
    quiet, parts = 2_000, range(4)
    clock = PartitionClock(quiet_ms=quiet)
    written: dict[int, int] = {}        # partition -> highest ts in Kafka (readings + heartbeats)
    tail: dict[int, int] = {}           # partition -> ts of its last record in Kafka
    readings: dict[int, tuple[int, int]] = {}  # partition -> (highest reading ts, last wall ms)
    now, idle_wm = 0, None
    for gap, batch in steps:
        now += gap
        for part, ts in batch:
            clock.observe(part, ts, now)
            written[part] = max(written.get(part, ts), ts)
            tail[part] = ts
            readings[part] = (max(readings.get(part, (ts, 0))[0], ts), now)
        for part, ts in clock.due(parts, now).items():
            assert ts > tail.get(part, ts - 1)  # a heartbeat always raises its partition's last record
            written[part] = max(written.get(part, ts), ts)
            tail[part] = ts
        if not readings:
            continue
        active = [m for m, last in readings.values() if now - last < quiet]
        model = min(active) if active else max(m for m, _ in readings.values())
        idle_wm = model if idle_wm is None else max(idle_wm, model)
        assert min(written.get(p, -1) for p in parts) <= idle_wm
        quiet_parts = [p for p in parts if p not in readings or now - readings[p][1] >= quiet]
        assert all(tail[p] >= model for p in quiet_parts)
        assert all(written[p] >= model for p in parts if p in readings and now - readings[p][1] < quiet)


def test_demo_window_job_env_is_accepted_at_every_parallelism():
    from iotflink.simulation.demo import DEFAULT_PARALLELISM, window_job_env  # noqa: PLC0415

    assert DEFAULT_PARALLELISM == 2
    assert window_job_env(1) == {"IOTFLINK_JOB_PARALLELISM": "1"}  # keeps the idle timeout
    for p in (1, 2, 4):
        cfg = WindowJobSettings.from_env(window_job_env(p))
        assert cfg.parallelism == p and (cfg.idleness_ms == 0) == (p > 1)
    with pytest.raises(ValueError):
        window_job_env(0)
