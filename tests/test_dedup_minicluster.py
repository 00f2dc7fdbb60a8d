"""MiniCluster tests of the dedup of ``jobs/sensor_windows``: duplicates dropped and counted,
the state TTL really frees a key, and the plan is what the module doc says.

Flink SQL state TTL runs on processing time (the TaskManager's wall clock), so the TTL test
cannot fake the clock: it uses a 2 s TTL, waits on wall time (polling the committed output,
then sleeping TTL + 1 s after the key's last copy was processed) and predicts the copy numbers
with the plain model :func:`iotflink.testing.window_model.dedup_step` fed with those times.
The job runs on RocksDB, the production state backend.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from iotflink.settings import WindowJobSettings
from iotflink.testing import window_model
from jobs import common
from jobs import sensor_windows as sw
from jobs.common import create_table_env, job_configuration, with_clause

pytestmark = [pytest.mark.minicluster, pytest.mark.timeout(300)]

log = logging.getLogger(__name__)

BASE = 1_700_000_000_000  # window-aligned (10 s)
TTL_MS = 2_000


def _event(seq: int, offset_ms: int, readings: dict[str, float], device: str = "d1") -> dict:
    return {"device_id": device, "seq": seq, "ts": BASE + offset_ms, "readings": readings, "ingest_ms": 0}


def _committed(directory: Path) -> list[dict]:
    out: list[dict] = []
    if directory.exists():
        for f in sorted(directory.rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                out += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return out


def _final_aggregates(directory: Path) -> dict[tuple, dict]:
    state: dict[tuple, dict] = {}
    files = sorted((f for f in directory.rglob("part-*") if f.is_file()),
                   key=lambda f: (f.name.rsplit("-", 2)[0], int(f.name.rsplit("-", 1)[1])))
    for f in files:
        for line in f.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                row = rec["after"] or rec["before"]
                key = (row["device_id"], row["sensor"], row["window_start_ms"])
                if rec["op"] == "d":
                    state.pop(key, None)
                else:
                    state[key] = rec["after"]
    return state


def _wait(what: str, probe, timeout_s: float = 60.0):
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    while time.monotonic() < deadline:
        got = probe()
        if got:
            log.info("%s after %.1f s", what, time.monotonic() - t0)
            return got
        time.sleep(0.1)  # polling interval, not synchronisation
    raise AssertionError(f"timed out waiting for {what}")


def _at_least(rows: list, n: int) -> list | None:
    return rows if len(rows) >= n else None


def _holding(aggs: dict, key: tuple) -> dict | None:
    return aggs if key in aggs else None


@pytest.fixture(scope="module")
def t_env_factory(tmp_path_factory):
    """Builds a table env (one per test; the MiniCluster JVM is shared by the module)."""
    def make(cfg: WindowJobSettings, name: str, backend: str = "rocksdb"):
        tmp = tmp_path_factory.mktemp(name)
        conf = job_configuration(cfg, f"test_dedup_{name}", use_kafka=False,
                                 extra={"pipeline.auto-watermark-interval": "0 ms",
                                        "state.backend.type": backend,
                                        "execution.checkpointing.dir": (tmp / "chk").as_uri()})
        t_env = create_table_env(conf)
        (tmp / "in").mkdir()
        t_env.execute_sql(sw.file_source_ddl(cfg, "src", tmp / "in", {"source.monitor-interval": "200 ms"}))
        rolling = {"sink.rolling-policy.rollover-interval": "200 ms", "sink.rolling-policy.check-interval": "100 ms"}
        t_env.execute_sql(f"CREATE TABLE agg ({sw.AGGREGATE_COLUMNS}\n) " + with_clause(
            {"connector": "filesystem", "path": str(tmp / "agg"), "format": "debezium-json", **rolling}))
        t_env.execute_sql(f"CREATE TABLE late ({sw.late_columns(cfg)}\n) " + with_clause(
            {"connector": "filesystem", "path": str(tmp / "late"), "format": "json", **rolling}))
        t_env.execute_sql(f"CREATE TABLE dups ({sw.DUPLICATE_COLUMNS}\n) " + with_clause(
            {"connector": "filesystem", "path": str(tmp / "dups"), "format": "json", **rolling}))
        return t_env, tmp
    return make


def _write(tmp: Path, name: str, events: list[dict]) -> None:
    """Add a file atomically (written under a hidden name, then renamed; the source skips dot files)."""
    hidden = tmp / "in" / f".{name}"
    hidden.write_text("".join(json.dumps(e) + "\n" for e in events))
    hidden.rename(tmp / "in" / name)


def test_ttl_frees_the_key_so_a_copy_after_it_passes_again(t_env_factory):
    """Copies within the TTL are dropped to sensor-duplicates; after TTL the same key is new.

    Phase A (t ~ 0): seq 1, seq 1, seq 2 -> copy numbers 1, 2, 1.
    Phase C (after TTL + 1 s since phase A was processed): seq 1, seq 1, and a far-ahead
    event that advances the watermark -> copy numbers 1, 2 (not 3, 4: the count restarted,
    so the state of seq 1 was gone), and seq 1's window counts both first copies.
    """
    cfg = WindowJobSettings(window_size_ms=10_000, allowed_lateness_ms=0, out_of_orderness_ms=0,
                            idleness_ms=600_000, parallelism=1, checkpoint_interval_ms=300, dedup_ttl_ms=TTL_MS)
    t_env, tmp = t_env_factory(cfg, "ttl")
    client = common.execute(t_env, sw.build(t_env, cfg, "src", "agg", "late", "dups")).get_job_client()
    try:
        a = [_event(1, 1_000, {"temp": 1.0}), _event(1, 1_000, {"temp": 1.0}), _event(2, 2_000, {"temp": 2.0})]
        _write(tmp, "a.json", a)
        dups_a = _wait("phase A duplicate", lambda: _committed(tmp / "dups"))
        t_a = time.monotonic()  # seq 1's entry was last written before this instant
        assert [(d["seq"], d["copy_no"]) for d in dups_a] == [(1, 2)]
        assert dups_a[0]["readings"] == {"temp": 1.0} and dups_a[0]["ts"] == BASE + 1_000

        time.sleep(TTL_MS / 1000 + 1.0)
        c = [_event(1, 1_000, {"temp": 1.0}), _event(1, 1_000, {"temp": 1.0}),
             _event(3, 25_000, {"temp": 3.0})]  # watermark -> BASE+25s: windows [0,10) and [10,20) fire
        _write(tmp, "c.json", c)
        dups = _wait("phase C duplicate", lambda: _at_least(_committed(tmp / "dups"), 2))
        aggs = _wait("window of seq 1", lambda: _holding(_final_aggregates(tmp / "agg"), ("d1", "temp", BASE)))
    finally:
        client.cancel().result()

    assert [(d["seq"], d["copy_no"]) for d in dups] == [(1, 2), (1, 2)]
    # the same numbers from the plain model with the wall times of the two phases
    gap_ms = int((time.monotonic() - t_a) * 1000)
    state: dict = {}
    model = []
    for now, evs in ((0, a), (gap_ms, c)):
        for e in evs:
            state, copy_no = window_model.dedup_step(state, e["device_id"], e["seq"], now, TTL_MS)
            model.append((e["seq"], copy_no))
    assert [x for x in model if x[1] > 1] == [(d["seq"], d["copy_no"]) for d in dups]
    # seq 1 was let through twice (once per TTL period), seq 2 once; nothing late
    assert aggs[("d1", "temp", BASE)]["count"] == 3  # seq 1 (A), seq 2 (A), seq 1 (C)
    assert _committed(tmp / "late") == []


def test_plan_is_append_only_jvm_only_and_ttl_reaches_only_the_dedup():
    """The dedup compiles to an OverAggregate (insert-only), the rowtime survives into the
    group window, no Python operator is in the plan with the slow-sink switch off, and the
    only stateful SQL nodes are the dedup and the window (which ignores the state TTL: its
    allowed lateness is set explicitly, see ``configure_windowing``)."""
    cfg = WindowJobSettings(window_size_ms=10_000, allowed_lateness_ms=0, dedup_ttl_ms=TTL_MS)
    t_env, stmts = sw.create_job(cfg)
    plan = sw.compiled_plan(stmts)
    types = [n["type"].rsplit("_", 1)[0] for n in plan["nodes"]]
    assert "stream-exec-over-aggregate" in types
    assert "stream-exec-group-window-aggregate" in types
    assert not any("python" in t for t in types), types
    stateful = {t for t in types if t not in ("stream-exec-table-source-scan", "stream-exec-calc", "stream-exec-exchange",
                                               "stream-exec-correlate", "stream-exec-sink")}
    assert stateful == {"stream-exec-over-aggregate", "stream-exec-group-window-aggregate"}
    assert t_env.get_config().get("table.exec.state.ttl", "") in (f"{TTL_MS} ms", "2 s")
    assert t_env.get_config().get("table.exec.emit.allow-lateness", "") == "0 ms"
    explained = common.explain(t_env, stmts)
    assert "Deduplicate" not in explained and "Rank" not in explained
    assert "OverAggregate(partitionBy=[device_id, seq]" in explained
