"""kafka-python's ``KafkaProducer`` in a child process, behind the part of its interface the bridge uses.

Why: one bridge process did the MQTT client's work and the Kafka producer's work under one
GIL, so their costs added up (a profile, ``bench/profile_bridge.py``: the producer's I/O
thread alone - record batches, CRCs, requests, responses, one wake-up per ``send`` - took about
a third of the bridge's CPU, ``send()`` itself another 5-8 %). With :class:`ProcessProducer`
the bridge process keeps paho, validation and the ack bookkeeping, and a child process runs
the real producer on another core. The bridge logic does not change: :meth:`ProcessProducer.send`
returns a future with kafka-python's ``add_callback`` / ``add_errback``, called in the
bridge process once the child's producer confirmed (or failed) the record, so
ack-after-Kafka holds end to end: a PUBACK still waits for the broker's acknowledgement of
the record, now relayed over a pipe.

Link (``multiprocessing`` pipe, pickled batches, in order both ways):

* bridge -> child: ``("send", [(rid, topic, key, value, partition), ...])`` and
  ``("call", cid, method, args)`` for ``partitions_for`` / ``flush`` / ``close``. A writer
  thread takes everything :meth:`~ProcessProducer.send` queued since its last write, so the
  records of a burst cross in one pickle and one pipe write.
* child -> bridge: ``("done", [(rid, partition, offset, exc_key, exc, raised), ...])`` (a result per
  record, in the order the child's producer reported them) and ``("ret", cid, ok, value)``.
  The child's main thread calls ``producer.send`` in the order the records came; the
  producer's callbacks (its I/O thread) queue results that the child's writer thread sends.
  A ``("ret", ...)`` of ``flush`` goes after the results of every record flushed.

Errors keep their meaning: an exception from the child's producer arrives as the same class
(pickled; ``retriable`` is a class attribute of kafka-python's errors), and the same exception
object in the child (kafka-python's idempotent producer in a fatal state fails every record
with one object) arrives as one object here too (keyed by its id in the child), so the
bridge's "same poison" test still works. A ``send()`` that raised in the child (e.g. a record
over ``max_request_size``, a metadata timeout) fails the future with ``raised_by_send = True``
set on the exception, so the bridge handles it as it handled a synchronous raise. If the child
dies, every outstanding future fails with :class:`ProducerProcessError` (not retriable: the
bridge replaces the producer, i.e. starts a new child, and sends those records again).

What differs from a producer in the bridge process:

* a synchronous failure is reported after ``send()`` returned, so records sent after it may
  already be on their way when the bridge re-sends it; the bridge treats it like an
  asynchronous failure there (at-least-once; the window job deduplicates on
  ``(device_id, seq)`` and orders by event time);
* the child leaves the bridge's process group (a SIGTERM or SIGINT to the group reaches the
  bridge only, which flushes through the child and then closes it), and dies with the bridge:
  once the bridge's end of the pipe closes, or the child's parent is no longer the bridge
  (checked before each batch it takes), it exits at once without sending what it holds, as
  the producer of a killed single-process bridge would. Nothing is lost: the bridge acked
  none of those messages, so the broker redelivers them to the next bridge; and a killed
  bridge does not write copies after its death (a record already on the wire may still land,
  as before);
* the records' batch copies live in the child (the memory bound of ``max_inflight`` holds
  for both processes together);
* the bridge process's CPU per message is a quarter to a third lower (``bench/bridge_bench.py``,
  two runs: 112 against 152 us, 107 against 164 us), for the pipe, the pickling and a second
  interpreter: in all 10 % more and 7 % less CPU per message in those runs.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from kafka.errors import KafkaError

log = logging.getLogger(__name__)

#: Seconds to wait for the child's producer to start (it connects to Kafka first).
START_TIMEOUT_S = 60.0
#: Most distinct child exceptions remembered for identity (see the module docstring).
MAX_EXC_KEYS = 256
#: Seconds a writer thread (bridge side and child side) lets records gather after the first
#: one before it writes them to the pipe. Waking the writer for every record cost a thread
#: hand-over of the interpreter lock per record (a profile showed ``Condition.notify`` and
#: ``wait`` among the top functions); 0.5 ms caps the hand-overs at 2,000/s, far below the
#: per-record latency of Kafka's ``acks=all`` (milliseconds).
GATHER_S = 0.0005


class ProducerProcessError(KafkaError):
    """The producer's child process is gone (crashed, killed or closed) with records
    outstanding; not retriable, so the bridge replaces the producer."""

    retriable = False


class RecordMetadata(NamedTuple):
    """What a confirmed record's callback gets: ``topic``, ``partition``, ``offset``."""

    topic: str
    partition: int
    offset: int


