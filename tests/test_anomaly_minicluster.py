"""MiniCluster tests of ``jobs/anomaly``: the job built by :func:`jobs.anomaly.build`, as
``main()`` builds it, from a file source into file sinks (JSON lines, one directory per output).

1. Exact outputs on real data. Two devices play slices of NAB's machine temperature series
   (``data/nab``), with seeded out-of-order rows (some within the out-of-orderness bound, some
   far behind), unreadable records, a 25 h silence of one device (its baseline expires with
   a 24 h state TTL) and heartbeats. The source is a SQL file table that emits a watermark after every record
   (``pipeline.auto-watermark-interval = 0``), so which reading is late is a function of the
   input order alone, and :func:`reference` (the plain functions of ``jobs/anomaly``)
   predicts every score, alert, late row and dead letter exactly.

2. The job's own ``WatermarkStrategy`` (periodic watermarks: which reading is late then depends
   on timing) at parallelism 2: the assertions hold for any timing: every sensor value is in
   exactly one of scores or late, a late reading is behind its watermark and that watermark
   is within the strategy's bound, and every key's scores and alerts are the plain
   functions' over the readings that key's operator scored, in their order.
"""

from __future__ import annotations

import csv
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from iotflink.errors import ValidationError
from iotflink.settings import PROJECT_ROOT, AnomalyJobSettings
from jobs import anomaly as an
from jobs.common import create_stream_env, sql_interval

pytestmark = [pytest.mark.minicluster, pytest.mark.timeout(300)]

NAB_CSV = PROJECT_ROOT / "data" / "nab" / "machine_temperature_system_failure.csv"
#: NAB's timestamps (2013-12-02 .. 2014-02-19, local time without zone, taken as UTC) moved by
#: whole weeks past the 2020 floor of the schema (weekday and time of day kept).
SHIFT_MS = 626 * 7 * 86_400_000
SLICE = 4_500  # readings per device (15.6 days at 5 min)
OOO_MS = 30 * 60_000  # 6 NAB intervals


def nab_rows() -> list[tuple[int, float]]:
    """(ts epoch ms, value) of every row of the NAB file, shifted by :data:`SHIFT_MS`."""
    with NAB_CSV.open() as f:
        return [(int(datetime.fromisoformat(r["timestamp"]).replace(tzinfo=UTC).timestamp() * 1000)
                 + SHIFT_MS, float(r["value"])) for r in csv.DictReader(f)]


def record(device: str, seq: int, ts: int, readings: dict) -> str:
    return json.dumps({"device_id": device, "seq": seq, "ts": ts, "readings": readings, "ingest_ms": ts + 1_000})


def nab_input(seed: int = 3) -> tuple[list[str], dict[str, int]]:
    """The input lines (arrival order) and counts of what was injected.

    Device ``nab-machine`` plays rows 0..SLICE-1, ``nab-twin`` the values of the next SLICE rows
    on the same timestamps, silent for 25 h in the middle; interleaved by time. Then, seeded:
    1.5 % of records delayed by 2-3 records (10-15 min of event time, within the 30 min
    bound: scored out of order), 1 % by 20-40 records (100-200 min: late), and unreadable
    lines and heartbeats in between.
    """
    rows = nab_rows()
    gap = range(2_000, 2_300)  # nab-twin silent for 300 x 5 min = 25 h > the test's 24 h TTL
    lines: list[str] = []
    for i in range(SLICE):
        ts, v = rows[i]
        lines.append(record("nab-machine", i, ts, {"temp": v}))
        if i not in gap:
            lines.append(record("nab-twin", i, ts, {"temp": rows[SLICE + i][1]}))
    rng = random.Random(seed)
    counts = {"near": 0, "far": 0}
    out = list(lines)
    for _ in range(int(0.015 * len(lines))):
        j = rng.randrange(100, len(out) - 100)
        out.insert(j + rng.randint(4, 6), out.pop(j))  # 2 devices: 2-3 NAB intervals
        counts["near"] += 1
    for _ in range(int(0.01 * len(lines))):
        j = rng.randrange(100, len(out) - 100)
        out.insert(j + rng.randint(40, 80), out.pop(j))
        counts["far"] += 1
    bad = ["not json", '{"device_id": "nab-machine", "seq": 1}', json.dumps([1, 2]),
           record("nab-machine", 1, 5, {"temp": 1.0}),  # ts_too_old
           # non_finite; its ts (the first reading's) is behind the watermark, so whether a
           # JSON reader takes its rowtime or not, the watermark is the same
           '{"device_id": "nab-machine", "seq": 9, "ts": %d, "readings": {"temp": 1e999}, "ingest_ms": %d}'
           % (rows[0][0], rows[0][0])]
    for k, text in enumerate(bad):
        out.insert(500 + 1_500 * k, text)
    mid_ts = max(_event_ts(x) for x in out[:3_001])  # the newest so far: moves no watermark
    out.insert(3_001, json.dumps({"device_id": an.HEARTBEAT_DEVICE, "seq": 0, "ts": mid_ts, "readings": {}}))
    end_ts = max(json.loads(x)["ts"] for x in lines) + 3_600_000
    out.append(json.dumps({"device_id": an.HEARTBEAT_DEVICE, "seq": 1, "ts": end_ts, "readings": {}}))
    counts["bad"] = len(bad)
    return out, counts


