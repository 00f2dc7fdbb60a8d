"""Fault tests: each fault injected mid-replay on the real stack must lose nothing and
duplicate nothing in the window job's aggregates and the rule job's alerts, compared record by
record (by unique key) with a fault-free run.

One stack (Kafka KRaft, Mosquitto, bridge, Flink JobManager + two TaskManagers,
:data:`STACK_TASKMANAGERS`) on free ports serves the whole module. Every run (the baseline and one per fault) gets its own topics
(``sensor-readings-<run>``, ``sensor-aggregates-<run>``, ``transactions-<run>``,
``alerts-<run>``, ``rules-late-<run>``, ...), consumer groups and transactional id prefixes: the
bridge is restarted with the run's topics, and two jobs are submitted with ``flink run`` for
it: ``jobs/sensor_windows`` (parallelism 1) and the rule ``card_failed_burst`` (``jobs/rules/
--rule card_failed_burst``, as ``rules deploy`` submits it; parallelism 1, consumer group
``chaos-rules-<run>-card_failed_burst``). A run:

1. publishes the same real messages through MQTT at QoS 1 (:func:`replay.publish`), in the
   replayer's event-time order, paced at :data:`RATE_PER_S` messages per second; at the same
   time, and paced over the same duration, it publishes the TabFormer card stream with
   injected scenarios (:func:`iotflink.simulation.transactions.build_stream`, ~20k events) to
   ``transactions`` with an idempotent kafka-python producer (:class:`_TxnPublisher`);
2. both publishers pause after :data:`FAULT_AT` of their stream (a gate, so the fault point
   does not depend on how fast the machine is); once those readings are in
   ``sensor-readings`` and the window job has committed output (a checkpoint completed), the
   publishers resume, and as soon as the first reading after the pause is in Kafka (the MQTT
   publisher, which reconnects after its pause, is streaming again) the test injects the
   fault with :mod:`iotflink.simulation.chaos`: ``kill -9`` of the
   TaskManager running the window job (one of two, as a lost host), the job failing over to the
   other TaskManager's free slots, then a new TaskManager; a Kafka broker restart; a Mosquitto restart; ``kill -9`` of
   Mosquitto then a new one; ``kill -9`` of the bridge then a new one. A bridge that exited by itself meanwhile (status 3: Kafka did not
   confirm within its delivery timeout) is started again by the test, as a supervisor would;
   nothing in the stack does that today (see ``iotflink.simulation.chaos``);
3. finishes the replay, waits until every published ``(device_id, seq)`` is in
   ``sensor-readings`` and the job's consumer group has committed the end of every partition
   (a checkpoint after the last record), stops the job with a drained savepoint (the maximum
   watermark fires every window; the exactly-once sinks commit), and reads
   ``sensor-aggregates`` (``latest_by_key``, read_committed) and ``sensor-late``;
4. meanwhile, once every transaction is acknowledged, ends the rule job the same way
   (:meth:`FlinkCtl.drain_bounded_replay` on ``transactions``, below) and reads ``alerts``,
   ``rules-late`` and ``transactions`` back.

What is compared, and why it is deterministic:

- **Nothing is late, by construction.** Whether a value is late depends on where the watermark
  was when it arrived, i.e. on processing-time timing, which faults change. The test removes
  that dependency: the data are in event-time order (a slice of NAB machine temperature and
  FEMTO Bearing1_1 merged by event time, no delayed or held-back messages), and the allowed
  lateness (:data:`LATENESS_MS`, 7 days) exceeds the event-time span of the whole replay
  (NAB 760 rows at 5 min = 63 h). A value is late only if ``window_end - 1 + lateness <=
  watermark``, and the watermark never exceeds the largest event time of the replay, so no
  value can be late in any run, whatever the timing. ``sensor-late`` must be empty in the
  baseline and is compared as a set keyed by ``(device_id, seq, sensor)`` with it.
- **Final aggregates are then a function of the set of readings only**: after the drained
  stop, every window holds exactly its values, however often it fired. They are compared key
  by key (``device_id, sensor, window_start_ms``) with the baseline: same keys (0 lost, 0
  extra), same ``count``, ``min``, ``max``, ``window_end_ms``, and ``mean`` (within 1e-12
  relative, a guard against summation order; the order per key is the partition order, so in
  practice it is bit-equal). The baseline itself is checked against an aggregation this test
  computes from the messages, so "equal to the baseline" means "right".
- **sensor-readings** (at-least-once by contract, docs/CONTRACT.md): every published
  ``(device_id, seq)`` must be there (0 lost); duplicates are allowed there and reported. A
  duplicate that reaches the window job changes a ``count`` unless the job deduplicates on
  ``(device_id, seq)``; the aggregate comparison then fails and says so.

``kill -9`` of Mosquitto: the broker cannot save in that case, so what survives is what its
last save wrote (deploy/mosquitto.conf: a save once 100 changes to its store piled up).
Messages acknowledged to the publisher since the last save can be lost: at most
:data:`iotflink.simulation.chaos.MOSQUITTO_KILL_WINDOW`. The run asserts that bound (``KILL-MOSQUITTO`` line: lost of acknowledged)
and, if a reading was lost, compares the aggregates with an aggregation of the readings that
arrived instead of the baseline (still exact). :func:`test_kill_mosquitto_keeps_the_queue_of_a_stopped_bridge`
covers the other case: the bridge stopped, every message acknowledged and queued for its
session, then ``kill -9``: none may be lost beyond the same bound, none dropped (Mosquitto's
``$SYS`` drop counter, :mod:`iotflink.runtime.broker_stats`).

Recovery time (printed, one line per fault, ``RECOVERY ...``): from the kill / stop signal to
the first new committed record downstream of the faulted service, sampled every 0.2 s from the
topics' read_committed end offsets (:class:`iotflink.simulation.monitor.OutputMonitor`):
``sensor-aggregates`` for the TaskManager and Kafka faults (exactly-once output appears at a
checkpoint, so this includes up to one checkpoint interval, :data:`CHECKPOINT_MS`), and
``sensor-readings`` for the Mosquitto and bridge faults (the job keeps running; the first
record the restarted path forwards is the first new output). The time the job re-entered
RUNNING (REST ``timestamps``) is printed too.

Alerts (rule ``card_failed_burst``: 3 failed transactions of one card within 5 min). The
bearing rules are not used: they need 60 to 90 min of FEMTO data (run-in and baseline window) before they arm.

- **The input is exact.** The transaction producer is idempotent (``enable_idempotence``,
  acks=all, unlimited retries within a 5-min delivery timeout), so a broker restart neither
  loses, duplicates nor reorders a record; the test reads ``transactions`` back and requires
  every ``seq`` exactly once (duplicates would be reported and would change matches).
- **Nothing is late, by construction.** MATCH_RECOGNIZE drops (to ``rules-late``) a row at or
  behind its watermark, and the watermark of the project's 4-partition ``transactions`` topic
  is the minimum over the partitions that are not idle (5 s without records): with TabFormer
  user 0, partition 3 holds no card, partition 0 one card active only from 2008-09 to
  2009-03 and partition 1 one card from 2014 on. Whenever an idle partition becomes active
  again (partition 0 and 1 at their card's first event in every run; every partition after
  a fault that pauses the source for 5 s), the partitions read first can carry the watermark
  past rows of the one read later, so whether a row is late would depend on timing. Each
  run's ``transactions`` topic therefore has ONE partition (created by
  :func:`_create_topics`): the stream is in
  event-time order, so every row is ahead of the watermark (10 s behind the previous row) in
  every run, and the matches are a function of the set of events. ``rules-late`` must be
  empty in the baseline and is compared as a set of ``(record_key, seq)``.
- **End of the unbounded rule job.** MATCH_RECOGNIZE buffers rows and emits a match only when
  the watermark passes its last row; after the last transaction nothing advances the
  watermark (and the idle source ignores the drain's own maximum watermark, see
  :meth:`FlinkCtl.drain_bounded_replay`). ``rules alerts --wait-s`` (the demo) polls until
  the ground truth's alert ids are there, which cannot tell "all matches emitted" from
  "emitted so far". The test ends the rule job like the window job:
  ``drain_bounded_replay`` writes end-of-stream heartbeats (``kafka_io.Heartbeat``) to
  ``transactions`` with event time last + 31 days, polls until every non-source vertex's input
  watermark is past them (every buffered row processed, every match emitted), then stops with
  a drained savepoint and waits for FINISHED (every alert flushed / committed). The DDL does
  not filter heartbeats by name, but they cannot enter a match or ``rules-late``: they parse
  with ``errors`` NULL (the rule keeps only failed events) and are never behind the watermark
  (they carry the largest event time).
- **Compared**: the baseline's alert ids must equal the matches computed here from the stream
  (:func:`_expected_failed_burst_ids`: per card, the failed events in ``(ts, seq)`` order,
  three consecutive ones spanning < 5 min, skip past the last) and contain the alert id of
  every injected ``failed_burst`` scenario of the ground truth (:data:`TXN_SCENARIOS_PER_KIND`
  per kind, spread over the stream, so some alerts are emitted before the fault and some after);
  each fault run's set of alert ids must equal the baseline's (0 lost, 0 extra). The alerts
  sink is at-least-once by default (``IOTFLINK_ALERTS_DELIVERY``; ids are deterministic):
  duplicates (records minus distinct ids) are reported in the ``RUN`` and ``ALERTS`` lines, not
  failed on; with ``exactly-once`` a duplicate fails the test.

Budget: 5 runs of ~12 s of replay each plus recovery, catch-up and the drains (the rule job's
drain runs while the window job catches up). A run's two jobs (two ``flink run -py`` of ~15 s
each, one after the other: both rewrite ``pyfiles.zip``) are submitted before the baseline, and
for every later run in the background during the previous one. Each TaskManager has 10 slots
(``taskmanager.load-balance.mode: SLOTS`` spreads the jobs over both); a run holds 2, 4 while
the next run's jobs wait, so the survivor of a TaskManager kill always has enough free slots
for the jobs of the one it lost. The module took 4 to 5.5 min on 2 cores (phases
printed per run). On 2 TaskManagers, one run with the machine under a load average of 10 to
13: 12.0 min (each job submission 20 to 78 s; the TaskManager fault's fault+recovery phase
34 s: the job runs on the survivor, then the new TaskManager registers).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import math
import threading
import time
from collections import Counter

import pytest

from iotflink import kafka_io
from iotflink.poll import wait_for
from iotflink.runtime.flinkctl import FlinkCtl
from iotflink.runtime.stack import Stack
from iotflink.settings import RulesSettings, StackSettings, TransactionSettings
from iotflink.simulation import chaos, monitor
from iotflink.simulation.replay import DATA_DIR, WEEK_MS, Message, _read_nab, build_messages, publish
from iotflink.simulation.transactions import build_stream, ground_truth
from jobs.rules import alert_id

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

#: TaskManagers of the module's stack (conftest ``stack``): the TaskManager fault kills the one
#: running the window job, and the job must fail over to the other's slots.
STACK_TASKMANAGERS = 2

#: Slice sizes: NAB 760 rows (5-min cadence, 63 h), FEMTO 1,000 rows (~15 min: 1 s temperature,
#: 10 s vibration). The FEMTO slice falls inside the NAB slice's event time (see _messages).
N_NAB, N_FEMTO = 760, 1_000
#: Publishing rate (messages/s) of the replay: 1,760 messages in ~12 s.
RATE_PER_S = 150
#: Fraction of the messages in sensor-readings when the fault is injected.
FAULT_AT = 0.4
#: Window job settings for the test: 15-min windows, allowed lateness beyond the replay's span.
WINDOW_MS = 900_000
LATENESS_MS = 7 * 24 * 3600 * 1000
#: Checkpoint interval: exactly-once output is visible at checkpoints, so keep it short.
CHECKPOINT_MS = 2_000
FAULTS = chaos.FAULTS
#: The rule deployed next to the window job in every run, and its pattern's span limit.
RULE_ID = "card_failed_burst"
RULE_WITHIN_MS = 300_000
#: Injected scenarios per kind in the card stream (the demo uses 4): 12 failed bursts, whose
#: alerts fall between 4 % and 98 % of the stream, on both sides of the fault.
TXN_SCENARIOS_PER_KIND = 12


# ---------------------------------------------------------------------- data
def _messages() -> list[Message]:
    """NAB rows 0..759 and FEMTO rows 0..999 merged by event time, paced at RATE_PER_S.

    Each data set is shifted by whole weeks (the replayer's rule) with one replay start chosen
    so that the FEMTO slice (a Thursday, 09:39-09:55) falls inside the NAB slice (Monday 21:15
    to Thursday 12:30): the start is the latest moment before now with the weekday and time of
    day just after NAB's last row. The release clock is rewritten to ``i * 1000 / RATE_PER_S``
    ms, so with ``speedup=1`` the replayer publishes at a constant rate (NAB's 5-min and
    FEMTO's 1-s cadences share no event-time pacing that would spread both over the run).
    """
    now = time.time_ns() // 1_000_000
    nab_last = max(r[0] for r in itertools.islice(_read_nab(DATA_DIR), N_NAB))
    start = nab_last + ((now - 120_000 - nab_last) // WEEK_MS) * WEEK_MS + 60_000
    nab = build_messages(["nab"], start, limit=N_NAB)
    femto = build_messages(["femto"], start, limit=N_FEMTO)
    merged = list(heapq.merge(nab, femto, key=lambda m: m.ts_ms))
    assert nab[0].ts_ms <= femto[0].ts_ms and femto[-1].ts_ms <= nab[-1].ts_ms, "FEMTO inside NAB"
    return [dataclasses.replace(m, release_ms=i * 1000 // RATE_PER_S) for i, m in enumerate(merged)]


def _independent_aggregates(messages: list[Message]) -> dict[tuple, dict]:
    """(device_id, sensor, window_start_ms) -> count/min/max/mean, computed from the messages."""
    acc: dict[tuple, list[float]] = {}
    for m in messages:
        ws = m.ts_ms - m.ts_ms % WINDOW_MS
        for sensor, value in m.readings.items():
            acc.setdefault((m.device_id, sensor, ws), []).append(value)
    return {k: {"count": len(v), "min": min(v), "max": max(v), "mean": sum(v) / len(v)} for k, v in acc.items()}


@dataclasses.dataclass
class CardStream:
    """The card events of every run (replay order, with ``seq``) and what their alerts must be."""

    events: list[dict]
    truth: dict
    #: alert ids of the injected failed_burst scenarios (ground truth)
    scenario_ids: set[str]
    #: alert ids of every card_failed_burst match in the stream, computed here
    expected_ids: set[str]


def _expected_failed_burst_ids(events: list[dict]) -> set[str]:
    """card_failed_burst's matches, computed from the events: per card, the failed events
    (``errors`` not empty) ordered by ``(ts, seq)`` (the rule's ORDER BY); three consecutive
    ones whose span is below 5 min (WITHIN) match, and matching resumes after the third
    (AFTER MATCH SKIP PAST LAST ROW). Ids as the SQL computes them (:func:`jobs.rules.alert_id`)."""
    by_card: dict[str, list[dict]] = {}
    for e in events:
        if e["errors"]:
            by_card.setdefault(e["card_id"], []).append(e)
    out: set[str] = set()
    for card, failed in by_card.items():
        failed.sort(key=lambda e: (e["ts"], e["seq"]))
        i = 0
        while i + 2 < len(failed):
            if failed[i + 2]["ts"] - failed[i]["ts"] < RULE_WITHIN_MS:
                out.add(alert_id(RULE_ID, card, [e["ts"] for e in failed[i:i + 3]]))
                i += 3
            else:
                i += 1
    return out


def _card_stream() -> CardStream:
    cfg = dataclasses.replace(TransactionSettings.from_env(), scenarios_per_kind=TXN_SCENARIOS_PER_KIND)
    events, scenarios = build_stream(cfg)
    truth = ground_truth(cfg, events, scenarios)
    ids = {sc["expected_alert_id"] for sc in truth["scenarios"] if sc["rule_id"] == RULE_ID}
    return CardStream(events, truth, ids, _expected_failed_burst_ids(events))


# ---------------------------------------------------------------------- one run
@dataclasses.dataclass
class RunResult:
    name: str
    aggregates: dict[tuple, dict]
    late: set[tuple]
    readings: Counter
    duplicates_dropped: int | None
    timing: dict | None
    recovery: dict
    phases: dict[str, float]
    #: alert_id -> number of records in the run's alerts topic
    alerts: Counter
    #: (record_key, seq) of the rule job's late rows
    rules_late: set[tuple]
    #: seq -> number of records in the run's transactions topic (heartbeats excluded)
    transactions: Counter

    @property
    def alert_duplicates(self) -> int:
        """Alert records beyond the first per alert id."""
        return sum(self.alerts.values()) - len(self.alerts)


@dataclasses.dataclass
class _Jobs:
    """The two jobs of a run."""

    window: str
    rule: str


#: Longest a publisher waits at its gate for the fault (s).
GATE_TIMEOUT_S = 600.0


class _Publisher(threading.Thread):
    """Publishes the messages through MQTT (:func:`publish`, paced at ``release_ms``). With a
    ``gate``: the first ``gate_at`` messages, then it waits until the gate is set, then the
    rest (paced from their own first message). ``result["acked"]`` counts both parts."""

    def __init__(self, messages: list[Message], cfg: StackSettings, name: str,
                 gate: threading.Event | None = None, gate_at: int = 0) -> None:
        super().__init__(name=f"publisher-{name}", daemon=True)
        self.messages, self.cfg, self.client_id = messages, cfg, f"chaos-pub-{name}"
        self.gate, self.gate_at = gate, gate_at if gate is not None else len(messages)
        self.result: dict | None = None
        self.error: BaseException | None = None

    def _publish(self, messages: list[Message]) -> dict:
        if not messages:
            return {"acked": 0}
        creds = Stack(self.cfg).provision(sorted({m.device_id for m in messages}))
        return publish(messages, self.cfg.mqtt_host, self.cfg.mqtt_port, speedup=1.0, credentials=creds,
                       ca_file=self.cfg.mqtt_ca_file, window=100, client_id=self.client_id, ack_timeout_s=120)

    def run(self) -> None:
        try:
            first = self._publish(self.messages[:self.gate_at])
            if self.gate is not None and not self.gate.wait(GATE_TIMEOUT_S):
                raise TimeoutError(f"publisher gate not opened within {GATE_TIMEOUT_S:.0f} s")
            rest = self._publish(self.messages[self.gate_at:])
            self.result = {"acked": first["acked"] + rest["acked"]}
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


class _TxnPublisher(threading.Thread):
    """Sends the card events to ``topic`` (key card_id) paced by count over ``duration_s``
    (event ``i`` at ``i * duration_s / n``), with an idempotent producer: acks=all, retries
    until ``delivery_timeout_ms``, so a broker restart neither loses, duplicates nor reorders.
    ``sent`` counts sends; after the run every send is acknowledged (``acked``) or ``error``
    says why not."""

    def __init__(self, events: list[dict], bootstrap: str, topic: str, duration_s: float, name: str,
                 gate: threading.Event | None = None, gate_at: int = 0) -> None:
        super().__init__(name=f"txn-publisher-{name}", daemon=True)
        self.events, self.bootstrap, self.topic, self.duration_s = events, bootstrap, topic, duration_s
        self.gate, self.gate_at = gate, gate_at  # with a gate: wait for it before event gate_at
        self.client_id = f"chaos-txn-{name}"
        self.sent = 0
        self.acked = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from kafka import KafkaProducer  # noqa: PLC0415

        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, client_id=self.client_id,
                                     enable_idempotence=True, acks="all", linger_ms=10,
                                     delivery_timeout_ms=300_000, request_timeout_ms=30_000)
            try:
                n = len(self.events)
                t0 = time.monotonic()
                futures = []
                for i, e in enumerate(self.events):
                    if self.gate is not None and i == self.gate_at:
                        paused = time.monotonic()
                        if not self.gate.wait(GATE_TIMEOUT_S):
                            raise TimeoutError(f"card publisher gate not opened within {GATE_TIMEOUT_S:.0f} s")
                        t0 += time.monotonic() - paused  # the pace resumes where it stopped
                    delay = t0 + i * self.duration_s / n - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)  # pacing the replay, not synchronisation
                    futures.append(producer.send(self.topic, key=e["card_id"].encode(), value=json.dumps(e).encode()))
                    self.sent = i + 1
                producer.flush(timeout=300)
                for f in futures:
                    f.get(timeout=60)  # raises the send's error, if any
                self.acked = len(futures)
            finally:
                producer.close(timeout=30)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


class _Background(threading.Thread):
    """Runs ``fn()`` in a daemon thread; :meth:`result` joins and returns it or re-raises."""

    def __init__(self, fn, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.fn = fn
        self.value = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            self.error = exc

    def result(self, timeout_s: float):
        self.join(timeout=timeout_s)
        if self.is_alive():
            raise TimeoutError(f"{self.name} still running after {timeout_s:.0f} s")
        if self.error is not None:
            raise self.error
        return self.value


def _run_settings(base: StackSettings, name: str) -> StackSettings:
    """``base`` with every topic name suffixed ``-<name>`` (one set of topics per run)."""
    t = base.topics
    renamed = {f.name: f"{getattr(t, f.name)}-{name}" for f in dataclasses.fields(t)
               if isinstance(getattr(t, f.name), str)}
    return dataclasses.replace(base, topics=dataclasses.replace(t, **renamed))


def _create_topics(cfg: StackSettings) -> None:
    """Create the run's topics, its ``transactions`` topic with ONE partition (why: module
    docstring, Alerts), and check that it has one."""
    Stack(cfg).create_topics(partitions={cfg.topics.transactions: 1})
    parts = kafka_io.end_offsets(cfg.kafka_bootstrap, cfg.topics.transactions)
    assert len(parts) == 1, f"{cfg.topics.transactions} has {len(parts)} partitions, the test needs 1"


def _unique_readings(cfg: StackSettings) -> Counter:
    recs = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.readings)
    return Counter((r["value"]["device_id"], r["value"]["seq"]) for r in recs
                   if not kafka_io.is_heartbeat(r["value"]))


def _transactions(cfg: StackSettings) -> Counter:
    """seq -> records of it in the run's transactions topic (end-of-stream heartbeats excluded)."""
    recs = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.transactions)
    return Counter(r["value"]["seq"] for r in recs if r["value"] and not kafka_io.is_heartbeat(r["value"]))


def _group_caught_up(cfg: StackSettings, group: str) -> bool:
    return monitor.group_caught_up(cfg.kafka_bootstrap, group, cfg.topics.readings)


def _recovery(fault: str, timing: chaos.FaultTiming, mon: monitor.OutputMonitor, cfg: StackSettings,
              ctl: FlinkCtl, jobs: _Jobs) -> dict:
    """Recovery facts of one fault (seconds from the kill / stop signal)."""
    job_id = jobs.window
    topic = cfg.topics.aggregates if fault in ("kill-taskmanager", "restart-kafka") else cfg.topics.readings
    # Output committed until just after the old process died is pre-fault output: nothing
    # can start again within 0.3 s of the death (every restart takes longer).
    t_ref = timing.t_fault + timing.down_s + 0.3
    # (Kafka: no sample succeeds while the broker is down, so the base is the last one before)
    t_out = mon.wait_increase_after(topic, t_ref, timeout_s=240, base_before=fault == "restart-kafka")
    out = {"recovery_s": round(t_out - timing.t_fault, 3), "measured_on": topic,
           "down_s": round(timing.down_s, 3), "service_ready_s": round(timing.ready_s, 3),
           "bridge_restarts": timing.bridge_restarts}
    if topic == cfg.topics.readings:
        t_agg = mon.wait_increase_after(cfg.topics.aggregates, t_out, timeout_s=240)
        out["aggregates_after_s"] = round(t_agg - timing.t_fault, 3)
    info = ctl.job(job_id)
    entered = info.get("timestamps", {}).get("RUNNING", 0)
    out["job_restarted"] = entered > timing.fault_epoch_ms
    if out["job_restarted"]:
        out["job_running_s"] = round((entered - timing.fault_epoch_ms) / 1000, 3)
    out["job_restarts"] = chaos.job_restarts(ctl, job_id)
    rule_entered = ctl.job(jobs.rule).get("timestamps", {}).get("RUNNING", 0)
    out["rule_job_restarted"] = rule_entered > timing.fault_epoch_ms
    out["rule_job_restarts"] = chaos.job_restarts(ctl, jobs.rule)
    return out


def _cancel_quietly(ctl: FlinkCtl, job_id: str) -> None:
    try:
        if ctl.job(job_id)["state"] not in ("FINISHED", "CANCELED", "FAILED"):
            ctl.cancel(job_id)
            ctl.wait_state(job_id, {"CANCELED", "FAILED", "FINISHED"}, timeout_s=60)
    except Exception:  # noqa: BLE001, S110 - best effort on the way out
        pass


class _Runner:
    """Runs replays on one stack. To save the ~30 s of a ``flink run -py`` submission per job,
    the next run's two jobs (own topics, groups and transactional ids, so they cannot
    interfere) are submitted in the background once the current run's fault has been measured."""

    ORDER = ["baseline", *[f.replace("-", "_") for f in FAULTS]]

    def __init__(self, stack: Stack, messages: list[Message], cards: CardStream) -> None:
        self.stack, self.messages, self.cards = stack, messages, cards
        self._pending: dict[str, tuple[threading.Thread, dict]] = {}

    def _submit(self, name: str) -> _Jobs:
        """Create the run's topics, submit its window job then its rule job (one after the
        other: both submissions rewrite the same ``pyfiles.zip``)."""
        cfg = _run_settings(self.stack.s, name)
        _create_topics(cfg)
        ctl = FlinkCtl(cfg)
        group = f"chaos-{name}"
        window = ctl.submit("sensor_windows", env_overrides={
            "IOTFLINK_WINDOW_SIZE_MS": str(WINDOW_MS),
            "IOTFLINK_ALLOWED_LATENESS_MS": str(LATENESS_MS),
            "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": str(CHECKPOINT_MS),
            "IOTFLINK_CONSUMER_GROUP": group,
            "IOTFLINK_WINDOW_TXN_ID_PREFIX": group,
        })
        try:
            # as `rules deploy` submits it; group (and exactly-once transactional id prefix)
            # chaos-rules-<run>-card_failed_burst; the late topic is the run's rules-late
            rule = ctl.submit("rules", ["--rule", RULE_ID], env_overrides={
                "IOTFLINK_RULES_CONSUMER_GROUP": f"chaos-rules-{name}",
                "IOTFLINK_TOPIC_RULES_LATE": cfg.topics.rules_late,
                "IOTFLINK_RULES_CHECKPOINT_INTERVAL_MS": str(CHECKPOINT_MS),
            })
        except BaseException:
            _cancel_quietly(ctl, window)
            raise
        return _Jobs(window=window, rule=rule)

    def prepare_next(self, name: str) -> None:
        """Submit the jobs of the run after ``name`` in the background (if any, once)."""
        i = self.ORDER.index(name) if name in self.ORDER else -1
        if i < 0 or i + 1 >= len(self.ORDER) or self.ORDER[i + 1] in self._pending:
            return
        nxt = self.ORDER[i + 1]
        holder: dict = {}

        def work() -> None:
            try:
                holder["jobs"] = self._submit(nxt)
            except BaseException as exc:  # noqa: BLE001 - re-raised by jobs_for
                holder["error"] = exc

        thread = threading.Thread(target=work, name=f"submit-{nxt}", daemon=True)
        thread.start()
        self._pending[nxt] = (thread, holder)

    def jobs_for(self, name: str) -> _Jobs:
        if name not in self._pending:
            return self._submit(name)
        thread, holder = self._pending.pop(name)
        thread.join(timeout=600)
        if "error" in holder:
            raise holder["error"]
        return holder["jobs"]

    def close(self) -> None:
        """Cancel jobs submitted for runs that did not happen (e.g. with ``-k``)."""
        for name, (thread, holder) in list(self._pending.items()):
            thread.join(timeout=600)
            if "jobs" in holder:
                ctl = FlinkCtl(_run_settings(self.stack.s, name))
                _cancel_quietly(ctl, holder["jobs"].window)
                _cancel_quietly(ctl, holder["jobs"].rule)
        self._pending.clear()

    def run(self, name: str, fault: str | None) -> RunResult:
        phases: dict[str, float] = {}
        t_last = [time.monotonic()]

        def phase(label: str) -> None:
            now = time.monotonic()
            phases[label] = round(now - t_last[0], 1)
            t_last[0] = now

        messages = self.messages
        events = self.cards.events
        cfg = _run_settings(self.stack.s, name)
        stack = Stack(cfg)
        ctl = FlinkCtl(cfg)
        jobs = self.jobs_for(name)
        phase("submit")
        timing = None
        recovery: dict = {}
        rule_drain: _Background | None = None
        # with a fault, both publishers stop at FAULT_AT of their stream until the fault
        gate = threading.Event() if fault else None
        try:
            _create_topics(cfg)
            stack.stop_service("bridge")
            stack.start(services=("bridge",))  # the bridge writes to this run's topics
            ctl.wait_running(jobs.window)
            ctl.wait_running(jobs.rule)
            phase("bridge+running")
            n = len(messages)
            with monitor.OutputMonitor(cfg.kafka_bootstrap,
                                     [cfg.topics.readings, cfg.topics.aggregates, cfg.topics.alerts]) as mon:
                gate_at = math.ceil(FAULT_AT * n)
                pub = _Publisher(messages, cfg, name, gate, gate_at)
                txn_pub = _TxnPublisher(events, cfg.kafka_bootstrap, cfg.topics.transactions,
                                        n / RATE_PER_S, name, gate, math.ceil(FAULT_AT * len(events)))
                pub.start()
                txn_pub.start()
                if fault:
                    wait_for(lambda: (mon.latest(cfg.topics.readings) or 0) >= FAULT_AT * n
                             and (mon.latest(cfg.topics.aggregates) or 0) > 0
                             and txn_pub.sent >= FAULT_AT * len(events),
                             120, what=f"{FAULT_AT:.0%} of both replays sent / in Kafka and committed output")
                    assert pub.error is None and txn_pub.error is None, (pub.error, txn_pub.error)
                    # where the rule job stood: alert records already in Kafka (from the monitor's
                    # last sample; the REST metrics lag by up to the fetcher's interval, so not those)
                    at_fault = {"txn_sent": txn_pub.sent, "txn_total": len(events),
                                "alert_records": mon.latest(cfg.topics.alerts),
                                "alerts_expected": len(self.cards.expected_ids)}
                    gate.set()  # the replays resume and run on during the fault
                    wait_for(lambda: (mon.latest(cfg.topics.readings) or 0) > gate_at, 60,
                             what="the first reading after the pause in sensor-readings")
                    phase("to-fault")
                    replay_running = pub.is_alive()
                    placement = {"window": stack.subtasks_per_taskmanager(jobs.window),
                                 "rule": stack.subtasks_per_taskmanager(jobs.rule)}
                    if fault == "kill-taskmanager":  # the TaskManager running the window job
                        ft = chaos.kill_taskmanager(stack, job_id=jobs.window)
                    else:
                        ft = chaos.FAULT_FUNCTIONS[fault](stack)
                    timing = ft.to_dict()
                    recovery = _recovery(fault, ft, mon, cfg, ctl, jobs)
                    recovery["subtasks_per_taskmanager_at_fault"] = placement
                    recovery["rule_job_at_fault"] = at_fault
                    recovery["replay_running_at_fault"] = replay_running
                    phase("fault+recovery")
                self.prepare_next(name)
                txn_pub.join(timeout=600)
                assert not txn_pub.is_alive(), "card replay did not finish"
                assert txn_pub.error is None, f"card replay failed: {txn_pub.error!r}"
                assert txn_pub.acked == len(events)
                # every transaction is acknowledged: the end-of-stream heartbeats come after
                # all of them in the (single) partition, so the rule job can be ended now
                last_txn_ts = max(e["ts"] for e in events)
                rule_drain = _Background(lambda: ctl.drain_bounded_replay(
                    jobs.rule, cfg.kafka_bootstrap, cfg.topics.transactions, last_txn_ts), f"drain-rule-{name}")
                rule_drain.start()
                pub.join(timeout=300)
                assert not pub.is_alive(), "replay did not finish"
                assert pub.error is None, f"replay failed: {pub.error!r}"
                assert pub.result["acked"] == n
                phase("replay-rest")
            # a bridge that exited after the fault (e.g. delivery timeout) is restarted here too
            late_restarts = chaos.ensure_bridge(stack)
            if late_restarts:
                recovery.setdefault("bridge_restarts", []).extend(late_restarts)
            want = {(m.device_id, m.seq) for m in messages}
            wait_for(lambda: want <= set(_unique_readings(cfg)), 180, interval_s=0.5,
                     what="every published (device_id, seq) in sensor-readings")
            wait_for(lambda: _group_caught_up(cfg, group=f"chaos-{name}"), 180, interval_s=0.5,
                     what="the job's consumer group to commit the end of sensor-readings")
            phase("catch-up")
            # heartbeats keep the idle source active so the drain's watermark fires the last
            # windows (FlinkCtl.drain_bounded_replay); FINISHED: every sink committed
            ctl.drain_bounded_replay(jobs.window, cfg.kafka_bootstrap, cfg.topics.readings,
                                     max(m.ts_ms for m in messages))
            phase("drain")
            rule_drain.result(timeout_s=360)  # the rule job FINISHED: every alert is in Kafka
            phase("rule-drain")
        except BaseException:
            if gate is not None:
                gate.set()  # let paused publishers finish instead of waiting for the gate
            if rule_drain is not None:
                rule_drain.join(timeout=360)  # do not cancel under a running stop-with-savepoint
            _cancel_quietly(ctl, jobs.window)
            _cancel_quietly(ctl, jobs.rule)
            raise
        readings = _unique_readings(cfg)
        aggs = kafka_io.latest_by_key(kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.aggregates))
        late = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.late)
        dup_topic = getattr(cfg.topics, "duplicates", None)
        dropped = len(kafka_io.read_topic(cfg.kafka_bootstrap, dup_topic)) if dup_topic else None
        alerts = [r["value"] for r in kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.alerts) if r["value"]]
        assert {a["rule_id"] for a in alerts} <= {RULE_ID}, {a["rule_id"] for a in alerts}
        rules_late = kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.rules_late)
        txns = _transactions(cfg)
        phase("read")
        result = RunResult(
            name=name,
            aggregates={(a["device_id"], a["sensor"], a["window_start_ms"]): a for a in aggs.values()},
            late={(r["value"]["device_id"], r["value"]["seq"], r["value"]["sensor"]) for r in late},
            readings=readings, duplicates_dropped=dropped, timing=timing, recovery=recovery, phases=phases,
            alerts=Counter(a["alert_id"] for a in alerts),
            rules_late={(r["value"]["record_key"], r["value"]["seq"]) for r in rules_late if r["value"]},
            transactions=txns)
        print(f"\nRUN {name}: {len(result.aggregates)} windows, {len(result.late)} late, "
              f"{sum(readings.values())} readings records ({len(readings)} unique), "
              f"{dropped} dropped as duplicates by the job; "
              f"{sum(result.alerts.values())} alert records ({len(result.alerts)} distinct ids, "
              f"{result.alert_duplicates} duplicates by id), {len(result.rules_late)} rules-late, "
              f"{sum(txns.values())} transactions records ({len(txns)} unique seq); "
              f"phases (s) {phases}", flush=True)
        return result


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def messages() -> list[Message]:
    return _messages()


