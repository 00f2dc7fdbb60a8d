"""Unit tests of the dedup model of ``jobs/sensor_windows`` (plain functions, controlled clock).

:func:`iotflink.testing.window_model.dedup_step` is the model of the SQL dedup operator
(``COUNT(*) OVER (PARTITION BY device_id, seq ORDER BY PROCTIME())`` with state TTL); the
MiniCluster tests check the job against it. Times are processing times in ms.
"""

from __future__ import annotations

import pytest

from iotflink.errors import ConfigError
from iotflink.settings import ENV_VARS, WindowJobSettings
from iotflink.testing.window_model import DedupEntry, dedup_expire, dedup_step, dedup_ttl, dedup_visible

TTL = 2_000


def _run(arrivals: list[tuple[str, int, int]], ttl: int = TTL) -> list[int]:
    """Copy numbers of ``(device_id, seq, now_ms)`` arrivals, in order."""
    state: dict = {}
    out = []
    for device, seq, now in arrivals:
        state, copy_no = dedup_step(state, device, seq, now, ttl)
        out.append(copy_no)
    return out


def test_first_copy_passes_later_copies_are_numbered():
    assert _run([("d1", 1, 0), ("d1", 1, 5), ("d1", 1, 10), ("d1", 2, 10), ("d2", 1, 11)]) == [1, 2, 3, 1, 1]


def test_copy_after_ttl_is_a_first_copy_again():
    # expired iff written + ttl <= now (Flink TtlUtils.expired)
    assert _run([("d1", 1, 0), ("d1", 1, TTL - 1)]) == [1, 2]
    assert _run([("d1", 1, 0), ("d1", 1, TTL)]) == [1, 1]
    assert _run([("d1", 1, 0), ("d1", 1, 10 * TTL), ("d1", 1, 10 * TTL + 1)]) == [1, 1, 2]


def test_every_copy_rewrites_the_entry_so_ttl_runs_from_the_last_copy():
    # OnCreateAndWrite: the accumulator is written by each copy, refreshing its timestamp
    t = [0, TTL - 1, 2 * TTL - 2, 3 * TTL - 3, 4 * TTL - 3]
    assert _run([("d1", 1, x) for x in t]) == [1, 2, 3, 4, 1]


def test_step_does_not_mutate_its_input_state():
    s0: dict = {}
    s1, _ = dedup_step(s0, "d1", 1, 0, TTL)
    s2, copy_no = dedup_step(s1, "d1", 1, 1, TTL)
    assert s0 == {} and s1 == {("d1", 1): DedupEntry(1, 0)}
    assert s2 == {("d1", 1): DedupEntry(2, 1)} and copy_no == 2


def test_expire_keeps_exactly_the_visible_entries():
    state = {("d1", 1): DedupEntry(1, 0), ("d1", 2): DedupEntry(3, 1_500), ("d2", 7): DedupEntry(1, 1_999)}
    assert dedup_expire(state, TTL, TTL) == {("d1", 2): DedupEntry(3, 1_500), ("d2", 7): DedupEntry(1, 1_999)}
    assert dedup_expire(state, TTL + 1_999, TTL) == {}
    assert not dedup_visible(None, 0, TTL)


def test_ttl_must_be_positive():
    with pytest.raises(ValueError):
        dedup_step({}, "d1", 1, 0, 0)


def test_state_size_formula_of_the_docstring():
    fleet = dedup_ttl(devices=8_000, readings_per_s_per_device=0.2, ttl_ms=3_600_000)
    assert fleet["keys"] == pytest.approx(5_760_000)
    assert fleet["bytes"] == pytest.approx(576e6)
    assert fleet["bytes_per_s_new"] == pytest.approx(160_000)
    assert dedup_ttl(8_000, 0.2, 600_000)["bytes"] == pytest.approx(96e6)


def test_ttl_setting_default_and_validation():
    assert ENV_VARS["IOTFLINK_DEDUP_TTL_MS"] == "3600000"
    assert WindowJobSettings.from_env({}).dedup_ttl_ms == 3_600_000
    assert WindowJobSettings.from_env({"IOTFLINK_DEDUP_TTL_MS": "1500"}).dedup_ttl_ms == 1_500
    for bad in ("0", "-1", "1h"):
        with pytest.raises(ConfigError):
            WindowJobSettings.from_env({"IOTFLINK_DEDUP_TTL_MS": bad})
