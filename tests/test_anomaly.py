"""Unit tests of ``jobs/anomaly``'s plain functions (no Flink job): the baseline update, the
score, hysteresis, state expiry with a controlled event-time clock, parsing and dead letters,
and the thin Flink functions driven with fake state, timers and watermarks."""

from __future__ import annotations

import json
import math
import re
import statistics

import pytest

from iotflink.errors import ConfigError, ValidationError
from iotflink.settings import ENV_VARS, PROJECT_ROOT, AnomalyJobSettings
from jobs import anomaly as an
from jobs import rules

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
P = an.Params(threshold=4.0, exit_level=2.0, alert_after=3, min_samples=10, half_life=1000.0, ttl_ms=3_600_000)


def reading(seq: int, value: float, ts: int | None = None, device: str = "d1", sensor: str = "temp") -> an.Reading:
    return an.Reading(device, sensor, seq, T0 + seq * 1000 if ts is None else ts, float(value), None)


def run(values, p: an.Params = P, state=None, start_seq: int = 0):
    """Fold :func:`jobs.anomaly.step` over ``values`` (1 s apart); returns (state, [Step])."""
    steps = []
    for i, v in enumerate(values, start_seq):
        s = an.step(state, reading(i, v), p)
        steps.append(s)
        state = s.state
    return state, steps


#: a baseline with mean 0 and standard deviation 1 (alternating -1, +1), old enough (> 1.44
#: half-lives) to be exponentially weighted
CALM = [(-1.0) ** i for i in range(2000)]
S = len(CALM)


# --------------------------------------------------------------------------- baseline update
def test_half_life_halves_the_weight():
    for h in (1.0, 10.0, 288.0, 1000.0):
        assert (1 - an.ew_alpha(h)) ** h == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(ValueError):
        an.ew_alpha(0)


def test_ew_recurrence_is_the_weighted_mean_and_variance():
    """Finch (2009): the recurrence equals the mean and variance with weights
    (1-a)^(n-1) on the first value and a(1-a)^(n-i) on value i."""
    a = 0.1
    xs = [3.0, 5.5, -2.0, 7.25, 0.5, 4.0, 4.0, -1.5]
    mean, var = xs[0], 0.0
    for x in xs[1:]:
        mean, var = an.ew_update(mean, var, x, a)
    n = len(xs)
    w = [(1 - a) ** (n - 1)] + [a * (1 - a) ** (n - i) for i in range(2, n + 1)]
    assert sum(w) == pytest.approx(1.0)
    m = sum(wi * x for wi, x in zip(w, xs))
    assert mean == pytest.approx(m, rel=1e-12)
    assert var == pytest.approx(sum(wi * (x - m) ** 2 for wi, x in zip(w, xs)), rel=1e-12)


def test_young_baseline_is_the_plain_average():
    """a = max(alpha, 1/n): until 1/n < alpha the baseline is the running mean and population
    variance (Welford)."""
    xs = [20.1, 19.7, 20.4, 21.0, 19.9, 20.2]
    state, _ = run(xs, P._replace(half_life=1e6))
    assert state.n == len(xs)
    assert state.mean == pytest.approx(statistics.fmean(xs), rel=1e-12)
    assert state.var == pytest.approx(statistics.pvariance(xs), rel=1e-12)


def test_old_baseline_forgets_with_the_half_life():
    """After the switch to the fixed alpha, a level change moves the mean halfway in one
    half-life."""
    p = P._replace(half_life=10.0, min_samples=2)
    state, _ = run([0.0] * 1000, p)
    state, _ = run([1.0] * 10, p, state, start_seq=1000)
    assert state.mean == pytest.approx(0.5, rel=1e-9)


# --------------------------------------------------------------------------- score
def test_likelihood_is_the_two_sided_gaussian_tail():
    assert an.likelihood(0.0) == 0.0
    assert an.likelihood(1.959963984540054) == pytest.approx(0.95, rel=1e-12)
    assert an.likelihood(-4.0) == an.likelihood(4.0) == pytest.approx(1 - 6.334248366623996e-05, rel=1e-12)


