"""The local stack: Apache Kafka (KRaft), Mosquitto and a Flink standalone cluster on loopback.

Every service runs as a child process of its own session, with its state, log file and pid
file under ``StackSettings.run_dir``::

    .run/
      logs/     kafka.log, kafka.out, mosquitto.log, flink-jobmanager.out, flink-taskmanager.out, ...
      pids/     kafka.pid, mosquitto.pid, flink-jobmanager.pid, flink-taskmanager.pid
      kafka/    server.properties, log4j2.properties, data/ (KRaft log, formatted once)
      mosquitto/ mosquitto.conf, data/ (persistent sessions),
                auth/ (credentials: passwd, acl, clients/*.password; iotflink.runtime.mqtt_auth),
                tls/ (local CA and server certificate, with IOTFLINK_MQTT_TLS=true)
      flink/    conf/ (rendered from flink-conf/), checkpoints/, savepoints/,
                taskmanager-<i>/ (TaskManager i's local state, as on its own host: tmp/ = its
                io.tmp.dirs, rocksdb/ = its RocksDB local directory, resource-id)

With ``StackSettings.taskmanagers`` = N (``IOTFLINK_TASKMANAGERS``, ``stack start
--taskmanagers N``) the service ``flink-taskmanager`` is N processes, named like the N bridge
processes of ``bridge``: ``flink-taskmanager``, ``flink-taskmanager-1``, ... (pid file and
``.out`` log each, :meth:`Stack.instances`); each has the slots of flink-conf/config.yaml, its
own resource id (``taskmanager.resource-id`` = ``<instance>-<8 hex>``, new at every start, so the
JobManager tells a restarted TaskManager from the dead one) and its own local directories.
Start, stop and status cover every instance.

:func:`start` is idempotent (a service that already answers is left alone) and waits for real
readiness: Kafka answers a metadata request, Mosquitto answers an MQTT CONNECT (refusing an
anonymous one: every client needs a credential, see :mod:`iotflink.runtime.mqtt_auth`), the Flink REST
API lists every TaskManager instance's resource id (``/taskmanagers``) and slots. A failure raises
:class:`~iotflink.errors.StackError` naming the service and its log file.
"""

from __future__ import annotations

import base64
import getpass
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from iotflink.errors import StackError
from iotflink.poll import PollTimeout, poll, wait_for
from iotflink.runtime import mqtt_auth
from iotflink.runtime.flink_rest import FlinkRest
from iotflink.settings import PROJECT_ROOT, StackSettings

if TYPE_CHECKING:
    from iotflink.runtime.broker_stats import BrokerCounters

log = logging.getLogger(__name__)

#: Order in which services start (stop runs in reverse).
SERVICES = ("kafka", "mosquitto", "bridge", "flink-jobmanager", "flink-taskmanager")

#: MQTT username of the stack's ``monitor`` credential: reads Mosquitto's ``$SYS`` counters
#: (:meth:`Stack.mosquitto_counters`) and nothing else (iotflink/runtime/mqtt_auth.py).
MQTT_MONITOR_USER = "iotflink-monitor"

#: Seconds each service gets to become ready.
READY_TIMEOUT_S = {"kafka": 90.0, "mosquitto": 20.0, "bridge": 30.0, "flink-jobmanager": 90.0,
                   "flink-taskmanager": 90.0}


def flink_home() -> Path:
    """The Flink distribution shipped inside the installed PyFlink package (bin/, lib/, conf/).

    Raises:
        StackError: PyFlink is not installed in this interpreter.
    """
    try:
        import pyflink  # noqa: PLC0415
    except ImportError as exc:
        raise StackError("PyFlink is not installed in this Python; run scripts/setup.sh") from exc
    return Path(pyflink.__file__).resolve().parent