def _event_ts(line: str) -> int:
    """The rowtime the test source computes: the JSON ``ts`` when it is an integer, else 0."""
    try:
        ts = json.loads(line).get("ts")
    except (ValueError, AttributeError):
        return 0
    return ts if type(ts) is int else 0


def reference(lines: list[str], cfg: AnomalyJobSettings) -> dict[str, list]:
    """Expected outputs of the job over ``lines`` with the test source's watermark: after each
    line, ``max(rowtime) - out_of_orderness`` (SQL ``WATERMARK FOR rt AS rt - INTERVAL``);
    a reading is judged against the watermark of the lines before it."""
    p = an.params(cfg)
    wm = an.NO_WATERMARK
    state: dict[str, an.Baseline] = {}
    out: dict[str, list] = {"scores": [], "alerts": [], "late": [], "dlq": []}
    for line in lines:
        try:
            readings, _ = an.parse_value(line)
        except ValidationError as exc:
            out["dlq"].append({"source": "anomaly", "reason": exc.reason, "detail": exc.detail, "raw": line})
            readings = []
        for r in readings:
            if an.is_late(r.ts, wm):
                out["late"].append(dict(zip([c for c, _ in an.LATE_COLUMNS], an.late_row(r, wm))))
                continue
            key = an.alert_key(r.device_id, r.sensor)
            s = an.step(state.get(key), r, p)
            state[key] = s.state
            out["scores"].append(dict(zip([c for c, _ in an.SCORE_COLUMNS], an.score_row(r, s))))
            if s.alert is not None:
                out["alerts"].append(_alert_dict(s.alert, p))
        wm = max(wm, _event_ts(line) - cfg.out_of_orderness_ms)
    return out


def _alert_dict(a: an.Alert, p: an.Params) -> dict:
    """An alert as the sink writes it, without ``emitted_at`` (wall clock)."""
    return {"alert_id": a.alert_id, "rule_id": an.RULE_ID, "alert_key": a.alert_key, "detection_ms": a.detection_ms,
            "events": [e._asdict() for e in a.events], "details": an.alert_details(a, p)}


# --------------------------------------------------------------------------- running the job
def _file_sink(path: Path, columns):
    from pyflink.table import TableDescriptor  # noqa: PLC0415

    return (TableDescriptor.for_connector("filesystem").schema(an.table_schema(columns))
            .option("path", str(path)).format("json").build())


def _sinks(tmp: Path) -> an.Sinks:
    return an.Sinks(scores=_file_sink(tmp / "scores", an.SCORE_COLUMNS),
                    alerts=_file_sink(tmp / "alerts", an.ALERT_COLUMNS),
                    late=_file_sink(tmp / "late", an.LATE_COLUMNS), dlq=_file_sink(tmp / "dlq", an.DLQ_COLUMNS))


