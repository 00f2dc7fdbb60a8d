"""The window job at parallelism 2 and 4: the late split stays exact (jobs/sensor_windows.py,
"Why the late split is exact").

Each run: real Kafka (the test stack, four-partition topics of its own), the job exactly as
``main()`` builds it (:func:`jobs.sensor_windows.create_job`: Kafka source, dedup, late flag,
group window, exactly-once Kafka sinks) on a local MiniCluster with its REST API on a free port
(watermarks and ``numLateRecordsDropped`` read from there), no idle timeout, and watermark
heartbeats written by the test in place of the bridge with the bridge's own event-time rule
(:class:`iotflink.kafka_io.PartitionClock`; its wall clock is driven by the test, so the
records in Kafka, and so every watermark, are the same on every run). Device ``dA`` writes
partition 0, ``dB`` 1, ``dC`` 2; partition 3 only ever gets heartbeats.

The case that broke the job above parallelism 1 with an idle timeout: every partition quiet
(with an idle timeout: every source split idle, so every flag subtask idle), then partition 0
far ahead while the others stay quiet, then partitions 1 and 2 come back with readings behind
the watermark, then all three run on together with stragglers. Phases, event time from
``BASE`` (window 10 s, allowed lateness 5 s, out-of-orderness 1 s):

1. 0-30 s on partitions 0-2, in order but for swaps of up to 3 s: nothing can be late (a value
   at most 6 s behind its own partition's maximum is never behind the watermark's cleanup).
2. every partition quiet: heartbeats raise 0, 2 and 3 to the highest event time, 29.5 s.
3. ``dA`` alone runs to 83 s; heartbeats raise the quiet partitions to 83 s, and the test waits
   until every vertex's input watermark is 82 s (it cannot pass it).
4. the switch: ``dB`` and ``dC`` come back (and ``dA`` goes on) with readings at or below 83 s, so
   every one of them is judged against watermark 82 s exactly: late iff its window's cleanup
   time (end - 1 + 5 s) is <= 82 s. Windows [60 s, 70 s) and older: late; [70 s, 80 s): fired
   already, within the lateness (late firings); [80 s, 90 s): open. The test waits until the
   source has read all of it.
5. all three devices run from 84 s to 140 s together (the watermark moves while values are
   flagged on two or four subtasks), with stragglers: some far behind (late on any
   watermark from phase 4 on) and some 8-14 s behind their device (late or not depending on
   how far the other partitions have got: not predictable, but each must be counted once).
6. heartbeats far past every window fire the rest.

The runs at parallelism 2 and 4 go at once (one module fixture: the jobs started one after the
other, then a thread per run writes its phases and waits on its own job's watermarks), so
their waits overlap; each run has its own topics, job and writer.

Asserted per run: every value whose verdict is determined (phases 1, 4, the far stragglers of
5) is in ``sensor-late`` iff the reference says so; every aggregate equals the one computed
from all values minus those in ``sensor-late`` (count, min, max, mean), so each value is
counted exactly once; ``numLateRecordsDropped`` of the window operator is 0; nothing went to
``sensor-duplicates`` (the heartbeats, all with seq 0 here, are dropped before the dedup).

With a 1 s idle timeout in place of ``idleness_ms=0`` (the job as it was), a one-off run of this
scenario lost 67 of its 1,530 values at parallelism 4 (``numLateRecordsDropped`` 67; the
aggregate of ``dA``/temp in [30 s, 40 s) had 9 values instead of 20), and none at parallelism 2
in that run: the loss depends on which flag subtask lags at the switch.
"""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from iotflink import kafka_io
from iotflink.kafka_io import HEARTBEAT_DEVICE, PartitionClock, heartbeat_value
from iotflink.poll import wait_for
from iotflink.runtime.flinkctl import FlinkCtl
from iotflink.runtime.stack import free_port
from iotflink.settings import Topics, WindowJobSettings
from iotflink.testing import window_model
from jobs import common
from jobs import sensor_windows as sw

pytestmark = [pytest.mark.integration, pytest.mark.minicluster, pytest.mark.slow, pytest.mark.timeout(900)]

STACK_SERVICES = ("kafka",)
#: the stack shared with the other modules that opt in (tests/conftest.py), topics of its own
SHARED_STACK = True

SIZE, LATENESS, OOO = 10_000, 5_000, 1_000
BASE = 1_700_000_000_000  # window-aligned (2023-11-14T22:13:20Z)
PARTITIONS = 4
DEVICE_PARTITION = {"dA": 0, "dB": 1, "dC": 2}
QUIET_MS = 5_000  # the bridge's default quiet period
S = 1_000


