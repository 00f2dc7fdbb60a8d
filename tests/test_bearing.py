"""The bearing rules' plain-Python definition (iotflink.testing.bearing), its calibration, and the
rule files' parameter markers (jobs.rules.with_params). No Flink: tests/test_rules_femto.py
checks the SQL rules against these functions on a MiniCluster."""

from __future__ import annotations

import dataclasses
import math
import random
import statistics

import pytest

from iotflink.errors import ConfigError
from iotflink.settings import PROJECT_ROOT
from iotflink.simulation.replay import femto_rows
from iotflink.testing import bearing as br
from jobs.rules import RuleSqlError, parse_rule_file, parse_rule_text, with_params

RULES = PROJECT_ROOT / "sql" / "rules"
T0 = 1_330_560_000_000


def make_run(vib: list[tuple[float, float]], temps: list[tuple[float, float]], name: str = "x") -> br.BearingRun:
    """A run from (seconds, h_rms_g) snapshots and (seconds, temp_c) readings, merged by time."""
    items = [(t, {"h_rms_g": h}) for t, h in vib] + [(t, {"temp_c": c}) for t, c in temps]
    items.sort(key=lambda x: x[0])
    rows = [{"device_id": "d", "seq": i, "ts": T0 + round(t * 1000), "readings": v, "ingest_ms": 0}
            for i, (t, v) in enumerate(items)]
    return br.run_from_rows(name, rows, bound_ms=2000)


def test_baseline_is_the_median_of_the_window_after_the_run_in():
    # run-in (0-60 s) at 5 g, then 1, 2, 3 g in the window [60, 90), then 9 g
    vib = [(0, 5.0), (30, 5.0), (60, 1.0), (70, 3.0), (80, 2.0), (90, 9.0)]
    run = make_run(vib, [(1, 20.0)])
    assert br.baseline(run, 60, 30) == (2.0, T0 + 90_000)
    assert br.baseline(run, 200, 30)[0] is None


def test_spike_then_rise_within_60_s():
    vib = [(t, 1.0) for t in range(0, 100, 10)] + [(100, 5.0), (110, 1.0), (200, 5.0), (300, 5.0)]
    temps = [(t + 0.5, 50.0) for t in range(0, 400)]
    temps = [(t, c + (0.5 if 130 <= t < 150 else 0) + (0.5 if t >= 259.5 else 0)) for t, c in temps]
    run = make_run(vib, temps)
    p = br.SpikeRiseParams(0, 50, 2.0, 0.3, quiet_s=50)  # three spike episodes
    # spike at 100 s: T0 at 100.5, rise at 130.5 (30.5 s after: alert); spike at 200 s: rise
    # at 259.5 is 59.5 s after (alert); spike at 300 s: no rise (the temperature stays)
    assert br.spike_rise_alerts(run, p) == [(T0 + 100_000, T0 + 100_500, T0 + 130_500),
                                            (T0 + 200_000, T0 + 200_500, T0 + 259_500)]
    # a rise at 60 s or later does not match
    late = [(t, c + (0.5 if t >= 260.5 else 0)) for t, c in [(t + 0.5, 50.0) for t in range(0, 400)]]
    assert br.spike_rise_alerts(make_run(vib, late), p) == []
    # nothing before the baseline window has ended
    assert br.spike_rise_alerts(run, br.SpikeRiseParams(0, 150, 2.0, 0.3, quiet_s=50)) == [
        (T0 + 200_000, T0 + 200_500, T0 + 259_500)]


def test_spike_episode_gives_one_alert():
    # spikes at 100, 110 (no rise), 120 s (rise), 200 s (rise) and 400 s (rise)
    vib = [(t, 1.0) for t in range(0, 100, 10)] + [(100, 5.0), (110, 5.0), (120, 5.0), (200, 5.0), (400, 5.0)]
    temps = [(t + 0.5, 50.0 + (0.5 if 130 <= t < 140 or 210 <= t < 220 or t >= 410 else 0))
             for t in range(0, 500)]
    run = make_run(vib, temps)
    p = br.SpikeRiseParams(0, 50, 2.0, 0.3, quiet_s=100)
    # 100 and 110 s rise at 130.5 (within 60 s); 120 s too; 200 s is 80 s after 120 s: same
    # episode; 400 s is 200 s after 200 s: a new episode
    assert [(m[0], m[3]) for m in br.spike_matches(run, p)] == [
        (T0 + s * 1000, T0 + e * 1000) for s, e in [(100, 100), (110, 100), (120, 100), (200, 100), (400, 400)]]
    assert br.spike_rise_alerts(run, p) == [(T0 + 100_000, T0 + 100_500, T0 + 130_500),
                                            (T0 + 400_000, T0 + 400_500, T0 + 410_500)]
    # a gap of exactly quiet_s stays in the episode (the RANGE window includes its lower bound)
    assert len(br.spike_rise_alerts(run, dataclasses.replace(p, quiet_s=200))) == 1
    assert len(br.spike_rise_alerts(run, dataclasses.replace(p, quiet_s=199))) == 2


