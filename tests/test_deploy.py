"""docker-compose.yml is the multi-host form of the local stack: check that it is valid, that
it exposes nothing but MQTT, that its Kafka is replicated, that its Flink cluster can bind in
containers and takes no jar uploads, and that it stays in step with the files the local stack
renders (deploy/, flink-conf/).

Every check reads the configuration as ``docker-compose config`` resolves it (anchors, merge
keys and defaults applied), the file Docker itself would run."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from iotflink.errors import ConfigError
from iotflink.runtime.mqtt_auth import CredentialStore
from iotflink.runtime.stack import mosquitto_tls_conf, render_template
from iotflink.settings import PROJECT_ROOT, BridgeSettings, StackSettings

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
#: Listener ports of Mosquitto: MQTT and MQTT over TLS (the only ports the host may publish).
MQTT_PORTS = {1883, 8883}
KAFKA_BROKERS = ("kafka-1", "kafka-2", "kafka-3")
#: Services that scale with ``docker-compose up --scale NAME=N``.
SCALED = ("bridge", "taskmanager")
#: Mosquitto's bridge-only listener (compose network only) and where its block starts.
BRIDGE_PORT = 8884
BRIDGE_BLOCK = "# ---- bridge-only listener"


def _compose_config(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is installed by scripts/setup.sh (deps/apt.txt)"
    return subprocess.run([exe, "-f", str(COMPOSE), "config", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, check=False)


@functools.lru_cache(maxsize=1)
def resolved() -> dict:
    """The output of ``docker-compose config``, parsed."""
    proc = _compose_config()
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def published(service: dict) -> list[tuple[str, int, int]]:
    """``(host_ip, published, target)`` of each port a service publishes on the host (host_ip
    ``""``: every interface). Accepts both forms ``docker-compose config`` prints: the long
    syntax and ``[HOST_IP:]PUBLISHED:TARGET[/PROTO]`` strings."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            if port.get("published") is not None:
                out.append((str(port.get("host_ip", "")), int(port["published"]), int(port["target"])))
            continue
        parts = str(port).split("/")[0].split(":")
        if len(parts) == 1:  # a container port on an ephemeral host port, every interface
            out.append(("", 0, int(parts[0])))
        elif len(parts) == 2:
            out.append(("", int(parts[0]), int(parts[1])))
        else:
            out.append((":".join(parts[:-2]), int(parts[-2]), int(parts[-1])))
    return out


def flink_properties() -> dict:
    """FLINK_PROPERTIES of the Flink services (the same for both: asserted)."""
    svc = resolved()["services"]
    jm = yaml.safe_load(svc["jobmanager"]["environment"]["FLINK_PROPERTIES"])
    tm = yaml.safe_load(svc["taskmanager"]["environment"]["FLINK_PROPERTIES"])
    assert jm == tm
    return jm


def test_docker_compose_config_is_valid():
    proc = _compose_config("-q")
    assert proc.returncode == 0, proc.stderr


def test_only_the_mqtt_port_is_published_on_other_than_loopback():
    """Kafka (PLAINTEXT, no authorizer) and the Flink REST API are not reachable from other
    hosts: the only port published on a non-loopback address is Mosquitto's listener."""
    exposed = {}
    for name, svc in resolved()["services"].items():
        for host_ip, _pub, target in published(svc):
            if not host_ip.startswith("127.") and host_ip != "::1":
                exposed.setdefault(name, set()).add(target)
    assert set(exposed) == {"mosquitto"}, exposed
    assert exposed["mosquitto"] <= MQTT_PORTS, exposed


def test_kafka_publishes_nothing_and_flink_rest_only_on_loopback():
    svc = resolved()["services"]
    for name in KAFKA_BROKERS:
        assert published(svc[name]) == [], name
    assert published(svc["jobmanager"]) == [("127.0.0.1", 8081, 8081)]
    assert published(svc["taskmanager"]) == []


def test_flink_jar_upload_is_off_in_the_deployed_cluster():
    """web.submit.enable as the containers see it: FLINK_PROPERTIES, else flink-conf/config.yaml
    (the image copies it)."""
    conf = yaml.safe_load((PROJECT_ROOT / "flink-conf" / "config.yaml").read_text())
    effective = {**conf, **flink_properties()}
    assert effective["web.submit.enable"] is False