class ProducerFuture:
    """The future of one record: kafka-python's ``add_callback(fn, *args)`` (``fn(*args,
    metadata)`` on success) and ``add_errback(fn, *args)`` (``fn(*args, exc)`` on failure);
    a callback added after the outcome runs at once. Callbacks run in the thread that
    resolves the future (the bridge's reader thread); an exception in one is logged."""

    __slots__ = ("_lock", "_done", "_value", "_exc", "_callbacks", "_errbacks", "topic")

    def __init__(self, lock: threading.Lock, topic: str) -> None:
        self._lock = lock
        self._done = False
        self._value: Any = None
        self._exc: BaseException | None = None
        self._callbacks: list[tuple[Callable, tuple]] = []
        self._errbacks: list[tuple[Callable, tuple]] = []
        self.topic = topic

    def add_callback(self, fn: Callable, *args: Any) -> ProducerFuture:
        with self._lock:
            if not self._done:
                self._callbacks.append((fn, args))
                return self
        if self._exc is None:
            _call(fn, (*args, self._value))
        return self

    def add_errback(self, fn: Callable, *args: Any) -> ProducerFuture:
        with self._lock:
            if not self._done:
                self._errbacks.append((fn, args))
                return self
        if self._exc is not None:
            _call(fn, (*args, self._exc))
        return self

    def resolve(self, value: Any, exc: BaseException | None) -> None:
        """Set the outcome (once) and run the callbacks (``exc`` None = success)."""
        with self._lock:
            if self._done:
                return
            self._done, self._value, self._exc = True, value, exc
            todo = self._callbacks if exc is None else self._errbacks
            self._callbacks = self._errbacks = []
        last = value if exc is None else exc
        for fn, args in todo:
            _call(fn, (*args, last))


class ExceptionTable:
    """Maps the exceptions that arrive from the child to one object per exception object in
    the child, so that identity tests (``exc is poison``) work across the pipe.

    :meth:`canonical` takes the child's key (``id(exc)`` there, 0 = none) and the unpickled
    copy; it returns the first copy seen under that key if it has the same type and text
    (the key can be reused by a later object once the first is freed in the child), else
    the new copy, which is then remembered. At most ``max_keys`` keys (then it starts over).
    """

    def __init__(self, max_keys: int = 256) -> None:
        self._max_keys = max_keys
        self._known: dict[int, BaseException] = {}

    def canonical(self, key: int, exc: BaseException) -> BaseException:
        if not key:
            return exc
        same = self._known.get(key)
        if same is not None and type(same) is type(exc) and str(same) == str(exc):
            return same
        if len(self._known) >= self._max_keys:
            self._known.clear()
        self._known[key] = exc
        return exc


