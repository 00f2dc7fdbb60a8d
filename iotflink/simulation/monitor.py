"""Recovery measured on the pipeline's output: the ``read_committed`` end offsets of chosen
topics sampled from one long-lived consumer (:class:`OutputMonitor`), and whether a consumer
group has committed everything there is (:func:`group_caught_up`). Used by the fault tests
(``tests/test_chaos.py``), ``bench/recovery_bench.py`` and the scenarios. Latency as the
scenarios measure it: the wall time each output key is first received by a ``read_committed``
consumer (:class:`FirstSeen`), summarised by nearest-rank percentiles (:func:`percentile`,
:func:`latency_summary`).

For exactly-once sinks the end offset under ``read_committed`` is the last stable offset, which
moves when a transaction commits, i.e. when new output becomes visible (Kafka documentation,
``isolation.level``), so "the first new committed record after a fault" is the first sample
whose end offset exceeds the one seen before the fault.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from iotflink.errors import IotFlinkError
from iotflink.poll import wait_for

log = logging.getLogger(__name__)


class OutputMonitor:
    """Samples the ``read_committed`` end offsets of ``topics`` every ``interval_s`` seconds.

    One consumer lives for the whole run (no per-sample connection cost). While the broker is
    down a sample fails and is skipped. ``samples`` holds ``(t_monotonic, {topic: sum of end
    offsets})``. For exactly-once sinks the end offset under read_committed is the last stable
    offset, which moves when a transaction commits, i.e. when new output becomes visible.
    """

    def __init__(self, bootstrap: str, topics: list[str], interval_s: float = 0.2) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.interval_s = interval_s
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="output-monitor", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> OutputMonitor:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start sampling in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and close the consumer."""
        self._halt.set()
        self._thread.join(timeout=15)

    def _consumer(self):
        from kafka import KafkaConsumer  # noqa: PLC0415

        return KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed", request_timeout_ms=3000,
                             session_timeout_ms=2000, heartbeat_interval_ms=500,
                             reconnect_backoff_max_ms=500, client_id="iotflink-chaos-monitor")

    def _run(self) -> None:
        from kafka import TopicPartition  # noqa: PLC0415

        consumer = None
        parts: list = []
        try:
            while not self._halt.is_set():
                t0 = time.monotonic()
                try:
                    if consumer is None:
                        consumer = self._consumer()
                    if not parts:
                        found = [TopicPartition(topic, p) for topic in self.topics
                                 for p in sorted(consumer.partitions_for_topic(topic) or [])]
                        if {tp.topic for tp in found} != set(self.topics):
                            raise IotFlinkError(f"no metadata yet for {self.topics}")
                        parts = found
                    ends = consumer.end_offsets(parts, timeout_ms=2000)
                    totals = {topic: 0 for topic in self.topics}
                    for tp, off in ends.items():
                        totals[tp.topic] += off
                    with self._lock:
                        self.samples.append((time.monotonic(), totals))
                except Exception as exc:  # noqa: BLE001 - broker down: skip the sample
                    log.debug("output monitor: sample failed: %r", exc)
                self._halt.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))
        finally:
            if consumer is not None:
                try:
                    consumer.close()
                except Exception:  # noqa: BLE001, S110 - closing the monitor's consumer is best effort
                    pass

    def value_at(self, topic: str, t: float) -> int | None:
        """End offset sum of ``topic`` in the last sample taken at or before ``t``."""
        with self._lock:
            before = [s for s in self.samples if s[0] <= t]
        return before[-1][1][topic] if before else None

    def latest(self, topic: str) -> int | None:
        """End offset sum of ``topic`` in the newest sample."""
        with self._lock:
            return self.samples[-1][1][topic] if self.samples else None

    def first_increase_after(self, topic: str, t: float, base_before: bool = False) -> float | None:
        """Time (monotonic) of the first sample whose end offset of ``topic`` is above the base
        value; None if there is none yet.

        The base is the first sample taken at or after ``t`` (use a ``t`` after which the
        output cannot move until recovery, e.g. just after the faulted process died: a sample
        taken before ``t`` may predate a last pre-fault commit). With ``base_before`` it is the
        last sample taken at or before ``t`` instead (for a broker outage, when no sample can
        be taken after the stop).
        """
        with self._lock:
            samples = list(self.samples)
        if base_before:
            before = [s for s in samples if s[0] <= t]
            if not before:
                return None
            base = before[-1][1][topic]
            later = [s for s in samples if s[0] > t]
        else:
            after = [s for s in samples if s[0] >= t]
            if not after:
                return None
            base = after[0][1][topic]
            later = after[1:]
        for ts, totals in later:
            if totals[topic] > base:
                return ts
        return None

    def wait_increase_after(self, topic: str, t: float, timeout_s: float, base_before: bool = False) -> float:
        """Poll until :meth:`first_increase_after` has an answer; return it (monotonic).

        Raises:
            TimeoutError: no new output within ``timeout_s``.
        """
        found: list[float] = []

        def check() -> bool:
            got = self.first_increase_after(topic, t, base_before)
            if got is not None:
                found.append(got)
            return got is not None

        wait_for(check, timeout_s, interval_s=self.interval_s, what=f"new committed output in {topic}")
        return found[0]