def read_output(directory: Path) -> list[list[dict]]:
    """Committed part files (``part-<uuid>-<subtask>-<counter>``) as one list per writing
    subtask, each in writing order."""
    groups: dict[str, list[tuple[int, Path]]] = {}
    for f in directory.rglob("part-*"):
        head, subtask, counter = f.name.rsplit("-", 2)
        groups.setdefault(f"{head}-{subtask}", []).append((int(counter), f))
    return [[json.loads(x) for _, f in sorted(files) for x in f.read_text().splitlines() if x.strip()]
            for _, files in sorted(groups.items())]


def _conf(cfg: AnomalyJobSettings, **extra: str) -> dict[str, str]:
    return an.configuration(cfg, use_kafka=False, extra={"state.backend.type": "hashmap", **extra})


def run_with_sql_source(cfg: AnomalyJobSettings, tmp: Path, lines: list[str]) -> dict[str, list[dict]]:
    """Run the job on ``lines`` read by a SQL file table with a watermark per record
    (``build(..., assign_watermarks=False)``); outputs by sink, parallelism 1."""
    from pyflink.common import Types  # noqa: PLC0415
    from pyflink.table import StreamTableEnvironment  # noqa: PLC0415

    (tmp / "in").mkdir()
    (tmp / "in" / "readings.json").write_text("".join(x + "\n" for x in lines))
    env = create_stream_env(_conf(cfg, **{"pipeline.auto-watermark-interval": "0 ms"}))
    t_env = StreamTableEnvironment.create(env)
    # watermark = rowtime - out_of_orderness, emitted after each record (interval 0); a line
    # without an integer ts gets rowtime 0, which never moves the watermark
    t_env.execute_sql(f"""
        CREATE TABLE src (
          line STRING,
          rt AS TO_TIMESTAMP_LTZ(COALESCE(CAST(JSON_VALUE(line, '$.ts') AS BIGINT), 0), 3),
          WATERMARK FOR rt AS rt - {sql_interval(cfg.out_of_orderness_ms)}
        ) WITH ('connector' = 'filesystem', 'path' = '{tmp / "in"}', 'format' = 'raw')""")
    source = t_env.to_data_stream(t_env.from_path("src")).map(lambda row: row[0], Types.STRING()) \
        .name("test: line of the row").uid("test-line")
    an.build(env, cfg, source, _sinks(tmp), t_env=t_env, assign_watermarks=False)
    env.execute("test_anomaly_sql_source")
    return {name: [r for part in read_output(tmp / name) for r in part] for name in ("scores", "alerts", "late", "dlq")}


# --------------------------------------------------------------------------- 1. exact outputs
@pytest.fixture(scope="module")
def nab_run(tmp_path_factory):
    # the default model (time-of-day baselines, range check, cooldown) with a lower threshold
    # (more alerts) and a 24 h TTL (the silent device's baseline expires)
    cfg = AnomalyJobSettings(threshold=3.5, state_ttl_ms=86_400_000, out_of_orderness_ms=OOO_MS, parallelism=1,
                             checkpoint_interval_ms=1_000)
    lines, counts = nab_input()
    got = run_with_sql_source(cfg, tmp_path_factory.mktemp("nab"), lines)
    return cfg, lines, counts, got, reference(lines, cfg)


