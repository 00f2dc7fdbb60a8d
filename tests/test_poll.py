"""iotflink.poll: the one polling helper (no services)."""

from __future__ import annotations

import pytest

from iotflink.errors import JobError
from iotflink.poll import PollTimeout, poll, wait_for


def test_wait_for_names_the_last_exception_of_the_probe():
    with pytest.raises(TimeoutError, match=r"waiting for x \(the last check raised KeyError\('forwarded'\)\)"):
        wait_for(lambda: {}["forwarded"], 0.05, interval_s=0.01, what="x")
    with pytest.raises(TimeoutError) as err:
        wait_for(lambda: False, 0.05, interval_s=0.01, what="y")
    assert str(err.value) == "timed out after 0 s waiting for y"
    calls = []
    wait_for(lambda: calls.append(1) or len(calls) >= 3, 5, interval_s=0.01)
    assert len(calls) == 3


def test_poll_returns_the_accepted_answer():
    answers = iter(["CREATED", "INITIALIZING", "RUNNING", "never read"])
    assert poll(lambda: next(answers), 5, interval_s=0.001, until=lambda s: s == "RUNNING") == "RUNNING"
    assert next(answers) == "never read"


def test_poll_time_out_carries_the_last_answer():
    with pytest.raises(PollTimeout) as err:
        poll(lambda: {"status": "deprecated"}, 0.03, interval_s=0.01, what="a sample",
             until=lambda r: r["status"] == "ok")
    assert err.value.last == {"status": "deprecated"} and err.value.last_error is None
    assert "waiting for a sample (last: {'status': 'deprecated'})" in str(err.value)
    assert isinstance(err.value, TimeoutError)


def test_poll_probe_raises_outside_retry_on_at_once():
    calls = []

    def probe():
        calls.append(1)
        raise JobError("job FAILED")
    with pytest.raises(JobError, match="FAILED"):
        poll(probe, 5, interval_s=0.001, retry_on=())
    assert len(calls) == 1
    with pytest.raises(PollTimeout) as err:  # the same exception as "not yet"
        poll(probe, 0.02, interval_s=0.005, retry_on=(JobError,))
    assert isinstance(err.value.last_error, JobError) and len(calls) > 2
