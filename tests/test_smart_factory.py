"""Unit tests of the smart-factory scenario's pure parts: the rate plan, the event-time to wall
mapping, the latency percentiles, the value accounting, the exactness checks and the failing
machines' data (the splice of Bearing1_1 and its reference alerts)."""

from pathlib import Path

import pytest

from iotflink.simulation.exactness import exactness_checks
from iotflink.simulation.monitor import latency_summary, percentile
from iotflink.simulation.replay import WEEK_MS, femto_rows, load_dataset
from iotflink.simulation.scenarios import SCENARIOS
from iotflink.simulation.scenarios.smart_factory import (
    ALERT_AT,
    cpu_shares,
    due_wall_ms,
    failing_machines,
    live_from_for,
    rate_plan,
    splice_bearing,
    tree_cpu_s,
    values_in_ranges,
    values_per_row,
)


def test_registered():
    assert "smart-factory" in SCENARIOS
    assert "bridge" in SCENARIOS["smart-factory"].services


def test_rate_plan_targets_and_speedup():
    # one row per 100 ms of event time: at 10 Hz the data plays in real time
    ts = [1_000 + 100 * i for i in range(5000)]
    plan = rate_plan(2000, 10, 300, 10, ts)
    assert plan.rows == 3000
    assert plan.readings_per_s == 20_000
    assert plan.messages_per_s == 2_000
    assert plan.readings == 6_000_000
    # 3000 rows span 299.9 s of event time, played over 300 s
    assert plan.speedup == pytest.approx(299.9 / 300)


def test_rate_plan_speeds_up_a_slow_data_set():
    ts = [1_000 * i for i in range(1000)]  # 1 Hz data, played at 10 Hz
    plan = rate_plan(500, 10, 30, 1, ts)
    assert plan.rows == 300
    assert plan.speedup == pytest.approx(299 / 30)
    assert plan.messages_per_s == plan.readings_per_s == 5000


def test_rate_plan_refuses_too_short_data_and_bad_arguments():
    with pytest.raises(ValueError, match="needs 3000 rows"):
        rate_plan(1, 10, 300, 1, list(range(100)))
    with pytest.raises(ValueError):
        rate_plan(0, 10, 300, 1, list(range(5000)))
    with pytest.raises(ValueError, match="no event time"):
        rate_plan(1, 1, 2, 1, [5, 5, 5])


def test_due_wall_ms_maps_event_time_to_the_node_clock():
    assert due_wall_ms(10_000, t0_wall_ms=500.0, origin_ms=0, speedup=10) == 1500.0
    # readings before the origin are due at once
    assert due_wall_ms(-5, t0_wall_ms=500.0, origin_ms=0, speedup=10) == 500.0


def test_percentile_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([3, 1, 2], 50) == 2  # unsorted input
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_latency_summary():
    s = latency_summary([10.0, 20.0, 30.0, 1000.0])
    assert s == {"n": 4, "p50_ms": 20.0, "p99_ms": 1000.0, "max_ms": 1000.0}
    assert latency_summary([])["p50_ms"] is None


def test_values_in_ranges_counts_the_acked_rows():
    rows = [{"a": 1, "b": 2, "c": 3}, {"t": 1}, {"t": 2}, {"a": 1, "b": 2, "c": 3}]
    prefix = values_per_row(rows)
    assert prefix == [0, 3, 4, 5, 8]
    assert values_in_ranges(prefix, [[0, 3]]) == 8
    assert values_in_ranges(prefix, [[0, 0], [2, 3]]) == 7
    assert values_in_ranges(prefix, []) == 0
    with pytest.raises(ValueError):
        values_in_ranges(prefix, [[2, 4]])


def test_exactness_checks_pass_only_when_every_count_matches():
    """The demo's and the smart factory's checks (one function, iotflink.simulation.exactness)."""
    ok = exactness_checks(published=100, readings_records=98, dlq_records=2, values_in=250, counted=245, late=5,
                          dropped_late=0)
    assert len(ok) == 3 and all(passed for _, passed, _ in ok)
    lost = exactness_checks(100, 97, 2, 250, 245, 5, 0)
    assert [passed for _, passed, _ in lost] == [False, True, True]
    miscounted = exactness_checks(100, 98, 2, 250, 244, 5, 0)
    assert [passed for _, passed, _ in miscounted] == [True, False, True]
    dropped = exactness_checks(100, 98, 2, 250, 245, 5, 3)
    assert [passed for _, passed, _ in dropped] == [True, True, False]
    assert not exactness_checks(100, 98, 2, 250, 245, 5, None)[2][1]  # metric not found: not a pass
    # the demo's duplicates check: 102 records, 98 unique, 4 copies in sensor-duplicates
    dup = exactness_checks(104, 102, 2, 250, 245, 5, 0, unique_readings=98, duplicates=4)
    assert [passed for _, passed, _ in dup] == [True, True, True, True]
    assert "sensor-duplicates" in dup[1][0]
    missing_copy = exactness_checks(104, 102, 2, 250, 245, 5, 0, unique_readings=98, duplicates=3)
    assert [passed for _, passed, _ in missing_copy] == [True, False, True, True]