def test_input_exercises_every_path(nab_run):
    cfg, lines, counts, _, exp = nab_run
    assert counts["near"] > 100 and counts["far"] > 50
    assert len(exp["late"]) > 50 and len(exp["dlq"]) == counts["bad"] and len(exp["alerts"]) >= 2
    # some delayed readings were scored out of order (behind an already scored newer one)
    seen: dict[str, int] = {}
    behind = 0
    for s in exp["scores"]:
        behind += s["ts"] < seen.get(s["device_id"], 0)
        seen[s["device_id"]] = max(seen.get(s["device_id"], 0), s["ts"])
    assert behind > 50
    # the silent device's baseline expired: a fresh one after the gap
    twin = [s for s in exp["scores"] if s["device_id"] == "nab-twin"]
    assert sum(1 for s in twin if s["n"] == 0) == 2
    # the model's parts all come into play: time-of-day z, readings beyond the range, alerts
    # raised by each, and episodes held open by the cooldown
    assert sum(s["season_z"] is not None for s in exp["scores"]) > 0.8 * len(exp["scores"])  # 1.3 days warm-up
    assert any(s["out_of_range"] for s in exp["scores"])
    details = [json.loads(a["details"]) for a in exp["alerts"]]
    assert any(d["out_of_range"] for d in details) and any(not d["out_of_range"] for d in details)
    assert any(not s["anomalous"] and s["in_alert"] and abs(s["z"]) < cfg.exit_level
               and abs(s["season_z"] or 0) < cfg.exit_level for s in exp["scores"])


def test_scores_are_the_plain_functions(nab_run):
    _, _, _, got, exp = nab_run
    assert len(got["scores"]) == len(exp["scores"])
    assert got["scores"] == exp["scores"]


def test_alerts_are_the_plain_functions(nab_run):
    _, _, _, got, exp = nab_run
    assert all(a.pop("emitted_at").endswith("Z") for a in got["alerts"])
    assert got["alerts"] == exp["alerts"]


def test_late_rows_go_to_the_side_output(nab_run):
    _, _, _, got, exp = nab_run
    assert got["late"] == exp["late"]
    assert all(r["ts"] <= r["watermark_ms"] for r in got["late"])


def test_dead_letters_and_nothing_dropped(nab_run):
    _, lines, _, got, exp = nab_run
    assert got["dlq"] == exp["dlq"]
    assert sorted(r["reason"] for r in got["dlq"]) == sorted(["malformed_json", "missing_field", "not_object",
                                                              "ts_too_old", "non_finite"])
    readable = 0
    for x in lines:
        try:
            readable += len(an.parse_value(x)[0])
        except ValidationError:
            pass
    assert readable == 2 * SLICE - 300
    assert len(got["scores"]) + len(got["late"]) == readable
    assert not any(r["device_id"] == an.HEARTBEAT_DEVICE for r in got["scores"] + got["late"])


# --------------------------------------------------------------------------- 2. the job's own watermarks
def synthetic_input(seed: int = 5) -> list[str]:
    """4 devices x 2 sensors, 1 reading/s each for 600 s, a seeded 2 % delayed by 60-120 s (past
    the 10 s bound), 1 % with a 12-sigma spike over 4 readings, and unreadable lines."""
    rng = random.Random(seed)
    lines = []
    for t in range(600):
        for d in range(4):
            spike = 12.0 if 300 <= t < 304 and d == 1 else 0.0
            lines.append(record(f"dev-{d}", t, an_ts(t), {"temp_c": 20 + d + rng.gauss(0, 1) + spike,
                                                          "humidity_pct": 40 + rng.gauss(0, 2)}))
    out = list(lines)
    for _ in range(int(0.02 * len(out))):
        j = rng.randrange(len(out) - 500)
        out.insert(j + rng.randint(240, 480), out.pop(j))
    for k in range(3):
        out.insert(400 * (k + 1), "garbage")
    return out


def an_ts(t_s: int) -> int:
    return 1_767_225_600_000 + t_s * 1_000


