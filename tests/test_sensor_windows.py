"""MiniCluster tests of ``jobs/sensor_windows``: exact window values, late firings, late side output.

The job is built with :func:`jobs.sensor_windows.build` exactly as ``main()`` builds it, but
from a JSON-lines filesystem source with the same schema and watermark, into filesystem sinks
(aggregates as a ``debezium-json`` changelog, so late firings are visible as updates; late
values as JSON lines). ``pipeline.auto-watermark-interval = 0`` makes the watermark advance on
every record, so which events are late is a pure function of the input order, and a Python
reference model (:func:`reference`) predicts every output exactly. Duplicates of a
``(device_id, seq)`` go to a ``dups`` JSON-lines sink (sensor-duplicates); the reference drops
them first (:func:`split_duplicates`, the dedup model with a TTL far longer than the test).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from iotflink.poll import PollTimeout, poll
from iotflink.settings import WindowJobSettings
from iotflink.testing import window_model
from jobs import common
from jobs import sensor_windows as sw
from jobs.common import create_table_env, job_configuration, with_clause

pytestmark = [pytest.mark.minicluster, pytest.mark.timeout(300)]

SIZE, LATENESS, OOO = 10_000, 5_000, 1_000
#: A window-aligned base time (2023-11-14T22:13:20Z).
BASE = 1_700_000_000_000


def _cfg(parallelism: int, idleness_ms: int = 600_000) -> WindowJobSettings:
    return WindowJobSettings(window_size_ms=SIZE, allowed_lateness_ms=LATENESS, out_of_orderness_ms=OOO,
                             idleness_ms=idleness_ms, parallelism=parallelism, checkpoint_interval_ms=300)


def _event(seq: int, offset_ms: int, readings: dict[str, float], device: str = "d1") -> dict:
    return {"device_id": device, "seq": seq, "ts": BASE + offset_ms, "readings": readings, "ingest_ms": 0}


def _table_env(cfg: WindowJobSettings, tmp: Path, events: list[dict], *, monitor: bool = False):
    """A table env with source ``src`` (events as JSON lines) and sinks ``agg`` / ``late`` under ``tmp``."""
    src = tmp / "in"
    src.mkdir(parents=True)
    (src / "readings.json").write_text("".join(json.dumps(e) + "\n" for e in events))
    conf = job_configuration(cfg, "test_sensor_windows", use_kafka=False,
                             extra={"pipeline.auto-watermark-interval": "0 ms",
                                    "state.backend.type": "hashmap"})
    t_env = create_table_env(conf)
    # unbounded with monitor: keeps watching the directory, so the job never ends by itself
    extra = {"source.monitor-interval": "1 h"} if monitor else None
    t_env.execute_sql(sw.file_source_ddl(cfg, "src", src, extra))
    # row-format part files roll by time here (they do not roll on checkpoint); a rolled part
    # file is committed (made visible) by the next checkpoint, or at the end of a bounded run
    rolling = {"sink.rolling-policy.rollover-interval": "200 ms", "sink.rolling-policy.check-interval": "100 ms"}
    t_env.execute_sql(f"CREATE TABLE agg ({sw.AGGREGATE_COLUMNS}\n) " + with_clause(
        {"connector": "filesystem", "path": str(tmp / "agg"), "format": "debezium-json", **rolling}))
    t_env.execute_sql(f"CREATE TABLE late ({sw.LATE_COLUMNS}\n) " + with_clause(
        {"connector": "filesystem", "path": str(tmp / "late"), "format": "json", **rolling}))
    t_env.execute_sql(f"CREATE TABLE dups ({sw.DUPLICATE_COLUMNS}\n) " + with_clause(
        {"connector": "filesystem", "path": str(tmp / "dups"), "format": "json", **rolling}))
    return t_env


def _committed_lines(directory: Path) -> list[dict]:
    """JSON records of the committed (visible, not ``.``-prefixed in-progress) part files."""
    out: list[dict] = []
    if directory.exists():
        for f in sorted(directory.rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out


def _changelog_per_file(directory: Path) -> list[list[dict]]:
    """Committed part files grouped per writing subtask, each group in writing order.

    Part files are named ``part-<uuid>-<subtask>-<counter>``; a key is written by one subtask.
    """
    groups: dict[str, list[tuple[int, Path]]] = {}
    for f in directory.rglob("part-*"):
        if f.is_file():
            head, subtask, counter = f.name.rsplit("-", 2)
            groups.setdefault(f"{head}-{subtask}", []).append((int(counter), f))
    return [[json.loads(x) for _, f in sorted(files) for x in f.read_text().splitlines() if x.strip()]
            for _, files in sorted(groups.items())]


def _final_aggregates(directory: Path) -> dict[tuple, dict]:
    """Apply the debezium changelog (per file, in order; a key lives in one file) -> key -> row."""
    state: dict[tuple, dict] = {}
    for records in _changelog_per_file(directory):
        for rec in records:
            row = rec["after"] or rec["before"]
            key = (row["device_id"], row["sensor"], row["window_start_ms"])
            if rec["op"] in ("c", "u", "r"):
                state[key] = rec["after"]
            elif rec["op"] == "d":
                state.pop(key, None)
    return state


def _run_bounded(cfg: WindowJobSettings, tmp: Path, events: list[dict]):
    t_env = _table_env(cfg, tmp, events)
    common.execute(t_env, sw.build(t_env, cfg, "src", "agg", "late", "dups")).wait()
    return _changelog_per_file(tmp / "agg"), _final_aggregates(tmp / "agg"), _committed_lines(tmp / "late")


def split_duplicates(events: list[dict]) -> tuple[list[dict], list[tuple[str, int, int]]]:
    """(first copies in input order, [(device_id, seq, copy_no) of every later copy]).

    The dedup model (:func:`iotflink.testing.window_model.dedup_step`) at one processing instant with a
    1 h TTL: nothing expires within a test run.
    """
    state: dict = {}
    unique, dups = [], []
    for e in events:
        state, copy_no = window_model.dedup_step(state, e["device_id"], e["seq"], 0, 3_600_000)
        if copy_no == 1:
            unique.append(e)
        else:
            dups.append((e["device_id"], e["seq"], copy_no))
    return unique, dups


def reference(events: list[dict], cfg: WindowJobSettings):
    """Expected outputs: (final aggregates by key, late rows in order).

    Watermark semantics of the job with on-event emission: a record is judged against the
    watermark produced by the records before it, ``max(ts) - out_of_orderness``; none before the
    first record.
    """
    wm: int | None = None
    values: dict[tuple, list[float]] = {}
    late: list[dict] = []
    for e in events:
        for sensor, value in e["readings"].items():
            start, end = window_model.window_bounds(e["ts"], cfg.window_size_ms)
            if window_model.is_late(e["ts"], wm, cfg.window_size_ms, cfg.allowed_lateness_ms):
                late.append({"device_id": e["device_id"], "seq": e["seq"], "sensor": sensor, "ts": e["ts"],
                             "value": float(value), "window_start_ms": start, "window_end_ms": end,
                             "ingest_ms": e["ingest_ms"]})
            else:
                values.setdefault((e["device_id"], sensor, start), []).append(float(value))
        cand = e["ts"] - cfg.out_of_orderness_ms
        wm = cand if wm is None else max(wm, cand)
    aggs = {k: {"device_id": k[0], "sensor": k[1], "window_start_ms": k[2], "window_end_ms": k[2] + cfg.window_size_ms,
                "count": len(v), "min": min(v), "max": max(v), "mean": sum(v) / len(v)} for k, v in values.items()}
    return aggs, late


# --------------------------------------------------------------------------- crafted events
# window W0 = [BASE, BASE+10s): cleanup at BASE + 14_999; W1 = [BASE+10s, BASE+20s): BASE + 24_999
CRAFTED = [
    _event(1, 1_000, {"temp": 1.0, "hum": 10.0}),   # no watermark yet (NULL): not late
    _event(2, 2_000, {"temp": 3.0}),
    _event(3, 500, {"temp": 2.0}),                  # out of order, W0 still open
    _event(4, 12_000, {"temp": 5.0}),               # wm -> 11_000 after it: W0 fires
    _event(5, 9_000, {"temp": 8.0}),                # late firing: W0/temp updated to count 4
    _event(6, 15_999, {"temp": 4.0}),               # wm -> 14_999 after it (= W0 cleanup)
    _event(7, 9_999, {"temp": 100.0, "hum": 1.0}),  # W0 past allowed lateness: both values late
    _event(8, 3_000, {"hum": 7.0}, device="d2"),    # other key, same window: late as well
    _event(9, 10_000, {"temp": 6.0}),               # W1, not late
    _event(10, 25_999, {"temp": 9.0}),              # wm -> 24_999 (= W1 cleanup)
    _event(11, 19_999, {"temp": 50.0}),             # W1 exactly at its cleanup time: late
    _event(12, 20_000, {"temp": 11.0}),             # W2: not late
]


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """One job run (parallelism 1) of :data:`CRAFTED`, shared by the tests below."""
    cfg = _cfg(parallelism=1)
    changelog, final, late = _run_bounded(cfg, tmp_path_factory.mktemp("crafted"), CRAFTED)
    return cfg, changelog, final, late


def test_exact_window_values(crafted):
    cfg, _, final, _ = crafted
    W0, W1, W2 = BASE, BASE + SIZE, BASE + 2 * SIZE
    assert final == {
        ("d1", "temp", W0): {"device_id": "d1", "sensor": "temp", "window_start_ms": W0, "window_end_ms": W0 + SIZE,
                             "count": 4, "min": 1.0, "max": 8.0, "mean": 3.5},
        ("d1", "hum", W0): {"device_id": "d1", "sensor": "hum", "window_start_ms": W0, "window_end_ms": W0 + SIZE,
                            "count": 1, "min": 10.0, "max": 10.0, "mean": 10.0},
        ("d1", "temp", W1): {"device_id": "d1", "sensor": "temp", "window_start_ms": W1, "window_end_ms": W1 + SIZE,
                             "count": 3, "min": 4.0, "max": 6.0, "mean": 5.0},
        ("d1", "temp", W2): {"device_id": "d1", "sensor": "temp", "window_start_ms": W2, "window_end_ms": W2 + SIZE,
                             "count": 2, "min": 9.0, "max": 11.0, "mean": 10.0},
    }
    assert final == reference(CRAFTED, cfg)[0]


def test_late_firing_updates_its_window(crafted):
    _, changelog, _, _ = crafted
    (records,) = changelog  # parallelism 1: one sink file, in emission order
    w0_temp = [(r["op"], (r["after"] or r["before"])["count"]) for r in records
               if (r["after"] or r["before"])["sensor"] == "temp" and (r["after"] or r["before"])["window_start_ms"] == BASE]
    # on-time firing with 3 values, then the late firing retracts it and writes 4 under the same key
    assert w0_temp == [("c", 3), ("d", 3), ("c", 4)]


def test_exactly_the_too_late_values_reach_the_side_output(crafted):
    cfg, _, _, late = crafted
    got = sorted((r["seq"], r["device_id"], r["sensor"], r["value"]) for r in late)
    assert got == [(7, "d1", "hum", 1.0), (7, "d1", "temp", 100.0), (8, "d2", "hum", 7.0), (11, "d1", "temp", 50.0)]
    assert sorted(late, key=lambda r: (r["seq"], r["sensor"])) == \
        sorted(reference(CRAFTED, cfg)[1], key=lambda r: (r["seq"], r["sensor"]))
    assert {r["window_end_ms"] - r["window_start_ms"] for r in late} == {SIZE}


def test_every_value_counted_exactly_once(crafted):
    _, _, final, late = crafted
    total = sum(len(e["readings"]) for e in CRAFTED)
    assert sum(a["count"] for a in final.values()) + len(late) == total


# --------------------------------------------------------------------------- seeded disorder, parallel
def _disordered(seed: int, n: int) -> list[dict]:
    """``n`` events of 3 devices x 1-3 sensors, 1 s apart, with a seeded share delayed by up to 40 s."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        ts = i * 1_000 + rng.randrange(1_000)
        if rng.random() < 0.15:
            ts -= rng.randrange(40_000)
        sensors = rng.sample(["temp", "hum", "co2"], rng.randint(1, 3))
        events.append(_event(i, ts, {s: round(rng.uniform(-50, 50), 3) for s in sensors}, device=f"d{i % 3}"))
    return events