def test_warm_up_then_scores_against_the_baseline_before_the_reading():
    state, steps = run(CALM[:10])
    assert [s.score.z for s in steps] == [None] * 10
    assert [s.score.n for s in steps] == list(range(10))
    s = an.step(state, reading(10, 3.0), P)
    assert s.score.n == 10 and s.score.mean == pytest.approx(0.0, abs=1e-12)
    assert s.score.std == pytest.approx(1.0) and s.score.z == pytest.approx(3.0)
    assert s.score.likelihood == pytest.approx(an.likelihood(3.0)) and not s.score.anomalous
    assert s.state.n == 11  # absorbed after scoring


def test_constant_baseline_gives_a_finite_z():
    state, _ = run([5.0] * 20)
    s = an.step(state, reading(20, 5.0), P)
    assert s.score.z == 0.0
    s = an.step(state, reading(20, 5.001), P)
    assert math.isfinite(s.score.z) and s.score.anomalous


# --------------------------------------------------------------------------- hysteresis
def alerts_of(steps) -> list[an.Alert]:
    return [s.alert for s in steps if s.alert is not None]


def test_one_excursion_gives_one_alert_after_three_consecutive_readings():
    state, _ = run(CALM)
    state, steps = run([10.0] * 25, P, state, start_seq=S)   # one long excursion
    (alert,) = alerts_of(steps)
    assert steps[2].alert is alert and steps[0].alert is None and steps[1].alert is None
    assert [e.seq for e in alert.events] == [S, S + 1, S + 2]
    assert alert.detection_ms == T0 + (S + 2) * 1000 and alert.alert_key == "d1/temp"
    assert all(s.state.in_alert for s in steps[2:])
    assert steps[2].score.anomalous and alert.z == steps[2].score.z


def test_a_spike_shorter_than_alert_after_raises_nothing():
    state, _ = run(CALM)
    state, steps = run([10.0, 10.0, 0.0, 10.0, 10.0, 0.0], P, state, start_seq=S)
    assert alerts_of(steps) == []
    assert not any(s.state.in_alert for s in steps)
    assert [len(s.state.streak) for s in steps] == [1, 2, 0, 1, 2, 0]


def test_episode_ends_below_the_exit_level_and_rearms():
    state, _ = run(CALM)
    state, steps = run([10.0] * 3, P, state, start_seq=S)
    assert len(alerts_of(steps)) == 1 and state.in_alert
    # between the levels: still the same episode, also after 3 more anomalous readings
    std = steps[-1].state.var ** 0.5
    mean = steps[-1].state.mean
    state, steps = run([mean + 3.0 * std, mean + 10.0 * std, mean + 10.0 * std, mean + 10.0 * std], P, state,
                       start_seq=S + 3)
    assert alerts_of(steps) == [] and state.in_alert
    # back within the exit level ends it; the next excursion raises a new alert with a new id
    state, steps = run([state.mean], P, state, start_seq=S + 7)
    assert not state.in_alert
    first = an.alert_id("d1/temp", tuple(an.Event(T0 + i * 1000, i, "temp", 10.0) for i in (S, S + 1, S + 2)))
    state, steps = run([state.mean + 50.0 * state.var ** 0.5] * 3, P, state, start_seq=S + 8)
    (alert,) = alerts_of(steps)
    assert alert.alert_id != first and [e.seq for e in alert.events] == [S + 8, S + 9, S + 10]


def test_alert_after_one_alerts_on_the_first_anomalous_reading():
    state, _ = run(CALM)
    _, steps = run([-10.0, -10.0], P._replace(alert_after=1), state, start_seq=S)
    assert steps[0].alert is not None and steps[1].alert is None
    assert steps[0].alert.z < 0  # a drop counts like a rise


