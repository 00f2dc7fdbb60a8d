"""Flink job configuration in one layer: ``flink-conf/config.yaml`` holds the cluster's
defaults, a job's configuration (``jobs.common.job_configuration``) copies the ones every job
runs with from there and adds only its own, from its settings object. These tests fail when a
job's configuration and the file disagree. No services."""

from __future__ import annotations

import re

import pytest
import yaml

import jobs.common as common
from iotflink.settings import AnomalyJobSettings, RulesSettings, WindowJobSettings

CONF = yaml.safe_load(common.CLUSTER_CONF.read_text())

#: keys of a job's configuration that are machine-specific (the interpreter running the job;
#: the local stack renders the cluster's to the same venv)
MACHINE_KEYS = {"python.executable", "python.client.executable"}


def _ms(text) -> int:
    """A Flink duration (``30s``, ``15000 ms``, ``3min``) in ms."""
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|min|h)?\s*", str(text))
    assert m, text
    return int(m.group(1)) * {"ms": 1, None: 1, "s": 1000, "min": 60_000, "h": 3_600_000}[m.group(2)]


def _text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.fixture
def no_jars(monkeypatch):
    monkeypatch.setattr(common, "format_jar", lambda deps_dir=None: None)
    monkeypatch.setattr(common, "kafka_connector_jar", lambda deps_dir=None: None)


@pytest.mark.parametrize("cls", [WindowJobSettings, RulesSettings, AnomalyJobSettings])
def test_a_default_job_agrees_with_the_cluster_conf_on_every_key_both_set(cls, no_jars):
    conf = common.job_configuration(cls.from_env({}), "t", use_kafka=True)
    shared = (set(conf) & set(CONF)) - MACHINE_KEYS
    assert set(common.FROM_CLUSTER_CONF) <= shared
    for key in shared:
        if key.startswith("execution.checkpointing.") and key.endswith(("interval", "min-pause")):
            assert _ms(conf[key]) == _ms(CONF[key]), key
        else:
            assert conf[key] == _text(CONF[key]), key


def test_the_cluster_pause_follows_the_jobs_rule():
    interval = _ms(CONF["execution.checkpointing.interval"])
    assert _ms(CONF["execution.checkpointing.min-pause"]) == common.min_pause_ms(interval)
    for cls in (WindowJobSettings, RulesSettings, AnomalyJobSettings):  # their default interval is the cluster's
        assert cls().checkpoint_interval_ms == interval


def test_a_jobs_own_settings_win_and_only_where_it_has_them(no_jars):
    cfg = WindowJobSettings.from_env({"IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": "2000", "IOTFLINK_JOB_PARALLELISM": "2",
                                      "IOTFLINK_IDLENESS_MS": "0"})
    conf = common.job_configuration(cfg, "t", use_kafka=False)
    assert (conf["execution.checkpointing.interval"], conf["execution.checkpointing.min-pause"]) == ("2000 ms", "1000 ms")
    assert conf["parallelism.default"] == "2"
    assert {k: conf[k] for k in common.FROM_CLUSTER_CONF} == {k: _text(CONF[k]) for k in common.FROM_CLUSTER_CONF}
    assert common.min_pause_ms(1) == 1


def test_cluster_defaults_read_the_file():
    assert common.cluster_defaults()["execution.checkpointing.incremental"] == "true"
    assert common.restart_strategy() == {k: str(v) for k, v in CONF.items() if k.startswith("restart-strategy.")}


def test_the_window_jobs_state_backend_is_the_clusters_unless_its_setting_says_hashmap(no_jars):
    from iotflink.errors import ConfigError  # noqa: PLC0415
    from jobs import sensor_windows as sw  # noqa: PLC0415

    default = WindowJobSettings.from_env({})
    assert sw.state_configuration(default) == {"state.backend.type": _text(CONF["state.backend.type"])} == {
        "state.backend.type": "rocksdb"}
    heap = WindowJobSettings.from_env({"IOTFLINK_WINDOW_STATE_BACKEND": " HashMap "})
    conf = common.job_configuration(heap, "t", use_kafka=False, extra=sw.state_configuration(heap))
    assert conf["state.backend.type"] == "hashmap"
    with pytest.raises(ConfigError, match="IOTFLINK_WINDOW_STATE_BACKEND='forst'"):
        WindowJobSettings.from_env({"IOTFLINK_WINDOW_STATE_BACKEND": "forst"})