def _value(seq: int, sensor: str) -> float:
    return round(((seq * 37 + len(sensor) * 11) % 101) / 4 - 7.5, 2)


class Writer:
    """Writes readings as the bridge does (JSON value, key ``device_id``) and the bridge's
    watermark heartbeats (:class:`PartitionClock`, with a wall clock the test moves)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaProducer  # noqa: PLC0415

        self.topic = topic
        self.clock = PartitionClock(QUIET_MS)
        self.readings: list[dict] = []
        self.heartbeats = 0
        self._seq = {d: 0 for d in DEVICE_PARTITION}
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)

    def reading(self, device: str, offset_ms: int, now_ms: int) -> dict:
        self._seq[device] += 1
        seq = self._seq[device]
        value = {"device_id": device, "seq": seq, "ts": BASE + offset_ms, "ingest_ms": now_ms,
                 "readings": {s: _value(seq, s) for s in ("temp", "hum")}}
        part = DEVICE_PARTITION[device]
        self._producer.send(self.topic, json.dumps(value).encode(), key=device.encode(), partition=part)
        self.clock.observe(part, value["ts"], now_ms)
        self.readings.append(value)
        return value

    def tick(self, now_ms: int) -> dict[int, int]:
        """The bridge's heartbeat round at wall time ``now_ms``; returns what it wrote."""
        due = self.clock.due(range(PARTITIONS), now_ms)
        for part, ts in due.items():
            self.heartbeat(part, ts)
        return due

    def heartbeat(self, part: int, ts_ms: int) -> None:
        # seq 0 every time, as the end-of-stream heartbeats of every drain count from 0: the
        # job drops heartbeats before its dedup, so none may reach sensor-duplicates
        self._producer.send(self.topic, json.dumps(heartbeat_value(0, ts_ms)).encode(),
                            key=HEARTBEAT_DEVICE.encode(), partition=part)
        self.heartbeats += 1

    def flush(self) -> int:
        """Flush; returns the records written so far (readings + heartbeats)."""
        self._producer.flush()
        return len(self.readings) + self.heartbeats

    def close(self) -> None:
        self._producer.close()


def _create_topics(bootstrap: str, topics: Topics) -> None:
    names = [topics.readings, topics.aggregates, topics.late, topics.duplicates, topics.window_dlq]
    kafka_io.create_topics(bootstrap, dict.fromkeys(names, PARTITIONS))  # returns once the broker lists them


def _wait_watermark(ctl: FlinkCtl, job_id: str, at_least_ms: int, timeout_s: float = 180) -> None:
    """Until every non-source vertex's lowest input watermark (over its subtasks) is >= ``at_least_ms``."""
    def reached() -> bool:
        marks = ctl.input_watermarks(job_id)
        return bool(marks) and all(m is not None and m >= at_least_ms for m in marks.values())

    wait_for(reached, timeout_s, interval_s=0.5,
             what=f"input watermarks >= {at_least_ms - BASE} ms after BASE")


def _late_ref(ts: int, watermark: int) -> bool:
    return window_model.is_late(ts, watermark, SIZE, LATENESS)


def start_job(stack, name: str, parallelism: int, **settings):
    """Create the run's topics (prefix ``name``) and start the window job on a MiniCluster with a
    REST port, without an idle timeout, at ``parallelism``; ``settings`` add or override
    :class:`WindowJobSettings` fields. Returns ``(cfg, ctl, client, job_id, writer)``."""
    bootstrap = stack.s.kafka_bootstrap
    topics = Topics(readings=f"{name}-readings", aggregates=f"{name}-aggregates", late=f"{name}-late",
                    duplicates=f"{name}-duplicates", window_dlq=f"{name}-dlq", readings_partitions=PARTITIONS)
    _create_topics(bootstrap, topics)
    cfg = WindowJobSettings(**{
        "window_size_ms": SIZE, "allowed_lateness_ms": LATENESS, "out_of_orderness_ms": OOO, "idleness_ms": 0,
        "parallelism": parallelism, "source_parallelism": min(parallelism, PARTITIONS), "kafka_bootstrap": bootstrap,
        "topics": topics, "consumer_group": name, "checkpoint_interval_ms": 1_000, "transactional_id_prefix": name,
        **settings})
    rest_port = free_port()
    ctl = FlinkCtl(dataclasses.replace(stack.s, flink_rest_port=rest_port))
    t_env, stmts = sw.create_job(cfg, extra={"rest.port": str(rest_port), "rest.bind-port": str(rest_port),
                                         "rest.address": stack.s.host, "rest.bind-address": stack.s.host,
                                         "state.backend.type": "hashmap"})
    client = common.execute(t_env, stmts).get_job_client()
    return cfg, ctl, client, str(client.get_job_id()), Writer(bootstrap, topics.readings)


