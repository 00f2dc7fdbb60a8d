"""Kafka admin (topics, consumer groups), reading topics back (whole-topic reads, end offsets,
consumer lag) and heartbeat records (end-of-stream :class:`Heartbeat`; the event time of the
bridge's watermark heartbeats, :class:`PartitionClock`).

This is the project's one home of Kafka admin calls: :func:`create_topics`,
:func:`list_topics`, :func:`delete_topics_and_groups`, :func:`committed_offsets`,
:func:`consumer_lag`, :func:`broker_count`.

Reads are used by the demo summary, the integration tests and the backpressure command. Every
read is ``read_committed``, so records of aborted or still-open transactions (the exactly-once
sinks) are never counted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from iotflink.errors import StackError
from iotflink.poll import PollTimeout, wait_for

log = logging.getLogger(__name__)


def _consumer(bootstrap: str, **kw: Any) -> KafkaConsumer:
    return KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                         isolation_level="read_committed", consumer_timeout_ms=1000, **kw)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> end offset (the last stable offset under read_committed) of ``topic``."""
    consumer = _consumer(bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[dict]:
    """Every committed record of ``topic`` from the beginning to its current end.

    Returns a list of dicts ``{"partition", "offset", "timestamp" (ms), "key" (str|None),
    "value" (decoded JSON, or {"_raw": str} if not JSON, or None for a tombstone)}``, ordered by
    partition then offset. Transaction markers take offsets but are not records, so the read
    stops at each partition's end offset rather than counting records.

    Raises:
        TimeoutError: the end was not reached within ``timeout_s``.
    """
    consumer = _consumer(bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not parts:
            return []
        ends = consumer.end_offsets(parts)
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out: list[dict] = []
        deadline = time.monotonic() + timeout_s
        remaining = {tp for tp in parts if ends[tp] > 0}
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: end offsets {ends} not reached in {timeout_s} s")
            batch = consumer.poll(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset >= ends[tp]:
                        continue
                    out.append(_decode(rec))
            for tp in list(remaining):
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        out.sort(key=lambda r: (r["partition"], r["offset"]))
        return out
    finally:
        consumer.close()


def delete_topics_and_groups(bootstrap: str, topics: Iterable[str], groups=(), client_id: str = "iotflink") -> None:
    """Delete those of ``topics`` that exist (waiting until the broker no longer lists them),
    then those consumer groups that exist and that ``groups`` names: an iterable of group ids,
    or a predicate ``group_id -> bool``. A group that went meanwhile is logged, not raised.

    Raises:
        TimeoutError: the broker still lists a deleted topic after 60 s.
    """
    wanted = groups if callable(groups) else set(groups).__contains__
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        listed = set(admin.list_topics())
        existing = [t for t in topics if t in listed]
        if existing:
            admin.delete_topics(existing)
            wait_for(lambda: not set(existing) & set(admin.list_topics()), 60, what="topic deletion")
        stale = sorted(g["group_id"] for g in admin.list_groups() if wanted(g["group_id"]))  # kafka-python 3.x: dicts
        if stale:
            try:
                admin.delete_groups(stale)
            except Exception as exc:  # noqa: BLE001 - a group may have gone meanwhile
                log.warning("deleting consumer groups %s: %s", stale, exc)
    finally:
        admin.close()


def list_topics(bootstrap: str, client_id: str = "iotflink") -> set[str]:
    """The names of every topic the broker lists (its metadata)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def create_topics(bootstrap: str, partitions: Mapping[str, int], replication_factor: int = 1,
                  configs: Mapping[str, str] | None = None, client_id: str = "iotflink",
                  timeout_s: float = 30.0) -> list[str]:
    """Create those topics of ``partitions`` (``{name: partition count}``) that do not exist, each
    with ``replication_factor`` replicas and the topic ``configs`` (e.g.
    ``{"min.insync.replicas": "1"}``); a topic that exists already is left as it is. Returns the
    names created, once the broker's metadata lists every one of them: the CreateTopics answer
    can come before that, and a client asking for the topic's partitions in between
    (:func:`end_offsets`, :func:`read_topic`) would see none.

    Raises:
        StackError: the broker refused to create a topic (message names it and the cause), or
            did not list a created one within ``timeout_s`` seconds.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        existing = set(admin.list_topics())
        created = []
        for topic, count in partitions.items():
            if topic in existing:
                continue
            try:
                admin.create_topics([NewTopic(topic, count, replication_factor, topic_configs=dict(configs or {}))])
                created.append(topic)
            except TopicAlreadyExistsError:
                pass
            except Exception as exc:
                raise StackError(f"kafka: creating topic {topic} failed: {exc}") from exc
        if created:
            try:
                wait_for(lambda: set(created) <= set(admin.list_topics()), timeout_s, interval_s=0.1,
                         what=f"topics {', '.join(created)} in the broker's metadata")
            except PollTimeout as exc:
                raise StackError(f"kafka: {exc}") from exc
        return created
    finally:
        admin.close()


def broker_count(bootstrap: str, request_timeout_ms: int = 3000, client_id: str = "iotflink-probe") -> int:
    """How many brokers the cluster's metadata lists (DescribeCluster); a readiness probe.

    Raises:
        kafka.errors.KafkaError: no broker answered within ``request_timeout_ms``.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms, client_id=client_id)
    try:
        return len(admin.describe_cluster().get("brokers") or [])
    finally:
        admin.close()


def committed_offsets(bootstrap: str, group: str, client_id: str = "iotflink-offsets") -> dict[tuple[str, int], int]:
    """Offsets committed by consumer ``group``: ``{(topic, partition): offset}`` (the next
    offset to read), only partitions with a committed offset >= 0.

    Uses kafka-python 3's ``KafkaAdminClient.list_group_offsets`` (2.x called it
    ``list_consumer_group_offsets``; both are tried).
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        if hasattr(admin, "list_group_offsets"):
            offsets = admin.list_group_offsets({group: None}).get(group, {})
        else:  # kafka-python 2.x
            offsets = admin.list_consumer_group_offsets(group)
    finally:
        admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()
            if meta is not None and meta.offset is not None and meta.offset >= 0}


def _decode(rec: Any) -> dict:
    value: Any
    if rec.value is None:
        value = None
    else:
        try:
            value = json.loads(rec.value)
        except (ValueError, UnicodeDecodeError):
            value = {"_raw": rec.value.decode("utf-8", errors="replace")}
    key = rec.key.decode("utf-8", errors="replace") if rec.key is not None else None
    return {"partition": rec.partition, "offset": rec.offset, "timestamp": rec.timestamp,
            "key": key, "value": value}


def latest_by_key(records: list[dict]) -> dict[str, dict]:
    """Upsert semantics: the last value per key; a tombstone (value None) deletes the key."""
    table: dict[str, dict] = {}
    for rec in sorted(records, key=lambda r: (r["partition"], r["offset"])):
        if rec["value"] is None:
            table.pop(rec["key"], None)
        else:
            table[rec["key"]] = rec["value"]
    return table


def consumer_lag(bootstrap: str, group: str, topic: str) -> dict[int, dict[str, int | None]]:
    """Consumer lag of ``group`` on ``topic``, per partition.

    Returns ``{partition: {"end": int, "committed": int|None, "lag": int|None}}``; ``lag`` is
    ``end - committed`` (None while the group has committed nothing for the partition). A
    Flink Kafka source commits its offsets when a checkpoint completes, so its lag is at most
    one checkpoint interval stale.
    """
    ends = end_offsets(bootstrap, topic)
    committed = committed_offsets(bootstrap, group, client_id="iotflink-lag")
    out: dict[int, dict[str, int | None]] = {}
    for part, end in ends.items():
        off = committed.get((topic, part))
        out[part] = {"end": end, "committed": off, "lag": None if off is None else max(0, end - off)}
    return out


def iter_values(records: list[dict]) -> Iterator[dict]:
    """The non-tombstone values of ``records``."""
    for rec in records:
        if rec["value"] is not None:
            yield rec["value"]


#: ``device_id`` of end-of-stream heartbeat records (empty ``readings``: they carry no value).
HEARTBEAT_DEVICE = "__heartbeat__"


class Heartbeat:
    """Keep every partition of a topic active while a bounded replay's job is drained.

    Writes :func:`heartbeat_value` (``{"device_id": "__heartbeat__", "seq": n, "ts": ts_ms,
    "readings": {}, "txn_id": "__heartbeat__", "card_id": "__heartbeat__", "event_type":
    "heartbeat"}``) to each partition of ``topic`` every ``interval_s`` seconds (kafka-python,
    acks=all) until :meth:`stop`. The one record shape has every field the jobs' ``json-dlq``
    sources require, of ``sensor-readings`` and of ``transactions`` alike, so it is read (not
    dead-lettered: a dead letter has no event time and would not move the watermark). It holds
    no sensor value (the window job's ``UNNEST`` of an empty map yields no row) and no purchase,
    failure or address change (no rule matches it, and its card id is its own key), so results
    and their accounting do not change.

    Why: at the end of a bounded replay every partition is idle, and nothing advances the
    watermark (an idle source emits none; Flink docs, "Generating Watermarks", idleness);
    a drained stop-with-savepoint did not fire the last windows in
    Flink 2.2 (tests/test_chaos.py saw 19 of 21). Heartbeats advance every partition's
    watermark explicitly. Used as a context manager by
    :meth:`iotflink.runtime.flinkctl.FlinkCtl.drain_bounded_replay`, around its wait for the watermark
    and the stop.

    Args:
        bootstrap: Kafka ``host:port``.
        topic: the job's source topic (``sensor-readings``).
        ts_ms: event time of the heartbeats, epoch ms (the end of the replay's event time,
            see :meth:`iotflink.runtime.flinkctl.FlinkCtl.drain_bounded_replay`).
        interval_s: seconds between rounds; keep it below the job's idle timeout.
    """

    def __init__(self, bootstrap: str, topic: str, ts_ms: int, interval_s: float = 1.0) -> None:
        import threading  # noqa: PLC0415

        from kafka import KafkaProducer  # noqa: PLC0415

        self.topic, self.ts_ms, self.interval_s = topic, ts_ms, interval_s
        self.sent = 0
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                       client_id="iotflink-heartbeat")
        self._partitions = sorted(self._producer.partitions_for(topic) or [0])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for part in self._partitions:
                value = heartbeat_value(self.sent, self.ts_ms)
                self._producer.send(self.topic, json.dumps(value).encode(), key=HEARTBEAT_DEVICE.encode(),
                                    partition=part)
                self.sent += 1
            self._producer.flush()
            self._stop.wait(self.interval_s)

    def start(self) -> Heartbeat:
        """Start sending; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending and close the producer."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._producer.close()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def heartbeat_value(seq: int, ts_ms: int) -> dict:
    """The value of one end-of-stream heartbeat record (see :class:`Heartbeat`)."""
    return {"device_id": HEARTBEAT_DEVICE, "seq": seq, "ts": ts_ms, "readings": {},
            "txn_id": HEARTBEAT_DEVICE, "card_id": HEARTBEAT_DEVICE, "event_type": "heartbeat"}


def is_heartbeat(value: dict | None) -> bool:
    """True for a heartbeat record (end-of-stream, :class:`Heartbeat`, or a watermark
    heartbeat of the bridge, :class:`PartitionClock`)."""
    return bool(value) and value.get("device_id") == HEARTBEAT_DEVICE


class PartitionClock:
    """Event time per Kafka partition, and the watermark heartbeats that keep quiet partitions
    moving (used by the bridge; the window job then needs no idle timeout).

    Why: the window job at parallelism > 1 is exact only if no channel inside it ever goes idle
    (``jobs/sensor_windows.py``, module docstring), so it runs without source idleness, and a
    partition without records would hold its watermark back for ever. Whoever writes the
    partitions knows the event time: the bridge calls :meth:`observe` for every reading Kafka
    confirmed, and every ``interval`` writes, to each partition :meth:`due` names, a heartbeat
    record (:func:`heartbeat_value`: no sensor value) with the event time given.

    Which event time: ``H`` = the lowest of the highest event times of the *active* partitions
    (a reading confirmed within ``quiet_ms``), or, when no partition is active, the highest
    event time of all. A quiet partition is raised to ``H``, never beyond. The job's watermark
    is the minimum over its partitions, so with at least one partition active it becomes the
    minimum over the active ones, which is exactly what a source idle timeout of ``quiet_ms``
    gives (an idle partition leaves the minimum); with none active it becomes the maximum over
    all, as Flink does when every input is idle (the watermark of the most advanced input).
    Hence a heartbeat never makes a reading late that the idle timeout would have let
    through; and since ``H`` comes from the readings' own timestamps, never the wall clock, a
    replay of historical data works unchanged. A heartbeat is due when ``H`` is above the event
    time of the partition's last record (reading or heartbeat): Flink SQL's watermark generator
    takes the watermark of the last row it saw at each periodic emit (Flink 2.2
    ``WatermarkPushDownSpec.DefaultWatermarkGenerator``; emitted watermarks never decrease), so
    a straggler at the end of a partition would otherwise hold its watermark back.

    Thread-safe (observations come from Kafka callbacks, :meth:`due` from a timer thread).

    One writer's view: with several bridge processes writing the same partitions, each one
    knows only its own records, so one that sees a partition quiet while another writes it may
    raise it further than an idle timeout would (more values in ``sensor-late``, none
    miscounted: exactness does not depend on the heartbeats' event time, only on the job having
    no idle channel).

    Args:
        quiet_ms: a partition without a confirmed reading for this long (ms, wall clock of the
            caller's ``now_ms``) is quiet; > 0.

    Raises:
        ValueError: ``quiet_ms`` is not positive.
    """

    def __init__(self, quiet_ms: int) -> None:
        if quiet_ms <= 0:
            raise ValueError(f"quiet period must be positive: {quiet_ms} ms")
        import threading  # noqa: PLC0415

        self.quiet_ms = quiet_ms
        self._lock = threading.Lock()
        self._max_ts: dict[int, int] = {}    # partition -> highest event time of a reading (ms)
        self._last_ms: dict[int, int] = {}   # partition -> wall clock of its last reading (ms)
        self._tail: dict[int, int] = {}      # partition -> event time of its last record (ms)

    def observe(self, partition: int, ts_ms: int, now_ms: int) -> None:
        """A reading with event time ``ts_ms`` is in ``partition`` (confirmed at ``now_ms``)."""
        with self._lock:
            prev = self._max_ts.get(partition)
            self._max_ts[partition] = ts_ms if prev is None else max(prev, ts_ms)
            self._last_ms[partition] = now_ms
            self._tail[partition] = ts_ms

    def heartbeat_ts(self, now_ms: int) -> int | None:
        """``H`` at ``now_ms`` (see the class doc); None before the first reading."""
        with self._lock:
            return self._heartbeat_ts(now_ms)

    def _heartbeat_ts(self, now_ms: int) -> int | None:
        if not self._max_ts:
            return None
        active = [ts for p, ts in self._max_ts.items() if now_ms - self._last_ms[p] < self.quiet_ms]
        return min(active) if active else max(self._max_ts.values())

    def due(self, partitions: Iterable[int], now_ms: int) -> dict[int, int]:
        """Heartbeats to write now: ``{partition: event time ms}`` for each quiet partition of
        ``partitions`` whose last record is below ``H``; they count as written (call
        :meth:`forget` for one that was not)."""
        with self._lock:
            h = self._heartbeat_ts(now_ms)
            if h is None:
                return {}
            out: dict[int, int] = {}
            for p in partitions:
                if p in self._last_ms and now_ms - self._last_ms[p] < self.quiet_ms:
                    continue  # active: its own readings carry its event time
                if h > self._tail.get(p, h - 1):
                    out[p] = self._tail[p] = h
            return out

    def forget(self, partition: int) -> None:
        """The last heartbeat of ``partition`` was not written: make it due again."""
        with self._lock:
            self._tail.pop(partition, None)
