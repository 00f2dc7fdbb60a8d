"""Sliding and daily windows of ``jobs/sensor_windows``: every (value, window) pair counted once.

The job is built with :func:`jobs.sensor_windows.build` exactly as ``main()`` builds it for
``IOTFLINK_WINDOW_KIND=sliding`` / ``daily``, from a JSON-lines file into filesystem sinks (as in
``tests/test_sensor_windows.py``: aggregates as a ``debezium-json`` changelog, late pairs as JSON
lines, ``pipeline.auto-watermark-interval = 0`` so that at parallelism 1 the watermark a record
is judged by is a pure function of the input order). :func:`reference` predicts the outputs:
each value is exploded into its windows (:func:`iotflink.testing.window_model.windows_of`); a pair is late
iff its own window's cleanup time is at or before the watermark of the records before it.

At parallelism 2 which pairs are late depends on timing (two flag subtasks, one window
subtask merging them; and two file source subtasks for one file: until the one without a split
finishes, no watermark passes, and then nothing is late), so there the test checks the
accounting only: every pair is once in an aggregate's count or in the late output, and each
aggregate equals its window's values minus the late ones. The verdicts at parallelism > 1 on
Kafka are the subject of ``tests/test_window_parallel.py`` (tumbling); the argument that carries
them over to the other kinds is in the module docstring of ``jobs/sensor_windows.py``.

Unit tests of the window arithmetic (no Flink) come first.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from iotflink.errors import ConfigError
from iotflink.settings import WindowJobSettings
from iotflink.testing import window_model
from jobs import common
from jobs import sensor_windows as sw
from jobs.common import create_table_env, job_configuration, with_clause
from tests.test_sensor_windows import _committed_lines, _disordered, _event, _final_aggregates

SIZE, SLIDE, LATENESS, OOO = 10_000, 2_000, 5_000, 1_000
BASE = 1_700_000_000_000  # aligned to 10 s (2023-11-14T22:13:20Z)
NY = "America/New_York"
HOUR = 3_600_000


def _sliding(parallelism: int = 1, idleness_ms: int = 600_000, **kw) -> WindowJobSettings:
    return WindowJobSettings(window_kind="sliding", window_size_ms=SIZE, window_slide_ms=SLIDE,
                             allowed_lateness_ms=LATENESS, out_of_orderness_ms=OOO, idleness_ms=idleness_ms,
                             parallelism=parallelism, checkpoint_interval_ms=300, **kw)


def _daily(parallelism: int = 1, idleness_ms: int = 600_000) -> WindowJobSettings:
    return WindowJobSettings(window_kind="daily", time_zone=NY, allowed_lateness_ms=2 * HOUR,
                             out_of_orderness_ms=10 * 60_000, idleness_ms=idleness_ms,
                             parallelism=parallelism, checkpoint_interval_ms=300)


# --------------------------------------------------------------------------- window arithmetic
def test_sliding_windows_of_a_value():
    assert window_model.sliding_windows(BASE + 4_500, SIZE, SLIDE) == [
        (BASE + 4_000, BASE + 14_000), (BASE + 2_000, BASE + 12_000), (BASE, BASE + 10_000),
        (BASE - 2_000, BASE + 8_000), (BASE - 4_000, BASE + 6_000)]
    assert window_model.sliding_windows(-1, 4, 2) == [(-2, 2), (-4, 0)]           # floor, as Flink
    assert window_model.sliding_windows(7, 5, 5) == [(5, 10)]                     # slide = size: tumbling
    for bad in ((10, 3), (0, 1), (10, 0)):
        with pytest.raises(ValueError):
            window_model.sliding_windows(0, *bad)


def test_daily_window_has_local_midnights_and_dst_lengths():
    ny = ZoneInfo(NY)
    def at(y, m, d, h=12):
        return int(dt.datetime(y, m, d, h, tzinfo=ny).timestamp() * 1000)
    for (y, m, d), hours in (((2026, 3, 7), 24), ((2026, 3, 8), 23), ((2026, 11, 1), 25), ((2026, 11, 2), 24)):
        start, end, day = window_model.daily_window(at(y, m, d), NY)
        assert (end - start) // HOUR == hours and day == f"{y}-{m:02d}-{d:02d}"
        assert start == at(y, m, d, 0)
    start, end, _ = window_model.daily_window(at(2026, 3, 8), NY)
    assert window_model.daily_window(start, NY)[2] == "2026-03-08" and window_model.daily_window(end - 1, NY)[2] == "2026-03-08"
    assert window_model.daily_window(end, NY)[2] == "2026-03-09"


def test_window_kind_settings():
    cfg = WindowJobSettings.from_env({"IOTFLINK_WINDOW_KIND": "sliding", "IOTFLINK_WINDOW_SIZE_MS": "300000",
                                      "IOTFLINK_WINDOW_SLIDE_MS": "60000"})
    assert (cfg.window_kind, cfg.slide_ms) == ("sliding", 60_000)
    assert len(window_model.windows_of(BASE, cfg)) == 5
    assert WindowJobSettings.from_env({}).slide_ms == 60_000  # 0 = the size
    for env in ({"IOTFLINK_WINDOW_KIND": "hopping"},
                {"IOTFLINK_WINDOW_KIND": "sliding", "IOTFLINK_WINDOW_SLIDE_MS": "7000"},       # 60 s / 7 s
                {"IOTFLINK_WINDOW_KIND": "sliding", "IOTFLINK_WINDOW_SIZE_MS": "3600000",
                 "IOTFLINK_WINDOW_SLIDE_MS": "60000"},                                          # 60 per value
                {"IOTFLINK_WINDOW_KIND": "daily", "IOTFLINK_WINDOW_TIME_ZONE": "Mars/Olympus"},
                {"IOTFLINK_WINDOW_KIND": "daily", "IOTFLINK_WINDOW_TIME_ZONE": "America/Havana"},  # DST at 00:00
                {"IOTFLINK_WINDOW_INSTANCE": "Bad_Name"}):
        with pytest.raises(ConfigError):
            WindowJobSettings.from_env(env)
    daily = WindowJobSettings.from_env({"IOTFLINK_WINDOW_KIND": "daily", "IOTFLINK_WINDOW_TIME_ZONE": NY})
    assert window_model.windows_of(BASE, daily) == [window_model.daily_window(BASE, NY)]


def test_instances_get_their_own_group_transactions_and_topics():
    a = WindowJobSettings.from_env({"IOTFLINK_WINDOW_INSTANCE": "vitals", "IOTFLINK_WINDOW_KIND": "sliding",
                                    "IOTFLINK_WINDOW_SLIDE_MS": "10000"})
    b = WindowJobSettings.from_env({"IOTFLINK_WINDOW_INSTANCE": "billing", "IOTFLINK_WINDOW_KIND": "daily"})
    default = WindowJobSettings.from_env({})
    assert default.job_name == "sensor_windows" and a.job_name == "sensor_windows-vitals"
    assert a.output_topics() == ["sensor-aggregates-vitals", "sensor-late-vitals", "sensor-duplicates-vitals",
                                 "sensor-windows-dlq-vitals"]
    cfgs = (default, a, b)
    for field in ("consumer_group", "transactional_id_prefix"):
        assert len({getattr(c, field) for c in cfgs}) == 3
    assert len({t for c in cfgs for t in c.output_topics()}) == 12
    assert {c.topics.readings for c in cfgs} == {"sensor-readings"}
    ddl = sw.kafka_aggregates_sink_ddl(a)
    assert "'topic' = 'sensor-aggregates-vitals'" in ddl
    assert "'sink.transactional-id-prefix' = 'iotflink-sensor-windows-vitals-aggregates'" in ddl


# --------------------------------------------------------------------------- MiniCluster runs
def _run(cfg: WindowJobSettings, tmp: Path, events: list[dict]):
    """Run the job bounded over ``events``; returns (final aggregates by key, late rows)."""
    src = tmp / "in"
    src.mkdir(parents=True)
    (src / "readings.json").write_text("".join(json.dumps(e) + "\n" for e in events))
    conf = job_configuration(cfg, "test_window_kinds", use_kafka=False,
                             extra={"pipeline.auto-watermark-interval": "0 ms", "state.backend.type": "hashmap"})
    t_env = create_table_env(conf)
    t_env.execute_sql(sw.file_source_ddl(cfg, "src", src))
    rolling = {"sink.rolling-policy.rollover-interval": "200 ms", "sink.rolling-policy.check-interval": "100 ms"}
    t_env.execute_sql(f"CREATE TABLE agg ({sw.aggregate_columns(cfg)}\n) " + with_clause(
        {"connector": "filesystem", "path": str(tmp / "agg"), "format": "debezium-json", **rolling}))
    t_env.execute_sql(f"CREATE TABLE late ({sw.late_columns(cfg)}\n) " + with_clause(
        {"connector": "filesystem", "path": str(tmp / "late"), "format": "json", **rolling}))
    t_env.execute_sql(f"CREATE TABLE dups ({sw.DUPLICATE_COLUMNS}\n) " + with_clause(
        {"connector": "filesystem", "path": str(tmp / "dups"), "format": "json", **rolling}))
    common.execute(t_env, sw.build(t_env, cfg, "src", "agg", "late", "dups")).wait()
    return _final_aggregates(tmp / "agg"), _committed_lines(tmp / "late")


def reference(events: list[dict], cfg: WindowJobSettings):
    """Expected (final aggregates by (device, sensor, window_start_ms), late pair rows).

    The watermark a record is judged by is ``max(ts) - out_of_orderness`` of the records before
    it (none before the first); each of the value's windows is judged on its own.
    """
    wm: int | None = None
    values: dict[tuple, list] = {}
    late: list[dict] = []
    for e in events:
        for sensor, value in e["readings"].items():
            for start, end, day in window_model.windows_of(e["ts"], cfg):
                if window_model.window_is_late(end, wm, cfg.allowed_lateness_ms):
                    row = {"device_id": e["device_id"], "seq": e["seq"], "sensor": sensor, "ts": e["ts"],
                           "value": float(value), "window_start_ms": start, "window_end_ms": end,
                           "ingest_ms": e["ingest_ms"]}
                    late.append(row | ({"local_date": day} if day else {}))
                else:
                    values.setdefault((e["device_id"], sensor, start), [end, day, []])[2].append(float(value))
        cand = e["ts"] - cfg.out_of_orderness_ms
        wm = cand if wm is None else max(wm, cand)
    aggs = {}
    for (dev, sensor, start), (end, day, v) in values.items():
        aggs[(dev, sensor, start)] = {"device_id": dev, "sensor": sensor, "window_start_ms": start,
                                      "window_end_ms": end, "count": len(v), "min": min(v), "max": max(v),
                                      "mean": sum(v) / len(v)} | ({"local_date": day} if day else {})
    return aggs, late


def _pair(r: dict) -> tuple:
    return r["device_id"], r["seq"], r["sensor"], r["window_start_ms"]


def _assert_same_aggregates(final: dict, expected: dict) -> None:
    assert final.keys() == expected.keys()
    for k, exp in expected.items():
        got = final[k]
        assert {f: got[f] for f in exp if f != "mean"} == {f: exp[f] for f in exp if f != "mean"}, k
        assert got["mean"] == pytest.approx(exp["mean"], rel=1e-12, abs=1e-12), k


def _assert_accounting_closes(events: list[dict], final: dict, late: list[dict], cfg: WindowJobSettings) -> None:
    """Any parallelism: every pair once (aggregate count or late row), aggregates = all values of
    the window minus the late pairs of it."""
    keys = [_pair(r) for r in late]
    assert len(keys) == len(set(keys)), "a pair is in the late output twice"
    late_keys = set(keys)
    expected: dict[tuple, list[float]] = {}
    pairs = 0
    for e in events:
        for sensor, value in e["readings"].items():
            for start, _, _ in window_model.windows_of(e["ts"], cfg):
                pairs += 1
                if (e["device_id"], e["seq"], sensor, start) not in late_keys:
                    expected.setdefault((e["device_id"], sensor, start), []).append(float(value))
    assert late_keys <= {(e["device_id"], e["seq"], s, w[0]) for e in events for s in e["readings"]
                         for w in window_model.windows_of(e["ts"], cfg)}
    assert sum(a["count"] for a in final.values()) + len(late) == pairs
    assert {k: (a["count"], a["min"], a["max"]) for k, a in final.items()} == \
        {k: (len(v), min(v), max(v)) for k, v in expected.items()}


# --------------------------------------------------------------------------- sliding
# windows of 10 s every 2 s, allowed lateness 5 s: window [w, w+10 s) closes at w + 14 999
SLIDING_CRAFTED = [
    _event(1, 1_000, {"temp": 1.0}),               # windows starting -8, -6, -4, -2, 0 s; no watermark yet
    _event(2, 17_000, {"temp": 2.0}),              # wm -> 16 000 after it
    _event(3, 5_500, {"temp": 3.0, "hum": 30.0}),  # windows -4..4 s: late iff start <= 1 001
    _event(4, 19_999, {"temp": 4.0}),              # windows 10..18 s: all open
    _event(5, 40_000, {"temp": 5.0}),              # wm -> 39 000
    _event(6, 24_500, {"temp": 6.0}),              # windows 16..24 s: all closed (start <= 24 001)
]


def test_sliding_crafted_pairs(tmp_path):
    """A value late for its earlier windows and on time for its later ones: the late output holds
    exactly the missed (value, window) pairs, each window's count the others."""
    cfg = _sliding()
    final, late = _run(cfg, tmp_path, SLIDING_CRAFTED)
    exp_aggs, exp_late = reference(SLIDING_CRAFTED, cfg)
    # seq 3 at 5.5 s judged at wm 16 000: the windows starting -4 s (closing at 10 999), -2 s
    # (12 999) and 0 s (14 999) are past it, those starting 2 s (16 999) and 4 s (18 999) not
    assert sorted(r["window_start_ms"] - BASE for r in late if r["seq"] == 3 and r["sensor"] == "temp") == \
        [-4_000, -2_000, 0]
    assert final[("d1", "temp", BASE + 4_000)]["count"] == 1        # [4 s, 14 s): seq 3 only
    assert final[("d1", "temp", BASE)]["count"] == 1                 # [0, 10 s): seq 1; seq 3 missed it
    assert sorted(r["window_start_ms"] - BASE for r in late if r["seq"] == 6) == [16_000, 18_000, 20_000,
                                                                                  22_000, 24_000]
    assert sorted(map(_pair, late)) == sorted(map(_pair, exp_late))
    assert sorted(late, key=_pair) == sorted(exp_late, key=_pair)
    _assert_same_aggregates(final, exp_aggs)
    _assert_accounting_closes(SLIDING_CRAFTED, final, late, cfg)