def test_alert_id_is_the_rules_formula_and_deterministic():
    events = (an.Event(T0, 1, "temp", 10.0), an.Event(T0 + 1000, 2, "temp", 11.0))
    assert an.alert_id("d1/temp", events) == rules.alert_id("zscore_anomaly", "d1/temp", [T0, T0 + 1000])
    state, _ = run(CALM)
    a1 = alerts_of(run([10.0] * 3, P, state, start_seq=S)[1])
    a2 = alerts_of(run([10.0] * 3, P, state, start_seq=S)[1])
    assert a1 == a2 and re.fullmatch(r"[0-9a-f]{64}", a1[0].alert_id)


# --------------------------------------------------------------------------- time of day, range, cooldown
HOUR = 3_600_000


def test_season_bin_cuts_the_utc_day_into_equal_slices():
    assert [an.season_bin(T0 + h * HOUR, 12) for h in (0, 1, 2, 23, 24, 26)] == [0, 0, 1, 11, 0, 1]
    assert an.season_bin(T0 - 1, 24) == 23 and an.season_bin(T0 + 90 * 60_000, 48) == 3
    assert {an.season_bin(T0 + m * 60_000, 1) for m in range(0, 1440, 7)} == {0}


def test_out_of_range_is_beyond_the_range_seen_by_the_tolerance():
    assert not an.out_of_range(10.2, 0.0, 10.0, 0.02) and an.out_of_range(10.21, 0.0, 10.0, 0.02)
    assert an.out_of_range(-0.21, 0.0, 10.0, 0.02) and not an.out_of_range(-0.2, 0.0, 10.0, 0.02)
    assert an.out_of_range(5.0001, 5.0, 5.0, 0.02)  # a constant sensor: any other value
    assert not an.out_of_range(1e300, 0.0, 1.0, math.inf)