def test_cpu_shares_and_other_work():
    before = {"kafka": 10.0, "bridges": 5.0, "machine": 100.0}
    after = {"kafka": 20.0, "bridges": 25.0, "machine": 160.0}
    cores = cpu_shares(before, after, 20.0)
    assert cores == {"kafka": 0.5, "bridges": 1.0, "machine": 3.0, "other work": 1.5}


def test_tree_cpu_counts_descendants_and_keeps_exited_processes():
    table = {10: (1, 2.0), 11: (10, 3.0), 12: (11, 4.0), 20: (1, 100.0)}
    last: dict[int, float] = {}
    assert tree_cpu_s(table, [10], last) == 9.0
    assert tree_cpu_s(table, [10], {}, children=False) == 2.0
    # process 12 exited: it keeps its last sampled CPU
    assert tree_cpu_s({10: (1, 2.5), 11: (10, 3.0)}, [10], last) == 9.5


VIB = [["1", "100.5", "0.5", "0.4", "2.0"], ["2", "110.5", "0.6", "0.4", "2.1"], ["3", "120.5", "0.7", "0.4", "2.2"],
       ["4", "64.5", "0.9", "0.4", "2.3"],  # a snapshot whose clock is early stays where the file has it
       ["5", "140.5", "0.8", "0.4", "2.4"], ["6", "150.5", "1.0", "0.5", "2.5"]]
TEMP = [[str(1), str(t), f"{70 + t / 100:.3f}"] for t in range(101, 156)]


def test_splice_bearing_moves_the_history_before_the_gap_and_the_live_part_to_the_origin():
    vib, temp = splice_bearing(VIB, TEMP, history_s=15, gap_s=5, live_from_s=30, live_span_s=12)
    # t0 = 100.5 (the first reading); history [100.5, 115.5) moved 20 s earlier; the live part from
    # the first row at or after 130.5 (snapshot 4's clock is early: it ends the search's prefix,
    # not the live part), moved 30 s earlier, up to 112.5
    assert vib == [["1", "80.5", "0.5", "0.4", "2.0"], ["2", "90.5", "0.6", "0.4", "2.1"],
                   ["5", "110.5", "0.8", "0.4", "2.4"]]
    assert [r[1] for r in temp] == [str(t - 20) for t in range(101, 116)] + [str(t - 30) for t in range(131, 143)]
    assert all(r[2] == f"{70 + int(r[1]) / 100 + (20 if int(r[1]) < 100 else 30) / 100:.3f}" for r in temp)
    # a history of 2 + 15 readings sent 4 to a message: its latest reading is dropped
    vib4, temp4 = splice_bearing(VIB, TEMP, history_s=15, gap_s=5, live_from_s=30, live_span_s=12, batch=4)
    assert vib4 == vib and temp4 == temp[:14] + temp[15:]
    with pytest.raises(ValueError):
        splice_bearing(VIB, TEMP, history_s=15, gap_s=5, live_from_s=10, live_span_s=12)
    with pytest.raises(ValueError):
        splice_bearing([], TEMP, history_s=15, gap_s=5, live_from_s=30, live_span_s=12)


def test_live_from_places_the_first_alert_across_the_span():
    starts = live_from_for(10_000, 1_000, 3)
    assert [10_000 - s for s in starts] == [int(ALERT_AT[0] * 1000), int(sum(ALERT_AT) / 2 * 1000),
                                            int(ALERT_AT[1] * 1000)]
    assert live_from_for(10_000, 1_000, 1) == [10_000 - int(sum(ALERT_AT) / 2 * 1000)]


def test_failing_machines_play_bearing1_1_with_reference_alerts_inside_the_run(tmp_path: Path):
    now = 1_800_000_000_000
    data = load_dataset("femto", now)
    origin, last = data[0][0], data[2999][0]
    sick = failing_machines(["f0", "f1", "f2"], tmp_path, origin, last, speedup=9.0, lead_s=20, bound_ms=10_000,
                            batch=10)
    shift = origin - femto_rows("1_1")[0][0]
    for dev, m in sick.items():
        rows = femto_rows("1_1", m.data_dir, dev)
        ts = [t + shift for t, _d, _v in rows]
        # the history is sent at once: it ends before the failing machine's clock starts (20 s x 9
        # of event time before the origin); the live part lies inside the fleet's span
        assert m.history == sum(t < origin for t in ts) > 3600 and m.history % 10 == 0
        assert max(t for t in ts if t < origin) < origin - 180_000
        assert min(t for t in ts if t >= origin) - origin < 2_000 and m.last_ts <= last
        # the node's --now-ms gives the fleet's whole-week shift
        assert ((m.now_ms - 1 - (m.last_ts - shift)) // WEEK_MS) * WEEK_MS == shift
        assert len(m.prefix) == len(rows) + 1
        # the rule alerts inside the run, later for each next machine
        assert m.alerts and all(origin <= a <= last for a in m.alerts)
    firsts = [m.alerts[0] for m in sick.values()]
    assert firsts == sorted(firsts) and len(set(firsts)) == 3
