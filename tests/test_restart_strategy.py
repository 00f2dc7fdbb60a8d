"""The restart strategy: one definition for the cluster and the jobs, and bounded, visible restarts.

Unit tests: ``flink-conf/config.yaml`` holds the cluster's failure-rate values (with the
justification of the numbers), and every job carries them in its own configuration
(``jobs/common.py`` :func:`restart_strategy`, read from the file), so a MiniCluster run and a
cluster run restart alike.

Integration tests (a Flink JobManager + TaskManager on free ports; no Kafka, no MQTT): the
poison job ``tests/poison_job.py`` fails on its first row after every (re)start.

- ``test_poison_record_ends_failed_with_root_exception``: submitted with a budget of
  :data:`MAX_FAILURES` failures per 5 min and a 1 s delay, it must end FAILED (polled, within
  :data:`FAILED_WITHIN_S`) after exactly :data:`MAX_FAILURES` restarts; ``job list`` (the real
  command, in a subprocess) names the state, the restarts, the root exception
  (``NumberFormatException ... 'poison-<n>'``) and that the restart strategy gave up;
  ``FlinkCtl.failed_jobs`` and the demo's check report it.
- ``test_restarting_job_shows_its_last_failure``: with a 10 min delay the job stays
  RESTARTING after its first failure; ``job list`` and ``failed_jobs`` show it with that
  failure's root exception. Then it is cancelled.

Timing: the stack starts in ~15 s, each submission (``flink run -py``) takes ~5-10 s, and a
poison cycle (restart, deploy, first row) ~1 s; the module takes well under 2 min. Nothing
sleeps for synchronisation: every wait polls the REST API.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from iotflink.runtime.flinkctl import FlinkCtl
from iotflink.runtime.stack import flink_env
from iotflink.settings import PROJECT_ROOT, WindowJobSettings
from iotflink.simulation import demo
from jobs.common import job_configuration, restart_strategy

CLUSTER_CONF = PROJECT_ROOT / "flink-conf" / "config.yaml"
POISON_JOB = PROJECT_ROOT / "tests" / "poison_job.py"

#: The test budget: restarts allowed within the interval; the next failure ends the job.
MAX_FAILURES = 2
#: Poison job configuration: MAX_FAILURES per 5 min, 1 s apart. A poison cycle takes ~1 s, so
#: the 3 failures span ~4 s; even 2 min each would stay inside the 5 min interval.
BUDGET = {
    "restart-strategy.type": "failure-rate",
    "restart-strategy.failure-rate.max-failures-per-interval": str(MAX_FAILURES),
    "restart-strategy.failure-rate.failure-rate-interval": "5min",
    "restart-strategy.failure-rate.delay": "1s",
}
#: Upper bound from submission to FAILED (s); typical: 5 s.
FAILED_WITHIN_S = 90.0


def _cluster_restart_keys() -> dict[str, str]:
    conf = yaml.safe_load(CLUSTER_CONF.read_text())
    return {k: str(v) for k, v in conf.items() if k.startswith("restart-strategy")}


def test_cluster_and_jobs_use_the_same_restart_strategy():
    assert _cluster_restart_keys() == restart_strategy()


def test_restart_strategy_is_failure_rate_with_every_option_set():
    strategy = restart_strategy()
    assert strategy["restart-strategy.type"] == "failure-rate"
    # the three options of Flink 2.2's failure-rate strategy (RestartStrategyOptions), no others
    assert set(strategy) == {
        "restart-strategy.type",
        "restart-strategy.failure-rate.max-failures-per-interval",
        "restart-strategy.failure-rate.failure-rate-interval",
        "restart-strategy.failure-rate.delay",
    }
    assert int(strategy["restart-strategy.failure-rate.max-failures-per-interval"]) >= 1


def test_job_configuration_carries_the_restart_strategy(monkeypatch):
    import jobs.common as common  # noqa: PLC0415

    monkeypatch.setattr(common, "format_jar", lambda deps_dir=None: None)
    conf = job_configuration(WindowJobSettings.from_env({}), "t", use_kafka=False)
    assert {k: v for k, v in conf.items() if k.startswith("restart-strategy")} == _cluster_restart_keys()
    # a job (or a test) can still pass its own budget
    small = {"restart-strategy.failure-rate.max-failures-per-interval": "1"}
    conf = job_configuration(WindowJobSettings.from_env({}), "t", use_kafka=False, extra=small)
    assert conf["restart-strategy.failure-rate.max-failures-per-interval"] == "1"
    assert conf["restart-strategy.type"] == "failure-rate"


# --------------------------------------------------------------------------- real cluster
#: Services of the module's ``stack`` fixture (tests/conftest.py): the module shares the one
#: stack of the opting-in modules (its jobs are found by id; the cluster's others are ignored).
STACK_SERVICES = ("flink-jobmanager", "flink-taskmanager")
SHARED_STACK = True


@pytest.fixture(scope="module")
def cluster(stack):
    """A FlinkCtl of the ``stack`` fixture's Flink JobManager and TaskManager."""
    return FlinkCtl(stack.s)