@pytest.fixture(scope="module")
def cards() -> CardStream:
    return _card_stream()


@pytest.fixture(scope="module")
def runner(stack, messages, cards):
    r = _Runner(stack, messages, cards)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture(scope="module")
def baseline(runner) -> RunResult:
    return runner.run("baseline", None)


# ---------------------------------------------------------------------- tests
def _job_deduplicates() -> bool:
    """Whether the window job in this tree drops duplicates to a topic (its dedup)."""
    import jobs.sensor_windows as sw  # noqa: PLC0415

    return hasattr(sw, "DUPLICATE_COLUMNS")


def _alerts_exactly_once() -> bool:
    """Whether the rule jobs' alerts sink is exactly-once (the jobs inherit this environment)."""
    return RulesSettings.from_env().alerts_delivery == "exactly-once"


def test_baseline_is_right(baseline, messages):
    """The fault-free run equals an aggregation computed here from the messages, nothing late."""
    assert baseline.late == set()
    assert sum(baseline.readings.values()) == len(messages), "no duplicates without faults"
    assert set(baseline.readings) == {(m.device_id, m.seq) for m in messages}
    expected = _independent_aggregates(messages)
    missing = sorted(set(expected) - set(baseline.aggregates))
    last_ts = max(m.ts_ms for m in messages)
    # windows the running watermark (last ts - 10 s out-of-orderness) never closed: only the
    # end-of-stream drain fires them
    pending_at_drain = sorted(k for k in expected if k[2] + WINDOW_MS > last_ts - 10_000 - 1)
    assert not missing, (
        f"the job never emitted {len(missing)} windows {missing}; windows only the drain fires: "
        f"{pending_at_drain}")
    assert set(baseline.aggregates) == set(expected)
    for key, exp in expected.items():
        got = baseline.aggregates[key]
        assert (got["count"], got["min"], got["max"]) == (exp["count"], exp["min"], exp["max"]), key
        assert got["window_end_ms"] == key[2] + WINDOW_MS
        assert math.isclose(got["mean"], exp["mean"], rel_tol=1e-9), key