def test_job_watermark_strategy_at_parallelism_2(tmp_path):
    from pyflink.common import Types  # noqa: PLC0415

    cfg = AnomalyJobSettings(min_samples=20, half_life=100, out_of_orderness_ms=10_000, idleness_ms=1_000,
                             parallelism=2, checkpoint_interval_ms=1_000)
    lines = synthetic_input()
    env = create_stream_env(_conf(cfg, **{"pipeline.auto-watermark-interval": "10 ms"}))
    source = env.from_collection(lines, type_info=Types.STRING()).name("test lines").uid("test-lines")
    an.build(env, cfg, source, _sinks(tmp_path))
    env.execute("test_anomaly_watermarks")
    scores_parts, late = read_output(tmp_path / "scores"), [r for p in read_output(tmp_path / "late") for r in p]
    alerts = [a for p in read_output(tmp_path / "alerts") for a in p]
    dlq = [r for p in read_output(tmp_path / "dlq") for r in p]

    assert [r["reason"] for r in dlq] == ["malformed_json"] * 3
    scored = [(s["device_id"], s["sensor"], s["seq"]) for part in scores_parts for s in part]
    lated = [(r["device_id"], r["sensor"], r["seq"]) for r in late]
    expected = [(json.loads(x)["device_id"], name, json.loads(x)["seq"])
                for x in lines if x != "garbage" for name in json.loads(x)["readings"]]
    assert sorted(scored + lated) == sorted(expected)  # each value exactly once
    max_ts = an_ts(599)
    for r in late:
        assert r["ts"] <= r["watermark_ms"] <= max_ts - cfg.out_of_orderness_ms - 1
    # per key, the scores are the plain functions over what that key's operator scored, in order
    p = an.params(cfg)
    exp_alerts = []
    for part in scores_parts:
        state: dict[str, an.Baseline] = {}
        for s in part:
            r = an.Reading(s["device_id"], s["sensor"], s["seq"], s["ts"], s["value"], s["ingest_ms"])
            key = an.alert_key(r.device_id, r.sensor)
            st = an.step(state.get(key), r, p)
            state[key] = st.state
            assert s == dict(zip([c for c, _ in an.SCORE_COLUMNS], an.score_row(r, st)))
            if st.alert:
                exp_alerts.append(_alert_dict(st.alert, p))
    for a in alerts:
        a.pop("emitted_at")
    assert sorted(alerts, key=lambda a: a["alert_id"]) == sorted(exp_alerts, key=lambda a: a["alert_id"])
    # a key's readings are all scored by one subtask (keyed state only)
    keys_per_part = [{(s["device_id"], s["sensor"]) for s in part} for part in scores_parts]
    assert sum(map(len, keys_per_part)) == len(set().union(*keys_per_part)) == 8


# --------------------------------------------------------------------------- the Kafka job as main() submits it
def test_kafka_job_graph_names_every_operator_and_sink_guarantees():
    """``create_job`` (not executed, no broker needed): every operator has a name and a uid,
    the job's own operators the uids of the module doc; scores, late and dead letters are
    exactly-once with their own transactional id prefixes, alerts at-least-once keyed by id."""
    cfg = AnomalyJobSettings()
    env, _ = an.create_job(cfg)
    graph = env._j_stream_execution_environment.getStreamGraph(False)
    nodes = {n.getTransformationUID(): n.getOperatorName() for n in graph.getStreamNodes().toArray()}
    assert None not in nodes and all(nodes.values())
    assert {"anomaly-source", "anomaly-parse", "anomaly-watermarks", "anomaly-unwrap", "anomaly-score"} <= set(nodes)
    assert all(n.getParallelism() == cfg.parallelism for n in graph.getStreamNodes().toArray())
    sinks = an.kafka_sinks(cfg)
    opts = {name: getattr(sinks, name).get_options() for name in ("scores", "alerts", "late", "dlq")}
    for name, topic in (("scores", "sensor-scores"), ("late", "sensor-anomaly-late"), ("dlq", "sensor-anomaly-dlq")):
        assert opts[name]["topic"] == topic and opts[name]["sink.delivery-guarantee"] == "exactly-once"
        assert opts[name]["sink.transactional-id-prefix"] == f"iotflink-anomaly-{name}"
        assert opts[name]["properties.transaction.timeout.ms"] == "600000"
    assert opts["alerts"]["topic"] == "alerts" and opts["alerts"]["sink.delivery-guarantee"] == "at-least-once"
    assert (opts["alerts"]["key.fields"], opts["scores"]["key.fields"], opts["late"]["key.fields"]) == \
        ("alert_id", "device_id", "device_id")
    assert "key.fields" not in opts["dlq"]
    conf = an.configuration(cfg)
    assert conf["python.execution-mode"] == "thread" and conf["parallelism.default"] == "1"