def _run(stack, started: tuple) -> dict:
    """One run of the scenario on a job :func:`start_job` started; returns what the
    assertions need. Cancels the job."""
    cfg, ctl, client, job_id, writer = started
    bootstrap, topics = stack.s.kafka_bootstrap, cfg.topics
    determined: dict[tuple, bool] = {}  # (device, seq) -> late per the reference
    racy: set[tuple] = set()
    switch: set[tuple] = set()  # readings of phase 4
    try:
        wait_for(lambda: ctl.job(job_id)["state"] == "RUNNING", 120, interval_s=0.5, what="the job RUNNING")

        # 1. 0-30 s on partitions 0-2, swaps of up to 3 s: nothing late
        now = 0
        for i in range(30):
            for dev, off in (("dA", 0), ("dB", 500), ("dC", 250)):
                j = i + 3 if i % 7 == 2 else i - 3 if i % 7 == 5 else i  # swap i and i + 3 every 7
                rec = writer.reading(dev, j * S + off, now)
                determined[(dev, rec["seq"])] = False
        # 2. every partition quiet: raised to the highest event time (29.5 s)
        now += QUIET_MS + 1
        assert writer.tick(now) == {0: BASE + 29_500, 2: BASE + 29_500, 3: BASE + 29_500}
        writer.flush()
        _wait_watermark(ctl, job_id, BASE + 29_500 - OOO)

        # 3. dA alone runs ahead to 83 s; the quiet partitions follow through heartbeats
        now += 1_000
        for t in range(30 * S, 83 * S + 1, 500):
            rec = writer.reading("dA", t, now)
            determined[("dA", rec["seq"])] = False  # in order on its own partition
        now += 1_000
        assert writer.tick(now) == {1: BASE + 83_000, 2: BASE + 83_000, 3: BASE + 83_000}
        writer.flush()
        w3 = BASE + 83_000 - OOO
        _wait_watermark(ctl, job_id, w3)

        # 4. dB and dC come back behind the watermark, dA goes on: all at or below 83 s, judged at 82 s
        now += 1_000
        for k in range(42):
            for dev, t in (("dB", 30 * S + k * 1_300), ("dC", 55 * S + k * 670), ("dA", 70 * S + k * 310)):
                rec = writer.reading(dev, min(t, 83 * S), now)
                determined[(dev, rec["seq"])] = _late_ref(rec["ts"], w3)
                switch.add((dev, rec["seq"]))
        assert writer.tick(now) == {}  # nothing to raise: no watermark progress in this phase
        written = writer.flush()
        wait_for(lambda: ctl.source_records_read(job_id) >= written, 120, interval_s=0.5,
                 what="the source to read phase 4")

        # 5. everyone runs on to 140 s together, with stragglers; partition 3 follows by heartbeats
        for k in range(57):
            now += 100
            for n, dev in enumerate(("dA", "dB", "dC")):
                t = 84 * S + k * S + n * 200
                writer.reading(dev, t, now)
                rec = writer.reading(dev, t, now)  # (a second reading at the same time)
                determined[(dev, rec["seq"] - 1)] = determined[(dev, rec["seq"])] = False
                if (k + n) % 4 == 1:  # far behind: late on any watermark since phase 4
                    rec = writer.reading(dev, 40 * S + (k * 977) % (20 * S), now)
                    determined[(dev, rec["seq"])] = True
                    assert _late_ref(rec["ts"], w3)
                if (k + n) % 3 == 0:  # 8-14 s behind its device: depends on the other partitions
                    rec = writer.reading(dev, t - 8 * S - (k * 613) % (6 * S), now)
                    racy.add((dev, rec["seq"]))
            writer.tick(now)
            if k % 10 == 9:
                writer.flush()  # the job reads while the devices go on
        # 6. far past every window: everything fires
        end = BASE + 1_000 * S
        for part in range(PARTITIONS):
            writer.heartbeat(part, end)
        writer.flush()
        _wait_watermark(ctl, job_id, end - OOO)
        values = 2 * len(writer.readings)

        def complete() -> bool:
            aggs = kafka_io.latest_by_key(kafka_io.read_topic(bootstrap, topics.aggregates))
            late = kafka_io.read_topic(bootstrap, topics.late)
            return sum(a["count"] for a in aggs.values()) + len(late) >= values

        wait_for(complete, 120, interval_s=1.0, what="every value in an aggregate or in sensor-late")
        dropped = ctl.operator_metric_sum(job_id, "GroupWindowAggregate", "numLateRecordsDropped")
    finally:
        writer.close()
        client.cancel().result()
    return {
        "readings": writer.readings, "determined": determined, "racy": racy, "switch": switch,
        "dropped": dropped,
        "aggregates": kafka_io.latest_by_key(kafka_io.read_topic(bootstrap, topics.aggregates)),
        "late": [r["value"] for r in kafka_io.read_topic(bootstrap, topics.late)],
        "duplicates": kafka_io.read_topic(bootstrap, topics.duplicates),
        "dlq": kafka_io.read_topic(bootstrap, topics.window_dlq),
    }