def test_baseline_alerts_are_right(baseline, cards):
    """The fault-free run's alerts are exactly the card_failed_burst matches of the stream,
    among them every injected failed_burst scenario; no transaction was late or lost."""
    assert cards.scenario_ids <= cards.expected_ids, "the model misses an injected scenario"
    assert set(baseline.transactions) == {e["seq"] for e in cards.events}, "transactions lost"
    assert sum(baseline.transactions.values()) == len(cards.events), "duplicated transactions"
    assert baseline.rules_late == set(), sorted(baseline.rules_late)[:20]
    got = set(baseline.alerts)
    missing_scenarios = sorted(sc["scenario_id"] for sc in cards.truth["scenarios"]
                               if sc["rule_id"] == RULE_ID and sc["expected_alert_id"] not in got)
    print(f"ALERTS baseline: {len(got)} distinct ids ({baseline.alert_duplicates} duplicates by id), "
          f"{len(cards.expected_ids)} expected, {len(cards.scenario_ids)} injected scenarios, "
          f"missing scenarios {missing_scenarios}", flush=True)
    assert not missing_scenarios, f"injected failed_burst scenarios without an alert: {missing_scenarios}"
    assert got == cards.expected_ids, (sorted(cards.expected_ids - got), sorted(got - cards.expected_ids))
    if _alerts_exactly_once():
        assert baseline.alert_duplicates == 0


