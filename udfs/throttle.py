"""Slow-sink demo switch: a Python scalar UDF that makes the aggregates sink slow on demand.

``jobs/sensor_windows.py`` puts :func:`throttle_udf` right before the ``sensor-aggregates``
sink only when ``IOTFLINK_SLOW_SINK_FILE`` is set at submission; otherwise the plan has no
Python operator at all. While the file exists (on the TaskManager's host), every row passing
the UDF sleeps ``IOTFLINK_SLOW_SINK_MS`` (default 20 ms, i.e. at most 50 rows/s per subtask),
so the window operator's output buffers fill and Flink's credit-based flow control backpressures
every operator upstream of it (the REST API's ``/jobs/:jid/vertices/:vid/backpressure`` turns
HIGH there). Deleting the file lets rows through at full speed again within
``CHECK_INTERVAL_MS``.

The decision logic is :class:`SlowSinkGate`, a plain object with an injectable clock, file
probe and sleep, so unit tests drive it without Flink and without real sleeping.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

#: The file is checked at most this often (ms): an ``os.stat`` per row would cost more than
#: the rows themselves at full speed, and 200 ms is well below the REST API's backpressure
#: sampling period, so switching on/off is seen promptly.
CHECK_INTERVAL_MS = 200


class SlowSinkGate:
    """Whether and how long to sleep for one row.

    Args:
        path: the switch file; the gate is closed (slow) while it exists.
        sleep_ms: sleep per row while the file exists (ms, >= 0).
        check_interval_ms: the file is probed at most once per this many ms of ``clock``.
        clock: monotonic clock in seconds (``time.monotonic``).
        exists: file probe (``os.path.exists``).
        sleep: sleeper taking seconds (``time.sleep``).

    Raises:
        ValueError: ``path`` is empty, or a duration is negative.
    """

    def __init__(self, path: str, sleep_ms: int, check_interval_ms: int = CHECK_INTERVAL_MS,
                 clock: Callable[[], float] = time.monotonic,
                 exists: Callable[[str], bool] = os.path.exists,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not path:
            raise ValueError("slow-sink file path must not be empty")
        if sleep_ms < 0 or check_interval_ms < 0:
            raise ValueError(f"durations must not be negative: sleep {sleep_ms} ms, check {check_interval_ms} ms")
        self.path, self.sleep_ms, self.check_interval_ms = path, sleep_ms, check_interval_ms
        self._clock, self._exists, self._sleep = clock, exists, sleep
        self._checked_at: float | None = None
        self._slow = False
        self.probes = 0  # how many times the file was probed (tests, logs)

    def slow(self) -> bool:
        """True while the switch file exists, probing it at most every ``check_interval_ms``."""
        now = self._clock()
        if self._checked_at is None or (now - self._checked_at) * 1000.0 >= self.check_interval_ms:
            self._slow = bool(self._exists(self.path))
            self._checked_at = now
            self.probes += 1
        return self._slow

    def pass_row(self) -> float:
        """Let one row pass: sleep ``sleep_ms`` if the switch is on; returns the seconds slept."""
        if self.slow() and self.sleep_ms > 0:
            secs = self.sleep_ms / 1000.0
            self._sleep(secs)
            return secs
        return 0.0


try:  # the Python workers and the job client have PyFlink; the gate above does not need it
    from pyflink.table import DataTypes
    from pyflink.table.udf import ScalarFunction, udf
except ImportError:  # pragma: no cover - only without PyFlink
    ScalarFunction = object  # type: ignore[misc,assignment]


class Throttle(ScalarFunction):  # type: ignore[misc,valid-type]
    """Identity on a BIGINT that sleeps per row while the switch file exists (see module doc)."""

    def __init__(self, path: str, sleep_ms: int, check_interval_ms: int = CHECK_INTERVAL_MS) -> None:
        SlowSinkGate(path, sleep_ms, check_interval_ms)  # validate on the client, before submission
        self.path, self.sleep_ms, self.check_interval_ms = path, sleep_ms, check_interval_ms
        self._gate: SlowSinkGate | None = None

    def open(self, function_context) -> None:  # PyFlink hook
        self._gate = SlowSinkGate(self.path, self.sleep_ms, self.check_interval_ms)

    def eval(self, value):
        if self._gate is None:  # open() not called (direct use in tests)
            self._gate = SlowSinkGate(self.path, self.sleep_ms, self.check_interval_ms)
        self._gate.pass_row()
        return value


def throttle_udf(path: str, sleep_ms: int, check_interval_ms: int = CHECK_INTERVAL_MS):
    """The registered UDF ``throttle(BIGINT) -> BIGINT`` (identity) for the job's SQL.

    Raises:
        ValueError: empty path or negative durations (see :class:`SlowSinkGate`).
    """
    return udf(Throttle(path, sleep_ms, check_interval_ms), result_type=DataTypes.BIGINT())
