"""The restart strategy: one definition for the cluster and the jobs.

``flink-conf/config.yaml`` (the cluster's default, with the justification of the numbers) and
``jobs/common.py`` :data:`RESTART_STRATEGY` (what every job sets in its own configuration, so
a MiniCluster run and a cluster run restart alike) must hold the same failure-rate values.
"""

from __future__ import annotations

import yaml

from iotflink.settings import PROJECT_ROOT, WindowJobSettings
from jobs.common import RESTART_STRATEGY, job_configuration

CLUSTER_CONF = PROJECT_ROOT / "flink-conf" / "config.yaml"


def _cluster_restart_keys() -> dict[str, str]:
    conf = yaml.safe_load(CLUSTER_CONF.read_text())
    return {k: str(v) for k, v in conf.items() if k.startswith("restart-strategy")}


def test_cluster_and_jobs_use_the_same_restart_strategy():
    assert _cluster_restart_keys() == dict(RESTART_STRATEGY)


def test_restart_strategy_is_failure_rate_with_every_option_set():
    assert RESTART_STRATEGY["restart-strategy.type"] == "failure-rate"
    # the three options of Flink 2.2's failure-rate strategy (RestartStrategyOptions), no others
    assert set(RESTART_STRATEGY) == {
        "restart-strategy.type",
        "restart-strategy.failure-rate.max-failures-per-interval",
        "restart-strategy.failure-rate.failure-rate-interval",
        "restart-strategy.failure-rate.delay",
    }
    assert int(RESTART_STRATEGY["restart-strategy.failure-rate.max-failures-per-interval"]) >= 1


def test_job_configuration_carries_the_restart_strategy(monkeypatch):
    import jobs.common as common

    monkeypatch.setattr(common, "format_jar", lambda deps_dir=None: None)
    conf = job_configuration(WindowJobSettings.from_env({}), "t", use_kafka=False)
    assert {k: v for k, v in conf.items() if k.startswith("restart-strategy")} == dict(RESTART_STRATEGY)
    # a job (or a test) can still pass its own budget
    small = {"restart-strategy.failure-rate.max-failures-per-interval": "1"}
    conf = job_configuration(WindowJobSettings.from_env({}), "t", use_kafka=False, extra=small)
    assert conf["restart-strategy.failure-rate.max-failures-per-interval"] == "1"
    assert conf["restart-strategy.type"] == "failure-rate"