_FAULT_PARAMS = list(FAULTS)


@pytest.mark.parametrize("fault", _FAULT_PARAMS)
def test_fault_loses_and_duplicates_nothing(runner, messages, cards, baseline, fault):
    run = runner.run(fault.replace("-", "_"), fault)
    rec = run.recovery
    print(f"RECOVERY {fault}: {rec['recovery_s']:.1f} s to the first new committed record in "
          f"{rec['measured_on']} (service ready after {rec['service_ready_s']:.1f} s"
          + (f", job RUNNING again after {rec['job_running_s']:.1f} s" if rec.get("job_running_s") else
             ", job did not restart")
          + (f", aggregates after {rec['aggregates_after_s']:.1f} s" if "aggregates_after_s" in rec else "")
          + f"); rule job {'restarted' if rec['rule_job_restarted'] else 'did not restart'}, "
          f"at the fault: {rec['rule_job_at_fault']}"
          + f"; bridge restarts: {rec['bridge_restarts'] or 'none'}"
          + ("" if rec.get("replay_running_at_fault", True) else "; the replay had ended before the fault")
          + f"; timing {run.timing}", flush=True)

    # sensor-readings: at-least-once by contract; nothing may be lost
    published = {(m.device_id, m.seq) for m in messages}
    missing = published - set(run.readings)
    dups = {k: n for k, n in run.readings.items() if n > 1}
    print(f"READINGS {fault}: {len(missing)} lost, {len(dups)} duplicated (device_id, seq) "
          f"({sum(dups.values()) - len(dups)} extra records): {sorted(dups)[:10]}", flush=True)

    # kill -9 of Mosquitto may lose the messages acknowledged since its last save (module doc);
    # then the aggregates must equal an aggregation of the readings that arrived
    allowed = chaos.MOSQUITTO_KILL_WINDOW if fault == "kill-mosquitto" else 0
    reference, mean_tol, against = baseline.aggregates, 1e-12, "the baseline"
    if missing and len(missing) <= allowed:
        arrived = [m for m in messages if (m.device_id, m.seq) not in missing]
        reference = {k: dict(v, window_end_ms=k[2] + WINDOW_MS) for k, v in _independent_aggregates(arrived).items()}
        mean_tol, against = 1e-9, "an aggregation of the readings that arrived"

    # aggregates record by record, by unique key
    lost = sorted(set(reference) - set(run.aggregates))
    extra = sorted(set(run.aggregates) - set(reference))
    differ = []
    for key in sorted(set(reference) & set(run.aggregates)):
        a, b = reference[key], run.aggregates[key]
        if ((a["count"], a["min"], a["max"], a["window_end_ms"]) != (b["count"], b["min"], b["max"], b["window_end_ms"])
                or not math.isclose(a["mean"], b["mean"], rel_tol=mean_tol)):
            differ.append((key, {k: a[k] for k in ("count", "min", "max", "mean")},
                           {k: b[k] for k in ("count", "min", "max", "mean")}))
    print(f"AGGREGATES {fault}: {len(reference)} windows in {against}; {len(lost)} lost, "
          f"{len(extra)} extra, {len(differ)} different", flush=True)

    # alerts by alert id (deterministic), as sets; duplicates reported
    alerts_lost = sorted(set(baseline.alerts) - set(run.alerts))
    alerts_extra = sorted(set(run.alerts) - set(baseline.alerts))
    alert_dups = {k: n for k, n in run.alerts.items() if n > 1}
    txn_missing = {e["seq"] for e in cards.events} - set(run.transactions)
    txn_dups = {k: n for k, n in run.transactions.items() if n > 1}
    print(f"ALERTS {fault}: {len(baseline.alerts)} distinct ids in the baseline; {len(alerts_lost)} lost, "
          f"{len(alerts_extra)} extra; {run.alert_duplicates} duplicate records by id "
          f"({len(alert_dups)} ids, sink {RulesSettings.from_env().alerts_delivery}); "
          f"{len(run.rules_late)} rules-late; transactions {len(txn_missing)} lost, {len(txn_dups)} duplicated",
          flush=True)

    # kill -9 of Mosquitto may lose the messages acknowledged in the pass it hit (module doc)
    if fault == "kill-taskmanager" and STACK_TASKMANAGERS > 1:
        tm = run.timing["extra"]
        placement = rec["subtasks_per_taskmanager_at_fault"]
        print(f"FAILOVER kill-taskmanager: subtasks per TaskManager at the fault {placement}; killed "
              f"{tm['killed_taskmanager_id']}; window job RUNNING on the survivor after {tm['failover_s']} s, "
              f"its subtasks then {tm.get('subtasks_per_taskmanager_after')}; new TaskManager registered after "
              f"{run.timing['ready_s']} s", flush=True)
        # the run's two jobs (one slot each) were spread over both TaskManagers (load-balance SLOTS)
        assert len(set(placement["window"]) | set(placement["rule"])) == STACK_TASKMANAGERS, placement
        assert tm["failover_s"] is not None, "the window job did not run on the surviving TaskManager's slots"
        assert tm["killed_taskmanager_id"] in tm["subtasks_per_taskmanager_before"]
        assert tm["killed_taskmanager_id"] not in tm["subtasks_per_taskmanager_after"]
    if fault == "kill-mosquitto":
        print(f"KILL-MOSQUITTO: {len(missing)} of {len(published)} acknowledged readings lost "
              f"(bound {allowed}): {sorted(missing)}", flush=True)
    assert len(missing) <= allowed, f"{len(missing)} readings lost (at most {allowed}): {sorted(missing)[:20]}"
    extra_copies = sum(run.readings.values()) - len(run.readings)
    if run.duplicates_dropped is not None and _job_deduplicates():
        # every extra copy in sensor-readings was dropped by the job's dedup, none counted twice
        assert run.duplicates_dropped == extra_copies, (run.duplicates_dropped, extra_copies)

    # late: none in either run, compared as sets
    assert run.late == baseline.late, (sorted(run.late - baseline.late)[:20], sorted(baseline.late - run.late)[:20])

    hint = ""
    if differ and dups:
        hint = (f"; sensor-readings holds {len(dups)} duplicated (device_id, seq) (allowed at-least-once "
                "upstream) and the window job counted them: it does not deduplicate on (device_id, seq)")
    assert not lost and not extra and not differ, f"lost {lost[:10]}, extra {extra[:10]}, differ {differ[:5]}{hint}"

    # the rule job's input must be exact for the comparison to mean anything
    assert not txn_missing and not txn_dups, (
        f"transactions lost {sorted(txn_missing)[:20]}, duplicated {sorted(txn_dups)[:20]} "
        "(the idempotent producer should prevent both)")
    assert run.rules_late == baseline.rules_late, (sorted(run.rules_late - baseline.rules_late)[:20],
                                                   sorted(baseline.rules_late - run.rules_late)[:20])
    assert not alerts_lost and not alerts_extra, f"alerts lost {alerts_lost}, extra {alerts_extra}"
    if _alerts_exactly_once():
        assert not alert_dups, f"duplicate alerts with an exactly-once sink: {alert_dups}"


