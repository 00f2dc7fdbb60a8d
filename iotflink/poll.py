"""Polling a condition until it holds or a deadline passes: the project's one polling helper.

Every "wait until X" in the project (a service answering, a job RUNNING, a savepoint
COMPLETED, a topic listed, a record read) is a poll: call a probe every ``interval_s`` seconds
until its answer is what is wanted, and fail with a message naming what was awaited and the
last answer (or exception) seen when ``timeout_s`` seconds have passed.

- :func:`poll` returns the probe's accepted answer, raises :class:`PollTimeout` (a
  :class:`TimeoutError` carrying the last answer and exception) on time-out; a probe's
  exception of a type in ``retry_on`` counts as "not yet", any other propagates at once (a
  probe raises to end the wait early, e.g. a job that FAILED).
- :func:`wait_for` is the boolean form: ``condition()`` true, every exception "not yet".

Why not a library: tenacity (the well-kept retry library) fits retrying an action on
failure; a poll here needs the last answer in the time-out's message and back in the caller's
hand (e.g. the last backpressure sample), which tenacity gives only through its
``RetryError.last_attempt`` future and custom ``retry_if_result``/``stop_after_delay``
wiring at each call. These 60 lines do it with no dependency in the bridge's import path.

The sleep between probes is the polling interval, never the synchronisation itself: the
condition is checked first, so a wait for something already true returns at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class PollTimeout(TimeoutError):
    """A poll's time-out (a :class:`TimeoutError`).

    Fields:
        last: the probe's last answer (``None`` if its last call raised, or it never answered).
        last_error: the exception of the probe's last call, if it raised one of ``retry_on``.
    """

    def __init__(self, message: str, last: Any = None, last_error: BaseException | None = None) -> None:
        super().__init__(message)
        self.last = last
        self.last_error = last_error


def poll(probe: Callable[[], T], timeout_s: float, interval_s: float = 0.2, what: str = "condition",
         until: Callable[[T], Any] = bool,
         retry_on: tuple[type[BaseException], ...] = (Exception,)) -> T:
    """Call ``probe()`` every ``interval_s`` seconds until ``until(answer)`` is true; return that
    answer.

    The probe is called at once, then after each interval; the deadline (``timeout_s`` seconds,
    monotonic clock) is checked after each call, so the probe is called at least once and once
    more at or after the deadline.

    Args:
        probe: the check; its answer is passed to ``until``.
        timeout_s: how long to keep polling (s).
        interval_s: pause between calls (s).
        what: what is awaited, for the time-out's message (``"job X RUNNING"``).
        until: accepts an answer (default: truthy).
        retry_on: exception types of the probe that mean "not yet" (default: every
            :class:`Exception`); ``()`` lets every exception propagate.

    Raises:
        PollTimeout: no accepted answer within ``timeout_s`` (message names ``what``, the last
            answer and the probe's last exception if its last call raised).
        Exception: whatever the probe raises outside ``retry_on``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        last: Any = None
        last_error: BaseException | None = None
        try:
            last = probe()
            if until(last):
                return last
        except retry_on as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (the last check raised {last_error!r})" if last_error else (
                f" (last: {last!r})" if last not in (None, False) else "")
            raise PollTimeout(f"timed out after {timeout_s:.0f} s waiting for {what}{detail}", last, last_error)
        time.sleep(interval_s)


def wait_for(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.2,
             what: str = "condition") -> None:
    """Poll ``condition`` until it returns True (:func:`poll` with its defaults).

    A ``condition`` that raises counts as "not yet" (a service that is still starting); the
    last exception it raised is named in the timeout's message, so a probe that can never
    succeed (a typo, a missing key) is told apart from a slow service.

    Raises:
        PollTimeout: it did not within ``timeout_s`` seconds (a :class:`TimeoutError`; message
            names ``what``, and the probe's last exception if its last call raised).
    """
    poll(condition, timeout_s, interval_s=interval_s, what=what)