def test_flink_binds_on_the_container_interfaces():
    """flink-conf/config.yaml binds to localhost (the local stack); in the containers the
    JobManager (RPC, REST) and TaskManager listen on every interface, clients find the
    JobManager by its service name, and the image drops taskmanager.host (localhost)."""
    props = flink_properties()
    for key in ("jobmanager.bind-host", "taskmanager.bind-host", "rest.bind-address"):
        assert props[key] == "0.0.0.0", key
    assert props["jobmanager.rpc.address"] == props["rest.address"] == "jobmanager"
    assert "jobmanager" in resolved()["services"]
    assert "taskmanager.host" not in props
    dockerfile = (PROJECT_ROOT / "deploy" / "flink.Dockerfile").read_text().splitlines()
    copy = dockerfile.index("COPY flink-conf/config.yaml /opt/flink/conf/config.yaml")
    assert r"RUN sed -i '/^taskmanager\.host:/d' /opt/flink/conf/config.yaml" in dockerfile[copy + 1:]


def test_kafka_has_three_kraft_brokers_and_replicated_topics():
    svc = resolved()["services"]
    envs = {name: {k: str(v) for k, v in svc[name]["environment"].items()} for name in KAFKA_BROKERS}
    assert sorted(envs[n]["KAFKA_NODE_ID"] for n in KAFKA_BROKERS) == ["1", "2", "3"]
    assert len({e["CLUSTER_ID"] for e in envs.values()}) == 1
    for name, env in envs.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert sorted(v.split("@")[1] for v in voters) == [f"{n}:9093" for n in KAFKA_BROKERS]
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        for key in ("DEFAULT_REPLICATION_FACTOR", "OFFSETS_TOPIC_REPLICATION_FACTOR",
                    "TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR"):
            assert env[f"KAFKA_{key}"] == "3", (name, key)
        for key in ("MIN_INSYNC_REPLICAS", "TRANSACTION_STATE_LOG_MIN_ISR", "SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR"):
            assert env[f"KAFKA_{key}"] == "2", (name, key)
    # the project's topics, created by the `topics` service, get the same
    topics_env = {k: str(v) for k, v in svc["topics"]["environment"].items()}
    cfg = StackSettings.from_env(topics_env)
    assert (cfg.replication_factor, cfg.min_insync_replicas) == (3, 2)
    assert sorted(cfg.kafka_bootstrap.split(",")) == [f"{n}:9092" for n in KAFKA_BROKERS]
    for name in ("topics", "bridge"):
        assert set(svc[name]["depends_on"]) >= ({"mosquitto"} if name == "bridge" else set(KAFKA_BROKERS))
    assert all(svc["topics"]["depends_on"][n]["condition"] == "service_healthy" for n in KAFKA_BROKERS)


def test_local_stack_is_a_single_unreplicated_broker():
    """The local stack stays one broker: topics with 1 replica, min.insync.replicas 1."""
    cfg = StackSettings.from_env({})
    assert (cfg.replication_factor, cfg.min_insync_replicas) == (1, 1)
    props = (PROJECT_ROOT / "deploy" / "kafka-server.properties").read_text()
    assert "node.id=1\n" in props and "offsets.topic.replication.factor=1\n" in props


@pytest.mark.parametrize("rf, isr", [(1, 2), (3, 0), (3, 4)])
def test_replica_settings_out_of_range_are_refused(rf, isr):
    with pytest.raises(ConfigError, match="MIN_INSYNC_REPLICAS"):
        StackSettings.from_env({"IOTFLINK_KAFKA_REPLICATION_FACTOR": str(rf),
                                "IOTFLINK_KAFKA_MIN_INSYNC_REPLICAS": str(isr)})


def test_mosquitto_docker_conf_is_the_local_template_with_container_values():
    local = (PROJECT_ROOT / "deploy" / "mosquitto.conf").read_text()
    # the bridge-only listener of the compose network is the docker file's own (last) block
    docker = (PROJECT_ROOT / "deploy" / "mosquitto.docker.conf").read_text().split(BRIDGE_BLOCK)[0]
    rendered = render_template(local, port=8883, host="0.0.0.0", user="mosquitto",
                               data_dir="/mosquitto/data", log_file="", auth_dir="/mosquitto/auth",
                               tls=mosquitto_tls_conf(Path("/mosquitto/certs")))

    def settings(text: str) -> list[str]:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        return [ln for ln in lines if not ln.startswith("log_dest")]

    assert settings(rendered) == settings(docker)


def test_compose_kafka_mirrors_local_server_properties():
    """Every broker setting that is not about replication is the local broker's."""
    props = {}
    for line in (PROJECT_ROOT / "deploy" / "kafka-server.properties").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            props[key] = value
    for name in KAFKA_BROKERS:
        env = resolved()["services"][name]["environment"]
        mirrored = {k[len("KAFKA_"):].lower().replace("_", "."): str(v) for k, v in env.items()
                    if k.startswith("KAFKA_")}
        for key in ("process.roles", "auto.create.topics.enable", "transaction.max.timeout.ms",
                    "group.initial.rebalance.delay.ms"):
            assert mirrored[key] == props[key], (name, key)


