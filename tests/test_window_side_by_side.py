"""Two window jobs side by side on the standalone cluster: a tumbling and a sliding instance.

``FlinkCtl.submit("sensor_windows")`` (what ``python -m iotflink.cli job submit sensor_windows``
runs) with ``IOTFLINK_WINDOW_INSTANCE`` set: each job gets its own pipeline name, consumer
group, transactional ids and output topics (created at submission), and both read the same
``sensor-readings``. Readings of two devices, in order (nothing late), then one reading per
device far ahead that fires every window before it; each instance's aggregates equal the
windows of its kind computed from the readings (:func:`iotflink.testing.window_model.windows_of`), and
the default job's topic stays empty.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from iotflink import kafka_io
from iotflink.poll import wait_for
from iotflink.runtime.flinkctl import FlinkCtl
from iotflink.settings import WindowJobSettings
from iotflink.testing import window_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STACK_SERVICES = ("kafka", "flink-jobmanager", "flink-taskmanager")
#: the stack shared with the other modules that opt in (tests/conftest.py), topics of its own
SHARED_STACK = True

BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DEVICES = ("sbs-a", "sbs-b")
COMMON = {"IOTFLINK_OUT_OF_ORDERNESS_MS": "0", "IOTFLINK_ALLOWED_LATENESS_MS": "5000",
          "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": "1000", "IOTFLINK_IDLENESS_MS": "2000",
          "IOTFLINK_WINDOW_SIZE_MS": "10000"}
INSTANCES = {"tum": {**COMMON},
             "hop": {**COMMON, "IOTFLINK_WINDOW_KIND": "sliding", "IOTFLINK_WINDOW_SLIDE_MS": "5000"}}


def _expected(cfg: WindowJobSettings, readings: list[dict], fired_before_ms: int) -> dict[tuple, tuple]:
    out: dict[tuple, list[float]] = {}
    for r in readings:
        for start, end, _ in window_model.windows_of(r["ts"], cfg):
            if end <= fired_before_ms:
                out.setdefault((r["device_id"], "temp", start), []).append(r["readings"]["temp"])
    return {k: (len(v), min(v), max(v)) for k, v in out.items()}


def test_two_window_jobs_side_by_side(stack):
    from kafka import KafkaProducer  # noqa: PLC0415

    ctl = FlinkCtl(stack.s)
    bootstrap = stack.s.kafka_bootstrap
    cfgs = {name: WindowJobSettings.from_env({**stack.s.to_env(), **env, "IOTFLINK_WINDOW_INSTANCE": name})
            for name, env in INSTANCES.items()}
    with ThreadPoolExecutor(max_workers=len(INSTANCES)) as pool:  # the `flink run` clients at once
        futures = {name: pool.submit(ctl.submit, "sensor_windows",
                                     env_overrides={**env, "IOTFLINK_WINDOW_INSTANCE": name})
                   for name, env in INSTANCES.items()}
    jobs = {name: fut.result() for name, fut in futures.items()}
    try:
        for job_id in jobs.values():
            ctl.wait_running(job_id)
        assert {ctl.job(j)["name"] for j in jobs.values()} == {"sensor_windows-tum", "sensor_windows-hop"}
        topics = kafka_io.list_topics(bootstrap)
        assert {t for c in cfgs.values() for t in c.output_topics()} <= topics  # created at submission

        readings = [{"device_id": d, "seq": i, "ts": BASE + i * 1_000, "readings": {"temp": float(i % 7)},
                     "ingest_ms": 0} for i in range(40) for d in DEVICES]
        ahead = [{"device_id": d, "seq": 1_000, "ts": BASE + 100_000, "readings": {"temp": 0.0}, "ingest_ms": 0}
                 for d in DEVICES]
        prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", key_serializer=str.encode,
                             value_serializer=lambda v: json.dumps(v).encode())
        try:
            for r in readings + ahead:
                prod.send(stack.s.topics.readings, key=r["device_id"], value=r)
            prod.flush()
        finally:
            prod.close()

        for name, cfg in cfgs.items():
            expected = _expected(cfg, readings, BASE + 45_000)
            assert len(expected) == (4 if name == "tum" else 9) * len(DEVICES)

            def got(c=cfg) -> dict[tuple, tuple]:
                aggs = kafka_io.latest_by_key(kafka_io.read_topic(bootstrap, c.topics.aggregates)).values()
                return {(a["device_id"], a["sensor"], a["window_start_ms"]): (a["count"], a["min"], a["max"])
                        for a in aggs}

            wait_for(lambda e=expected, g=got: g() == e, 120, interval_s=1.0,
                     what=f"the aggregates of instance {name}")
            assert kafka_io.read_topic(bootstrap, cfg.topics.late) == []
        # each instance commits the offsets it read under its own consumer group (on checkpoints)
        def caught_up(group: str) -> bool:
            lag = kafka_io.consumer_lag(bootstrap, group, stack.s.topics.readings)
            return all(p["lag"] == 0 for p in lag.values() if p["end"] > 0)

        for cfg in cfgs.values():
            wait_for(lambda g=cfg.consumer_group: caught_up(g), 60, interval_s=1.0,
                     what=f"consumer group {cfg.consumer_group} to commit every offset")
        assert kafka_io.read_topic(bootstrap, stack.s.topics.aggregates) == []  # no default job ran
    finally:
        for job_id in jobs.values():
            ctl.cancel(job_id)