def test_sustained_rise_gives_one_alert_per_episode():
    levels = [1.0] * 10 + [3.0] * 5 + [1.0] * 5 + [3.0, 1.0, 3.0] + [3.0] * 6
    run = make_run([(10 * i, h) for i, h in enumerate(levels)], [(0, 20.0)])
    p = br.VibrationRiseParams(0, 100, 20, 2.0)  # median of the last 3 snapshots (20 s)
    got = br.vibration_rise_alerts(run, p)
    # episode 1 starts when two of three are high (snapshot 11), episode 2 at snapshot 22
    assert got == [T0 + 110_000, T0 + 220_000]
    s = br.score(run, got)
    assert s.first_half_alerts == 1 and s.alerts == 2
    assert s.warning_min == pytest.approx((run.end_ms - got[0]) / 60_000)


def test_rolling_median_equals_the_median_of_the_window():
    rng = random.Random(3)
    t, vib = 0.0, []
    for _ in range(300):
        t += rng.choice([9.999, 10.0, 10.001, 25.0])
        vib.append((t, round(rng.uniform(0.2, 2.0), 4)))
    run = make_run(vib, [(0, 20.0)])
    got = br.rolling_median(run, 60)
    for i, (ts, _s, _h) in enumerate(run.vib):
        window = [h for t2, _s2, h in run.vib if ts - 60_000 <= t2 <= ts]
        assert got[i] == statistics.median(window)


def test_choose_excludes_false_alarms_and_the_margin():
    ok = br.Score(30.0, 0, 0.0, 1, 0)
    early = br.Score(300.0, 1, 0.5, 2, 1)
    better = br.Score(100.0, 0, 0.0, 1, 0)
    guard = br.Score(200.0, 0, 0.0, 1, 2)  # no false alarm, but one 10 % below its threshold
    a, b, c = (br.VibrationRiseParams(1800, 1800, 60, k) for k in (1.2, 1.3, 2.0))
    scored = {a: {"x": early, "y": better}, b: {"x": guard, "y": guard}, c: {"x": ok, "y": ok}}
    assert br.choose(scored, ["x", "y"]) == c
    assert br.choose(scored, ["y"]) == a  # the larger median warning wins; b fails the margin
    tie = {a: {"y": ok}, c: {"y": ok}}
    assert br.choose(tie, ["y"]) == c  # a tie goes to the higher threshold
    assert br.choose({a: {"x": early}}, ["x"]) is None


def test_leave_one_bearing_out_judges_each_bearing_on_parameters_chosen_without_it():
    ok, alarm = br.Score(30.0, 0, 0.0, 1, 0), br.Score(300.0, 2, 1.0, 3, 2)
    good = br.Score(100.0, 0, 0.0, 1, 0)
    low, high = br.VibrationRiseParams(1800, 1800, 60, 1.2), br.VibrationRiseParams(1800, 1800, 60, 2.0)
    runs = [make_run([(0, 1.0)], [(0, 20.0)], name) for name in ("x", "y", "z")]
    # the low threshold warns earlier on x and y but raises false alarms on z
    scored = {low: {"x": good, "y": good, "z": alarm}, high: {"x": ok, "y": ok, "z": ok}}
    folds = br.leave_one_bearing_out("bearing_vibration_rise", runs, scored)
    assert [(f.held_out, f.params, f.score) for f in folds] == [
        ("x", high, ok), ("y", high, ok), ("z", low, alarm)]


def test_impact_rule_uses_the_peak_of_the_snapshots():
    run = br.load_run("2_1", 2000)
    peak = br.as_feature(run, "peak_abs_g")
    assert peak.feature == "peak_abs_g" and len(peak.vib) == len(run.vib)
    assert [v[:2] for v in peak.vib] == [v[:2] for v in run.vib]
    assert all(p[2] > h[2] for p, h in zip(peak.vib, run.vib))  # the peak of a snapshot exceeds its RMS
    p = br.VibrationRiseParams(1800, 1800, 300, 1.75)
    assert br.detections("bearing_impact_rise", run, p) == br.vibration_rise_alerts(peak, p)
    assert br.detections("bearing_impact_rise", run, p) != br.detections("bearing_vibration_rise", run, p)