def test_compose_flink_overrides_only_what_the_local_stack_overrides():
    props = flink_properties()
    conf = yaml.safe_load((PROJECT_ROOT / "flink-conf" / "config.yaml").read_text())
    allowed = {"jobmanager.rpc.address", "jobmanager.bind-host", "taskmanager.bind-host", "rest.address",
               "rest.bind-address", "taskmanager.numberOfTaskSlots",
               "execution.checkpointing.dir", "execution.checkpointing.savepoint-dir",
               "python.executable", "python.client.executable",
               # compose only: the job's parallelism follows the slots of the scaled TaskManagers
               "jobmanager.scheduler"}
    assert set(props) <= allowed
    assert props["jobmanager.scheduler"] == "adaptive"
    assert conf["taskmanager.load-balance.mode"] == "SLOTS"  # slots spread over the TaskManagers
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
    assert [ln for ln in conf if ln.startswith("listener")] == ["listener 8883 0.0.0.0", f"listener {BRIDGE_PORT} 0.0.0.0"]
    for line in ("allow_anonymous false", "use_username_as_clientid true", "password_file /mosquitto/auth/passwd",
                 "acl_file /mosquitto/auth/acl", "certfile /mosquitto/certs/server.crt",
                 "keyfile /mosquitto/certs/server.key", "cafile /mosquitto/certs/ca.crt"):
        assert line in conf, line
    mounts = {v.split(":")[1]: v for v in mosq["volumes"]}
    assert mounts["/mosquitto/auth"].endswith(":ro") and mounts["/mosquitto/certs"].endswith(":ro")
    bridge = compose["services"]["bridge"]
    env = bridge["environment"]
    assert env["IOTFLINK_MQTT_TLS"] == "true" and env["IOTFLINK_MQTT_PORT"] == str(BRIDGE_PORT)
    user = env["IOTFLINK_MQTT_BRIDGE_USER"]
    targets = sorted(v.split(":")[1] for v in bridge["volumes"])
    assert targets == sorted([env["IOTFLINK_MQTT_CA_FILE"],
                              f"{env['IOTFLINK_MQTT_AUTH_DIR']}/clients/{user}.password"])
    assert all(v.endswith(":ro") for v in bridge["volumes"])
    assert "deploy/secrets/" in (PROJECT_ROOT / ".gitignore").read_text().split()


def _mosquitto_listeners() -> dict[int, list[str]]:
    """deploy/mosquitto.docker.conf's settings per listener port (the lines after each
    ``listener`` line up to the next one; Mosquitto applies listener options to the last
    listener named)."""
    out: dict[int, list[str]] = {}
    current = None
    for raw in (PROJECT_ROOT / "deploy" / "mosquitto.docker.conf").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("listener "):
            current = int(line.split()[1])
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out


def test_scaled_services_can_have_replicas():
    """``--scale bridge=N --scale taskmanager=N`` needs services without a fixed container
    name, hostname or host port (each would clash between replicas)."""
    svc = resolved()["services"]
    for name in SCALED:
        assert "container_name" not in svc[name], name
        assert "hostname" not in svc[name], name
        assert all(pub == 0 for _ip, pub, _target in published(svc[name])), name


def test_bridge_replicas_have_their_own_client_id_on_a_bridge_only_listener():
    """Every bridge replica shares the bridge credential, so on the device listener
    (use_username_as_clientid true) they would take over each other's session. They use the
    bridge-only listener, not published, where each keeps the client id it names itself by
    (its container's hostname); the device listener keeps the username as client id."""
    svc = resolved()["services"]
    bridge = svc["bridge"]
    assert bridge["environment"]["IOTFLINK_MQTT_PORT"] == str(BRIDGE_PORT)
    assert "IOTFLINK_MQTT_BRIDGE_CLIENT_ID" not in bridge["environment"]  # not one id for all replicas

    env = {k: str(v) for k, v in bridge["environment"].items()}
    assert BridgeSettings.from_env(env).subscription.startswith("$share/"), "replicas share the load, not copy it"
    command = " ".join(bridge["command"])
    assert "IOTFLINK_MQTT_BRIDGE_CLIENT_ID=iotflink-bridge-$HOSTNAME" in command.replace("$$", "$")
    assert command.endswith("exec python -m bridge")
    listeners = _mosquitto_listeners()
    assert set(listeners) == {8883, BRIDGE_PORT}
    assert "use_username_as_clientid true" in listeners[8883]
    assert "use_username_as_clientid false" in listeners[BRIDGE_PORT]
    for line in ("cafile /mosquitto/certs/ca.crt", "certfile /mosquitto/certs/server.crt",
                 "keyfile /mosquitto/certs/server.key", "tls_version tlsv1.2"):
        assert line in listeners[BRIDGE_PORT], line  # TLS there too
    # authentication per listener: the same ACL, but the bridge-only listener's password file
    # holds the bridge credentials only (iotflink.runtime.mqtt_auth CredentialStore.bridge_passwd_file)
    conf = (PROJECT_ROOT / "deploy" / "mosquitto.docker.conf").read_text().splitlines()
    assert "per_listener_settings true" in conf[:conf.index("listener 8883 0.0.0.0")]
    for port, passwd in ((8883, "passwd"), (BRIDGE_PORT, "passwd-bridges")):
        assert "allow_anonymous false" in listeners[port], port
        assert "acl_file /mosquitto/auth/acl" in listeners[port], port
        assert [ln for ln in listeners[port] if ln.startswith("password_file")] == \
            [f"password_file /mosquitto/auth/{passwd}"], port
    assert CredentialStore(Path("/mosquitto/auth")).bridge_passwd_file.name == "passwd-bridges"
    assert resolved()["services"]["bridge"]["stop_grace_period"] in ("1m0s", "60s", "1m")  # time to leave the group
    for name, service in svc.items():
        assert all(target != BRIDGE_PORT for _ip, _pub, target in published(service)), name