def daily(days: int, per_hour: int = 4, noise: float = 0.05):
    """(ts, value) every 15 min: 0 at night (hours 0-11), 10 by day (12-23), tiny alternating noise."""
    out = []
    for i in range(days * 24 * per_hour):
        ts = T0 + i * HOUR // per_hour
        hour = (i // per_hour) % 24
        out.append((ts, (10.0 if hour >= 12 else 0.0) + noise * (-1) ** i))
    return out


def fold(rows, p, state=None, start_seq=0):
    steps = []
    for i, (ts, v) in enumerate(rows, start_seq):
        s = an.step(state, reading(i, v, ts=ts), p)
        steps.append(s)
        state = s.state
    return state, steps


PS = an.Params(threshold=10.0, exit_level=2.0, alert_after=1, min_samples=30, half_life=1000.0,
               ttl_ms=7 * 86_400_000, season_bins=12, range_tolerance=0.02, cooldown=20)


def test_time_of_day_baseline_flags_a_day_value_at_night():
    """A value normal by day (10) is no anomaly for the level's baseline (|z| ~ 1: the day is
    half of it), but far from every night bin's own baseline: an alert with its season_z."""
    state, steps = fold(daily(20), PS)
    assert alerts_of(steps[-24 * 4 * 10:]) == []  # the last 10 days: no alert
    night = T0 + 20 * 86_400_000 + 3 * HOUR
    s = an.step(state, reading(99_999, 10.0, ts=night), PS)
    assert abs(s.score.z) < 2 and s.score.season_z > 100 and not s.score.out_of_range
    assert s.alert is not None and s.alert.season_z == s.score.season_z
    assert s.score.likelihood == an.likelihood(s.score.season_z)
    cell = state.season[an.season_bin(night, 12)]
    assert cell[0] == 20 * 8 and cell[1] == pytest.approx(0.0, abs=0.01)  # 8 readings per 2-h bin and day
    # the same value by day: nothing
    day = night + 12 * HOUR
    s = an.step(state, reading(99_999, 10.0, ts=day), PS)
    assert s.alert is None and not s.score.anomalous and abs(s.score.season_z) < 2
    # without time-of-day baselines the night value passes unnoticed
    state0, _ = fold(daily(20), PS._replace(season_bins=0))
    s = an.step(state0, reading(99_999, 10.0, ts=night), PS._replace(season_bins=0))
    assert s.alert is None and s.score.season_z is None and s.state.season == ()


def test_a_bin_scores_only_once_it_has_min_samples():
    p = PS._replace(range_tolerance=math.inf)
    rows = [(T0 + i * 60_000, 1.0 + 0.01 * (-1) ** i) for i in range(200)]  # minute readings: hours 0-3, bins 0-1
    state, steps = fold(rows, p)
    assert all(s.score.season_z is None for s in steps[:p.min_samples])
    assert steps[p.min_samples].score.season_z is not None
    other = T0 + 5 * HOUR  # bin 2: never seen
    s = an.step(state, reading(500, 1.0, ts=other), p)
    assert s.score.season_z is None and s.state.season[2] == (1, 1.0, 0.0)


def test_out_of_range_reading_is_anomalous_whatever_its_z():
    """Noise with a wide spread: 1.5 x the largest value seen has |z| ~ 2, far below the
    threshold, but lies beyond the range: anomalous, likelihood 1.0, an alert."""
    p = PS._replace(season_bins=0)
    values = [((i * 7919) % 101) / 10.0 for i in range(3000)]  # 0.0 .. 10.0, spread evenly
    state, steps = fold([(T0 + i * 1000, v) for i, v in enumerate(values)], p)
    # all 101 values come every 101 readings: new extremes (alerts) only in the first cycle
    assert alerts_of(steps[101:]) == [] and (state.lo, state.hi) == (0.0, 10.0)
    s = an.step(state, reading(3000, 10.0 * 1.03), p)
    assert s.score.out_of_range and s.score.anomalous and abs(s.score.z) < 3 and s.score.likelihood == 1.0
    assert s.alert is not None and s.alert.out_of_range
    s = an.step(state, reading(3000, 10.0 * 1.01), p)  # within the 2 % tolerance
    assert not s.score.out_of_range and s.alert is None
    assert s.state.hi == 10.1  # the range grows with what the baseline absorbs


def test_cooldown_keeps_the_episode_open_for_that_many_readings():
    """After an alert the episode cannot end for ``cooldown`` readings, even back at normal;
    then it ends at the first reading below the exit level and the next spike alerts again."""
    p = P._replace(alert_after=1, cooldown=5)
    state, _ = run(CALM, p)
    state, steps = run([50.0] + [0.0] * 6 + [50.0], p, state, start_seq=S)
    assert [s.alert is not None for s in steps] == [True] + [False] * 6 + [True]
    assert [s.state.in_alert for s in steps] == [True] * 5 + [False, False, True]
    assert [s.state.cooldown for s in steps] == [5, 4, 3, 2, 1, 0, 0, 5]
    # without a cooldown the episode ends at the first normal reading
    _, steps = run([50.0, 0.0, 50.0], p._replace(cooldown=0), run(CALM, p)[0], start_seq=S)
    assert [s.alert is not None for s in steps] == [True, False, True]
    # a spike during the cooldown is no new alert, and an anomalous reading after it keeps it open
    _, steps = run([50.0, 0.0, 50.0, 0.0, 0.0, 50.0, 0.0], p, run(CALM, p)[0], start_seq=S)
    assert [s.alert is not None for s in steps] == [True] + [False] * 6
    assert steps[5].state.in_alert and steps[5].state.cooldown == 0 and not steps[6].state.in_alert


def test_state_from_another_setting_or_an_older_job_restores():
    """A Baseline restored from a savepoint of a job without time-of-day baselines (only the
    first 7 fields) or with another season_bins: the level baseline goes on, the time-of-day
    baselines and the range start afresh from the next reading."""
    state, _ = run(CALM)
    old = an.Baseline(*state[:7])  # what the plain z-score job's state unpickles to
    assert math.isnan(old.lo) and old.season == ()
    s = an.step(old, reading(S, 0.5), PS._replace(ttl_ms=P.ttl_ms))
    assert s.score.n == S and s.score.season_z is None and not s.score.out_of_range
    assert (s.state.lo, s.state.hi) == (0.5, 0.5) and len(s.state.season) == 12
    assert sum(c is not None for c in s.state.season) == 1 and s.state.n == S + 1
    s2 = an.step(s.state, reading(S + 1, 0.5), PS._replace(ttl_ms=P.ttl_ms, season_bins=24))
    assert len(s2.state.season) == 24 and sum(c is not None for c in s2.state.season) == 1


# --------------------------------------------------------------------------- expiry (controlled clock)
def test_step_registers_one_timer_per_key_and_keeps_it_pending():
    s1 = an.step(None, reading(0, 1.0, ts=T0), P)
    assert s1.timer == T0 + P.ttl_ms == s1.state.timer_ms
    s2 = an.step(s1.state, reading(1, 1.0, ts=T0 + 60_000), P)
    assert s2.timer is None and s2.state.timer_ms == T0 + P.ttl_ms and s2.state.last_ts == T0 + 60_000
    s3 = an.step(s2.state, reading(2, 1.0, ts=T0 + 30_000), P)  # out of order: last_ts stays
    assert s3.state.last_ts == T0 + 60_000


def test_timer_rearms_while_the_key_is_active_and_then_the_state_is_gone():
    s = an.step(None, reading(0, 1.0, ts=T0), P).state
    s = an.step(s, reading(1, 1.0, ts=T0 + 600_000), P).state
    state, nxt = an.on_timer(s, T0 + P.ttl_ms, P)  # the first timer: the key was active since
    assert nxt == T0 + 600_000 + P.ttl_ms and state.timer_ms == nxt and state.n == 2
    state, nxt = an.on_timer(state, nxt, P)
    assert (state, nxt) == (None, None)  # silent for ttl_ms: gone
    assert an.on_timer(None, T0, P) == (None, None)


def test_stale_timer_is_ignored():
    s = an.step(None, reading(0, 1.0, ts=T0), P).state
    assert an.on_timer(s, T0 + 5, P) == (s, None)


def test_reading_after_the_ttl_starts_a_fresh_baseline_before_the_timer_fired():
    state, _ = run(CALM)
    late_ts = state.last_ts + P.ttl_ms
    just_before = an.step(state, reading(100, 0.5, ts=late_ts - 1), P)
    assert just_before.state.n == state.n + 1
    fresh = an.step(state, reading(100, 0.5, ts=late_ts), P)
    assert fresh.score == an.Score(0, None, None, None, None, False)
    assert fresh.state.n == 1 and fresh.state.mean == 0.5 and fresh.state.var == 0.0
    assert fresh.timer is None and fresh.state.timer_ms == state.timer_ms  # the pending timer stays
    # and the timer, when it fires, re-arms for the fresh baseline instead of dropping it
    st, nxt = an.on_timer(fresh.state, state.timer_ms, P)
    assert st is not None and nxt == late_ts + P.ttl_ms


def test_expiry_does_not_depend_on_when_the_timer_fires():
    """Timer fired (state gone) or not yet: the next reading at or after last_ts + ttl scores
    the same (a fresh baseline) and leaves the same baseline values."""
    state, _ = run(CALM)
    t = state.last_ts + P.ttl_ms + 5_000
    rearmed, due = an.on_timer(state, state.timer_ms, P)  # the first timer: the key was active since
    gone, _ = an.on_timer(rearmed, due, P)
    assert due == state.last_ts + P.ttl_ms and gone is None
    a, b = an.step(None, reading(200, 2.0, ts=t), P), an.step(state, reading(200, 2.0, ts=t), P)
    assert a.score == b.score and a.state[:4] == b.state[:4] and a.alert == b.alert


def test_late_is_at_or_behind_the_watermark():
    assert an.is_late(T0, T0) and an.is_late(T0 - 1, T0) and not an.is_late(T0 + 1, T0)
    assert not an.is_late(T0, an.NO_WATERMARK)


# --------------------------------------------------------------------------- parsing
def value(**over) -> dict:
    v = {"device_id": "d1", "seq": 7, "ts": T0, "readings": {"temp": 21.5, "hum": 40.0}, "ingest_ms": T0 + 5}
    v.update(over)
    return v


def test_parse_one_reading_per_sensor_value():
    readings, hb = an.parse_value(json.dumps(value()))
    assert hb is None
    assert readings == [an.Reading("d1", "temp", 7, T0, 21.5, T0 + 5), an.Reading("d1", "hum", 7, T0, 40.0, T0 + 5)]


def test_json_integer_reading_is_the_nearest_double():
    (r,), _ = an.parse_value(json.dumps(value(readings={"temp": 21})))
    assert r.value == 21.0 and type(r.value) is float


def test_heartbeat_only_carries_event_time():
    hb = {"device_id": an.HEARTBEAT_DEVICE, "seq": 3, "ts": T0 + 10**9, "readings": {}}
    assert an.parse_value(json.dumps(hb)) == ([], T0 + 10**9)
    from iotflink import kafka_io  # noqa: PLC0415

    assert an.HEARTBEAT_DEVICE == kafka_io.HEARTBEAT_DEVICE


@pytest.mark.parametrize("text, reason", [
    (None, "no_value"),
    ("", "malformed_json"),
    ("{not json", "malformed_json"),
    ("1" * 5000, "malformed_json"),
    ("[1, 2]", "not_object"),
    (json.dumps({k: v for k, v in value().items() if k != "seq"}), "missing_field"),
    (json.dumps(value(extra=1)), "unknown_field"),
    (json.dumps(value(seq="7")), "bad_type"),
    (json.dumps(value(seq=2**63)), "out_of_range"),
    ('{"device_id": "d1", "seq": 7, "ts": 1767225600000, "readings": {"temp": NaN}, "ingest_ms": 1767225600005}',
     "non_finite"),
    (json.dumps(value(readings={"temp": 10**400})), "non_finite"),
    (json.dumps(value(readings={})), "bad_type"),
    (json.dumps(value(device_id="bad/id")), "bad_type"),
    (json.dumps(value(ts=5)), "ts_too_old"),
    (json.dumps(value(ts=T0 + 10**6)), "ts_in_future"),
    (json.dumps({"device_id": an.HEARTBEAT_DEVICE, "seq": 1, "ts": T0, "readings": {"t": 1.0}}), "missing_field"),
])
def test_unreadable_records_raise_with_their_reason(text, reason):
    with pytest.raises(ValidationError) as info:
        an.parse_value(text)
    assert info.value.reason == reason


class _Ctx:
    """Fake context of a keyed process function: a timer service with a settable watermark."""

    def __init__(self, watermark: int = an.NO_WATERMARK) -> None:
        self.watermark, self.timers = watermark, []

    def timer_service(self):
        return self

    def current_watermark(self) -> int:
        return self.watermark

    def register_event_time_timer(self, t: int) -> None:
        self.timers.append(t)


class _State:
    def __init__(self) -> None:
        self.v = None

    def value(self):
        return self.v

    def update(self, v) -> None:
        self.v = v

    def clear(self) -> None:
        self.v = None


def test_parse_function_dead_letters_and_never_raises(monkeypatch):
    fn = an.ParseReadings("DLQ")
    out = list(fn.process_element(json.dumps(value()), None))
    assert [(row[0][0], row[1]) for row in out] == [("d1/temp", T0), ("d1/hum", T0)]
    (tag, row), = fn.process_element("{", None)
    assert tag == "DLQ" and tuple(row)[:2] == ("anomaly", "malformed_json") and row[3] == "{"

    def boom(text):
        raise RuntimeError("unforeseen")

    monkeypatch.setattr(an, "parse_value", boom)
    (tag, row), = fn.process_element("x", None)
    assert tag == "DLQ" and row[1] == "internal_error" and "unforeseen" in row[2] and row[3] == "x"


def test_score_function_is_a_thin_wrapper_of_step():
    """The Flink function with fake state, timers and watermark: the same outputs as the
    plain functions, late readings to the late tag, heartbeats ignored, expiry by timer."""
    fn = an.ScoreReadings(P, "LATE", "ALERTS")
    fn._state = _State()  # what open() creates, without Flink
    ctx = _Ctx()
    state, expected = None, []
    values = CALM + [10.0] * 3
    for i, v in enumerate(values):
        r = reading(i, v)
        got = list(fn.process_element(tuple(r), ctx))
        s = an.step(state, r, P)
        state = s.state
        assert tuple(got[0]) == an.score_row(r, s)
        if s.alert:
            (tag, alert), = got[1:]
            assert tag == "ALERTS" and tuple(alert)[:4] == (s.alert.alert_id, "zscore_anomaly", "d1/temp", r.ts)
            assert list(alert[5]) == [e.ts_ms for e in s.alert.events]
            expected.append(s.alert)
        else:
            assert len(got) == 1
    assert len(expected) == 1 and fn._state.v == state and ctx.timers == [T0 + P.ttl_ms]
    ctx.watermark = T0 + 5_000
    (tag, late), = fn.process_element(tuple(reading(99, 1.0, ts=T0 + 5_000)), ctx)
    assert tag == "LATE" and tuple(late) == (*an.late_row(reading(99, 1.0, ts=T0 + 5_000), T0 + 5_000),)
    assert fn._state.v == state  # a late reading does not touch the baseline
    assert list(fn.process_element((an.HEARTBEAT_DEVICE, "", 0, T0 + 10**9, 0.0, None), ctx)) == []
    assert list(fn.on_timer(state.last_ts + P.ttl_ms - 1, ctx)) == []  # stale: no effect
    assert fn._state.v == state
    list(fn.on_timer(T0 + P.ttl_ms, ctx))  # re-armed: the key was active after T0
    assert ctx.timers[-1] == state.last_ts + P.ttl_ms
    list(fn.on_timer(state.last_ts + P.ttl_ms, ctx))
    assert fn._state.v is None  # expired: gone


# --------------------------------------------------------------------------- records and settings
def _ddl_columns(table: str) -> list[str]:
    ddl = (PROJECT_ROOT / "sql" / "ddl.sql").read_text()
    body = re.search(rf"CREATE TABLE {table} \((.*?)\n\) WITH", ddl, re.S).group(1)
    return [re.sub(r"--.*", "", line).strip().split()[0] for line in body.splitlines()
            if re.sub(r"--.*", "", line).strip()]


def test_alert_columns_are_the_alerts_table_of_the_ddl():
    assert [c for c, _ in an.ALERT_COLUMNS] == _ddl_columns("alerts")
    ddl = (PROJECT_ROOT / "sql" / "ddl.sql").read_text()
    assert "ARRAY<ROW<ts_ms BIGINT, seq BIGINT, name STRING, `value` DOUBLE>>" in ddl
    assert f"ARRAY<{an.EVENT_TYPE_SQL}>" == dict(an.ALERT_COLUMNS)["events"]


def test_rows_match_their_columns():
    state, _ = run(CALM)
    s = an.step(state, reading(S, 10.0), P._replace(alert_after=1))
    assert len(an.score_row(reading(S, 10.0), s)) == len(an.SCORE_COLUMNS)
    assert len(an.late_row(reading(1, 1.0), T0)) == len(an.LATE_COLUMNS)
    assert len(an.alert_row(s.alert, P, 0)) == len(an.ALERT_ROW_COLUMNS)
    details = json.loads(an.alert_details(s.alert, P))
    assert details["z"] == s.alert.z and details["threshold"] == P.threshold


def test_settings_defaults_and_env_vars():
    cfg = AnomalyJobSettings.from_env({})
    assert cfg == AnomalyJobSettings()
    assert an.params(cfg) == an.Params(10.0, 2.0, 1, 30, 1000.0, 7 * 86_400_000, 12, 0.02, 20)
    names = [n for n in ENV_VARS if n.startswith("IOTFLINK_ANOMALY_")]
    assert len(names) == 19 and cfg.alerts_delivery == ENV_VARS["IOTFLINK_ALERTS_DELIVERY"]
    got = AnomalyJobSettings.from_env({"IOTFLINK_ANOMALY_THRESHOLD": "3.5", "IOTFLINK_ANOMALY_HALF_LIFE": "288",
                                       "IOTFLINK_ANOMALY_PARALLELISM": "4",
                                       "IOTFLINK_ANOMALY_TOPIC_SCORES": "s2", "IOTFLINK_ANOMALY_SEASON_BINS": "0",
                                       "IOTFLINK_ANOMALY_RANGE_TOLERANCE": "inf", "IOTFLINK_ANOMALY_COOLDOWN": "5"})
    assert (got.threshold, got.half_life, got.parallelism, got.scores_topic) == (3.5, 288.0, 4, "s2")
    assert (got.season_bins, got.range_tolerance, got.cooldown) == (0, math.inf, 5)


@pytest.mark.parametrize("name, raw", [
    ("IOTFLINK_ANOMALY_THRESHOLD", "x"), ("IOTFLINK_ANOMALY_EXIT_LEVEL", "11"), ("IOTFLINK_ANOMALY_EXIT_LEVEL", "0"),
    ("IOTFLINK_ANOMALY_THRESHOLD", "nan"), ("IOTFLINK_ANOMALY_ALERT_AFTER", "0"),
    ("IOTFLINK_ANOMALY_MIN_SAMPLES", "1"), ("IOTFLINK_ANOMALY_HALF_LIFE", "0"), ("IOTFLINK_ANOMALY_STATE_TTL_MS", "0"),
    ("IOTFLINK_ANOMALY_IDLENESS_MS", "0"), ("IOTFLINK_ANOMALY_PARALLELISM", "0"),
    ("IOTFLINK_ANOMALY_DELIVERY_GUARANTEE", "twice"), ("IOTFLINK_ANOMALY_PYTHON_MODE", "fork"),
    ("IOTFLINK_ANOMALY_SEASON_BINS", "-1"), ("IOTFLINK_ANOMALY_SEASON_BINS", "1441"),
    ("IOTFLINK_ANOMALY_RANGE_TOLERANCE", "-0.1"), ("IOTFLINK_ANOMALY_RANGE_TOLERANCE", "nan"),
    ("IOTFLINK_ANOMALY_COOLDOWN", "-1"), ("IOTFLINK_ANOMALY_COOLDOWN", "2.5"),
])
def test_settings_refuse_invalid_values(name, raw):
    with pytest.raises(ConfigError):
        AnomalyJobSettings.from_env({name: raw})


def test_state_ttl_config_needs_no_gateway(monkeypatch):
    """A TaskManager's embedded interpreter has no Py4J gateway: the TTL config must be built
    without one, and still carry both background cleanups."""
    import pyflink.common.time as pf_time  # noqa: PLC0415
    from pyflink.datastream.state import StateTtlConfig  # noqa: PLC0415

    def no_gateway():
        raise AssertionError("the TTL config asked for a Py4J gateway")

    monkeypatch.setattr(pf_time, "get_gateway", no_gateway)
    ttl = an.state_ttl_config(3_600_000)
    assert ttl.get_ttl().to_milliseconds() == 3_600_000
    assert ttl.get_update_type() == StateTtlConfig.UpdateType.OnCreateAndWrite
    assert ttl.get_state_visibility() == StateTtlConfig.StateVisibility.NeverReturnExpired
    cleanup = ttl.get_cleanup_strategies()
    assert cleanup.get_incremental_cleanup_strategy().get_cleanup_size() == 5
    assert cleanup.get_rocksdb_compact_filter_cleanup_strategy().get_query_time_after_num_entries() == 1000


def test_run_as_a_script_delegates_to_the_importable_module(monkeypatch):
    """``flink run -py jobs/anomaly.py`` runs the file as ``__main__``; the job must be built
    from ``jobs.anomaly`` so its functions and pickled state refer to an importable module."""
    import runpy  # noqa: PLC0415

    calls = []
    monkeypatch.setattr(an, "main", calls.append)
    monkeypatch.setattr("sys.argv", ["anomaly.py", "--x"])
    runpy.run_path(str(PROJECT_ROOT / "jobs" / "anomaly.py"), run_name="__main__")
    assert calls == [["--x"]]