def _job_list(ctl: FlinkCtl) -> str:
    """``python -m iotflink.cli job list`` against the test's cluster; its stdout."""
    proc = subprocess.run([sys.executable, "-m", "iotflink.cli", "job", "list"], cwd=PROJECT_ROOT,
                          env=flink_env(ctl.s), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _block_of(listing: str, job_id: str) -> list[str]:
    """The line of ``job_id`` in a ``job list`` output and the indented lines under it."""
    lines = listing.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(job_id))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return lines[start:end]


@pytest.mark.integration
def test_poison_record_ends_failed_with_root_exception(cluster):
    ctl = cluster
    since_ms = int(time.time() * 1000)
    job_id = ctl.submit_script(POISON_JOB, ["poison-failed", *(f"{k}={v}" for k, v in BUDGET.items())])
    assert ctl.wait_state(job_id, {"FAILED"}, timeout_s=FAILED_WITHIN_S) == "FAILED"

    (health,) = [h for h in ctl.job_health() if h.job_id == job_id]
    assert (health.name, health.state, health.restarts) == ("poison-failed", "FAILED", MAX_FAILURES)
    assert health.root_exception.startswith("java.lang.NumberFormatException: For input string: 'poison-"), health
    assert f"maxFailuresPerInterval={MAX_FAILURES}" in health.recovery_suppressed, health
    assert len(health.earlier_failures) == MAX_FAILURES
    assert all("NumberFormatException" in cause for _, cause in health.earlier_failures)

    block = _block_of(_job_list(ctl), job_id)
    assert block[0].split() == [job_id, "FAILED", str(MAX_FAILURES), "poison-failed"], block
    assert "root exception at " in block[1] and "java.lang.NumberFormatException: For input string: 'poison-" in block[1]
    assert "not restarted: Recovery is suppressed by FailureRateRestartBackoffTimeStrategy(" in block[2]

    assert job_id in [h.job_id for h in ctl.failed_jobs(since_ms=since_ms)]
    checks = demo.job_health_checks(ctl, since_ms)
    assert (f"job poison-failed ({job_id}) FAILED", False, health.root_exception) in checks
    # a FAILED job is what wait_running reports, with the root exception
    with pytest.raises(Exception, match="FAILED after 2 restarts: java.lang.NumberFormatException"):
        ctl.wait_running(job_id, timeout_s=10)


@pytest.mark.integration
def test_restarting_job_shows_its_last_failure(cluster):
    ctl = cluster
    since_ms = int(time.time() * 1000)
    slow = dict(BUDGET, **{"restart-strategy.failure-rate.delay": "10min"})
    job_id = ctl.submit_script(POISON_JOB, ["poison-restarting", *(f"{k}={v}" for k, v in slow.items())])
    try:
        assert ctl.wait_state(job_id, {"RESTARTING"}, timeout_s=FAILED_WITHIN_S) == "RESTARTING"
        (health,) = [h for h in ctl.failed_jobs(since_ms=since_ms) if h.job_id == job_id]
        assert health.state == "RESTARTING" and health.recovery_suppressed is None
        assert health.root_exception.startswith("java.lang.NumberFormatException: For input string: 'poison-")
        block = _block_of(_job_list(ctl), job_id)
        assert block[0].split()[:2] == [job_id, "RESTARTING"], block
        assert "java.lang.NumberFormatException" in block[1], block
    finally:
        ctl.cancel(job_id)
        ctl.wait_state(job_id, {"CANCELED"}, timeout_s=60)