def test_bridge_client_id_setting_defaults_to_the_username():

    assert BridgeSettings.from_env({}).client_id == BridgeSettings.from_env({}).username
    cfg = BridgeSettings.from_env({"IOTFLINK_MQTT_BRIDGE_CLIENT_ID": "iotflink-bridge-3f2a"})
    assert (cfg.client_id, cfg.username) == ("iotflink-bridge-3f2a", "iotflink-bridge")


@pytest.mark.integration
def test_compose_broker_admits_only_bridges_on_the_bridge_only_listener(tmp_path):
    """deploy/mosquitto.docker.conf on the real Mosquitto (paths, ports and user of this
    machine, credentials and certificates made as the compose instructions say): a device
    logs in on 8883 and is refused on the bridge-only listener; the bridge logs in on both."""
    import getpass  # noqa: PLC0415

    import paho.mqtt.client as mqtt  # noqa: PLC0415

    from iotflink.runtime.mqtt_auth import configure_paho, make_ca  # noqa: PLC0415
    from iotflink.runtime.stack import free_ports, wait_for  # noqa: PLC0415

    store = CredentialStore(tmp_path / "auth")
    device, bridge = store.add("dev-1"), store.add("iotflink-bridge", role="bridge")
    ca = make_ca(tmp_path / "tls", ["127.0.0.1"])
    (tmp_path / "data").mkdir()
    device_port, bridge_port = free_ports(2)
    conf = (PROJECT_ROOT / "deploy" / "mosquitto.docker.conf").read_text()
    for old, new in (("/mosquitto/auth", str(store.dir)), ("/mosquitto/certs", str(ca.parent)),
                     ("/mosquitto/data", str(tmp_path / "data")), ("listener 8883 0.0.0.0", f"listener {device_port} 127.0.0.1"),
                     (f"listener {BRIDGE_PORT} 0.0.0.0", f"listener {bridge_port} 127.0.0.1"),
                     ("user mosquitto", f"user {getpass.getuser()}")):
        assert old in conf, old
        conf = conf.replace(old, new)
    (tmp_path / "mosquitto.conf").write_text(conf)
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def connack(cred, port: int) -> int:
        """The CONNACK reason code ``cred`` gets on ``port`` (0 = accepted)."""
        got: list[int] = []
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{cred.username}", protocol=mqtt.MQTTv5)
        configure_paho(client, cred, ca)
        client.on_connect = lambda _c, _u, _f, rc, _p: got.append(rc.value)
        wait_for(lambda: _try_connect(client, port), 10, what=f"the broker on {port}")
        client.loop_start()
        try:
            wait_for(lambda: got, 10, what=f"CONNACK of {cred.username} on {port}")
        finally:
            client.disconnect()
            client.loop_stop()
        return got[0]

    try:
        assert connack(device, device_port) == 0
        assert connack(bridge, device_port) == 0
        assert connack(bridge, bridge_port) == 0
        assert connack(device, bridge_port) in (0x86, 0x87)  # bad user name or password / not authorized
    finally:
        broker.terminate()
        out = broker.communicate(timeout=10)[0]
    assert "Error" not in out, out


def _try_connect(client, port: int) -> bool:
    """``client.connect`` to 127.0.0.1:``port``; False while nothing listens there yet."""
    try:
        client.connect("127.0.0.1", port)
    except OSError:
        return False
    return True