#: Lowest port :func:`free_ports` hands out (above the stack's default ports 1883-9093).
FREE_PORT_FLOOR = 10_000


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (``net.ipv4.ip_local_port_range``), default 32768-60999."""
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32_768, 60_999


def _free_port_window() -> tuple[int, int] | None:
    """Ports to choose from: the larger span outside the ephemeral range, between
    :data:`FREE_PORT_FLOOR` and 65535; None when neither holds 1,000 ports."""
    low, high = _ephemeral_range()
    spans = [(FREE_PORT_FLOOR, low - 1), (max(high + 1, FREE_PORT_FLOOR), 65_535)]
    lo, hi = max(spans, key=lambda s: s[1] - s[0])
    return (lo, hi) if hi - lo >= 1_000 else None


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports on ``host`` that nothing is bound to right now.

    The ports lie outside the kernel's ephemeral range (:func:`_free_port_window`; e.g.
    10000-32767 with Linux's default 32768-60999). A port from inside that range, as
    ``bind(0)`` gives, can be taken by any outgoing connection (the local port of a client:
    every readiness probe, Kafka or HTTP client) between this choice and the moment the service
    binds it, and the service then fails to start. Each port is checked with a bind and kept
    bound until all ``count`` are chosen, so they are distinct. The scan starts at a random
    offset (``random.SystemRandom``: the global ``random`` state of a test stays untouched),
    so concurrent test processes rarely probe the same ports.

    Raises:
        StackError: fewer than ``count`` free ports in the window.
    """
    window = _free_port_window()
    held: list[socket.socket] = []
    try:
        if window is None:  # the ephemeral range covers nearly everything: fall back to bind(0)
            for _ in range(count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                sock.bind((host, 0))
            return [s.getsockname()[1] for s in held]
        lo, hi = window
        size = hi - lo + 1
        start = random.SystemRandom().randrange(size)
        for i in range(size):
            port = lo + (start + i) % size
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
            if len(held) == count:
                return [s.getsockname()[1] for s in held]
        raise StackError(f"only {len(held)} of {count} free ports on {host} in {lo}-{hi}")
    finally:
        for sock in held:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing is bound to right now, outside the ephemeral range
    (see :func:`free_ports`)."""
    return free_ports(1, host)[0]


def free_port_settings(run_dir: Path, base: StackSettings | None = None) -> StackSettings:
    """Stack settings for an isolated stack on free loopback ports under ``run_dir``: five
    distinct ports from :func:`free_ports` (Kafka, its controller, MQTT, Flink REST and RPC)."""
    base = base or StackSettings.from_env()
    kafka, controller, mqtt, rest, rpc = free_ports(5, base.host)
    return StackSettings(
        mqtt_tls=base.mqtt_tls,
        mqtt_bridge_user=base.mqtt_bridge_user,
        bridges=base.bridges,
        taskmanagers=base.taskmanagers,
        run_dir=run_dir,
        deps_dir=base.deps_dir,
        host=base.host,
        kafka_port=kafka,
        kafka_controller_port=controller,
        mqtt_port=mqtt,
        flink_rest_port=rest,
        flink_rpc_port=rpc,
        topics=base.topics,
    )


def render_template(text: str, **values: object) -> str:
    """Replace each ``{name}`` in ``text`` by ``values[name]``; other braces stay as they are."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def mosquitto_tls_conf(cert_dir: Path | None) -> str:
    """The TLS lines of deploy/mosquitto.conf's listener: ``cafile``, ``certfile``, ``keyfile``
    and TLS 1.2 or newer from ``cert_dir`` (:func:`iotflink.runtime.mqtt_auth.make_ca`'s files), or
    a comment saying the listener is plain MQTT when ``cert_dir`` is None."""
    if cert_dir is None:
        return "# plain MQTT (IOTFLINK_MQTT_TLS=false): the listener is on loopback only"
    return "\n".join([
        "# MQTT over TLS only (IOTFLINK_MQTT_TLS=true); certificates of the local CA (iotflink/runtime/mqtt_auth.py)",
        f"cafile {cert_dir}/ca.crt", f"certfile {cert_dir}/server.crt", f"keyfile {cert_dir}/server.key",
        "tls_version tlsv1.2"])


def mqtt_connect_packet(client_id: str, username: str | None = None, password: str | None = None,
                        keepalive_s: int = 5) -> bytes:
    """An MQTT 3.1.1 CONNECT packet with a clean session (OASIS MQTT 3.1.1, section 3.1).

    Args:
        client_id: the client identifier (the broker replaces it by the username, see
            deploy/mosquitto.conf ``use_username_as_clientid``).
        username / password: credential, or None for an anonymous CONNECT.
        keepalive_s: keep alive, seconds.
    """
    def field_(text: str) -> bytes:
        raw = text.encode()
        return len(raw).to_bytes(2, "big") + raw

    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + keepalive_s.to_bytes(2, "big") + field_(client_id)
    if username is not None:
        body += field_(username)
    if password is not None:
        body += field_(password)
    length, remaining = b"", len(body)
    while True:  # remaining length: variable byte integer
        byte, remaining = remaining % 128, remaining // 128
        length += bytes([byte | (0x80 if remaining else 0)])
        if not remaining:
            break
    return b"\x10" + length + body


def flink_env(settings: StackSettings) -> dict[str, str]:
    """Environment for Flink's scripts (``flink run``, ``sql-client.sh``) against the stack of
    ``settings``: this process's environment, the settings' ``IOTFLINK_*`` variables, and
    ``FLINK_CONF_DIR`` / ``FLINK_LOG_DIR`` / ``FLINK_PID_DIR`` / ``FLINK_HOME`` /
    ``PYFLINK_CLIENT_EXECUTABLE``.

    Raises:
        StackError: PyFlink is not installed (:func:`flink_home`).
    """
    env = dict(os.environ)
    env.update(settings.to_env())
    env["FLINK_CONF_DIR"] = str(settings.flink_conf_dir)
    env["FLINK_LOG_DIR"] = str(settings.log_dir)
    env["FLINK_PID_DIR"] = str(settings.pid_dir)
    env["FLINK_HOME"] = str(flink_home())
    env["PYFLINK_CLIENT_EXECUTABLE"] = sys.executable
    return env


def create_topics(settings: StackSettings, partitions: Mapping[str, int] | None = None,
                  names: Sequence[str] | None = None) -> list[str]:
    """Create the project's topics (or ``names``) on the Kafka of ``settings`` if missing;
    return the names created.

    ``sensor-readings`` gets ``topics.readings_partitions`` partitions (key = device_id);
    the result topics get the same count so the job's sinks can write in parallel. Every
    topic gets ``replication_factor`` replicas and ``min.insync.replicas`` =
    ``min_insync_replicas`` (1 and 1 on the local single-broker stack).
    ``partitions`` overrides the count per topic name (e.g. a one-partition topic for a
    test); a topic that exists already is left as it is. Returns once the broker's
    metadata lists every created topic (:func:`iotflink.kafka_io.create_topics`).

    Raises:
        StackError: the broker refused to create a topic, or did not list a created one
            within 30 s.
    """
    from iotflink import kafka_io  # noqa: PLC0415 - kafka-python only when Kafka is asked

    try:
        return kafka_io.create_topics(settings.kafka_bootstrap, settings.topic_partitions(names, partitions),
                                      settings.replication_factor, client_id="iotflink-stack",
                                      configs={"min.insync.replicas": str(settings.min_insync_replicas)})
    except StackError as exc:
        raise StackError(f"{exc}; see {settings.log_dir / 'kafka.out'}") from exc


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def kafka_cluster_id(raw: bytes | None = None) -> str:
    """A KRaft cluster id: URL-safe base64 (22 characters) of 16 random bytes.

    ``kafka-storage format -t ID`` parses its arguments with argparse4j, which reads an id
    starting with ``-`` as an option. Like Kafka's own ``Uuid.randomUuid()`` (what
    ``kafka-storage random-uuid`` prints), this never returns such an id: the top bit of the
    first byte is cleared, so the first character is one of ``A-Za-f`` (base64 of a value
    below 128 in its top six bits), never ``-`` or ``_``.

    Args:
        raw: 16 bytes to encode (tests); default ``uuid.uuid4().bytes``.
    """
    data = bytearray(uuid.uuid4().bytes if raw is None else raw)
    if len(data) != 16:
        raise ValueError(f"a cluster id encodes 16 bytes, got {len(data)}")
    data[0] &= 0x7F
    return base64.urlsafe_b64encode(bytes(data)).decode().rstrip("=")


@dataclass(frozen=True)
class ServiceStatus:
    """State of one service: ``running`` (its process lives), ``ready`` (it answers)."""

    name: str
    pid: int | None
    running: bool
    ready: bool
    log_file: Path
    detail: str = ""


class Stack:
    """Start, stop and inspect the local stack described by ``settings``."""

    def __init__(self, settings: StackSettings) -> None:
        self.s = settings
        self.run_dir = settings.run_dir
        self.pid_dir = settings.pid_dir
        self.log_dir = settings.log_dir
        #: the cluster's REST API (short time-outs: readiness probes)
        self.flink_rest = FlinkRest(settings.flink_rest_url, timeout_s=2.0)

    # ------------------------------------------------------------------ paths
    def log_file(self, name: str) -> Path:
        """The log file of service ``name`` (what a failure message points to); bridge
        process ``i`` > 0 is ``bridge-{i}``, TaskManager ``i`` > 0 ``flink-taskmanager-{i}``."""
        if name.startswith("flink-taskmanager-"):
            return self.log_dir / f"{name}.out"
        if name.startswith("bridge-"):
            return self.log_dir / f"{name}.log"
        return {
            "kafka": self.log_dir / "kafka.out",
            "mosquitto": self.log_dir / "mosquitto.log",
            "bridge": self.log_dir / "bridge.log",
            "flink-jobmanager": self.log_dir / "flink-jobmanager.out",
            "flink-taskmanager": self.log_dir / "flink-taskmanager.out",
        }[name]

    def instances(self, name: str) -> list[str]:
        """The process names of service ``name``: ``bridge`` and ``flink-taskmanager`` are one
        process per bridge / TaskManager (``bridge``, ``bridge-1``, ...), every other service is
        one process of its own name."""
        if name == "bridge":
            return self._bridge_names()
        if name == "flink-taskmanager":
            return self._taskmanager_names()
        return [name]

    def _pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        """Pid of service ``name`` if its pid file names a live process, else None."""
        path = self._pid_file(name)
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        # a zombie is not alive
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                if fh.read().split(") ", 1)[1].startswith("Z"):
                    return None
        except OSError:
            return None
        return pid

    @property
    def flink_conf_dir(self) -> Path:
        """The rendered Flink configuration directory (``FLINK_CONF_DIR``)."""
        return self.s.flink_conf_dir

    def flink_env(self) -> dict[str, str]:
        """Environment for Flink's scripts (``flink run``, ``sql-client.sh``) against this stack
        (:func:`flink_env`)."""
        return flink_env(self.s)

    # ------------------------------------------------------------------ rendering
    def _render(self) -> None:
        for sub in ("logs", "pids", "kafka/data", "mosquitto/data", "flink/conf",
                    "flink/checkpoints", "flink/savepoints", "flink/tmp"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        s = self.s
        kafka_props = render_template(
            (PROJECT_ROOT / "deploy" / "kafka-server.properties").read_text(), host=s.host, port=s.kafka_port,
            controller_port=s.kafka_controller_port,
            data_dir=self.run_dir / "kafka" / "data")
        (self.run_dir / "kafka" / "server.properties").write_text(kafka_props)
        shutil.copy(PROJECT_ROOT / "deploy" / "kafka-log4j2.properties",
                    self.run_dir / "kafka" / "log4j2.properties")
        created = self._render_mqtt_auth()
        mosq = render_template(
            (PROJECT_ROOT / "deploy" / "mosquitto.conf").read_text(), host=s.host, port=s.mqtt_port,
            data_dir=self.run_dir / "mosquitto" / "data",
            log_file=self.log_file("mosquitto"), user=getpass.getuser(), auth_dir=s.mqtt_auth_dir,
            tls=mosquitto_tls_conf(s.mqtt_tls_dir if s.mqtt_tls else None))
        (self.run_dir / "mosquitto" / "mosquitto.conf").write_text(mosq)
        if created and self.pid("mosquitto") is not None:
            self.reload_mosquitto()
        self._render_flink_conf()

    def _render_mqtt_auth(self) -> list[str]:
        """The broker's password and ACL files with the bridge's and the monitor's credentials
        (created once),
        and with TLS the local CA and server certificate; returns the credentials created."""
        store = self.credentials
        _creds, created = store.ensure([self.s.bridge_user(i) for i in range(self.s.bridges)], role="bridge")
        _creds, created_monitor = store.ensure([MQTT_MONITOR_USER], role="monitor")
        created = created + created_monitor
        if not (store.passwd_file.exists() and store.acl_file.exists()):
            store.render()
        if self.s.mqtt_tls:
            hosts = [h for h in (self.s.mqtt_host, self.s.host, "127.0.0.1", "localhost") if h != "0.0.0.0"]  # noqa: S104 - excluded, not bound
            mqtt_auth.make_ca(self.s.mqtt_tls_dir, hosts)
        return created

    def _render_flink_conf(self) -> None:
        src = PROJECT_ROOT / "flink-conf"
        conf = yaml.safe_load((src / "config.yaml").read_text())
        s = self.s
        fdir = self.run_dir / "flink"
        conf.update({
            "jobmanager.rpc.address": s.host,
            "jobmanager.bind-host": s.host,
            "jobmanager.rpc.port": s.flink_rpc_port,
            "taskmanager.host": s.host,
            "taskmanager.bind-host": s.host,
            "rest.address": s.host,
            "rest.bind-address": s.host,
            "rest.port": s.flink_rest_port,
            "execution.checkpointing.dir": (fdir / "checkpoints").as_uri(),
            "execution.checkpointing.savepoint-dir": (fdir / "savepoints").as_uri(),
            "io.tmp.dirs": str(fdir / "tmp"),
            "python.executable": sys.executable,
            # the venv, where the project is installed (pip install -e .): the UDF workers
            # import jobs/, udfs/, iotflink/ from it; `flink run -pyfs` ships them as well
            "python.client.executable": sys.executable,
        })
        text = "# Rendered by iotflink.runtime.stack from flink-conf/config.yaml; do not edit.\n"
        text += yaml.safe_dump(conf, default_flow_style=False, sort_keys=False, width=10_000)
        (self.flink_conf_dir / "config.yaml").write_text(text)
        for name in ("log4j-console.properties", "log4j-cli.properties"):
            shutil.copy(src / name, self.flink_conf_dir / name)
        # sql-client.sh and `flink` look for these too
        shutil.copy(src / "log4j-console.properties", self.flink_conf_dir / "log4j.properties")
        shutil.copy(src / "log4j-console.properties", self.flink_conf_dir / "log4j-session.properties")

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        log_path = self.log_file(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(  # noqa: S603 - argv built from project files
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.run_dir, start_new_session=True)
        self._pid_file(name).write_text(str(proc.pid))
        log.info("started %s (pid %d), log %s", name, proc.pid, log_path)
        return proc.pid

    def _kafka_classpath(self) -> str:
        kdir = self.s.deps_dir / "kafka"
        if not any(kdir.glob("kafka_2.13-*.jar")):
            raise StackError(f"kafka: broker jars missing in {kdir}; run scripts/setup.sh")
        return str(kdir / "*")

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        if java_home and (Path(java_home) / "bin" / "java").exists():
            return str(Path(java_home) / "bin" / "java")
        java = shutil.which("java")
        if not java:
            raise StackError("java not found on PATH (OpenJDK 17 is required)")
        return java

    def _start_kafka(self) -> None:
        props = self.run_dir / "kafka" / "server.properties"
        data = self.run_dir / "kafka" / "data"
        jvm = [self._java(), "-Xms256m", "-Xmx768m", "-XX:+UseG1GC",
               f"-Dlog4j2.configurationFile={self.run_dir / 'kafka' / 'log4j2.properties'}",
               f"-Dkafka.logs.dir={self.log_dir}", "-cp", self._kafka_classpath()]
        if not (data / "meta.properties").exists():
            cluster_id = kafka_cluster_id()
            fmt = subprocess.run(  # noqa: S603
                jvm + ["kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
                       "-c", str(props)], capture_output=True, text=True, check=False)
            with open(self.log_file("kafka"), "a", encoding="utf-8") as out:
                out.write(fmt.stdout + fmt.stderr)
            if fmt.returncode != 0:
                raise StackError(f"kafka: formatting the KRaft log failed; see {self.log_file('kafka')}")
        self._spawn("kafka", jvm + ["kafka.Kafka", str(props)])

    def _start_mosquitto(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise StackError("mosquitto: not installed; run scripts/setup.sh")
        self._spawn("mosquitto", [exe, "-c", str(self.run_dir / "mosquitto" / "mosquitto.conf")])

    @property
    def bridge_stats_file(self) -> Path:
        """JSON counters the running bridge rewrites every second (see ``bridge.service``);
        the first bridge process's with ``bridges`` > 1 (:meth:`bridge_stats_files`)."""
        return self.run_dir / "bridge-stats.json"

    def bridge_stats_files(self) -> list[Path]:
        """The stats file of each of the ``bridges`` bridge processes, in process order."""
        return [self.bridge_stats_file] + [self.run_dir / f"bridge-{i}-stats.json" for i in range(1, self.s.bridges)]

    def bridge_stats(self) -> dict:
        """The bridge's latest counters (``received``, ``forwarded``, ``dead_lettered``, ...);
        with several bridge processes, the sum of their counters (:meth:`bridge_stats_all` has
        each one's): ``records = forwarded + dead_lettered + pending`` holds for the sum."""
        all_stats = self.bridge_stats_all()
        if len(all_stats) == 1:
            return all_stats[0]
        total: dict = {}
        for st in all_stats:
            for key, value in st.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    total.setdefault(key, value) if value is not None else None
                    continue
                total[key] = total.get(key, 0) + value
        return total

    def bridge_stats_all(self) -> list[dict]:
        """The latest counters of each bridge process (raises OSError while one has none yet)."""
        return [json.loads(path.read_text()) for path in self.bridge_stats_files()]

    def _bridge_names(self) -> list[str]:
        return ["bridge"] + [f"bridge-{i}" for i in range(1, self.s.bridges)]

    def _start_bridge(self) -> None:
        """Start the ``bridges`` bridge processes, each with its own credential (client id,
        persistent session, Kafka producer client id) and stats file, all in the shared
        subscription group ``IOTFLINK_BRIDGE_SHARE_GROUP``."""
        env = dict(os.environ)
        env.update(self.s.to_env())
        self._end_sessions_of_removed_bridges()
        for i, (name, stats) in enumerate(zip(self._bridge_names(), self.bridge_stats_files(), strict=True)):
            if self.pid(name) is not None:
                continue
            stats.unlink(missing_ok=True)
            self._spawn(name, [sys.executable, "-m", "bridge", "--stats-file", str(stats), "--stats-interval-s", "1"],
                        env={**env, "IOTFLINK_MQTT_BRIDGE_USER": self.s.bridge_user(i)})

    def _end_sessions_of_removed_bridges(self) -> None:
        """End the persistent MQTT sessions of bridge credentials ``{mqtt_bridge_user}-{i}``
        with ``i`` >= ``bridges`` (left by a run with more bridges): a member of the shared
        subscription group that is offline but has a session still gets its share of the
        messages queued (for up to the session expiry), which no running bridge would read.
        Connecting once with clean start and session expiry 0 removes the session."""
        import paho.mqtt.client as mqtt  # noqa: PLC0415
        from paho.mqtt.packettypes import PacketTypes  # noqa: PLC0415
        from paho.mqtt.properties import Properties  # noqa: PLC0415

        prefix = f"{self.s.mqtt_bridge_user}-"
        for entry in self.credentials.list():
            user = entry.get("username", "")
            tail = user[len(prefix):]
            if entry.get("role") != "bridge" or not user.startswith(prefix) or not tail.isdigit() \
                    or int(tail) < self.s.bridges:
                continue
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
            mqtt_auth.configure_paho(client, self.credentials.get(user, role="bridge"), self.s.mqtt_ca_file)
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0
            try:
                client.connect(self.s.mqtt_host, self.s.mqtt_port, clean_start=True, properties=props)
                client.loop_start()
                wait_for(client.is_connected, 10, what=f"MQTT connect of {user}")
                client.disconnect()
                client.loop_stop()
                log.info("ended the MQTT session of removed bridge %s", user)
            except (OSError, TimeoutError) as exc:
                log.warning("could not end the MQTT session of removed bridge %s: %r", user, exc)

    def bridge_ready(self) -> bool:
        """True when every bridge process holds its QoS 1 subscription (its stats file counts
        one)."""
        return all(st.get("subscribed", 0) >= 1 for st in self.bridge_stats_all())

    def _start_flink(self, role: str) -> None:
        script = flink_home() / "bin" / f"{role}.sh"
        env = self.flink_env()
        env["FLINK_IDENT_STRING"] = "iotflink"
        self._spawn(f"flink-{role}", ["bash", str(script), "start-foreground"], env=env)

    # ------------------------------------------------------------------ TaskManagers
    def _taskmanager_names(self) -> list[str]:
        return ["flink-taskmanager"] + [f"flink-taskmanager-{i}" for i in range(1, self.s.taskmanagers)]

    @staticmethod
    def _instance_index(name: str) -> int:
        """0 for ``bridge`` / ``flink-taskmanager``, ``i`` for ``...-{i}``."""
        tail = name.rsplit("-", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    def taskmanager_dir(self, name: str = "flink-taskmanager") -> Path:
        """TaskManager ``name``'s local directory, ``flink/taskmanager-<i>/``: ``tmp/`` (its
        ``io.tmp.dirs``: spilled data, the Python workers' files), ``rocksdb/`` (its
        ``state.backend.rocksdb.localdir``: the working copy of its keyed state) and
        ``resource-id`` (the id it registered with)."""
        return self.run_dir / "flink" / f"taskmanager-{self._instance_index(name)}"

    def taskmanager_resource_id(self, name: str = "flink-taskmanager") -> str | None:
        """The resource id TaskManager ``name`` was last started with (the ``id`` of REST
        ``/taskmanagers``), or None if it was never started."""
        try:
            return (self.taskmanager_dir(name) / "resource-id").read_text().strip() or None
        except OSError:
            return None

    def _start_taskmanagers(self) -> None:
        """Start every TaskManager instance whose process is not alive, each as a separate
        host would run it: its own process (``taskmanager.sh start-foreground``), its own
        slots, a new resource id, its own ``io.tmp.dirs`` and RocksDB local directory (given as
        dynamic properties, ``-D``), ``.out`` log, pid file and Flink log file (its own
        ``FLINK_IDENT_STRING``)."""
        script = flink_home() / "bin" / "taskmanager.sh"
        for name in self._taskmanager_names():
            if self.pid(name) is not None:
                continue
            i = self._instance_index(name)
            tm_dir = self.taskmanager_dir(name)
            for sub in ("tmp", "rocksdb"):
                (tm_dir / sub).mkdir(parents=True, exist_ok=True)
            resource_id = f"{name}-{uuid.uuid4().hex[:8]}"
            (tm_dir / "resource-id").write_text(resource_id + "\n")
            env = self.flink_env()
            env["FLINK_IDENT_STRING"] = "iotflink" if i == 0 else f"iotflink-tm{i}"
            self._spawn(name, ["bash", str(script), "start-foreground",
                               f"-Dtaskmanager.resource-id={resource_id}",
                               f"-Dio.tmp.dirs={tm_dir / 'tmp'}",
                               f"-Dstate.backend.rocksdb.localdir={tm_dir / 'rocksdb'}"], env=env)

    def taskmanagers(self) -> list[dict]:
        """REST ``/taskmanagers``: one dict per registered TaskManager (``id``, ``slotsNumber``,
        ``freeSlots``, ``timeSinceLastHeartbeat`` ms, ...). A killed TaskManager stays listed
        until the JobManager notices its loss (heartbeat)."""
        return self.flink_rest.taskmanagers()

    def job_subtasks(self, job_id: str) -> list[dict]:
        """Every subtask of job ``job_id``, from REST ``/jobs/:id/vertices/:vid``: dicts
        ``{"vertex", "subtask", "status", "taskmanager_id", "endpoint"}`` (``taskmanager_id``
        is the REST ``taskmanager-id``, "(unassigned)" while a subtask has no slot).

        Raises:
            FlinkRestError: the REST API did not answer, or knows no such job.
        """
        out = []
        for vertex in self.flink_rest.job(job_id).get("vertices", []):
            for sub in self.flink_rest.vertex(job_id, vertex["id"]).get("subtasks", []):
                out.append({"vertex": vertex["name"], "subtask": sub.get("subtask"), "status": sub.get("status"),
                            "taskmanager_id": sub.get("taskmanager-id", "(unassigned)"),
                            "endpoint": sub.get("endpoint", "")})
        return out

    def subtasks_per_taskmanager(self, job_id: str) -> dict[str, int]:
        """How many of job ``job_id``'s subtasks each TaskManager runs: ``{taskmanager id:
        count}`` (:meth:`job_subtasks`; ids as in REST ``/taskmanagers``, e.g.
        ``flink-taskmanager-1-3fa2c19b`` on the local stack). With ``taskmanager.load-balance.mode:
        SLOTS`` (flink-conf/config.yaml) a job's slots spread over the TaskManagers."""
        counts: dict[str, int] = {}
        for sub in self.job_subtasks(job_id):
            counts[sub["taskmanager_id"]] = counts.get(sub["taskmanager_id"], 0) + 1
        return dict(sorted(counts.items()))

    def taskmanager_instance_ready(self, name: str) -> bool:
        """True when TaskManager instance ``name`` is registered with its slots under the
        resource id it was last started with."""
        rid = self.taskmanager_resource_id(name)
        return rid is not None and any(tm["id"] == rid and tm.get("slotsNumber", 0) >= 1
                                       for tm in self.taskmanagers())

    # ------------------------------------------------------------------ readiness
    def kafka_ready(self) -> bool:
        """True when the broker answers a metadata request."""
        if not _port_open(self.s.host, self.s.kafka_port):
            return False
        from iotflink import kafka_io  # noqa: PLC0415 - kafka-python only when Kafka is asked

        return kafka_io.broker_count(self.s.kafka_bootstrap, client_id="iotflink-stack-probe") > 0

    def mqtt_connack(self, username: str | None = None, password: str | None = None,
                     timeout_s: float = 2.0) -> int:
        """Send one MQTT 3.1.1 CONNECT (clean session; over TLS verified with the stack's CA
        when TLS is on) and return the CONNACK's return code: 0 accepted, 5 not authorised
        (Mosquitto 2.0 answers 5 to an anonymous CONNECT and to a wrong or revoked password). An accepted connection is closed with a
        DISCONNECT. Connecting with a credential ends that username's other connection
        (same client id), so probe only with credentials nobody is using.

        Raises:
            OSError: no connection, or no CONNACK within ``timeout_s`` (``ssl.SSLError`` for a
                failed TLS handshake).
        """
        packet = mqtt_connect_packet(f"probe-{uuid.uuid4().hex[:8]}", username, password)
        raw = socket.create_connection((self.s.host, self.s.mqtt_port), timeout=timeout_s)
        try:
            sock = raw
            if self.s.mqtt_ca_file is not None:
                import ssl  # noqa: PLC0415 - only with TLS

                ctx = ssl.create_default_context(cafile=str(self.s.mqtt_ca_file))
                sock = ctx.wrap_socket(raw, server_hostname=self.s.mqtt_host)
            sock.sendall(packet)
            connack = b""
            while len(connack) < 4:
                chunk = sock.recv(4 - len(connack))
                if not chunk:
                    raise ConnectionError(f"broker closed the connection after {len(connack)} bytes of CONNACK")
                connack += chunk
            if connack[0] != 0x20:
                raise ConnectionError(f"not a CONNACK: {connack!r}")
            if connack[3] == 0:
                sock.sendall(b"\xe0\x00")  # DISCONNECT
            return connack[3]
        finally:
            raw.close()

    def mosquitto_ready(self) -> bool:
        """True when the broker answers an anonymous MQTT CONNECT with a CONNACK: return code 5
        (not authorised: authentication is on, as configured) or 0."""
        if not _port_open(self.s.host, self.s.mqtt_port):
            return False
        return self.mqtt_connack() in (0, 5)

    # ------------------------------------------------------------------ MQTT credentials
    @property
    def credentials(self) -> mqtt_auth.CredentialStore:
        """The broker's credentials (``StackSettings.mqtt_auth_dir``)."""
        return mqtt_auth.CredentialStore(self.s.mqtt_auth_dir)

    def reload_mosquitto(self) -> bool:
        """Send SIGHUP to the running Mosquitto: it re-reads its password and ACL files and
        disconnects connected clients whose username is no longer in the password file.
        Returns False when Mosquitto is not running (it reads the files when it starts), or
        when the running one reads another credential directory than ``mqtt_auth_dir`` (e.g.
        credentials made for docker-compose with ``IOTFLINK_MQTT_AUTH_DIR``)."""
        pid = self.pid("mosquitto")
        if pid is None:
            return False
        try:
            conf = (self.run_dir / "mosquitto" / "mosquitto.conf").read_text()
        except OSError:
            return False
        if f"password_file {self.s.mqtt_auth_dir}/passwd" not in conf.splitlines():
            return False
        os.kill(pid, signal.SIGHUP)
        return True

    def provision(self, usernames: Iterable[str], role: str = "device",
                  timeout_s: float = 20.0) -> dict[str, mqtt_auth.Credential]:
        """The credentials of ``usernames`` (devices by default), creating the missing ones;
        when Mosquitto runs, reloads it and waits until it accepts every new credential.

        Returns:
            ``{username: Credential}``.
        Raises:
            iotflink.runtime.mqtt_auth.CredentialError: a bad name.
            TimeoutError: Mosquitto did not accept a new credential within ``timeout_s``.
        """
        creds, created = self.credentials.ensure(usernames, role=role)
        if created and self.reload_mosquitto():
            for name in created:
                cred = creds[name]
                wait_for(lambda c=cred: self.mqtt_connack(c.username, c.password) == 0, timeout_s,
                         what=f"mosquitto to accept the new credential {name}")
        return creds

    def revoke(self, username: str, timeout_s: float = 20.0) -> None:
        """Revoke ``username``'s credential; when Mosquitto runs, reload it (the broker closes
        that username's connection, if any) and wait until a CONNECT with the old password is
        refused.

        Raises:
            iotflink.runtime.mqtt_auth.CredentialError: no active credential of that name.
            TimeoutError: the old password was still accepted after ``timeout_s``.
        """
        old = self.credentials.get(username)
        self.credentials.revoke(username)
        if self.reload_mosquitto():
            wait_for(lambda: self.mqtt_connack(old.username, old.password) != 0, timeout_s,
                     what=f"mosquitto to refuse the revoked credential {username}")

    def mosquitto_counters(self, mqtt_username: str | None = None, mqtt_password: str | None = None,
                           fresh: bool = True) -> BrokerCounters:
        """Mosquitto's ``$SYS`` counters: messages dropped for a full client queue, messages
        stored, uptime (:func:`iotflink.runtime.broker_stats.read_broker_counters`).

        Args:
            mqtt_username / mqtt_password: an MQTT account that may read ``$SYS/broker/#``
                (None: the stack's ``monitor`` credential, :data:`MQTT_MONITOR_USER`).
            fresh: wait for current values (up to 2 x Mosquitto's ``sys_interval``, 10 s).

        Raises:
            BrokerStatsError: the counters could not be read.
        """
        from iotflink.runtime.broker_stats import read_broker_counters  # noqa: PLC0415

        if mqtt_username is None:
            cred = self.credentials.get(MQTT_MONITOR_USER, role="monitor")
            mqtt_username, mqtt_password = cred.username, cred.password

        return read_broker_counters(self.s.mqtt_host, self.s.mqtt_port, username=mqtt_username,
                                    password=mqtt_password, fresh=fresh)

    def flink_overview(self) -> dict:
        """The Flink REST API's ``/overview`` (taskmanagers, slots-total, jobs-running, ...)."""
        return self.flink_rest.overview()

    def jobmanager_ready(self) -> bool:
        """True when the REST API answers ``/overview``."""
        return "taskmanagers" in self.flink_overview()

    def taskmanager_ready(self) -> bool:
        """True when every one of the ``taskmanagers`` instances is registered with its slots
        (each by the resource id it was started with: the count in ``/overview`` would also
        count a dead TaskManager the JobManager has not yet noticed)."""
        registered = {tm["id"] for tm in self.taskmanagers() if tm.get("slotsNumber", 0) >= 1}
        return all(self.taskmanager_resource_id(n) in registered for n in self._taskmanager_names())

    def _instance_ready(self, name: str) -> bool:
        """Readiness of one process of :meth:`instances`: a TaskManager is registered under
        its resource id, a bridge process holds its subscription; other services as
        :meth:`_ready`."""
        try:
            if name == "flink-taskmanager" or name.startswith("flink-taskmanager-"):
                return self.taskmanager_instance_ready(name)
            if name == "bridge" or name.startswith("bridge-"):
                i = self._instance_index(name)  # also a bridge beyond these settings' count
                path = self.bridge_stats_file if i == 0 else self.run_dir / f"bridge-{i}-stats.json"
                stats = json.loads(path.read_text())
                return stats.get("subscribed", 0) >= 1
        except Exception:  # noqa: BLE001 - any probe failure means "not ready"
            return False
        return self._ready(name)

    def _ready(self, name: str) -> bool:
        try:
            return {
                "kafka": self.kafka_ready,
                "mosquitto": self.mosquitto_ready,
                "bridge": self.bridge_ready,
                "flink-jobmanager": self.jobmanager_ready,
                "flink-taskmanager": self.taskmanager_ready,
            }[name]()
        except Exception:  # noqa: BLE001 - any probe failure means "not ready"
            return False

    # ------------------------------------------------------------------ public API
    def start(self, services: tuple[str, ...] = SERVICES, progress: Callable[[str], None] | None = None) -> None:
        """Start ``services`` (default: all) and wait until each is ready.

        A service whose process is alive and answers is left as it is.

        Raises:
            StackError: a service did not become ready in time, or its process exited; the
                message names the service and its log file and quotes the log's last lines.
        """
        say = progress or (lambda msg: log.info("%s", msg))
        self._render()
        starters = {
            "kafka": self._start_kafka,
            "mosquitto": self._start_mosquitto,
            "bridge": self._start_bridge,
            "flink-jobmanager": lambda: self._start_flink("jobmanager"),
            "flink-taskmanager": self._start_taskmanagers,
        }
        for name in SERVICES:
            if name not in services:
                continue
            alive = all(self.pid(n) is not None for n in self.instances(name))
            if alive and self._ready(name):
                say(f"{name}: already running")
                continue
            if not alive:  # the starter starts the instances that are not running
                if name == "kafka" and _port_open(self.s.host, self.s.kafka_port):
                    raise StackError(f"kafka: port {self.s.kafka_port} is taken by another process")
                starters[name]()
            t0 = time.monotonic()
            self._await_ready(name)
            say(f"{name}: ready in {time.monotonic() - t0:.1f} s (log {self.log_file(name)})")
            if name == "kafka":
                created = self.create_topics()
                if created:
                    say(f"kafka: created topics {', '.join(created)}")

    def _await_ready(self, name: str) -> None:
        def ready() -> bool:
            if self._ready(name):
                return True
            for inst in self.instances(name):
                if self.pid(inst) is None:
                    raise StackError(f"{inst}: process exited during start-up; see {self.log_file(inst)}\n"
                                     + self._tail(inst))
            return False

        try:
            poll(ready, READY_TIMEOUT_S[name], interval_s=0.3, what=f"{name} to be ready", retry_on=())
        except PollTimeout as exc:
            raise StackError(f"{name}: not ready after {READY_TIMEOUT_S[name]:.0f} s; "
                             f"see {self.log_file(name)}\n" + self._tail(name)) from exc

    def _tail(self, name: str, lines: int = 15) -> str:
        try:
            text = self.log_file(name).read_text(errors="replace").splitlines()
        except OSError:
            return "(no log yet)"
        return "\n".join("    " + line for line in text[-lines:])

    def stop_service(self, name: str, kill: bool = False, timeout_s: float = 30.0,
                     instance_only: bool = False) -> None:
        """Stop one service: SIGTERM (or SIGKILL if ``kill``), then SIGKILL after ``timeout_s``.
        ``bridge`` stops every bridge process (``bridge-1`` ... as well), ``flink-taskmanager``
        every TaskManager (``flink-taskmanager-1`` ...), unless ``instance_only`` (then only
        the first instance, whose name is the service's); an instance name stops that one."""
        if name in ("bridge", "flink-taskmanager") and not instance_only:  # also those started with more than these settings say
            extras = {p.stem for p in self.pid_dir.glob(f"{name}-*.pid")} | set(self.instances(name)[1:])
            for extra in sorted(extras):
                self.stop_service(extra, kill=kill, timeout_s=timeout_s)
        pid = self.pid(name)
        if pid is None:
            self._pid_file(name).unlink(missing_ok=True)
            return
        sig = signal.SIGKILL if kill else signal.SIGTERM
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        try:
            wait_for(lambda: self.pid(name) is None, timeout_s, what=f"{name} to exit")
        except TimeoutError:
            log.warning("%s did not exit after SIGTERM; sending SIGKILL", name)
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_for(lambda: self.pid(name) is None, 10, what=f"{name} to die")
        self._pid_file(name).unlink(missing_ok=True)

    def stop(self, services: tuple[str, ...] = SERVICES) -> None:
        """Stop ``services`` (default: all), in reverse start order."""
        for name in reversed(SERVICES):
            if name in services:
                self.stop_service(name)

    def status(self) -> list[ServiceStatus]:
        """One :class:`ServiceStatus` per process: per service, and per bridge / TaskManager
        instance (:meth:`instances`); an instance is ready when it answers itself (a bridge
        holds its subscription, a TaskManager is registered under its resource id)."""
        out = []
        for service in SERVICES:
            names = self.instances(service)
            # and instances started with more than these settings say, while they run
            names += sorted(p.stem for p in self.pid_dir.glob(f"{service}-*.pid")
                            if p.stem not in names and self.pid(p.stem) is not None)
            for name in names:
                pid = self.pid(name)
                ready = pid is not None and self._instance_ready(name)
                out.append(ServiceStatus(name, pid, pid is not None, ready, self.log_file(name)))
        return out

    def create_topics(self, partitions: Mapping[str, int] | None = None,
                      names: Sequence[str] | None = None) -> list[str]:
        """:func:`create_topics` of this stack's settings."""
        return create_topics(self.s, partitions, names)
