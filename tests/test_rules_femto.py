"""The bearing rules on real FEMTO runs, against the plain-Python definition.

The readings are built from ``data/femto/Bearing*_*.csv`` as the node publishes them
(iotflink.simulation.replay.femto_rows; docs/CONTRACT.md: one message per vibration snapshot with h_rms_g,
v_rms_g, peak_abs_g in g; one message per second with temp_c in degrees C; day 0 at
2012-03-01 UTC), in arrival order: by time, except that Bearing1_1's snapshots 2121 and 2122,
whose clock is about 6 h early, arrive right after snapshot 2120. The three rules
(sql/rules/bearing_failure.sql, bearing_vibration_rise.sql, bearing_impact_rise.sql) run on a
MiniCluster, in one job, on Bearing1_1 (7.8 h, the clock fault) and Bearing2_1 (2.5 h, the other
operating condition), with the parameters of their headers and, for one run each of the spike and
rise rules, other parameters (jobs.rules.with_params). The expected alerts come from
iotflink.testing.bearing, which computes the same definitions in plain Python over the CSV rows
(watermark lateness, the median baseline after the run-in, spikes then first rise and spike
episodes; rolling medians and high episodes).
"""

from __future__ import annotations

import json

import pytest

from iotflink.settings import PROJECT_ROOT, RulesSettings
from iotflink.testing import bearing as br
from iotflink.testing.rules_harness import BoundedRun, run_bounded_many
from jobs.rules import SINK_TABLES, SOURCE_TABLES, alert_id, explain, file_options, local_env, parse_rule_file, with_params

pytestmark = [pytest.mark.minicluster, pytest.mark.slow]

RULES = PROJECT_ROOT / "sql" / "rules"
DAY0_MS = 1_330_560_000_000  # 2012-03-01T00:00:00Z


def _expected(rule_id: str, run: br.BearingRun, params) -> set[tuple[int, ...]]:
    if rule_id == "bearing_failure":
        return set(br.spike_rise_alerts(run, params))
    return {(t,) for t in br.vibration_rise_alerts(br.as_feature(run, br.FEATURE[rule_id]), params)}


@pytest.fixture(scope="module")
def femto_job(tmp_path_factory):
    """One MiniCluster job: (rule, bearing, parameter overrides) -> its BoundedRun and reference run."""
    cfg = RulesSettings()
    failure = parse_rule_file(RULES / "bearing_failure.sql")
    rise = parse_rule_file(RULES / "bearing_vibration_rise.sql")
    impact = parse_rule_file(RULES / "bearing_impact_rise.sql")
    cases = [(failure, "1_1", {}), (rise, "1_1", {}), (impact, "1_1", {}), (failure, "2_1", {}),
             (rise, "2_1", {}), (impact, "2_1", {}),
             (rise, "2_1", {"sustain_s": 30, "rise_k": 1.2, "baseline_s": 3600}),
             (failure, "1_1", {"quiet_s": 60, "spike_k": 2.0})]
    tmp = tmp_path_factory.mktemp("femto")
    refs = {b: br.load_run(b, cfg.out_of_orderness_ms) for b in ("1_1", "2_1")}
    runs = []
    for i, (rule, bearing, over) in enumerate(cases):
        variant = with_params(rule, over) if over else rule
        runs.append(BoundedRun(variant, tmp / f"run{i}", readings=refs[bearing].rows, database=f"femto{i}"))
    run_bounded_many(local_env(), cfg, runs)
    return [(run, refs[b], br.params_of(run.rule.rule_id, run.rule.params)) for run, (_r, b, _o) in zip(runs, cases)]


@pytest.mark.parametrize("case", range(8))
def test_bearing_rules_match_their_definition(femto_job, case):
    run, ref, params = femto_job[case]
    rule_id = run.rule.rule_id
    got = {tuple(e["ts_ms"] for e in a["events"]) for a in run.alerts}
    assert len(got) == len(run.alerts)  # no duplicate alerts
    want = _expected(rule_id, ref, params)
    assert want, "the case must raise alerts to compare"
    assert got == want
    base, _armed = br.baseline(br.as_feature(ref, br.FEATURE.get(rule_id, "h_rms_g")), params.run_in_s,
                               params.baseline_s)
    for a in run.alerts:
        ts = [e["ts_ms"] for e in a["events"]]
        assert a["alert_id"] == alert_id(rule_id, ref.device_id, ts)
        assert a["alert_key"] == ref.device_id
        assert json.loads(a["details"])["baseline_g"] == pytest.approx(base, rel=1e-12)
    # late rows are reported, never dropped silently: on Bearing1_1 the two clock-fault
    # snapshots (34726.86566 s, about 6 h early); none on Bearing2_1
    assert {r["seq"] for r in run.late} == set(ref.late_seqs)
    assert run.dlq == []
    if ref.name == "1_1":
        assert len(ref.late_seqs) == 2
        assert {(r["record_key"], r["ts"]) for r in run.late} == {(ref.device_id, DAY0_MS + 34_726_866)}


def test_the_rules_differ_where_the_calibration_says(femto_job):
    """On Bearing1_1 every rule warns in the second half only (no false alarm in the healthy
    first half), the RMS rise before the spike-then-rise pattern; the pattern raises one alert
    for its one spike episode (hundreds of matches), and a short quiet_s splits the spikes
    into several episodes, each with one alert."""
    fail_11, rise_11, impact_11 = (femto_job[i][0] for i in range(3))
    ref = femto_job[0][1]
    first = {run.rule.rule_id: min(a["detection_ms"] for a in run.alerts) for run in (fail_11, rise_11, impact_11)}
    assert all(ref.half_ms < t < ref.end_ms for t in first.values())
    assert first["bearing_vibration_rise"] < first["bearing_failure"]
    params = femto_job[0][2]
    assert len(fail_11.alerts) == 1 < len(br.spike_matches(ref, params))
    split, _ref, p_split = femto_job[7]
    episodes = {m[3] for m in br.spike_matches(ref, p_split)}
    assert len(split.alerts) == len(episodes) > 1


def test_bearing_failure_keeps_one_row_per_device_not_per_episode(tmp_path):
    """The episode's first match is found by comparing each match's episode with the previous
    match's (LAG over the device's matches: an OVER aggregate with one row per device in
    state), not by a deduplication on (device_id, episode), whose state grew by one row per
    episode with no state TTL. test_bearing_rules_match_their_definition shows the alerts are
    unchanged (one episode of 798 matches on Bearing1_1; several with quiet_s 60)."""
    sources = {}
    for table in SOURCE_TABLES:
        (tmp_path / f"{table}.jsonl").write_text("", encoding="utf-8")
        sources[table] = file_options(tmp_path / f"{table}.jsonl", table)
    sinks = {table: file_options(tmp_path / table) for table in SINK_TABLES}
    plan = explain(local_env(), RulesSettings(), parse_rule_file(RULES / "bearing_failure.sql"), sources, sinks,
                   database="femto_plan")
    optimized = plan.split("== Optimized Execution Plan ==")[-1]
    assert "Deduplicate" not in optimized and "Rank(" not in optimized
    assert "LAG(" in optimized
