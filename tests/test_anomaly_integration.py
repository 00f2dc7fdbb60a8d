"""Integration test of ``jobs/anomaly`` on the real stack (Kafka, Flink JobManager and
TaskManager on free ports): submitted with ``flink run -py`` as ``main()`` wires it (Kafka
source, exactly-once Kafka sinks, Python functions embedded in the TaskManager), fed a NAB
slice straight into ``sensor-readings``, ended by the project's bounded-replay drain.

Checks, each independent of processing-time timing: every unreadable record (a record
without a value, bytes that are not UTF-8, text that is not JSON) is in the job's dead-letter
topic with its reason; a reading produced after the score operator's watermark (read from the
REST API) passed it is in ``sensor-anomaly-late``; every other reading is scored exactly once,
and the scores and alerts read back from Kafka are the plain functions' over the scored
readings in their order; alerts carry the ``alerts`` table's fields, keyed by ``alert_id``;
the job finished with no restart.
"""

from __future__ import annotations

import csv
import json
import time
from datetime import UTC, datetime

import pytest

from iotflink import kafka_io
from iotflink.poll import wait_for
from iotflink.runtime.flinkctl import FlinkCtl
from iotflink.settings import PROJECT_ROOT, AnomalyJobSettings
from jobs import anomaly as an

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STACK_SERVICES = ("kafka", "flink-jobmanager", "flink-taskmanager")
#: the stack shared with the other modules that opt in (tests/conftest.py), topics of its own
SHARED_STACK = True
NAB = PROJECT_ROOT / "data" / "nab" / "machine_temperature_system_failure.csv"
SHIFT_MS = 626 * 7 * 86_400_000  # whole weeks: NAB's 2013-2014 past the schema's 2020 floor
N_ROWS = 1_500
OVERRIDES = {"IOTFLINK_ANOMALY_CHECKPOINT_INTERVAL_MS": "2000", "IOTFLINK_ANOMALY_THRESHOLD": "3.5"}


def _readings() -> list[dict]:
    with NAB.open(newline="") as f:
        rows = list(csv.DictReader(f))[:N_ROWS]
    out = []
    for i, r in enumerate(rows):
        ts = int(datetime.fromisoformat(r["timestamp"]).replace(tzinfo=UTC).timestamp() * 1000) + SHIFT_MS
        out.append({"device_id": "nab-machine", "seq": i, "ts": ts, "readings": {"temp": float(r["value"])},
                    "ingest_ms": ts + 100})
    return out


def test_anomaly_job_on_kafka(stack):
    from kafka import KafkaProducer  # noqa: PLC0415

    s = stack.s
    cfg = AnomalyJobSettings.from_env({**s.to_env(), **OVERRIDES})
    # the stack created the job's topics with the others (Topics.all())
    assert {cfg.scores_topic, cfg.late_topic, cfg.dlq_topic} <= kafka_io.list_topics(s.kafka_bootstrap)
    ctl = FlinkCtl(s)
    job_id = ctl.submit("anomaly", env_overrides=OVERRIDES)
    ctl.wait_running(job_id)

    readings = _readings()
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    key = b"nab-machine"  # one partition: the job reads the device's records in this order
    for i, v in enumerate(readings):
        producer.send(s.topics.readings, json.dumps(v).encode(), key=key)
        if i == 700:
            producer.send(s.topics.readings, None, key=key)                # no value (tombstone)
            producer.send(s.topics.readings, b"\xff\xfe not utf-8", key=key)
            producer.send(s.topics.readings, b"{broken", key=key)
    producer.flush()
    # once the score operator's watermark has passed reading 1000, a copy of it is late
    old = dict(readings[1000], seq=99_999)
    score_vertex = lambda: next((w for name, w in ctl.input_watermarks(job_id).items()  # noqa: E731
                                 if name.startswith("z-score")), None)
    wait_for(lambda: (score_vertex() or an.NO_WATERMARK) >= old["ts"], 120)
    producer.send(s.topics.readings, json.dumps(old).encode(), key=key)
    producer.flush()
    producer.close()
    ctl.drain_bounded_replay(job_id, s.kafka_bootstrap, s.topics.readings, readings[-1]["ts"], timeout_s=240)

    health = [h for h in ctl.job_health() if h.job_id == job_id]
    assert health and health[0].state == "FINISHED" and health[0].restarts == 0, health
    dlq = [r["value"] for r in kafka_io.read_topic(s.kafka_bootstrap, cfg.dlq_topic)]
    # no key: the records may land in any partitions of the topic, so no order across them
    assert sorted([(d["reason"], d["raw"] or "") for d in dlq]) == sorted(
        [("no_value", ""), ("malformed_json", "\ufffd\ufffd not utf-8"), ("malformed_json", "{broken")])
    assert [d["raw"] for d in dlq if d["reason"] == "no_value"] == [None]
    late = [r["value"] for r in kafka_io.read_topic(s.kafka_bootstrap, cfg.late_topic)]
    assert {(r["seq"], r["ts"]) for r in late} >= {(99_999, old["ts"])}
    assert all(r["ts"] <= r["watermark_ms"] for r in late)
    scores = [r for r in kafka_io.read_topic(s.kafka_bootstrap, cfg.scores_topic)]
    assert {r["key"] for r in scores} == {"nab-machine"}
    scores = [r["value"] for r in scores]
    assert sorted([(r["seq"], r["ts"]) for r in scores + late]) == \
        sorted([(v["seq"], v["ts"]) for v in readings] + [(99_999, old["ts"])])
    # the scores and alerts are the plain functions' over the scored readings, in order
    # (one device, one partition: the topic's order is the job's)
    p = an.params(cfg)
    state, exp_alerts = None, []
    for got in scores:
        r = an.Reading(got["device_id"], got["sensor"], got["seq"], got["ts"], got["value"], got["ingest_ms"])
        step = an.step(state, r, p)
        state = step.state
        assert got == dict(zip([c for c, _ in an.SCORE_COLUMNS], an.score_row(r, step)))
        if step.alert:
            exp_alerts.append(step.alert)
    # keyed by alert_id: one partition per id, so no order across alerts; each alert once
    alerts = sorted(kafka_io.read_topic(s.kafka_bootstrap, s.topics.alerts), key=lambda a: a["key"])
    exp_alerts.sort(key=lambda a: a.alert_id)
    assert exp_alerts and [a["key"] for a in alerts] == [a.alert_id for a in exp_alerts]
    for rec, exp in zip(alerts, exp_alerts):
        a = rec["value"]
        assert set(a) == {c for c, _ in an.ALERT_COLUMNS}
        assert (a["alert_id"], a["rule_id"], a["alert_key"], a["detection_ms"]) == \
            (exp.alert_id, "zscore_anomaly", "nab-machine/temp", exp.detection_ms)
        assert a["events"] == [e._asdict() for e in exp.events] and a["details"] == an.alert_details(exp, p)
        emitted = datetime.strptime(a["emitted_at"], "%Y-%m-%d %H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert abs(emitted.timestamp() - time.time()) < 3_600
