"""Savepoint upgrade of ``jobs/sensor_windows``, and the sinks' exactly-once guarantee
asserted on the job's actual plan and on the running cluster.

Upgrade (integration, real stack on free ports; readings are produced to ``sensor-readings``
directly, keyed and shaped as the bridge writes them):

1. v1 (``IOTFLINK_LATE_WATERMARK_COLUMN=false``) and an uninterrupted reference job (same
   settings, its own consumer group, output topics and transactional ids) both run.
2. Part 1 of the readings (with duplicates) is produced; v1 reads it. Windows now hold partial
   state (the window [60 s, 120 s) has 40 of its 60 readings); v1 is stopped with a savepoint,
   without drain (no window fires on the way out).
3. v2 = the same job with ``IOTFLINK_LATE_WATERMARK_COLUMN=true``: sensor-late rows get a
   ``watermark`` column. The change touches only the late branch's Calc: every exec node
   keeps its id, so every operator keeps its uid (``table.exec.uid.generation=ALWAYS``,
   ``<id>_<transformation>``) and v2 is submitted from the savepoint **without**
   ``--allowNonRestoredState``: Flink refuses the restore if any state cannot be mapped
   (with the flag it would drop that state silently). Compared below: the node ids and types
   of v1's and v2's compiled plans.
4. Part 2 is produced (more readings, copies of part-1 readings, one reading past the
   allowed lateness); both jobs are drained.
5. v2's aggregates equal the reference job's, record by record, and equal the model's (counts
   include the part-1 values: the window state was carried over); the copies of part-1
   readings sent after the restore are in sensor-duplicates (the dedup state was carried
   over too); the late reading has ``watermark`` in v2's output only.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from iotflink import kafka_io
from iotflink.poll import wait_for
from iotflink.runtime.flinkctl import FlinkCtl
from iotflink.runtime.stack import Stack
from iotflink.settings import PROJECT_ROOT, WindowJobSettings
from jobs import sensor_windows as sw

BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z, aligned to the 60 s windows
WINDOW_MS, LATENESS_MS, OOO_MS = 60_000, 120_000, 10_000
DEVICES = ("sp-a", "sp-b")
SPLIT = 100  # readings 0..99 before the savepoint, 100..199 after
PARTITIONS = 4  # of sensor-readings (Topics.readings_partitions)

#: Settings shared by every run of the job here (v1, v2, reference).
JOB_ENV = {
    "IOTFLINK_WINDOW_SIZE_MS": str(WINDOW_MS),
    "IOTFLINK_ALLOWED_LATENESS_MS": str(LATENESS_MS),
    "IOTFLINK_OUT_OF_ORDERNESS_MS": str(OOO_MS),
    "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": "2000",
    "IOTFLINK_JOB_PARALLELISM": "1",  # one slot each: v1/v2 and the reference run side by side
    # no partition ever goes idle (every partition gets readings, see _produce): observed on
    # this stack, once every split was idle the MAX watermark of stop-with-savepoint --drain
    # did not fire the last window (job FINISHED, window [180 s, 240 s) never written)
    "IOTFLINK_IDLENESS_MS": "600000",
}


def _reading(device: str, i: int) -> dict:
    return {"device_id": device, "seq": i, "ts": BASE + i * 1_000,
            "readings": {"temp": float(i % 17) + 0.5, "hum": float(i % 5)}, "ingest_ms": 0}


def _part1() -> list[dict]:
    out = []
    for i in range(SPLIT):
        for d in DEVICES:
            out.append(_reading(d, i))
            if i % 10 == 3:  # QoS 1 redelivery right after
                out.append(_reading(d, i))
    return out


def _part2() -> list[dict]:
    out = []
    for i in range(SPLIT, 2 * SPLIT):
        for d in DEVICES:
            out.append(_reading(d, i))
        if i % 20 == 0:  # copies of part-1 readings, redelivered after the restore
            out.append(_reading(DEVICES[0], i - SPLIT + 1))
    return out


def _model(events: list[dict], late_ids: set[tuple[str, int]]) -> dict[tuple, dict]:
    """Aggregates of the first copies, minus the readings in ``late_ids``."""
    seen, values = set(), {}
    for e in events:
        key = (e["device_id"], e["seq"])
        if key in seen or key in late_ids:
            seen.add(key)
            continue
        seen.add(key)
        start = e["ts"] - e["ts"] % WINDOW_MS
        for sensor, v in e["readings"].items():
            values.setdefault((e["device_id"], sensor, start), []).append(v)
    return {k: {"count": len(v), "min": min(v), "max": max(v), "mean": sum(v) / len(v)} for k, v in values.items()}


def _produce(bootstrap: str, topic: str, events: list[dict]) -> None:
    from kafka import KafkaProducer  # noqa: PLC0415

    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", key_serializer=str.encode,
                         value_serializer=lambda v: json.dumps(v).encode())
    try:
        for e in events:  # round robin over the partitions by seq: each one's ts still increase
            prod.send(topic, key=e["device_id"], value=e, partition=e["seq"] % PARTITIONS)
        prod.flush()
    finally:
        prod.close()


def _create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    kafka_io.create_topics(bootstrap, dict.fromkeys(names, partitions))


def _broker_max_txn_timeout_ms(stack: Stack) -> int:
    """``transaction.max.timeout.ms`` of the running broker, from the properties file it was
    started with (``<run_dir>/kafka/server.properties``; kafka-python's describe_configs
    answered an empty config here)."""
    props = (stack.run_dir / "kafka" / "server.properties").read_text()
    return int(re.search(r"^transaction\.max\.timeout\.ms=(\d+)", props, re.M).group(1))


def _sink_options(plan: dict) -> dict[str, dict]:
    """Sink table name -> its resolved connector options, from a compiled plan."""
    out = {}
    for node in plan["nodes"]:
        if node["type"].startswith("stream-exec-sink"):
            table = node["dynamicTableSink"]["table"]
            out[table["identifier"].rsplit(".", 1)[-1].strip("`")] = table["resolvedTable"]["options"]
    return out


def _assert_exactly_once(plan: dict, broker_max_ms: int) -> dict[str, dict]:
    sinks = _sink_options(plan)
    assert set(sinks) == {"aggregates", "late", "duplicates", "dlq"}
    prefixes = set()
    for name, opts in sinks.items():
        assert opts["connector"] in ("kafka", "upsert-kafka"), name
        assert opts["sink.delivery-guarantee"] == "exactly-once", name
        assert opts["sink.transactional-id-prefix"], name
        prefixes.add(opts["sink.transactional-id-prefix"])
        assert 0 < int(opts["properties.transaction.timeout.ms"]) < broker_max_ms, name
    assert len(prefixes) == len(sinks)  # no two sinks share transactional ids
    return sinks


def _plan_of(env: dict[str, str]) -> dict:
    _, stmts = sw.create_job(WindowJobSettings.from_env(env))
    return sw.compiled_plan(stmts)


# --------------------------------------------------------------------------- fast: plan only
@pytest.mark.minicluster
def test_every_sink_is_exactly_once_in_the_compiled_plan():
    """The plan ``main()`` submits with the default settings: every sink EXACTLY_ONCE, with its
    own transactional id prefix, and a transaction timeout below the broker's cap configured
    in ``deploy/kafka-server.properties`` (the live broker is checked in the upgrade test)."""
    props = (PROJECT_ROOT / "deploy" / "kafka-server.properties").read_text()
    broker_max = int(re.search(r"^transaction\.max\.timeout\.ms=(\d+)", props, re.M).group(1))
    sinks = _assert_exactly_once(_plan_of({}), broker_max)
    assert sinks["aggregates"]["sink.transactional-id-prefix"] == "iotflink-sensor-windows-aggregates"


@pytest.mark.minicluster
def test_upgrade_change_keeps_every_exec_node_id():
    """v1 -> v2 changes only the late Calc: same node ids and types in the same order, so the
    generated uids (``<id>_<transformation>``) are the same; the late sink gains a column."""
    def shape(env):
        plan = _plan_of(env)
        return [(n["id"], n["type"]) for n in plan["nodes"]], _sink_options(plan)
    # each compile continues the JVM's node id counter, so compare ids relative to the first
    (v1_nodes, _), (v2_nodes, _) = shape({**JOB_ENV}), shape({**JOB_ENV, "IOTFLINK_LATE_WATERMARK_COLUMN": "true"})
    rel = lambda nodes: [(i - nodes[0][0], t) for i, t in nodes]  # noqa: E731
    assert rel(v1_nodes) == rel(v2_nodes)


# --------------------------------------------------------------------------- integration
#: Services of the module's ``stack`` fixture (tests/conftest.py).
STACK_SERVICES = ('kafka', 'flink-jobmanager', 'flink-taskmanager')
#: the stack shared with the other modules that opt in (tests/conftest.py), topics of its own
SHARED_STACK = True


def _wait_read(ctl: FlinkCtl, job_id: str, n: int) -> None:
    wait_for(lambda: ctl.source_records_read(job_id) >= n, 120, what=f"job {job_id} to read {n} records")


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_upgrade_from_savepoint_carries_window_and_dedup_state(stack):
    cfg = stack.s
    ctl = FlinkCtl(cfg)
    bootstrap = cfg.kafka_bootstrap
    ref_topics = {"IOTFLINK_TOPIC_AGGREGATES": f"{cfg.topics.aggregates}-ref",
                  "IOTFLINK_TOPIC_LATE": f"{cfg.topics.late}-ref",
                  "IOTFLINK_TOPIC_DUPLICATES": f"{cfg.topics.duplicates}-ref"}
    assert cfg.topics.readings_partitions == PARTITIONS
    _create_topics(bootstrap, list(ref_topics.values()), PARTITIONS)
    ref_env = {**JOB_ENV, **ref_topics, "IOTFLINK_CONSUMER_GROUP": "sp-ref", "IOTFLINK_WINDOW_TXN_ID_PREFIX": "sp-ref"}
    v1_env = {**JOB_ENV, "IOTFLINK_CONSUMER_GROUP": "sp-main", "IOTFLINK_WINDOW_TXN_ID_PREFIX": "sp-main"}
    v2_env = {**v1_env, "IOTFLINK_LATE_WATERMARK_COLUMN": "true"}

    # the plan that runs: exactly-once sinks, timeouts below the live broker's cap
    broker_max = _broker_max_txn_timeout_ms(stack)
    _assert_exactly_once(_plan_of({**cfg.to_env(), **v2_env}), broker_max)

    with ThreadPoolExecutor(max_workers=2) as pool:  # two `flink run` clients at once
        ref_f, v1_f = (pool.submit(ctl.submit, "sensor_windows", env_overrides=e) for e in (ref_env, v1_env))
        ref, v1 = ref_f.result(), v1_f.result()
    ctl.wait_running(ref)
    ctl.wait_running(v1)
    p1, p2 = _part1(), _part2()
    _produce(bootstrap, cfg.topics.readings, p1)
    _wait_read(ctl, v1, len(p1))
    t0 = time.monotonic()
    savepoint = ctl.stop_with_savepoint(v1, drain=False)
    assert Path(savepoint.removeprefix("file:")).exists()
    # nothing of the window [60 s, 120 s) was emitted by v1: its state was partial
    before = kafka_io.latest_by_key(kafka_io.read_topic(bootstrap, cfg.topics.aggregates))
    assert {a["window_start_ms"] for a in before.values()} <= {BASE}  # at most [0, 60 s) fired

    v2 = ctl.submit("sensor_windows", savepoint=savepoint, allow_non_restored=False, env_overrides=v2_env)
    ctl.wait_running(v2)
    # polled: the REST API serves a cached view of the job (web.refresh-interval), which may
    # predate the restore statistics
    restored: dict = {}
    wait_for(lambda: restored.update((ctl.checkpoints(v2).get("latest") or {}).get("restored") or {})
             or bool(restored), 30, what=f"restore statistics of {v2}")
    assert restored["external_path"].rstrip("/").endswith(Path(savepoint).name)
    downtime_s = time.monotonic() - t0

    _produce(bootstrap, cfg.topics.readings, p2)
    _wait_read(ctl, v2, len(p2))
    _wait_read(ctl, ref, len(p1) + len(p2))
    # a reading past the allowed lateness, once both jobs' watermarks passed 180 s (their
    # window [120 s, 180 s) is committed): window [0, 60 s) closed at 179.999 s
    last = BASE + 2 * WINDOW_MS
    for topic in (cfg.topics.aggregates, ref_topics["IOTFLINK_TOPIC_AGGREGATES"]):
        wait_for(lambda t=topic: any(a["window_start_ms"] == last for a in
                                     kafka_io.latest_by_key(kafka_io.read_topic(bootstrap, t)).values()),
                 120, what=f"window {last} in {topic}")
    late_reading = {**_reading(DEVICES[1], 10_000), "ts": BASE + 5_000}
    _produce(bootstrap, cfg.topics.readings, [late_reading])
    _wait_read(ctl, v2, len(p2) + 1)
    _wait_read(ctl, ref, len(p1) + len(p2) + 1)
    with ThreadPoolExecutor(max_workers=2) as pool:  # both stopped at once
        for fut in [pool.submit(ctl.stop_with_savepoint, j, drain=True) for j in (v2, ref)]:
            fut.result()
    # the savepoint completes before the sinks' last transactions are committed (on its
    # completion notification): wait until both jobs FINISHED and the drained window is visible
    final_window = BASE + 3 * WINDOW_MS
    for job, topic in ((v2, cfg.topics.aggregates), (ref, ref_topics["IOTFLINK_TOPIC_AGGREGATES"])):
        ctl.wait_state(job, {"FINISHED"}, timeout_s=60)
        wait_for(lambda t=topic: any(a["window_start_ms"] == final_window for a in
                                     kafka_io.latest_by_key(kafka_io.read_topic(bootstrap, t)).values()),
                 60, what=f"drained window {final_window} in {topic}")

    def outputs(aggs_topic, late_topic, dups_topic):
        aggs = {(a["device_id"], a["sensor"], a["window_start_ms"]): a
                for a in kafka_io.latest_by_key(kafka_io.read_topic(bootstrap, aggs_topic)).values()}
        late = [r["value"] for r in kafka_io.read_topic(bootstrap, late_topic)]
        dups = sorted((r["value"]["device_id"], r["value"]["seq"], r["value"]["copy_no"])
                      for r in kafka_io.read_topic(bootstrap, dups_topic))
        return aggs, late, dups

    aggs, late, dups = outputs(cfg.topics.aggregates, cfg.topics.late, cfg.topics.duplicates)
    r_aggs, r_late, r_dups = outputs(*ref_topics.values())

    # state carried over: the upgraded job's windows equal the uninterrupted job's, and the model's
    assert aggs == r_aggs
    model = _model(p1 + p2 + [late_reading], {(late_reading["device_id"], late_reading["seq"])})
    assert {k: (a["count"], a["min"], a["max"]) for k, a in aggs.items()} == \
        {k: (m["count"], m["min"], m["max"]) for k, m in model.items()}
    for k, m in model.items():
        assert aggs[k]["mean"] == pytest.approx(m["mean"], rel=1e-12)
    split_window = (DEVICES[0], "temp", BASE + WINDOW_MS)
    assert aggs[split_window]["count"] == 60  # 40 readings before the savepoint, 20 after
    # dedup state carried over: copies of part-1 readings sent after the restore were dropped
    exp_dups = sorted([(d, i, 2) for i in range(SPLIT) if i % 10 == 3 for d in DEVICES]
                      + [(DEVICES[0], i - SPLIT + 1, 2) for i in range(SPLIT, 2 * SPLIT) if i % 20 == 0])
    assert dups == r_dups == exp_dups
    # the compatible change: the late value carries `watermark` in v2 only
    assert [(r["device_id"], r["ts"], r["sensor"]) for r in sorted(late, key=lambda r: r["sensor"])] == \
        [(DEVICES[1], BASE + 5_000, "hum"), (DEVICES[1], BASE + 5_000, "temp")]
    for r in late:  # the watermark that judged it: at or past the window's cleanup time
        wm = datetime.fromisoformat(r["watermark"].removesuffix("Z")).replace(tzinfo=UTC)  # ".SSS" optional
        assert int(wm.timestamp() * 1000) >= BASE + WINDOW_MS - 1 + LATENESS_MS
    assert all("watermark" not in r for r in r_late) and len(r_late) == 2
    print(f"savepoint {savepoint}; stop -> restored and running in {downtime_s:.1f} s")

    # what the cluster actually ran: the Kafka producers' transactional ids and timeout
    logs = "".join(p.read_text(errors="replace") for p in stack.log_dir.glob("*taskexecutor*.log"))
    if logs:
        for role in ("aggregates", "late", "duplicates", "dlq"):
            assert re.search(rf"transactional\.id = sp-main-{role}-", logs), role
        # this test's producers only (the stack may be shared with other modules' jobs): in Kafka's
        # alphabetical config dump the timeout comes two lines before the transactional id
        timeouts = {int(x) for x in re.findall(
            r"transaction\.timeout\.ms = (\d+)\n[^\n]*\n\s*transactional\.id = sp-main-", logs)}
        assert timeouts and all(t < broker_max for t in timeouts), timeouts