def test_femto_rows_keep_the_clock_fault_and_reject_unknown_bearings():
    rows = femto_rows("1_1")
    assert len(rows) == 2803 + 28418
    run = br.run_from_rows("1_1", br.readings_rows("1_1"), 2000)
    assert len(run.late_seqs) == 2 and len(run.vib) == 2801
    assert run.device_id == "femto-b1_1"
    with pytest.raises(ConfigError):
        femto_rows("3_1")


def test_marked_parameters_must_equal_the_header():
    rule = parse_rule_file(RULES / "bearing_vibration_rise.sql")
    text = rule.path.read_text(encoding="utf-8")
    bad = text.replace("1.3 /*param:rise_k*/", "1.4 /*param:rise_k*/", 1)
    with pytest.raises(RuleSqlError, match="rise_k is 1.4 here but 1.3 in the header"):
        parse_rule_text(bad, rule.path)
    with pytest.raises(RuleSqlError, match="no /\\*param:NAME\\*/ value"):
        with_params(rule, {"nonexistent": 1})
    with pytest.raises(RuleSqlError, match="integer"):
        with_params(rule, {"sustain_s": 30.5})
    variant = with_params(rule, {"sustain_s": 300, "rise_k": 1.75})
    assert variant.params["sustain_s"] == 300 and variant.params["rise_k"] == 1.75
    body = "\n".join(s.text for s in variant.statements)
    assert "INTERVAL '300' /*param:sustain_s*/" in body and "1.75 /*param:rise_k*/" in body
    assert "1.3 /*param:rise_k*/" not in body


@pytest.mark.parametrize("name", ["bearing_failure", "bearing_vibration_rise", "bearing_impact_rise"])
def test_every_bearing_parameter_is_marked_in_the_sql(name):
    rule = parse_rule_file(RULES / f"{name}.sql")
    same = with_params(rule, rule.params)  # raises when a header param has no marked value
    assert same.params == rule.params


def test_rise_rules_together_count_the_first_alert_of_either():
    a, b = br.VibrationRiseParams(1800, 1800, 60, 1.3), br.VibrationRiseParams(1800, 1800, 300, 1.75)
    result = {"bearing_vibration_rise": {"folds": [br.FoldResult("x", a, br.Score(5.0, 0, 0.0, 1)),
                                                   br.FoldResult("y", a, br.Score(None, 0, 0.0, 0)),
                                                   br.FoldResult("z", None, None)]},
              "bearing_impact_rise": {"folds": [br.FoldResult("x", b, br.Score(30.0, 1, 0.5, 2)),
                                                br.FoldResult("y", b, br.Score(None, 0, 0.0, 0)),
                                                br.FoldResult("z", b, br.Score(12.0, 0, 0.0, 1))]}}
    both = br.together(result)
    assert both["warning_min"] == {"x": 30.0, "y": None, "z": 12.0}
    assert both["first_half_alerts"] == {"x": 1, "y": 0, "z": 0}
    assert both["median_warning_min"] == 12.0 and both["bearings_10_min"] == 2


def test_healthy_ratio_is_the_lowest_threshold_without_a_first_half_alert():
    # baseline 1 g (window [0, 100)); the first half (up to 245 s) peaks at a median of 1.5 g
    levels = [1.0] * 10 + [1.0, 1.5, 1.5, 1.5, 1.0] + [1.0] * 10 + [3.0] * 25
    run = make_run([(10 * i, h) for i, h in enumerate(levels)], [(0, 20.0)])
    p = br.VibrationRiseParams(0, 100, 20, 1.0)  # median of the last 3 snapshots
    ratio = br.healthy_ratio(run, p)
    assert ratio == 1.5
    first_half = [t for t in br.vibration_rise_alerts(run, dataclasses.replace(p, rise_k=ratio)) if t < run.half_ms]
    assert first_half == []
    below = br.vibration_rise_alerts(run, dataclasses.replace(p, rise_k=ratio * 0.99))
    assert [t for t in below if t < run.half_ms] == [T0 + 120_000]
    # not armed before the middle: no healthy level to clear
    assert br.healthy_ratio(run, br.VibrationRiseParams(0, 300, 20, 1.0)) == 0.0


def test_prediction_bound_of_a_new_bearing():
    ratios = [1.1, 1.2, 1.5, 0.0]  # the 0.0 (not armed in the first half) is left out
    logs = [math.log(r) for r in ratios[:3]]
    want = math.exp(statistics.fmean(logs) + br.T_99[2] * statistics.stdev(logs) * math.sqrt(1 + 1 / 3))
    assert br.prediction_bound(ratios) == pytest.approx(want)
    assert br.prediction_bound(ratios) > max(ratios)
    assert br.prediction_bound([1.1, 1.2, 0.0]) is None  # two ratios: no estimate of the spread
    with pytest.raises(ValueError, match="degrees of freedom"):
        br.prediction_bound([1.1 + i / 100 for i in range(12)])