def _assert_exact(events: list[dict], final: dict, late: list[dict], cfg: WindowJobSettings) -> None:
    """Outputs equal :func:`reference` exactly: the same late values (by device, seq, sensor) and
    the same final aggregates, and the accounting closes (counts + late = every input value)."""
    exp_aggs, exp_late = reference(events, cfg)
    key = lambda r: (r["device_id"], r["seq"], r["sensor"])  # noqa: E731
    assert sorted(map(key, late)) == sorted(map(key, exp_late))
    assert sum(a["count"] for a in final.values()) + len(late) == sum(len(e["readings"]) for e in events)
    assert final.keys() == exp_aggs.keys()
    for k, exp in exp_aggs.items():
        got = final[k]
        assert (got["count"], got["min"], got["max"]) == (exp["count"], exp["min"], exp["max"]), k
        assert got["mean"] == pytest.approx(exp["mean"], rel=1e-12, abs=1e-12), k


def test_disordered_events_split_exactly(tmp_path):
    """400 seeded events, 15 % of them up to 40 s behind: the late set and every aggregate are
    exactly those of the reference (the window dropped nothing the flag let through)."""
    cfg = _cfg(parallelism=1)
    events = _disordered(seed=7, n=400)
    _, final, late = _run_bounded(cfg, tmp_path, events)
    exp_aggs, exp_late = reference(events, cfg)
    assert len(exp_late) > 20 and len(exp_aggs) > 50  # the data really exercises lateness
    _assert_exact(events, final, late, cfg)