def test_sliding_disordered_events_split_exactly(tmp_path):
    cfg = _sliding()
    events = _disordered(seed=7, n=300)
    final, late = _run(cfg, tmp_path, events)
    exp_aggs, exp_late = reference(events, cfg)
    by_value = {}
    for r in exp_late:
        by_value.setdefault((r["device_id"], r["seq"], r["sensor"]), set()).add(r["window_start_ms"])
    partly = [k for k, ws in by_value.items() if len(ws) < SIZE // SLIDE]
    assert len(exp_late) > 50 and len(partly) > 5  # values late for some windows, on time for others
    assert sorted(map(_pair, late)) == sorted(map(_pair, exp_late))
    _assert_same_aggregates(final, exp_aggs)
    _assert_accounting_closes(events, final, late, cfg)


def test_sliding_parallel_accounting_closes(tmp_path):
    """Parallelism 2, no idle timeout: verdicts depend on timing, the accounting may not."""
    cfg = _sliding(parallelism=2, idleness_ms=0)
    events = _disordered(seed=3, n=300)
    final, late = _run(cfg, tmp_path, events)
    _assert_accounting_closes(events, final, late, cfg)


# --------------------------------------------------------------------------- daily
def _dst_events(seed: int) -> list[dict]:
    """Readings every 20 min over 2026-03-06..09 and 2026-10-30..11-02 (New York), two devices;
    a seeded 12 % delayed by up to 6 h (within the 2 h allowed lateness after midnight or not),
    4 % by 20-30 h."""
    rng = random.Random(seed)
    ny = ZoneInfo(NY)
    events: list[dict] = []
    for first in (dt.datetime(2026, 3, 6, tzinfo=ny), dt.datetime(2026, 10, 30, tzinfo=ny)):
        t0 = int(first.timestamp() * 1000)
        for i in range(4 * 72):
            ts = t0 + i * 20 * 60_000 + rng.randrange(60_000)
            r = rng.random()
            if r < 0.12:
                ts -= rng.randrange(6 * HOUR)
            elif r < 0.16:  # a day behind: past the allowed lateness of its day, mostly
                ts -= 20 * HOUR + rng.randrange(10 * HOUR)
            dev = f"m{i % 2}"
            events.append({"device_id": dev, "seq": len(events), "ts": ts, "ingest_ms": 0,
                           "readings": {"kwh": round(rng.uniform(0, 2), 3)}})
    return events


@pytest.fixture(scope="module")
def daily_run(tmp_path_factory):
    cfg = _daily()
    events = _dst_events(seed=5)
    final, late = _run(cfg, tmp_path_factory.mktemp("daily"), events)
    return cfg, events, final, late


def test_daily_windows_are_local_days_across_dst(daily_run):
    _, _, final, _ = daily_run
    lengths = {a["local_date"]: (a["window_end_ms"] - a["window_start_ms"]) // HOUR for a in final.values()}
    assert lengths["2026-03-07"] == 24 and lengths["2026-03-08"] == 23
    assert lengths["2026-11-01"] == 25 and lengths["2026-11-02"] == 24
    ny = ZoneInfo(NY)
    for a in final.values():  # each window starts at its local date's midnight
        start = dt.datetime.fromtimestamp(a["window_start_ms"] / 1000, ny)
        assert (start.time(), start.date().isoformat()) == (dt.time(0), a["local_date"])


def test_daily_late_split_is_exact(daily_run):
    cfg, events, final, late = daily_run
    exp_aggs, exp_late = reference(events, cfg)
    assert len(exp_late) > 10 and len(exp_aggs) > 16  # 2 devices x 8 days and the days delays reach
    assert sorted(late, key=_pair) == sorted(exp_late, key=_pair)
    _assert_same_aggregates(final, exp_aggs)
    _assert_accounting_closes(events, final, late, cfg)


def test_daily_parallel_accounting_closes(tmp_path):
    cfg = _daily(parallelism=2, idleness_ms=0)
    events = _dst_events(seed=9)
    final, late = _run(cfg, tmp_path, events)
    _assert_accounting_closes(events, final, late, cfg)


# --------------------------------------------------------------------------- session
GAP = 3_000


def _session(parallelism: int = 1, idleness_ms: int = 600_000) -> WindowJobSettings:
    return WindowJobSettings(window_kind="session", window_gap_ms=GAP, allowed_lateness_ms=0, out_of_orderness_ms=OOO,
                             idleness_ms=idleness_ms, parallelism=parallelism, checkpoint_interval_ms=300)


def session_reference(events: list[dict], cfg: WindowJobSettings):
    """Expected (sessions by (device, sensor, start), late rows) per :class:`SessionModel`."""
    model = window_model.SessionModel(cfg.window_gap_ms)
    wm: int | None = None
    late: list[dict] = []
    for e in events:
        for sensor, value in e["readings"].items():
            if not model.add((e["device_id"], sensor), e["ts"], float(value), wm):
                late.append({"device_id": e["device_id"], "seq": e["seq"], "sensor": sensor, "ts": e["ts"],
                             "value": float(value), "window_start_ms": e["ts"],
                             "window_end_ms": e["ts"] + cfg.window_gap_ms, "ingest_ms": e["ingest_ms"]})
        cand = e["ts"] - cfg.out_of_orderness_ms
        wm = cand if wm is None else max(wm, cand)
        model.advance(wm)
    aggs = {(d, s, a): {"device_id": d, "sensor": s, "window_start_ms": a, "window_end_ms": b, "count": len(v),
                        "min": min(v), "max": max(v), "mean": sum(v) / len(v)}
            for d, s, a, b, v in model.close()}
    return aggs, late


SESSION_CRAFTED = [
    _event(1, 0, {"temp": 1.0}),
    _event(2, 1_000, {"temp": 2.0}),
    _event(3, 2_500, {"temp": 3.0}),             # d1 session [0, 5.5 s)
    _event(4, 6_600, {"temp": 10.0}, "d2"),      # wm 5 600: d1's [0, 5.5 s) fires
    _event(5, 4_000, {"temp": 4.0}),             # own [4 s, 7 s) open: a new session, overlapping the fired one
    _event(6, 12_000, {"temp": 11.0}, "d2"),     # wm 11 000: d1 [4 s, 7 s) and d2 [6.6 s, 9.6 s) fire
    _event(7, 7_000, {"temp": 5.0}),             # own [7 s, 10 s) closed: late
    _event(8, 11_500, {"temp": 6.0}),            # new session [11.5 s, 14.5 s)
    _event(9, 9_000, {"temp": 7.0}),             # own [9 s, 12 s) open: extends it back to [9 s, 14.5 s)
]


def test_session_crafted(tmp_path):
    cfg = _session()
    final, late = _run(cfg, tmp_path, SESSION_CRAFTED)
    exp_aggs, exp_late = session_reference(SESSION_CRAFTED, cfg)
    got = {(k[0], k[2] - BASE, v["window_end_ms"] - BASE, v["count"]) for k, v in final.items()}
    assert got == {("d1", 0, 5_500, 3), ("d1", 4_000, 7_000, 1), ("d1", 9_000, 14_500, 2),
                   ("d2", 6_600, 9_600, 1), ("d2", 12_000, 15_000, 1)}
    assert [(r["seq"], r["window_start_ms"] - BASE) for r in late] == [(7, 7_000)]
    assert sorted(late, key=_pair) == sorted(exp_late, key=_pair)
    _assert_same_aggregates(final, exp_aggs)


def test_session_disordered_events_split_exactly(tmp_path):
    cfg = _session()
    rng = random.Random(13)
    events = []
    for i in range(300):  # bursts with pauses longer than the gap, 15 % delayed by up to 8 s
        ts = i * 700 + (i // 10) * 4_000
        if rng.random() < 0.15:
            ts -= rng.randrange(8_000)
        events.append(_event(i, ts, {s: round(rng.uniform(-5, 5), 3) for s in rng.sample(["temp", "hum"], 2)},
                             device=f"d{i % 2}"))
    final, late = _run(cfg, tmp_path, events)
    exp_aggs, exp_late = session_reference(events, cfg)
    assert len(exp_late) > 10 and len(exp_aggs) > 40
    assert sorted(map(_pair, late)) == sorted(map(_pair, exp_late))
    _assert_same_aggregates(final, exp_aggs)
    assert sum(a["count"] for a in final.values()) + len(late) == sum(len(e["readings"]) for e in events)


def test_session_parallel_accounting_closes(tmp_path):
    """Parallelism 2: every value once, in a session's count or in the late output."""
    cfg = _session(parallelism=2, idleness_ms=0)
    events = _disordered(seed=21, n=300)
    final, late = _run(cfg, tmp_path, events)
    keys = [_pair(r) for r in late]
    assert len(keys) == len(set(keys))
    assert all(r["window_start_ms"] == r["ts"] and r["window_end_ms"] == r["ts"] + GAP for r in late)
    late_keys = {k[:3] for k in keys}
    per_key: dict[tuple, list[float]] = {}
    for e in events:
        for s, v in e["readings"].items():
            if (e["device_id"], e["seq"], s) not in late_keys:
                per_key.setdefault((e["device_id"], s), []).append(float(v))
    got: dict[tuple, list] = {}
    for a in final.values():
        g = got.setdefault((a["device_id"], a["sensor"]), [0, [], []])
        g[0] += a["count"]
        g[1].append(a["min"])
        g[2].append(a["max"])
    assert {k: (g[0], min(g[1]), max(g[2])) for k, g in got.items()} == \
        {k: (len(v), min(v), max(v)) for k, v in per_key.items()}
    assert sum(a["count"] for a in final.values()) + len(late) == sum(len(e["readings"]) for e in events)
