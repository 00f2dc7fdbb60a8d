"""The slow-sink demo switch (``IOTFLINK_SLOW_SINK_FILE``): gate logic with a fake clock,
and where the switch puts (or does not put) a Python operator in the window job's plan.

The backpressure it causes on the real cluster is checked by the owner of the backpressure
CLI; how to drive it is in ``udfs/throttle.py`` and ``jobs/sensor_windows.py``.
"""

from __future__ import annotations

import pytest

from iotflink.errors import ConfigError
from iotflink.settings import ENV_VARS, WindowJobSettings
from jobs import common
from jobs import sensor_windows as sw
from udfs.throttle import CHECK_INTERVAL_MS, SlowSinkGate, Throttle


class _Fake:
    """A clock (seconds), a switch file and a sleeper that advances the clock."""

    def __init__(self) -> None:
        self.now, self.present, self.slept, self.probes = 0.0, False, [], 0

    def clock(self) -> float:
        return self.now

    def exists(self, _path: str) -> bool:
        self.probes += 1
        return self.present

    def sleep(self, secs: float) -> None:
        self.slept.append(secs)
        self.now += secs

    def gate(self, sleep_ms: int = 20) -> SlowSinkGate:
        return SlowSinkGate("/x/slow", sleep_ms, CHECK_INTERVAL_MS, clock=self.clock, exists=self.exists,
                            sleep=self.sleep)


def test_sleeps_per_row_only_while_the_file_exists():
    f = _Fake()
    gate = f.gate()
    assert gate.pass_row() == 0.0 and f.slept == []
    f.now += 0.2
    f.present = True
    assert [gate.pass_row() for _ in range(3)] == [0.02, 0.02, 0.02]
    f.now += 0.2
    f.present = False
    assert gate.pass_row() == 0.0


def test_file_is_probed_at_most_every_200_ms():
    f = _Fake()
    gate = f.gate(sleep_ms=0)
    for _ in range(1000):  # 1000 rows within the same instant: one probe
        gate.pass_row()
    assert f.probes == 1
    f.now += 0.199
    gate.pass_row()
    assert f.probes == 1
    f.now += 0.001
    gate.pass_row()
    assert f.probes == 2


def test_switch_on_is_seen_within_the_check_interval():
    f = _Fake()
    gate = f.gate()
    gate.pass_row()              # probe at t=0: absent
    f.present = True             # file created just after
    f.now += 0.1
    assert gate.pass_row() == 0  # not probed yet
    f.now += 0.1
    assert gate.pass_row() == 0.02
    # while slow, the sleeps themselves advance the clock: 10 rows = 200 ms = one new probe
    probes = f.probes
    for _ in range(10):
        gate.pass_row()
    assert f.probes == probes + 1


def test_invalid_arguments_are_rejected_on_the_client():
    with pytest.raises(ValueError):
        SlowSinkGate("", 20)
    with pytest.raises(ValueError):
        Throttle("/x", -1)


def test_udf_is_an_identity(tmp_path):
    udf = Throttle(str(tmp_path / "absent"), 20)
    udf.open(None)
    assert udf.eval(1_700_000_000_000) == 1_700_000_000_000


def test_settings():
    assert ENV_VARS["IOTFLINK_SLOW_SINK_FILE"] == "" and ENV_VARS["IOTFLINK_SLOW_SINK_MS"] == "20"
    cfg = WindowJobSettings.from_env({"IOTFLINK_SLOW_SINK_FILE": "/tmp/slow", "IOTFLINK_SLOW_SINK_MS": "5"})
    assert (cfg.slow_sink_file, cfg.slow_sink_ms) == ("/tmp/slow", 5)
    assert WindowJobSettings.from_env({}).slow_sink_file == ""
    with pytest.raises(ConfigError):
        WindowJobSettings.from_env({"IOTFLINK_SLOW_SINK_MS": "-1"})


@pytest.mark.minicluster
def test_plan_has_python_only_with_the_switch_and_right_before_the_aggregates_sink(tmp_path):
    off = common.explain(*sw.create_job(WindowJobSettings(window_size_ms=1_000)))
    assert "Python" not in off
    on = common.explain(*sw.create_job(WindowJobSettings(window_size_ms=1_000, slow_sink_file=str(tmp_path / "slow"))))
    plan = on[on.index("== Optimized Execution Plan =="):]
    agg_sink = plan[plan.index("Sink(table=[default_catalog.default_database.aggregates]"):]
    lines = [line.strip(" +-") for line in agg_sink.splitlines()[:4]]
    # Sink <- Calc (projection, chained) <- PythonCalc(throttle) <- GroupWindowAggregate
    assert lines[1].startswith("Calc(") and lines[2].startswith("PythonCalc(") \
        and "sensor_windows_throttle(window_start_ms)" in lines[2] and lines[3].startswith("GroupWindowAggregate(")
    assert plan.count("PythonCalc(") == 1  # nowhere else: the late and duplicates paths stay JVM-only