def test_window_job_parallelism_needs_no_idle_timeout():
    """Above parallelism 1 the exact late split needs a job without idle channels
    (jobs/sensor_windows.py): from_env refuses an idle timeout there, and a source instance
    without a partition (it would hold every window back for ever)."""
    from iotflink.errors import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError, match="IOTFLINK_IDLENESS_MS=0"):
        WindowJobSettings.from_env({"IOTFLINK_JOB_PARALLELISM": "2"})
    cfg = WindowJobSettings.from_env({"IOTFLINK_JOB_PARALLELISM": "4", "IOTFLINK_IDLENESS_MS": "0",
                                      "IOTFLINK_WINDOW_SOURCE_PARALLELISM": "4"})
    assert (cfg.parallelism, cfg.idleness_ms, cfg.source_parallelism) == (4, 0, 4)
    with pytest.raises(ConfigError, match="above the 4 partitions"):
        WindowJobSettings.from_env({"IOTFLINK_JOB_PARALLELISM": "2", "IOTFLINK_IDLENESS_MS": "0",
                                    "IOTFLINK_WINDOW_SOURCE_PARALLELISM": "5"})
    with pytest.raises(ConfigError, match="must not be negative"):
        WindowJobSettings.from_env({"IOTFLINK_IDLENESS_MS": "-1"})
    assert WindowJobSettings.from_env({}).parallelism == 1


