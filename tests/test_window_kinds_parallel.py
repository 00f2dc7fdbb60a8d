"""Sliding windows at parallelism 2 on Kafka: the late split per (value, window) pair is exact.

The set-up of ``tests/test_window_parallel.py`` (its writer, topics and watermark wait are
reused: real Kafka with four-partition topics, the job exactly as ``main()`` builds it on a
local MiniCluster with its REST API on a free port, no idle timeout, the bridge's watermark
heartbeats written by the test), with sliding windows of 10 s every 5 s (two windows per
value), allowed lateness 5 s, out-of-orderness 1 s. Phases, event time from ``BASE``:

1. 0-30 s on partitions 0-2 in order: nothing late; heartbeats raise the quiet partitions,
   the test waits until every vertex's input watermark is 29.5 s - 1 s.
2. ``dA`` alone to 83 s, heartbeats raise the others to 83 s; wait for watermark 82 s.
3. ``dB`` and ``dC`` come back with readings from 40 s to 83 s (and ``dA`` goes on at or below
   83 s): the watermark cannot move, so each pair is judged at exactly 82 s: late iff its
   window's cleanup time (start + 10 s - 1 + 5 s) is <= 82 s. Readings in [65 s, 70 s) are
   late for their window starting at 60 s and on time for the one starting at 65 s.
4. heartbeats far ahead fire every window.

Asserted: the late pairs are exactly the reference's, every aggregate equals its window's values
minus its late pairs, and the window operator's ``numLateRecordsDropped`` is 0.
"""

from __future__ import annotations

import time

import pytest

from iotflink import kafka_io
from iotflink.poll import wait_for
from iotflink.testing import window_model
from tests.test_window_parallel import BASE, OOO, PARTITIONS, _wait_watermark, start_job

pytestmark = [pytest.mark.integration, pytest.mark.minicluster, pytest.mark.slow, pytest.mark.timeout(600)]

STACK_SERVICES = ("kafka",)
#: the stack shared with the other modules that opt in (tests/conftest.py), topics of its own
SHARED_STACK = True

SIZE, SLIDE, LATENESS = 10_000, 5_000, 5_000
S = 1_000


def test_sliding_late_pairs_are_exact_at_parallelism_2(stack):
    cfg, ctl, client, job_id, writer = start_job(stack, f"hop2-{time.monotonic_ns()}", 2, window_kind="sliding",
                                                 window_size_ms=SIZE, window_slide_ms=SLIDE,
                                                 allowed_lateness_ms=LATENESS)
    bootstrap, topics = stack.s.kafka_bootstrap, cfg.topics
    expected_late: set[tuple] = set()  # (device, seq, sensor, window_start_ms)
    try:
        wait_for(lambda: ctl.job(job_id)["state"] == "RUNNING", 120, interval_s=0.5, what="the job RUNNING")
        now = 0
        for i in range(30):  # 1. in order
            for dev, off in (("dA", 0), ("dB", 500), ("dC", 250)):
                writer.reading(dev, i * S + off, now)
        now += 6_000
        writer.tick(now)
        writer.flush()
        _wait_watermark(ctl, job_id, BASE + 29_500 - OOO)
        now += 1_000  # 2. dA runs ahead
        for t in range(30 * S, 83 * S + 1, 500):
            writer.reading("dA", t, now)
        now += 1_000
        assert writer.tick(now) == {1: BASE + 83_000, 2: BASE + 83_000, 3: BASE + 83_000}
        writer.flush()
        w = BASE + 83_000 - OOO
        _wait_watermark(ctl, job_id, w)
        now += 1_000  # 3. judged at exactly w
        for k in range(44):
            for dev, t in (("dB", 40 * S + k * 977), ("dC", 55 * S + k * 613), ("dA", 70 * S + k * 300)):
                rec = writer.reading(dev, min(t, 83 * S), now)
                for start, end, _ in window_model.windows_of(rec["ts"], cfg):
                    if window_model.window_is_late(end, w, LATENESS):
                        expected_late |= {(dev, rec["seq"], s, start) for s in rec["readings"]}
        assert writer.tick(now) == {}
        writer.flush()
        for part in range(PARTITIONS):  # 4. everything fires
            writer.heartbeat(part, BASE + 1_000 * S)
        writer.flush()
        _wait_watermark(ctl, job_id, BASE + 1_000 * S - OOO)
        pairs = sum(len(r["readings"]) * len(window_model.windows_of(r["ts"], cfg)) for r in writer.readings)

        def complete() -> bool:
            aggs = kafka_io.latest_by_key(kafka_io.read_topic(bootstrap, topics.aggregates))
            return sum(a["count"] for a in aggs.values()) + len(kafka_io.read_topic(bootstrap, topics.late)) >= pairs

        wait_for(complete, 120, interval_s=1.0, what="every pair in an aggregate or in sensor-late")
        dropped = ctl.operator_metric_sum(job_id, "GroupWindowAggregate", "numLateRecordsDropped")
    finally:
        writer.close()
        client.cancel().result()

    late = [r["value"] for r in kafka_io.read_topic(bootstrap, topics.late)]
    got_late = [(r["device_id"], r["seq"], r["sensor"], r["window_start_ms"]) for r in late]
    assert len(got_late) == len(set(got_late))
    # the data has values late for one of their windows and on time for the other
    by_value: dict[tuple, int] = {}
    for d, s, x, _ in expected_late:
        by_value[(d, s, x)] = by_value.get((d, s, x), 0) + 1
    assert len(expected_late) > 40 and sum(1 for n in by_value.values() if n == 1) > 5
    assert set(got_late) == expected_late
    expected: dict[tuple, list[float]] = {}
    for r in writer.readings:
        for sensor, value in r["readings"].items():
            for start, _, _ in window_model.windows_of(r["ts"], cfg):
                if (r["device_id"], r["seq"], sensor, start) not in expected_late:
                    expected.setdefault((r["device_id"], sensor, start), []).append(value)
    aggs = kafka_io.latest_by_key(kafka_io.read_topic(bootstrap, topics.aggregates)).values()
    got = {(a["device_id"], a["sensor"], a["window_start_ms"]): (a["count"], a["min"], a["max"]) for a in aggs}
    assert got == {k: (len(v), min(v), max(v)) for k, v in expected.items()}
    assert dropped == 0, f"numLateRecordsDropped {dropped}"