def _call(fn: Callable, args: tuple) -> None:
    try:
        fn(*args)
    except Exception:  # as kafka-python's Future: a failing callback must not stop the others
        log.exception("producer future callback %r failed", fn)


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it pickles, else a :class:`KafkaError` with its text and ``retriable``."""
    try:
        pickle.dumps(exc)
        type(exc)(*exc.args)  # what unpickling does
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure
        err = KafkaError(f"{type(exc).__name__}: {exc}")
        err.retriable = bool(getattr(exc, "retriable", False))
        return err


def _child_main(conn: Any, bootstrap_servers: str, config: dict[str, Any]) -> None:
    """The child process: a ``KafkaProducer`` fed from ``conn`` (see the module docstring)."""
    from kafka import KafkaProducer  # noqa: PLC0415 - in the child only

    # Out of the bridge's process group: a SIGTERM/SIGINT to the group (the stack's stop,
    # Ctrl-C) reaches the bridge only, which then flushes through this process and closes it.
    # Should the bridge die without closing it, this process exits at once (see the loop below).
    os.setpgrp()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap_servers, **config)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("init_error", _portable(exc)))
        conn.close()
        return
    out: collections.deque = collections.deque()  # messages to the parent, in order
    results: list = []  # results not yet in `out`
    cv = threading.Condition()
    closing = [False]
    idle = [False]  # the writer waits on cv: the next result notifies it (once)

    def wake_locked() -> None:
        if idle[0]:
            idle[0] = False
            cv.notify()

    def push_results_locked() -> None:
        nonlocal results
        if results:
            out.append(("done", results))
            results = []

    def on_ok(rid: int, md: Any) -> None:
        with cv:
            results.append((rid, md.partition, md.offset, 0, None, False))
            wake_locked()

    def on_err(rid: int, exc: BaseException) -> None:
        with cv:
            results.append((rid, None, None, id(exc), _portable(exc), False))
            wake_locked()

    def writer() -> None:
        while True:
            with cv:
                while not out and not results and not closing[0]:
                    idle[0] = True
                    cv.wait()
                idle[0] = False
            time.sleep(GATHER_S)
            with cv:
                push_results_locked()
                batch = list(out)
                out.clear()
                stop = closing[0] and not batch
            try:
                for msg in batch:
                    conn.send(msg)
            except (OSError, ValueError):
                return  # the parent is gone
            if stop:
                return

    wt = threading.Thread(target=writer, name="producer-process-writer", daemon=True)
    wt.start()
    conn.send(("ready", None))

    def reply(cid: int, ok: bool, value: Any) -> None:
        with cv:
            push_results_locked()  # everything confirmed so far goes before the answer
            out.append(("ret", cid, ok, value))
            wake_locked()

    parent = os.getppid()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            msg = None
        if msg is None or os.getppid() != parent:
            # the bridge is gone (killed: nothing it held was acked, the broker redelivers it):
            # leave at once, as its in-process producer would have, instead of writing copies
            os._exit(0)
        if msg[0] == "send":
            for rid, topic, key, value, partition in msg[1]:
                try:
                    fut = producer.send(topic, value=value, key=key, partition=partition)
                except Exception as exc:  # noqa: BLE001 - a synchronous failure of this record
                    with cv:
                        results.append((rid, None, None, 0, _portable(exc), True))
                        wake_locked()
                    continue
                fut.add_callback(on_ok, rid)
                fut.add_errback(on_err, rid)
        else:
            _, cid, method, args = msg
            try:
                if method == "close":
                    producer.close(*args)
                    reply(cid, True, None)
                    break
                value = getattr(producer, method)(*args)
                reply(cid, True, value)
            except Exception as exc:  # noqa: BLE001 - the caller raises it
                reply(cid, False, _portable(exc))
    with cv:
        closing[0] = True
        cv.notify_all()
    wt.join(10)
    conn.close()


class ProcessProducer:
    """A ``KafkaProducer(bootstrap_servers, **config)`` running in a child process.

    The methods are those of kafka-python's producer that the bridge calls: :meth:`send`
    (returns a :class:`ProducerFuture` whose callback gets a :class:`RecordMetadata`),
    :meth:`partitions_for`, :meth:`flush`, :meth:`close`. ``config`` must pickle (the
    bridge's :class:`bridge.service.CachedKeyPartitioner` does).

    Raises (at construction): whatever the child's ``KafkaProducer`` raised (e.g.
    ``kafka.errors.NoBrokersAvailable``), or :class:`ProducerProcessError` if the child did
    not start within :data:`START_TIMEOUT_S`.
    """

    def __init__(self, bootstrap_servers: str, **config: Any) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process with running threads
        self._conn, child_conn = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(target=_child_main, args=(child_conn, bootstrap_servers, config),
                                 name=f"kafka-producer-{config.get('client_id', '')}", daemon=True)
        self._proc.start()
        child_conn.close()
        max_block_s = config.get("max_block_ms", 60_000) / 1000.0
        self._call_timeout_s = max_block_s + 10.0
        if not self._conn.poll(START_TIMEOUT_S):
            self._proc.kill()
            raise ProducerProcessError(f"the producer process did not start within {START_TIMEOUT_S:.0f} s")
        try:
            kind, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise ProducerProcessError(f"the producer process exited at start (exit code {self._proc.exitcode})") \
                from exc
        if kind == "init_error":
            self._proc.join(5)
            raise value
        self._lock = threading.Lock()  # futures' state, the outbox, the tables below
        self._outbox: list[tuple] = []
        self._has_out = threading.Condition(self._lock)
        self._writer_idle = False  # the writer thread waits on _has_out (send() notifies it)
        self._futures: dict[int, ProducerFuture] = {}
        self._calls: dict[int, list] = {}  # cid -> [threading.Event, ok, value]
        self._next_id = 0
        self._exc_by_key = ExceptionTable(MAX_EXC_KEYS)
        self._dead: BaseException | None = None
        self._reader = threading.Thread(target=self._read_loop, name="producer-process-reader", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="producer-process-writer", daemon=True)
        self._reader.start()
        self._writer.start()

    @property
    def pid(self) -> int | None:
        """The child process's pid."""
        return self._proc.pid

    # ------------------------------------------------------------------ producer interface
    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             partition: int | None = None) -> ProducerFuture:
        """Queue one record (bytes key and value, as the bridge's producer has no serializers)
        for the child's ``producer.send``; returns its future."""
        with self._lock:
            fut = ProducerFuture(self._lock, topic)
            if self._dead is not None:
                dead = self._dead
            else:
                dead = None
                rid = self._next_id
                self._next_id += 1
                self._futures[rid] = fut
                if self._writer_idle:
                    self._writer_idle = False
                    self._has_out.notify()
                self._outbox.append((rid, topic, key, value, partition))
        if dead is not None:
            fut.resolve(None, ProducerProcessError(str(dead)))
        return fut

    def partitions_for(self, topic: str) -> Any:
        """The child producer's ``partitions_for(topic)`` (a set of ints, or None)."""
        return self._call("partitions_for", (topic,), self._call_timeout_s)

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued, then the child producer's ``flush(timeout)``; returns
        once every record sent before it has its outcome delivered here."""
        self._call("flush", (timeout,), (timeout or 3600.0) + 10.0)

    def close(self, timeout: float | None = None) -> None:
        """The child producer's ``close(timeout)``, then the child exits. Records without an
        outcome by then fail with :class:`ProducerProcessError`."""
        try:
            if self._proc.is_alive():
                self._call("close", (timeout,), (timeout or 60.0) + 10.0)
        except ProducerProcessError:
            pass
        finally:
            self._proc.join((timeout or 5.0) + 5.0)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
            self._die(ProducerProcessError("the producer process was closed"))
            self._conn.close()

    # ------------------------------------------------------------------ internals
    def _call(self, method: str, args: tuple, timeout_s: float) -> Any:
        done = threading.Event()
        with self._lock:
            if self._dead is not None:
                raise ProducerProcessError(str(self._dead))
            cid = self._next_id
            self._next_id += 1
            slot = self._calls[cid] = [done, False, None]
            if self._writer_idle:
                self._writer_idle = False
                self._has_out.notify()
            self._outbox.append(("call", cid, method, args))
        if not done.wait(timeout_s):
            with self._lock:
                self._calls.pop(cid, None)
            raise ProducerProcessError(f"the producer process did not answer {method} within {timeout_s:.0f} s")
        _event, ok, value = slot
        if not ok:
            raise value
        return value

    def _write_loop(self) -> None:
        # Everything send()/_call() queued since the last write, sends first as one batch;
        # a call ("call", ...) splits the batch so that it goes after the records before it.
        # Only an idle writer (waiting on the condition) is notified, once: while records keep
        # coming it goes round (gather, write) without a notify per record.
        while True:
            with self._lock:
                while not self._outbox and self._dead is None:
                    self._writer_idle = True
                    self._has_out.wait()
                self._writer_idle = False
            time.sleep(GATHER_S)
            with self._lock:
                if self._dead is not None:
                    return
                items, self._outbox = self._outbox, []
            try:
                sends: list[tuple] = []
                for item in items:
                    if item[0] == "call":
                        if sends:
                            self._conn.send(("send", sends))
                            sends = []
                        self._conn.send(item)
                    else:
                        sends.append(item)
                if sends:
                    self._conn.send(("send", sends))
            except (OSError, ValueError, BrokenPipeError) as exc:
                self._die(ProducerProcessError(f"the producer process is gone ({exc!r})"))
                return

    def _read_loop(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError, ValueError):
                self._die(ProducerProcessError(f"the producer process is gone (exit code {self._proc.exitcode})"))
                return
            if msg[0] == "done":
                self._resolve(msg[1])
            elif msg[0] == "ret":
                _, cid, ok, value = msg
                with self._lock:
                    slot = self._calls.pop(cid, None)
                if slot is not None:
                    slot[1], slot[2] = ok, value
                    slot[0].set()

    def _resolve(self, results: list[tuple]) -> None:
        futures, known = self._futures, self._exc_by_key
        with self._lock:
            todo = [(futures.pop(rid, None), partition, offset, key, exc, raised)
                    for rid, partition, offset, key, exc, raised in results]
        for fut, partition, offset, key, got, raised in todo:
            if fut is None:
                continue
            if got is None:
                fut.resolve(RecordMetadata(fut.topic, partition, offset), None)
                continue
            if raised:
                got.raised_by_send = True
                fut.resolve(None, got)
            else:
                fut.resolve(None, known.canonical(key, got))

    def _die(self, exc: BaseException) -> None:
        # The child is gone: fail every outstanding record and call.
        with self._lock:
            if self._dead is None:
                self._dead = exc
            self._has_out.notify_all()
            futures, self._futures = self._futures, {}
            calls, self._calls = self._calls, {}
            self._outbox = []
        for slot in calls.values():
            slot[1], slot[2] = False, exc
            slot[0].set()
        for fut in futures.values():
            fut.resolve(None, exc)