PARALLELISMS = (2, 4)


@pytest.fixture(scope="module")
def runs(stack):
    """The scenario at each of :data:`PARALLELISMS`, the runs at once (a job and a writer each,
    on topics of their own; the jobs are started one after the other): parallelism -> what
    :func:`_run` returns, or the exception it raised."""
    started = {}
    try:
        for p in PARALLELISMS:
            started[p] = start_job(stack, f"par{p}-{time.monotonic_ns()}", p)
    except BaseException:
        for _cfg, _ctl, client, _job_id, writer in started.values():
            writer.close()
            client.cancel().result()
        raise

    def one(p: int):
        try:
            return _run(stack, started[p])
        except Exception as exc:  # noqa: BLE001 - re-raised by the run's own test
            return exc

    with ThreadPoolExecutor(max_workers=len(PARALLELISMS)) as pool:
        futures = {p: pool.submit(one, p) for p in PARALLELISMS}
    return {p: fut.result() for p, fut in futures.items()}


@pytest.mark.parametrize("parallelism", PARALLELISMS)
def test_late_split_is_exact_across_an_idle_active_switch(runs, parallelism):
    out = runs[parallelism]
    if isinstance(out, Exception):
        raise out
    readings, determined, racy = out["readings"], out["determined"], out["racy"]
    late_keys = [(r["device_id"], r["seq"], r["sensor"]) for r in out["late"]]
    assert len(late_keys) == len(set(late_keys)), "a value is in sensor-late twice"
    late_readings = {(d, s) for d, s, _ in late_keys}
    by_key = {(r["device_id"], r["seq"]): r for r in readings}
    assert late_readings <= by_key.keys()
    # both values of a reading share its verdict
    assert sorted(late_keys) == sorted((d, s, x) for d, s in late_readings for x in ("temp", "hum"))

    # the data really exercises the case: at the switch, late values and values of windows
    # that fired already but are within the allowed lateness (late firings); racy stragglers
    switch = out["switch"]
    assert sum(determined[k] for k in switch) > 30 and len(racy) > 40
    fired_within_lateness = [k for k in switch if not determined[k]
                             and window_model.window_bounds(by_key[k]["ts"], SIZE)[1] - 1 <= BASE + 82_000]
    assert len(fired_within_lateness) > 10

    # every determined verdict is the reference's
    wrong = {k: v for k, v in determined.items() if (k in late_readings) != v}
    assert not wrong, f"verdicts differ from the reference: {sorted(wrong.items())[:10]}"

    # every value counted exactly once: aggregates = all values minus those in sensor-late
    expected: dict[tuple, list[float]] = {}
    for key, r in by_key.items():
        if key in late_readings:
            continue
        start, _ = window_model.window_bounds(r["ts"], SIZE)
        for sensor, value in r["readings"].items():
            expected.setdefault((r["device_id"], sensor, start), []).append(value)
    got = {(a["device_id"], a["sensor"], a["window_start_ms"]): a for a in out["aggregates"].values()}
    assert got.keys() == expected.keys()
    for k, vals in expected.items():
        a = got[k]
        assert (a["count"], a["min"], a["max"]) == (len(vals), min(vals), max(vals)), k
        assert a["mean"] == pytest.approx(sum(vals) / len(vals), rel=1e-12, abs=1e-12), k
        assert a["window_end_ms"] == k[2] + SIZE
    assert sum(a["count"] for a in got.values()) + len(late_keys) == 2 * len(readings)

    assert out["dropped"] == 0, f"numLateRecordsDropped {out['dropped']}"
    assert out["duplicates"] == [] and out["dlq"] == []