def test_kill_mosquitto_keeps_the_queue_of_a_stopped_bridge(stack, messages):
    """The bridge stopped (its persistent session offline), every message published at QoS 1
    and acknowledged, so all of them wait in the bridge's session queue; then ``kill -9`` of
    Mosquitto and a new one. With the bridge started again, every acknowledged message must reach
    ``sensor-readings`` (at most :data:`chaos.MOSQUITTO_KILL_WINDOW` lost: the kill comes right
    after the last PUBACK, possibly before the next save), and
    Mosquitto must have dropped none (its ``$SYS`` counter)."""
    name = "kill_mosquitto_queued"
    cfg = _run_settings(stack.s, name)
    run_stack = Stack(cfg)
    _create_topics(cfg)
    stack.stop_service("bridge")
    before = run_stack.mosquitto_counters(fresh=False)
    creds = run_stack.provision(sorted({m.device_id for m in messages}))
    acked = publish(messages, cfg.mqtt_host, cfg.mqtt_port, credentials=creds, ca_file=cfg.mqtt_ca_file, window=100,
                    client_id=f"chaos-pub-{name}", ack_timeout_s=120)["acked"]
    assert acked == len(messages)
    timing = chaos.kill_mosquitto(run_stack)
    assert timing.bridge_restarts == [], "the bridge was stopped on purpose, not restarted"
    run_stack.start(services=("bridge",))  # the bridge's session comes back from mosquitto.db
    want = {(m.device_id, m.seq) for m in messages}
    allowed = chaos.MOSQUITTO_KILL_WINDOW

    def arrived() -> set:
        return want & set(_unique_readings(cfg))

    try:
        wait_for(lambda: len(arrived()) == len(want), 60, interval_s=0.5, what="every acknowledged message in Kafka")
    except TimeoutError:
        # nothing more may come: the bridge has forwarded all it received (the stats file is
        # rewritten every second), so what is missing now is lost
        wait_for(lambda: run_stack.bridge_stats().get("pending", 1) == 0, 30, what="the bridge to settle")
    got = arrived()
    after = run_stack.mosquitto_counters(fresh=True)
    lost = sorted(want - got)
    print(f"KILL-MOSQUITTO queued for a stopped bridge: {len(lost)} of {len(want)} acknowledged messages lost "
          f"(bound {allowed}); Mosquitto dropped {after.dropped_since(before)}; restarted after "
          f"{timing.ready_s:.1f} s; lost {lost}", flush=True)
    assert after.dropped_since(before) == 0
    assert len(lost) <= allowed, f"{len(lost)} acknowledged messages lost (at most {allowed}): {lost[:20]}"


def test_cluster_runs_flink_run_jobs_but_has_no_jar_upload(stack, baseline):
    """web.submit.enable is false (flink-conf/config.yaml): the REST API has no jar endpoints,
    while ``flink run`` (the CLI's job submission, POST /jobs) submitted every job of the
    baseline run."""
    from iotflink.runtime.flink_rest import FlinkRest, FlinkRestError  # noqa: PLC0415

    assert baseline.aggregates, "the baseline's jobs, submitted with flink run, produced output"
    api = FlinkRest(stack.s.flink_rest_url)
    for method, path in (("GET", "/jars"), ("POST", "/jars/upload")):
        with pytest.raises(FlinkRestError) as err:
            api.call(path, method=method)
        assert err.value.status == 404, (method, path, err.value.status)