def test_duplicates_are_dropped_counted_and_never_judged_late(tmp_path):
    """Redelivered copies: some right after the original, some long after (their event time is
    then behind the allowed lateness, but they are duplicates, not late values). Exact outputs:
    every later copy in sensor-duplicates with its copy number, the exact late split over the
    first copies only, and the accounting closes."""
    cfg = _cfg(parallelism=1)
    base = _disordered(seed=11, n=300)
    rng = random.Random(5)
    events: list[dict] = []
    for i, e in enumerate(base):
        events.append(e)
        if rng.random() < 0.1:                    # QoS 1 redelivery right after
            events.append(dict(e))
        if i >= 60 and rng.random() < 0.1:        # bridge restart: a copy of a reading ~60 back
            events.append(dict(base[i - 60]))
    events.append(dict(base[3]))                  # third copy of an early reading, maybe
    events.append(dict(base[3]))
    unique, exp_dups = split_duplicates(events)
    assert unique == base and len(exp_dups) > 40

    _, final, late = _run_bounded(cfg, tmp_path, events)
    dups = _committed_lines(tmp_path / "dups")
    _, exp_late = reference(unique, cfg)
    assert len(exp_late) > 10  # lateness is exercised too
    assert sorted((d["device_id"], d["seq"], d["copy_no"]) for d in dups) == sorted(exp_dups)
    by_key = {(e["device_id"], e["seq"]): e for e in unique}
    for d in dups:  # the whole reading is kept
        e = by_key[(d["device_id"], d["seq"])]
        assert (d["ts"], d["readings"]) == (e["ts"], {k: float(v) for k, v in e["readings"].items()})
    _assert_exact(unique, final, late, cfg)  # over the first copies only
    # accounting of the demo: records = unique + duplicates; counts + late = values of unique
    values = lambda evs: sum(len(e["readings"]) for e in evs)  # noqa: E731
    assert len(events) == len(unique) + len(dups)
    assert sum(a["count"] for a in final.values()) + len(late) == values(events) - sum(len(d["readings"]) for d in dups)


# --------------------------------------------------------------------------- idleness
def test_idle_source_instance_does_not_stall_windows(tmp_path):
    """Parallelism 2 with one input file: one source instance never gets data and stays open.

    (Only here, to get an empty source instance: ``from_env`` refuses parallelism 2 with an
    idle timeout, and this test checks that windows fire, not the late split.)

    Without idleness the window's watermark (minimum over both channels) would stay at its
    initial value forever and no window would fire. With a 1 s idle timeout the empty instance
    is marked idle and the windows closed by the other instance's watermark fire while the job
    is still running (unbounded source: no end-of-input watermark).
    """
    cfg = _cfg(parallelism=2, idleness_ms=1_000)
    events = [_event(i, i * 1_000, {"temp": float(i)}) for i in range(25)]  # wm ends at BASE+23s
    t_env = _table_env(cfg, tmp_path, events, monitor=True)
    result = common.execute(t_env, sw.build(t_env, cfg, "src", "agg", "late", "dups"))
    client = result.get_job_client()
    try:
        try:
            final = poll(lambda: _final_aggregates(tmp_path / "agg"), 90, what="two final aggregates",
                         until=lambda got: len(got) >= 2, retry_on=())
        except PollTimeout as exc:
            final = exc.last or {}
        assert {k[2] for k in final} >= {BASE, BASE + SIZE}, f"windows did not fire: {final}"
        assert final[("d1", "temp", BASE)]["count"] == 10
        assert final[("d1", "temp", BASE + SIZE)]["count"] == 10
        assert ("d1", "temp", BASE + 2 * SIZE) not in final  # its end (BASE+30s) > watermark
    finally:
        client.cancel().result()
