"""MiniCluster tests: the window job never dies on one record, and parses whatever the bridge forwards.

The job is built with :func:`jobs.sensor_windows.build` as ``main()`` builds it, from a
filesystem source with the same schema and ``json-dlq`` format as its Kafka source
(:func:`jobs.sensor_windows.file_source_ddl`), into filesystem sinks:

- records the job cannot read (integers beyond BIGINT, text that is not JSON, wrong types,
  missing fields, non-finite or null readings, bytes that are not UTF-8) go to the DLQ sink with
  their reason and exact raw bytes, and every valid record between them is aggregated exactly as
  the reference model predicts (the bounded job finishes: it did not fail);
- every payload the bridge's contract accepts (hypothesis, over valid and hostile payloads),
  encoded as the bridge encodes it, is read by the job's format: 0 dead letters, every value
  counted.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from bridge import contract
from iotflink.errors import ValidationError
from iotflink.settings import WindowJobSettings
from iotflink.testing import window_model
from jobs import common
from jobs import sensor_windows as sw
from jobs.common import create_table_env, job_configuration, with_clause
from tests.strategies import hostile_messages, valid_messages
from tests.test_sensor_windows import BASE, _cfg, _committed_lines, _event, _final_aggregates, reference, split_duplicates

pytestmark = [pytest.mark.minicluster, pytest.mark.timeout(300)]

#: (raw record bytes, expected dead-letter reason), each placed between valid readings.
POISON: list[tuple[bytes, str]] = [
    (b'{"device_id":"p-1","seq":9223372036854775808,"ts":1700000001000,"readings":{"t":1.0}}', "parse_error"),
    (b"not json at all", "parse_error"),
    (b'{"device_id":"p-1","seq":1,"ts":1700000001000,"readings":{"t":"NaN"}}', "non_finite"),
    (b'{"device_id":"p-1","seq":1,"readings":{"t":2}}', "missing_field"),
    (b'{"device_id":"p-1","seq":1,"ts":1700000001000,"readings":{"t":null}}', "null_in_map"),
    (b'{"device_id":"p-1","seq":1,"ts":1700000001000,"readings":5}', "parse_error"),
    (b"[1,2,3]", "parse_error"),
    (b'{"device_id":"p-1","seq":1,"ts":1700000001000,"readings":{"t":1e400}}', "non_finite"),
    (b'{"device_id":"p-1","seq":1,"ts":1700000001000,"readings":{"t":1},"drops":{"x":18446744073709551616}}',
     "parse_error"),
    (b'\xff\xfe{"device_id":\x80}', "parse_error"),
    (b'{"device_id":"p-1","seq":1,"ts":99999999999999999999999,"readings":{"t":1}}', "parse_error"),
]


def _table_env(cfg: WindowJobSettings, tmp: Path, lines: list[bytes]):
    src = tmp / "in"
    src.mkdir(parents=True)
    (src / "readings.json").write_bytes(b"".join(line + b"\n" for line in lines))
    conf = job_configuration(cfg, "test_window_dlq", use_kafka=False,
                             extra={"pipeline.auto-watermark-interval": "0 ms", "state.backend.type": "hashmap"})
    # no checkpoints: the bounded job commits its files at the end of input, and a failover
    # (a loaded machine) replays the whole input from the start, so the outputs stay exactly
    # those the reference model predicts (a restore from a checkpoint would restart the
    # watermark, which is not checkpointed, and change which values are late)
    conf.pop("execution.checkpointing.interval")
    t_env = create_table_env(conf)
    t_env.execute_sql(sw.file_source_ddl(cfg, "src", src))
    t_env.execute_sql(f"CREATE TABLE agg ({sw.AGGREGATE_COLUMNS}\n) " + with_clause(
        {"connector": "filesystem", "path": str(tmp / "agg"), "format": "debezium-json"}))
    for name, cols in (("late", sw.LATE_COLUMNS), ("dups", sw.DUPLICATE_COLUMNS), ("dlq", sw.DLQ_COLUMNS)):
        t_env.execute_sql(f"CREATE TABLE {name} ({cols}\n) " + with_clause(
            {"connector": "filesystem", "path": str(tmp / name), "format": "json"}))
    return t_env


def _run(cfg: WindowJobSettings, tmp: Path, lines: list[bytes]):
    t_env = _table_env(cfg, tmp, lines)
    common.execute(t_env, sw.build(t_env, cfg, "src", "agg", "late", "dups", "dlq")).wait()
    return _final_aggregates(tmp / "agg"), _committed_lines(tmp / "late"), _committed_lines(tmp / "dlq")


def test_poison_records_go_to_the_dlq_and_the_job_goes_on(tmp_path):
    cfg = _cfg(parallelism=1)
    valid = [_event(i, i * 700, {"temp": float(i), "hum": 2.0 * i}) for i in range(1, 41)]
    lines: list[bytes] = []
    for i, event in enumerate(valid):
        lines.append(json.dumps(event).encode())
        if i % 3 == 1 and i // 3 < len(POISON):
            lines.append(POISON[i // 3][0])
    assert sum(1 for p, _ in POISON if p in lines) == len(POISON)

    aggs, late, dlq = _run(cfg, tmp_path, lines)

    want_aggs, want_late = reference(valid, cfg)
    assert aggs == want_aggs
    assert late == want_late
    assert sorted((base64.b64decode(r["raw"]), r["reason"]) for r in dlq) == sorted(POISON)
    for row in dlq:
        assert row["source"] == sw.JOB_NAME
        assert row["detail"], row
        assert row["kafka_partition"] is None and row["kafka_offset"] is None  # filesystem source


def _bridge_encoded(value: dict) -> bytes:
    """The Kafka value exactly as the bridge writes it (bridge.service: compact, no NaN)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def test_everything_the_bridge_forwards_parses_in_the_job(tmp_path):
    """Property: whatever ``bridge.contract.validate`` accepts, the job's source format reads.

    Hypothesis drives valid and hostile payloads through the contract; every accepted value,
    in the order generated, goes through one job run: none is dead-lettered, and every value
    lands where the reference model puts it (window count or late; copies of a
    ``(device_id, seq)`` dropped as duplicates, though they move the watermark:
    :func:`_reference_with_copies`).
    """
    now_ms = BASE + 3_600_000
    forwarded: list[dict] = []

    @settings(max_examples=400, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(payload=valid_messages(now_ms) | hostile_messages(now_ms))
    def collect(payload: tuple[str, bytes]) -> None:
        topic, raw = payload
        try:
            forwarded.append(contract.validate(topic, raw, now_ms))
        except ValidationError:
            pass

    collect()
    assert len(forwarded) >= 100, f"too few accepted payloads to mean anything: {len(forwarded)}"
    assert any(v["seq"] > 2**62 for v in forwarded), "no seq near the BIGINT limit was tried"
    cfg = _cfg(parallelism=1)
    aggs, late, dlq = _run(cfg, tmp_path, [_bridge_encoded(v) for v in forwarded])

    assert dlq == []
    want_counts, want_late = _reference_with_copies(forwarded, cfg)
    assert {k: a["count"] for k, a in aggs.items()} == want_counts
    assert sorted((r["device_id"], r["seq"], r["sensor"]) for r in late) == sorted(want_late)


def _reference_with_copies(events: list[dict], cfg: WindowJobSettings) -> tuple[dict, list]:
    """Expected window counts and late (device_id, seq, sensor) of ``events`` in arrival order,
    when copies of a ``(device_id, seq)`` may carry other timestamps.

    The job's watermark is generated at the source, before the dedup, so every record moves it,
    copies included; only a first copy (:func:`split_duplicates`) is counted or judged late, and
    against the watermark of all the records before it (see
    :func:`tests.test_sensor_windows.reference`, which assumes copies with equal timestamps).
    """
    unique, _ = split_duplicates(events)
    first = {id(e) for e in unique}
    wm: int | None = None
    counts: dict[tuple, int] = {}
    late: list[tuple] = []
    for e in events:
        if id(e) in first:
            for sensor in e["readings"]:
                if window_model.is_late(e["ts"], wm, cfg.window_size_ms, cfg.allowed_lateness_ms):
                    late.append((e["device_id"], e["seq"], sensor))
                else:
                    start, _ = window_model.window_bounds(e["ts"], cfg.window_size_ms)
                    key = (e["device_id"], sensor, start)
                    counts[key] = counts.get(key, 0) + 1
        cand = e["ts"] - cfg.out_of_orderness_ms
        wm = cand if wm is None else max(wm, cand)
    return counts, late