def group_caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """True when ``group`` has committed the current end offset of every non-empty partition
    of ``topic`` (a Flink Kafka source commits on checkpoint completion, so this means a
    checkpoint completed after the source read everything there is)."""
    from iotflink import kafka_io  # noqa: PLC0415

    ends = kafka_io.end_offsets(bootstrap, topic)
    committed = kafka_io.committed_offsets(bootstrap, group, client_id="iotflink-chaos-offsets")
    return all(end == 0 or committed.get((topic, part), -1) >= end for part, end in ends.items())


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0 < p <= 100) of ``values`` by the nearest-rank method (the
    smallest value with at least p % of the values at or below it); None for no values.

    Raises:
        ValueError: ``p`` outside (0, 100].
    """
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100]: {p}")
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_summary(latencies_ms: Sequence[float]) -> dict:
    """``{"n", "p50_ms", "p99_ms", "max_ms"}`` of ``latencies_ms`` (None values for none)."""
    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 1)

    return {"n": len(latencies_ms), "p50_ms": r(percentile(latencies_ms, 50)),
            "p99_ms": r(percentile(latencies_ms, 99)), "max_ms": r(max(latencies_ms)) if latencies_ms else None}


class FirstSeen:
    """A consumer thread on ``topic`` (``read_committed``, from the beginning) that records the
    wall time (epoch ms) each key of ``key_of(value)`` is first received: ``seen[key] = ms``.

    ``value`` is the record's JSON value; records that are not JSON or that ``key_of`` cannot
    key (ValueError, TypeError, KeyError) are counted in ``unkeyed``, and a key of None is
    skipped. A failure of the consumer thread is logged and kept in ``errors``.
    """

    def __init__(self, bootstrap: str, topic: str, key_of: Callable[[Any], Hashable | None]) -> None:
        from kafka import KafkaConsumer  # noqa: PLC0415

        self.seen: dict = {}
        self.unkeyed = 0
        self.errors: list[Exception] = []
        self._key_of = key_of
        self._consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, isolation_level="read_committed",
                                       auto_offset_reset="earliest", enable_auto_commit=False,
                                       client_id=f"iotflink-scenario-{topic}", consumer_timeout_ms=500)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"first-seen-{topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self._consumer.poll(timeout_ms=200, max_records=5000)
                now = time.time() * 1000
                for recs in batch.values():
                    for rec in recs:
                        try:
                            key = self._key_of(json.loads(rec.value))
                        except (ValueError, TypeError, KeyError):
                            self.unkeyed += 1
                            continue
                        if key is not None:
                            self.seen.setdefault(key, now)
        except Exception as exc:  # noqa: BLE001 - reported by stop()
            self.errors.append(exc)

    def stop(self) -> dict:
        """Stop the thread, close the consumer; returns ``seen``."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()
        if self.errors:
            log.warning("consumer thread failed: %s", self.errors[0])
        return self.seen
