"""Integration test: the real stack on free ports, a slice of the real NAB file
through MQTT -> bridge -> Kafka -> ``jobs/sensor_windows`` on the Flink standalone cluster,
and the aggregates read back from Kafka compared with values this test computes on its own
from the CSV file.

The slice spans NAB's repeated hour (2014-01-07 02:00-02:55 appears twice: real out-of-order
data), so some values arrive an hour behind the watermark. Which of them the job routes to
``sensor-late`` depends on when the periodic watermark reached the job (processing time), so
the test does not guess that set: it checks that it only holds values of the repeated hour,
and that every window's aggregate equals the independent aggregate of the file's values in
that window less exactly the values found in ``sensor-late``.

The job runs as ``make demo`` runs it: parallelism 2 without an idle timeout; the bridge's
watermark heartbeats carry the event time to the three partitions the one device does not
write (``iotflink.kafka_io.PartitionClock``), so its windows fire; ``numLateRecordsDropped`` of
the window operator is 0.
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime

import pytest

from iotflink import kafka_io
from iotflink.poll import wait_for
from iotflink.runtime.flinkctl import FlinkCtl
from iotflink.settings import PROJECT_ROOT
from iotflink.simulation.demo import DEFAULT_PARALLELISM, window_job_env
from iotflink.simulation.replay import WEEK_MS, build_messages, publish

pytestmark = pytest.mark.integration

NAB = PROJECT_ROOT / "data" / "nab" / "machine_temperature_system_failure.csv"
WINDOW_MS = 3_600_000      # 1 h windows: 12 NAB readings each
LATENESS_MS = 120_000
FIRST_ROW, N_ROWS = 10_000, 600  # rows 10,000..10,599 of the file include the repeated hour


def _file_rows() -> list[tuple[int, float]]:
    """(epoch ms UTC, value) of the slice, straight from the CSV (independent of the replayer)."""
    with open(NAB, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows[FIRST_ROW:FIRST_ROW + N_ROWS]:
        dt = datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        out.append((int(dt.timestamp() * 1000), float(row["value"])))
    return out


def test_nab_slice_aggregates_match_independent_computation(stack):
    cfg = stack.s
    ctl = FlinkCtl(cfg)
    job_id = ctl.submit("sensor_windows", env_overrides={
        **window_job_env(DEFAULT_PARALLELISM),
        "IOTFLINK_WINDOW_SIZE_MS": str(WINDOW_MS),
        "IOTFLINK_ALLOWED_LATENESS_MS": str(LATENESS_MS),
        "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": "5000",
    })
    ctl.wait_running(job_id)

    file_rows = _file_rows()
    all_msgs = build_messages(["nab"], limit=FIRST_ROW + N_ROWS)
    msgs = all_msgs[FIRST_ROW:]
    assert len(msgs) == N_ROWS
    shift = msgs[0].ts_ms - file_rows[0][0]
    assert shift % WEEK_MS == 0, "the replayer shifts by whole weeks"
    # the replayer sends the file's values, in file order, at the file's times (+ shift)
    assert [(m.ts_ms - shift, m.readings["temp"]) for m in msgs] == file_rows

    creds = stack.provision(sorted({m.device_id for m in msgs}))
    result = publish(msgs, cfg.mqtt_host, cfg.mqtt_port, credentials=creds, ca_file=cfg.mqtt_ca_file)
    assert result["acked"] == N_ROWS
    wait_for(lambda: stack.bridge_stats()["forwarded"] >= N_ROWS, 120, what="bridge to forward")
    wait_for(lambda: ctl.source_records_read(job_id) >= N_ROWS, 180, what="job source to read all")
    # the windows before the last ones fire on the heartbeats' watermark, before the drain
    first_end = shift + file_rows[0][0] - file_rows[0][0] % WINDOW_MS + WINDOW_MS
    wait_for(lambda: any(a["window_end_ms"] == first_end for a in kafka_io.latest_by_key(
        kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.aggregates)).values()), 120,
        what="the first window to fire before the drain")
    dropped = ctl.operator_metric_sum(job_id, "GroupWindowAggregate", "numLateRecordsDropped")
    ctl.drain_bounded_replay(job_id, cfg.kafka_bootstrap, cfg.topics.readings, max(m.ts_ms for m in msgs))
    assert dropped == 0

    readings = [r for r in kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.readings)
                if not kafka_io.is_heartbeat(r["value"])]
    # the bridge delivers at least once: a redelivered copy is the same (device_id, seq)
    assert len({(r["value"]["device_id"], r["value"]["seq"]) for r in readings}) == N_ROWS
    assert {r["key"] for r in readings} == {"nab-machine"}
    late = [r["value"] for r in kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.late)]
    aggs = kafka_io.latest_by_key(kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.aggregates))

    # every value is counted once: in an aggregate or in sensor-late
    assert sum(a["count"] for a in aggs.values()) + len(late) == N_ROWS

    # the repeated hour: times that appear twice in the slice; only they can be late
    seen, repeated = set(), set()
    for ts, _ in file_rows:
        (repeated if ts in seen else seen).add(ts)
    assert repeated, "the slice must include NAB's repeated hour"
    late_keys = sorted((r["ts"] - shift, r["value"]) for r in late)
    assert all(ts in repeated for ts, _ in late_keys), late_keys

    # independent aggregation of the file slice, less the late values
    remaining = list(file_rows)
    for item in late_keys:
        remaining.remove(item)
    expected: dict[int, list[float]] = {}
    for ts, value in remaining:
        expected.setdefault(ts - ts % WINDOW_MS, []).append(value)
    got = {a["window_start_ms"] - shift: a for a in aggs.values()}
    assert sorted(got) == sorted(expected)
    for start, values in expected.items():
        agg = got[start]
        assert agg["sensor"] == "temp" and agg["device_id"] == "nab-machine"
        assert agg["window_end_ms"] - agg["window_start_ms"] == WINDOW_MS
        assert agg["count"] == len(values)
        assert agg["min"] == pytest.approx(min(values))
        assert agg["max"] == pytest.approx(max(values))
        assert math.isclose(agg["mean"], sum(values) / len(values), rel_tol=1e-9)
