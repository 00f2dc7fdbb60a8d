"""iotflink.settings: each setting defined once (ENV_VARS, the field that names its variable,
from_env and to_env generated from the fields). No services."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from iotflink import cli, settings
from iotflink.errors import ConfigError

CLASSES = (settings.Topics, settings.StackSettings, settings.BridgeSettings, settings.WindowJobSettings,
           settings.RulesSettings, settings.TransactionSettings, settings.AnomalyJobSettings)

#: variables a from_env reads itself (not a field's: derived, or a field without a default)
READ_BY_FROM_ENV = {"IOTFLINK_MQTT_TOPIC_FILTER", "IOTFLINK_MQTT_BRIDGE_CLIENT_ID", "IOTFLINK_BRIDGE_SHARE_GROUP",
                    "IOTFLINK_TXN_DATA", "IOTFLINK_TXN_GROUND_TRUTH", "IOTFLINK_PLAN_CACHE_DIR"}


def _env_field_list():
    return [(cls, f) for cls in CLASSES for f in dataclasses.fields(cls) if "env" in f.metadata]


def test_every_variable_is_read_by_a_field_or_a_from_env():
    by_fields = {f.metadata["env"] for _, f in _env_field_list()}
    assert set(settings.ENV_VARS) - by_fields - READ_BY_FROM_ENV == set()
    assert READ_BY_FROM_ENV <= set(settings.ENV_VARS) and not READ_BY_FROM_ENV & by_fields


@pytest.mark.parametrize(("cls", "fld"), _env_field_list(), ids=lambda x: getattr(x, "__name__", getattr(x, "name", "")))
def test_field_default_is_its_variables_default(cls, fld):
    var = fld.metadata["env"]
    assert fld.default == fld.metadata["parse"](var, settings.ENV_VARS[var])
    assert getattr(cls.from_env({}), fld.name) == fld.default


def test_from_env_reads_each_field_and_to_env_writes_it_back():
    environ = {"IOTFLINK_KAFKA_PORT": "19092", "IOTFLINK_MQTT_TLS": "true", "IOTFLINK_TOPIC_ALERTS": "alerts-x",
               "IOTFLINK_READINGS_PARTITIONS": "7", "IOTFLINK_RUN_DIR": "/tmp/run-x", "IOTFLINK_TASKMANAGERS": "2"}
    cfg = settings.StackSettings.from_env(environ)
    assert (cfg.kafka_port, cfg.mqtt_tls, cfg.topics.alerts, cfg.topics.readings_partitions, cfg.run_dir,
            cfg.taskmanagers) == (19092, True, "alerts-x", 7, Path("/tmp/run-x"), 2)
    out = cfg.to_env()
    assert {k: out[k] for k in environ} == environ
    assert out["IOTFLINK_KAFKA_BOOTSTRAP"] == "127.0.0.1:19092"  # resolved, as a child must reach it
    assert settings.StackSettings.from_env(out) == dataclasses.replace(cfg, kafka_bootstrap_override="127.0.0.1:19092",
                                                                       mqtt_host_override="127.0.0.1",
                                                                       flink_rest_host_override="127.0.0.1",
                                                                       mqtt_auth_dir_override="/tmp/run-x/mosquitto/auth",
                                                                       mqtt_ca_file_override="/tmp/run-x/mosquitto/tls/ca.crt")
    assert set(out) == {f.metadata["env"] for cls in (settings.StackSettings, settings.Topics)
                        for f in dataclasses.fields(cls) if "env" in f.metadata}


def test_parsers_name_the_variable():
    with pytest.raises(ConfigError, match="IOTFLINK_KAFKA_PORT='x' is not an integer"):
        settings.StackSettings.from_env({"IOTFLINK_KAFKA_PORT": "x"})
    with pytest.raises(ConfigError, match="IOTFLINK_MQTT_TLS='maybe' is not a boolean"):
        settings.StackSettings.from_env({"IOTFLINK_MQTT_TLS": " Maybe"})
    with pytest.raises(ConfigError, match="IOTFLINK_ANOMALY_THRESHOLD='x' is not a number"):
        settings.AnomalyJobSettings.from_env({"IOTFLINK_ANOMALY_THRESHOLD": "x"})
    assert settings.WindowJobSettings.from_env({"IOTFLINK_WINDOW_KIND": " Tumbling "}).window_kind == "tumbling"
    with pytest.raises(ConfigError, match="undocumented environment variable 'IOTFLINK_NOPE'"):
        settings.setting("IOTFLINK_NOPE")


def test_env_command_prints_every_variable_once_in_order(capsys, monkeypatch):
    for name in settings.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IOTFLINK_WINDOW_SIZE_MS", "5000")
    assert cli.main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == list(settings.ENV_VARS)
    assert "IOTFLINK_WINDOW_SIZE_MS=5000   # set" in lines
    assert f"IOTFLINK_KAFKA_PORT={settings.ENV_VARS['IOTFLINK_KAFKA_PORT']}" in lines
