"""bridge.producer_process, the pure parts: the record future (callbacks before and after the
outcome, a failing callback), the exception table that keeps one child exception one object,
and the check that an exception can cross the pipe. The child process itself runs against a
real Kafka in tests/test_bridge_integration.py."""

from __future__ import annotations

import pickle
import threading

from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, NotLeaderForPartitionError

from bridge.producer_process import ExceptionTable, ProducerFuture, ProducerProcessError, RecordMetadata, _portable


def test_future_runs_callbacks_added_before_and_after_success_with_their_arguments():
    fut = ProducerFuture(threading.Lock(), "t")
    got = []
    fut.add_callback(lambda *a: got.append(("before", *a)), 1, 2)
    fut.add_errback(lambda *a: got.append(("errback", *a)))
    md = RecordMetadata("t", 3, 42)
    fut.resolve(md, None)
    fut.add_callback(lambda *a: got.append(("after", *a)), "x")
    fut.add_errback(lambda *a: got.append(("errback late", *a)))
    fut.resolve(None, ValueError("second outcome is ignored"))
    assert got == [("before", 1, 2, md), ("after", "x", md)]
    assert md.partition == 3 and md.offset == 42


def test_future_failure_runs_errbacks_only_and_a_failing_callback_does_not_stop_the_next():
    fut = ProducerFuture(threading.Lock(), "t")
    got = []

    def broken(_exc):
        raise RuntimeError("bug in a callback")

    fut.add_errback(broken)
    fut.add_errback(lambda *a: got.append(a))
    fut.add_callback(lambda *a: got.append(("callback", *a)))
    exc = KafkaTimeoutError("late")
    fut.resolve(None, exc)
    fut.add_errback(lambda *a: got.append(("late", *a)), 7)
    assert got == [(exc,), ("late", 7, exc)]


def test_exception_table_keeps_one_object_per_child_exception():
    table = ExceptionTable(max_keys=2)
    first = MessageSizeTooLargeError("too big")
    assert table.canonical(11, first) is first
    # the same child object pickled again: the first copy comes back
    assert table.canonical(11, pickle.loads(pickle.dumps(first)))  # noqa: S301 - own data is first
    # the key reused by another exception in the child: a new object
    other = NotLeaderForPartitionError("moved")
    assert table.canonical(11, other) is other
    assert table.canonical(11, NotLeaderForPartitionError("moved")) is other
    # no key (a synchronous failure): never merged
    a, b = KafkaTimeoutError("x"), KafkaTimeoutError("x")
    assert table.canonical(0, a) is a and table.canonical(0, b) is b
    # bounded: past max_keys it starts over
    table.canonical(12, KafkaTimeoutError("y"))
    table.canonical(13, KafkaTimeoutError("z"))
    assert table.canonical(11, NotLeaderForPartitionError("moved")) is not other


class _Unpicklable(Exception):
    retriable = True

    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")
        self.lock = threading.Lock()


def test_portable_keeps_a_kafka_error_and_wraps_what_cannot_cross_the_pipe():
    exc = MessageSizeTooLargeError("too big")
    assert _portable(exc) is exc
    wrapped = _portable(_Unpicklable(1, 2))
    assert type(wrapped).__name__ == "KafkaError" and "_Unpicklable: 1/2" in str(wrapped)
    assert wrapped.retriable is True
    assert pickle.loads(pickle.dumps(wrapped)).args == wrapped.args  # noqa: S301 - own data
    assert ProducerProcessError.retriable is False