def test_choose_with_a_margin_over_the_healthy_ratios():
    def s(ratio, warn=30.0):
        return br.Score(warn, 0, 0.0, 1, 0, ratio)

    low, mid, high = (br.VibrationRiseParams(1800, 1800, 60, k) for k in (1.3, 1.5, 2.0))
    scored = {low: {"x": s(1.15, 90.0), "y": s(1.0, 90.0), "z": s(1.1, 90.0)},
              mid: {"x": s(1.15, 60.0), "y": s(1.0, 60.0), "z": s(1.1, 60.0)},
              high: {"x": s(1.15), "y": s(1.0), "z": s(1.1)}}
    assert br.choose(scored, ["x", "y", "z"], 1.1) == low  # 1.15 x 1.1 <= 1.3
    assert br.choose(scored, ["x", "y", "z"], 1.2) == mid  # 1.15 x 1.2 > 1.3
    assert br.choose(scored, ["x", "y", "z"], 2.0) is None
    bound = br.prediction_bound([1.15, 1.0, 1.1])
    assert 1.3 < bound < 2.0
    assert br.choose(scored, ["x", "y", "z"], bound=True) == high
    with pytest.raises(ValueError, match="healthy ratio"):
        br.choose({low: {"x": br.Score(30.0, 0, 0.0, 1, 0)}}, ["x"], 1.1)


def test_nested_margin_is_chosen_by_an_inner_leave_one_bearing_out():
    def s(ratio, first_half=0, warn=30.0):
        return br.Score(warn, first_half, 0.0, 1, 0, ratio)

    low, high = br.VibrationRiseParams(1800, 1800, 60, 1.3), br.VibrationRiseParams(1800, 1800, 60, 2.0)
    # x's healthy half exceeds the low threshold (an alert there); y and z stay below it. With
    # margin 1.1 (1.1 x 1.1 <= 1.3) y and z admit the low threshold when x is held out: a false
    # alarm on x. With 1.2 (1.1 x 1.2 > 1.3) no inner fold admits it: the margin chosen.
    scored = {low: {"x": s(1.4, 1, 90.0), "y": s(1.1, 0, 90.0), "z": s(1.1, 0, 90.0)},
              high: {"x": s(1.4), "y": s(1.1), "z": s(1.1)}}
    margin, inner = br.nested_margin(scored, ["x", "y", "z"], margins=(1.1, 1.2, 1.75))
    assert margin == 1.2
    assert (1.1, "x", low, 1) in inner
    assert [(b, p, a) for m, b, p, a in inner if m == 1.2] == [("x", high, 0), ("y", high, 0), ("z", high, 0)]
    assert br.choose_with("nested", scored, ["x", "y", "z"]) == (high, 1.2)
    # no margin passes: the largest
    always = {low: {"x": s(1.4, 1), "y": s(1.0), "z": s(1.0)}}
    assert br.nested_margin(always, ["x", "y", "z"], margins=(1.1, 1.2))[0] == 1.2
    folds = br.leave_one_bearing_out("bearing_vibration_rise", [make_run([(0, 1.0)], [(0, 20.0)], n) for n in "xyz"],
                                     scored, "bound")
    assert [f.held_out for f in folds] == ["x", "y", "z"] and all(f.margin is None for f in folds)
    with pytest.raises(ValueError, match="unknown calibration procedure"):
        br.choose_with("best", scored, ["x"])


def test_healthy_ratio_matches_the_first_half_alerts_on_a_real_run():
    run = br.as_feature(br.load_run("1_1", 2000), "peak_abs_g")
    for sustain in (60, 300):
        p = br.VibrationRiseParams(1800, 1800, sustain, 1.0)
        ratio = br.healthy_ratio(run, p)
        for k in (1.2, 1.75, 3.0, 10.0):
            alerts = br.score(run, br.vibration_rise_alerts(run, dataclasses.replace(p, rise_k=k))).first_half_alerts
            assert (alerts > 0) == (ratio > k), (sustain, k, ratio)


@pytest.mark.parametrize("rule", br.RULES)
def test_shipped_params_are_the_rule_files_header_values(rule):
    p = br.shipped_params(rule)
    header = parse_rule_file(RULES / f"{rule}.sql").params
    assert dataclasses.asdict(p) == {k: header[k] for k in dataclasses.asdict(p)}
    assert br.params_of(rule, {**header, "run_in_s": 60.0}).run_in_s == 60
    with pytest.raises(ValueError, match="unknown bearing rule"):
        br.params_of("card_failed_burst", header)
