"""docker-compose.yml is the multi-host form of the local stack: check that it is valid and
stays in step with the files the local stack renders (deploy/, flink-conf/)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from iotflink.settings import PROJECT_ROOT
from iotflink.stack import mosquitto_tls_conf, render_template

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


def test_docker_compose_config_is_valid():
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is installed by scripts/setup.sh (deps/apt.txt)"
    proc = subprocess.run([exe, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, check=False)
    assert proc.returncode == 0, proc.stderr


def test_mosquitto_docker_conf_is_the_local_template_with_container_values():
    local = (PROJECT_ROOT / "deploy" / "mosquitto.conf").read_text()
    docker = (PROJECT_ROOT / "deploy" / "mosquitto.docker.conf").read_text()
    rendered = render_template(local, port=8883, host="0.0.0.0", user="mosquitto",
                               data_dir="/mosquitto/data", log_file="", auth_dir="/mosquitto/auth",
                               tls=mosquitto_tls_conf(Path("/mosquitto/certs")))

    def settings(text: str) -> list[str]:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        return [ln for ln in lines if not ln.startswith("log_dest")]

    assert settings(rendered) == settings(docker)


def test_compose_kafka_mirrors_local_server_properties():
    props = {}
    for line in (PROJECT_ROOT / "deploy" / "kafka-server.properties").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            props[key] = value
    env = yaml.safe_load(COMPOSE.read_text())["services"]["kafka"]["environment"]
    mirrored = {k[len("KAFKA_"):].lower().replace("_", "."): str(v) for k, v in env.items()}
    for key in ("process.roles", "auto.create.topics.enable", "transaction.max.timeout.ms",
                "offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "group.initial.rebalance.delay.ms"):
        assert mirrored[key] == props[key], key


def test_compose_flink_overrides_only_what_the_local_stack_overrides():
    compose = yaml.safe_load(COMPOSE.read_text())
    props = yaml.safe_load(compose["x-flink-properties"]["FLINK_PROPERTIES"])
    conf = yaml.safe_load((PROJECT_ROOT / "flink-conf" / "config.yaml").read_text())
    allowed = {"jobmanager.rpc.address", "rest.address", "taskmanager.numberOfTaskSlots",
               "execution.checkpointing.dir", "execution.checkpointing.savepoint-dir",
               "python.executable", "python.client.executable", "python.pythonpath"}
    assert set(props) <= allowed
    assert props["taskmanager.numberOfTaskSlots"] == conf["taskmanager.numberOfTaskSlots"]
    assert conf["state.backend.type"] == "rocksdb"
    assert conf["execution.checkpointing.incremental"] is True


def test_compose_mosquitto_is_tls_only_with_authentication():
    """The deployed broker: only MQTT over TLS (8883) is published, no anonymous clients, the
    credentials and certificates are mounted read-only, and the bridge connects over TLS with
    its own password file and nothing more of the credentials."""
    compose = yaml.safe_load(COMPOSE.read_text())
    mosq = compose["services"]["mosquitto"]
    assert mosq["ports"] == ["8883:8883"]
    conf = [ln.strip() for ln in (PROJECT_ROOT / "deploy" / "mosquitto.docker.conf").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    assert [ln for ln in conf if ln.startswith("listener")] == ["listener 8883 0.0.0.0"]
    for line in ("allow_anonymous false", "use_username_as_clientid true", "password_file /mosquitto/auth/passwd",
                 "acl_file /mosquitto/auth/acl", "certfile /mosquitto/certs/server.crt",
                 "keyfile /mosquitto/certs/server.key", "cafile /mosquitto/certs/ca.crt"):
        assert line in conf, line
    mounts = {v.split(":")[1]: v for v in mosq["volumes"]}
    assert mounts["/mosquitto/auth"].endswith(":ro") and mounts["/mosquitto/certs"].endswith(":ro")
    bridge = compose["services"]["bridge"]
    env = bridge["environment"]
    assert env["IOTFLINK_MQTT_TLS"] == "true" and env["IOTFLINK_MQTT_PORT"] == "8883"
    user = env["IOTFLINK_MQTT_BRIDGE_USER"]
    targets = sorted(v.split(":")[1] for v in bridge["volumes"])
    assert targets == sorted([env["IOTFLINK_MQTT_CA_FILE"],
                              f"{env['IOTFLINK_MQTT_AUTH_DIR']}/clients/{user}.password"])
    assert all(v.endswith(":ro") for v in bridge["volumes"])
    assert "deploy/secrets/" in (PROJECT_ROOT / ".gitignore").read_text().split()
