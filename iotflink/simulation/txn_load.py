"""A paced load generator of card transactions into Kafka: the writer of the ``payment-fraud``
scenario, able to hold 10,000 transactions/s on this 2-core machine.

Input: a plan of ``(offset s from the start, seq, card_id, declined)`` tuples (the scenario's
``plan``, numbered). Each transaction is written when its offset is due, as the JSON record of
:func:`txn_value` (the ``transactions`` table of ``sql/ddl.sql``), key = ``card_id``, with
event time ``ts`` = the wall clock (epoch ms) at the moment it is handed to the producer; the
Kafka record timestamp is set to the same ``ts``, so every transaction carries its own
ingestion time (what the scenario measures alert latency from).

What made the former writer slow (one kafka-python producer, a dict and ``json.dumps`` per
record, a sleep before each record; cProfile of 100,000 records): kafka-python's
``send`` (record accumulator, partitioner, record encoding, all in Python) took about 80 % of the
time, JSON encoding about 11 %, the pacing sleeps the rest. Hence:

- **encoding**: a record is one bytes format of a template (:func:`encode_txn`), equal byte for
  byte to ``json.dumps(txn_value(...))`` (a unit test holds it to that);
- **producer**: librdkafka through ``confluent-kafka`` by default (``client="confluent"``): the
  same settings as the project's kafka-python producers (idempotent producer, ``acks=all``,
  ``linger.ms`` 5), about 20x less CPU per record (``bench/fraud_writer_bench.py``);
  ``client="kafka-python"`` keeps the former client for comparison;
- **pacing**: the writer sleeps only when the next transaction is more than 1 ms ahead, so at
  10,000/s it writes bursts of about 10 records instead of sleeping 10,000 times a second;
- **processes**: ``writers > 1`` starts that many writer processes (``spawn``), each pacing
  its share on one shared start instant (``CLOCK_MONOTONIC`` is system-wide on Linux). The
  cards are split among them (:func:`split_by_card`), so all transactions of a card come from
  one process, in plan order: per-card order holds, as the rules' ``MATCH_RECOGNIZE`` and the
  reference need.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from iotflink.errors import IotFlinkError

log = logging.getLogger(__name__)

#: One planned transaction: (offset s from the start, seq, card_id, declined).
PlannedTxn = tuple[float, int, str, bool]
CLIENTS = ("confluent", "kafka-python")
ENCODINGS = ("template", "json")
#: The decline reason of a declined transaction (TabFormer ``Errors?`` value).
DECLINE_REASON = "Insufficient Balance"
#: Producer settings shared by both clients: the project's (``bridge/service.py``) idempotent
#: producer with acks=all and a 5 ms linger.
LINGER_MS = 5
#: The writer sends every transaction due within this much of now in one burst (s).
BURST_S = 0.001


class TxnLoadError(IotFlinkError):
    """A writer could not connect, a record was refused, or records were not acknowledged."""


def txn_value(seq: int, card: str, declined: bool, ts_ms: int) -> dict:
    """The transaction record (JSON value) of plan entry ``seq``: ``{"txn_id": "sc-<seq>",
    "seq", "user_id": 0, "card_id", "ts" (event time, epoch ms), "event_type": "purchase",
    "amount_usd": 25.0, "use_chip", "merchant_name", "merchant_city", "merchant_state", "zip",
    "mcc", "errors": DECLINE_REASON or None, "new_address": None}``."""
    return {"txn_id": f"sc-{seq}", "seq": seq, "user_id": 0, "card_id": card, "ts": ts_ms,
            "event_type": "purchase", "amount_usd": 25.0, "use_chip": "Chip Transaction",
            "merchant_name": "m", "merchant_city": "c", "merchant_state": "s", "zip": "0", "mcc": 5411,
            "errors": DECLINE_REASON if declined else None, "new_address": None}


def _template() -> tuple[bytes, dict[bool, bytes]]:
    # json.dumps of a record with marker values, cut at the markers: the head up to the card,
    # and the rest after ts (one per declined flag); the fields in between are formatted
    head = json.dumps(txn_value(0, "", False, 0)).split('"txn_id"')[0] + '"txn_id": "sc-%d", "seq": %d, '
    tails = {}
    for declined in (False, True):
        full = json.dumps(txn_value(0, "", declined, 0))
        tails[declined] = full.split('"ts": 0, ', 1)[1].encode()
    user = json.dumps(txn_value(0, "", False, 0)).split('"seq": 0, ', 1)[1].split('"card_id"')[0]
    return (head + user + '"card_id": %s, "ts": %d, ').encode(), tails


_HEAD, _TAILS = _template()


def encode_txn(seq: int, card_json: bytes, declined: bool, ts_ms: int) -> bytes:
    """The JSON bytes of :func:`txn_value` ``(seq, card, declined, ts_ms)``, equal to
    ``json.dumps(txn_value(...)).encode()``; ``card_json`` = ``json.dumps(card).encode()``
    (encoded once per card)."""
    return _HEAD % (seq, seq, card_json, ts_ms) + _TAILS[declined]


def split_by_card(txns: Sequence[PlannedTxn], writers: int) -> list[list[PlannedTxn]]:
    """``txns`` split into ``writers`` shares by card (CRC-32 of the card id modulo
    ``writers``): every card's transactions in one share, in their order in ``txns``.

    Raises:
        ValueError: ``writers`` < 1.
    """
    if writers < 1:
        raise ValueError(f"writers must be >= 1: {writers}")
    shares: list[list[PlannedTxn]] = [[] for _ in range(writers)]
    for t in txns:
        shares[zlib.crc32(t[2].encode()) % writers].append(t)
    return shares


@dataclass
class WriterStats:
    """What one writer (process) did.

    Fields:
        records: transactions handed to the producer.
        acked: transactions the broker acknowledged.
        errors: the first delivery errors (text), at most 10; ``error_count`` counts them all.
        end_s: seconds from the shared start to the last acknowledgement.
        behind_max_ms: the most a transaction was handed to the producer after its planned time
            (ms): the writer kept the planned rate while this stays small.
        cpu_s: CPU seconds of the writer (process time, the producer's threads included; for
            an in-process writer the whole process's from the start of writing).
    """

    records: int = 0
    acked: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    end_s: float = 0.0
    behind_max_ms: float = 0.0
    cpu_s: float = 0.0


@dataclass
class WriteResult:
    """What :func:`write_paced` did: the writers' stats and the totals.

    Fields:
        writers: per writer (process) :class:`WriterStats`.
        client / encoding: as asked.
        took_s: from the shared start to the last acknowledgement of any writer (s).
    """

    writers: list[WriterStats]
    client: str
    encoding: str
    took_s: float

    @property
    def records(self) -> int:
        """Transactions written (handed to the producers)."""
        return sum(w.records for w in self.writers)

    @property
    def acked(self) -> int:
        """Transactions acknowledged by the broker."""
        return sum(w.acked for w in self.writers)

    @property
    def rate_per_s(self) -> float:
        """Acknowledged transactions per second of ``took_s``."""
        return self.acked / self.took_s if self.took_s > 0 else 0.0

    @property
    def behind_max_ms(self) -> float:
        """The most any transaction was written after its planned time (ms)."""
        return max((w.behind_max_ms for w in self.writers), default=0.0)

    @property
    def cpu_us_per_record(self) -> float | None:
        """Writer CPU time per transaction (microseconds)."""
        return 1e6 * sum(w.cpu_s for w in self.writers) / self.records if self.records else None


class _Confluent:
    """confluent-kafka producer with delivery accounting."""

    def __init__(self, bootstrap: str, topic: str, client_id: str, stats: WriterStats) -> None:
        from confluent_kafka import KafkaException, Producer  # noqa: PLC0415

        self.topic, self.stats = topic, stats
        self.p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                           "linger.ms": LINGER_MS, "client.id": client_id})
        try:
            self.p.list_topics(topic, timeout=30)
        except KafkaException as exc:
            raise TxnLoadError(f"Kafka at {bootstrap}: no metadata for {topic}: {exc}") from exc

    def _delivered(self, err, _msg) -> None:
        if err is None:
            self.stats.acked += 1
        else:
            self.stats.error_count += 1
            if len(self.stats.errors) < 10:
                self.stats.errors.append(str(err))

    def send(self, key: bytes, value: bytes, ts_ms: int) -> None:
        while True:
            try:
                self.p.produce(self.topic, value, key, timestamp=ts_ms, on_delivery=self._delivered)
                break
            except BufferError:  # the local queue is full: serve deliveries, then retry
                self.p.poll(0.01)
        self.p.poll(0)

    def finish(self, timeout_s: float) -> None:
        left = self.p.flush(timeout_s)
        if left:
            raise TxnLoadError(f"{left} transactions not acknowledged within {timeout_s} s")


class _KafkaPython:
    """kafka-python producer (the project's other Kafka client) with delivery accounting."""

    def __init__(self, bootstrap: str, topic: str, client_id: str, stats: WriterStats) -> None:
        from kafka import KafkaProducer  # noqa: PLC0415
        from kafka.errors import KafkaError  # noqa: PLC0415

        self.topic, self.stats = topic, stats
        try:
            self.p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                   linger_ms=LINGER_MS, batch_size=64 * 1024, client_id=client_id)
            self.p.partitions_for(topic)
        except KafkaError as exc:
            raise TxnLoadError(f"Kafka at {bootstrap}: no producer for {topic}: {exc}") from exc

    def _ok(self, _meta) -> None:
        self.stats.acked += 1

    def _err(self, exc) -> None:
        self.stats.error_count += 1
        if len(self.stats.errors) < 10:
            self.stats.errors.append(str(exc))

    def send(self, key: bytes, value: bytes, ts_ms: int) -> None:
        self.p.send(self.topic, key=key, value=value, timestamp_ms=ts_ms).add_callback(self._ok).add_errback(self._err)

    def finish(self, timeout_s: float) -> None:
        self.p.flush(timeout_s)
        self.p.close(timeout=timeout_s)
        left = self.stats.records - self.stats.acked - self.stats.error_count
        if left:
            raise TxnLoadError(f"{left} transactions not acknowledged within {timeout_s} s")


def write_share(bootstrap: str, topic: str, share: Sequence[PlannedTxn], start: float, *,
                client: str = "confluent", encoding: str = "template", client_id: str = "iotflink-txn-load",
                producer=None, timeout_s: float = 60.0) -> WriterStats:
    """Write ``share`` paced on ``start`` (a ``time.monotonic()`` instant: transaction ``i`` is
    due at ``start + offset_i``); returns its :class:`WriterStats` once every record is
    acknowledged or failed.

    Args:
        client: ``confluent`` (librdkafka) or ``kafka-python``.
        encoding: ``template`` (:func:`encode_txn`) or ``json`` (a dict and ``json.dumps`` per
            record, as the former writer did; for the benchmark).
        producer: a producer made for this share already (see :func:`_producer`), else one is made.
    Raises:
        TxnLoadError: no connection, or records left unacknowledged after ``timeout_s``.
    """
    stats = producer.stats if producer is not None else WriterStats()
    prod = producer or _producer(client, bootstrap, topic, client_id, stats)
    cards: dict[str, tuple[bytes, bytes]] = {}
    cpu0, behind = time.process_time(), 0.0
    sleep, monotonic, time_ns = time.sleep, time.monotonic, time.time_ns
    for offset, seq, card, declined in share:
        due = start + offset
        now = monotonic()
        if due - now > BURST_S:
            sleep(due - now)  # pacing the writer to the planned rate
        elif now - due > behind:
            behind = now - due
        ts = time_ns() // 1_000_000
        enc = cards.get(card)
        if enc is None:
            enc = cards[card] = (card.encode(), json.dumps(card).encode())
        value = encode_txn(seq, enc[1], declined, ts) if encoding == "template" else \
            json.dumps(txn_value(seq, card, declined, ts)).encode()
        prod.send(enc[0], value, ts)
        stats.records += 1
    prod.finish(timeout_s)
    stats.end_s = time.monotonic() - start
    stats.behind_max_ms = round(behind * 1000, 1)
    stats.cpu_s = time.process_time() - cpu0
    return stats


def _producer(client: str, bootstrap: str, topic: str, client_id: str, stats: WriterStats):
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {CLIENTS}: {client!r}")
    return (_Confluent if client == "confluent" else _KafkaPython)(bootstrap, topic, client_id, stats)


def _writer_process(bootstrap, topic, share, client, encoding, client_id, ready, go, start, out) -> None:
    # one writer process: connect, wait for every writer to be ready, write its share on the
    # shared start instant, report its stats (or the error) on `out`
    try:
        stats = WriterStats()
        prod = _producer(client, bootstrap, topic, client_id, stats)
        ready.wait()
        go.wait()
        out.put(write_share(bootstrap, topic, share, start.value, client=client, encoding=encoding, producer=prod))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        ready.abort()
        go.abort()
        out.put(f"{type(exc).__name__}: {exc}")


def write_paced(bootstrap: str, topic: str, txns: Sequence[PlannedTxn], writers: int = 1, *,
                client: str = "confluent", encoding: str = "template",
                client_id: str = "iotflink-txn-load", lead_s: float = 0.2) -> WriteResult:
    """Write ``txns`` (:data:`PlannedTxn`, offsets from the start in s) to ``topic`` at their
    planned times with ``writers`` writers (1: in this process; more: one process each, the
    cards split among them by :func:`split_by_card`), starting ``lead_s`` after every writer
    has connected.

    Returns:
        :class:`WriteResult` (every transaction acknowledged).
    Raises:
        ValueError: ``writers`` < 1, unknown ``client`` or ``encoding``.
        TxnLoadError: a writer failed, or a record was refused.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}: {encoding!r}")
    shares = split_by_card(txns, writers)
    if writers == 1:
        stats = WriterStats()
        prod = _producer(client, bootstrap, topic, client_id, stats)
        start = time.monotonic() + lead_s
        results = [write_share(bootstrap, topic, shares[0], start, client=client, encoding=encoding, producer=prod)]
    else:
        results = _write_in_processes(bootstrap, topic, shares, client, encoding, client_id, lead_s)
    failed = [e for w in results for e in w.errors]
    if failed:
        raise TxnLoadError(f"{sum(w.error_count for w in results)} transactions refused, first: {failed[0]}")
    return WriteResult(results, client, encoding, max(w.end_s for w in results))


def _write_in_processes(bootstrap, topic, shares, client, encoding, client_id, lead_s) -> list[WriterStats]:
    import multiprocessing  # noqa: PLC0415
    import threading  # noqa: PLC0415

    # spawn, not fork: the caller may have threads (the scenario tests run scenarios in threads)
    ctx = multiprocessing.get_context("spawn")
    n = len(shares)
    ready, go = ctx.Barrier(n + 1), ctx.Barrier(n + 1)
    start, out = ctx.Value("d", 0.0), ctx.Queue()
    procs = [ctx.Process(target=_writer_process, name=f"txn-writer-{i}", daemon=True,
                         args=(bootstrap, topic, share, client, encoding, f"{client_id}-{i}", ready, go, start, out))
             for i, share in enumerate(shares)]
    for p in procs:
        p.start()
    try:
        try:
            ready.wait(timeout=120)
            start.value = time.monotonic() + lead_s
            go.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass  # a writer failed: its error is on `out`
        results = []
        for _ in procs:
            r = out.get(timeout=600)
            if isinstance(r, str):
                raise TxnLoadError(f"a writer process failed: {r}")
            results.append(r)
        return results
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()


def read_records(bootstrap: str, topic: str, timeout_s: float = 300.0) -> list[dict]:
    """Every committed record of ``topic`` from the beginning to its end, read with librdkafka
    (``confluent-kafka``; kafka-python reads a few thousand records/s on a loaded 2-core
    machine, too slow for the 300,000 transactions of a 10,000/s run).

    Returns the shape of :func:`iotflink.kafka_io.read_topic`: dicts ``{"partition",
    "offset", "timestamp" (ms), "key" (str|None), "value" (decoded JSON, or None for a
    tombstone)}``, ordered by partition then offset.

    Raises:
        TxnLoadError: the topic is unknown, a fetch failed, or a record is not JSON.
        TimeoutError: the end was not reached within ``timeout_s``.
    """
    import uuid  # noqa: PLC0415

    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition  # noqa: PLC0415

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"iotflink-read-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "enable.partition.eof": True, "client.id": "iotflink-txn-read"})
    try:
        try:
            meta = c.list_topics(topic, timeout=30).topics[topic]
        except KafkaException as exc:
            raise TxnLoadError(f"Kafka at {bootstrap}: no metadata for {topic}: {exc}") from exc
        if meta.error is not None:
            raise TxnLoadError(f"{topic}: {meta.error}")
        parts = sorted(meta.partitions)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[dict] = []
        left, deadline = set(parts), time.monotonic() + timeout_s
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {sorted(left)} not at their end in {timeout_s} s")
            for m in c.consume(num_messages=10_000, timeout=1.0):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:  # noqa: SLF001 - confluent-kafka names it so
                        left.discard(m.partition())
                        continue
                    raise TxnLoadError(f"reading {topic}: {err}")
                raw, key = m.value(), m.key()
                try:
                    value = None if raw is None else json.loads(raw)
                except ValueError as exc:
                    raise TxnLoadError(f"{topic}[{m.partition()}]@{m.offset()} is not JSON: {raw[:200]!r}") from exc
                out.append({"partition": m.partition(), "offset": m.offset(), "timestamp": m.timestamp()[1],
                            "key": None if key is None else key.decode(errors="replace"), "value": value})
        out.sort(key=lambda r: (r["partition"], r["offset"]))
        return out
    finally:
        c.close()
