"""Typed, frozen settings for every component, and the one place environment variables are named.

Each component reads its settings through one ``from_env()`` constructor here; nothing else
in the project calls ``os.environ`` for configuration. Every variable is listed in
:data:`ENV_VARS` with its default, and ``iotflink env`` prints them.

Each setting is defined once: its variable and default text in :data:`ENV_VARS`, and the
dataclass field that holds it names the variable (``kafka_port: int = setting(
"IOTFLINK_KAFKA_PORT", parse_int)``). The field's default is the parsed default text, and
``from_env`` / ``StackSettings.to_env`` are generated from the fields (:func:`read_env`,
:func:`write_env`), so no default is written a second time.

Units are in the field names: ``*_ms`` milliseconds, ``*_s`` seconds, ``*_bytes`` bytes.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from iotflink.errors import ConfigError


def _project_root() -> Path:
    """The repository root (the directory holding ``pyproject.toml``, ``sql/``, ``data/``).

    The parent of this package's directory when that is the repository; otherwise this module
    was imported from a copy of the packages (``flink run -pyfs`` ships them in a zip, and the
    PyFlink client puts the extracted copy on its path before the venv's packages), so the
    root is the source directory of the installed distribution (``pip install -e .`` records
    it in ``direct_url.json``, PEP 610); without one, the copy's parent as before.
    """
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").is_file():
        return here
    try:
        url = json.loads(metadata.distribution("iotflink").read_text("direct_url.json") or "{}").get("url", "")
    except (metadata.PackageNotFoundError, ValueError):
        return here
    source = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)) if url.startswith("file:") else None
    return source if source is not None and (source / "pyproject.toml").is_file() else here


#: Repository root (see :func:`_project_root`).
PROJECT_ROOT = _project_root()

#: Every environment variable the project reads, with its default value (as text).
ENV_VARS: dict[str, str] = {
    # where the local stack keeps state, logs and pid files
    "IOTFLINK_RUN_DIR": str(PROJECT_ROOT / ".run"),
    # where setup puts Maven artifacts (Kafka broker jars, Flink connector jar)
    "IOTFLINK_DEPS_DIR": str(PROJECT_ROOT / ".deps"),
    # loopback ports of the local stack
    "IOTFLINK_HOST": "127.0.0.1",
    # where clients find MQTT and the Flink REST API when they are on other hosts
    # (docker-compose); empty = IOTFLINK_HOST
    "IOTFLINK_MQTT_HOST": "",
    "IOTFLINK_FLINK_REST_HOST": "",
    "IOTFLINK_KAFKA_PORT": "9092",
    "IOTFLINK_KAFKA_CONTROLLER_PORT": "9093",
    "IOTFLINK_MQTT_PORT": "1883",
    "IOTFLINK_FLINK_REST_PORT": "8081",
    "IOTFLINK_FLINK_RPC_PORT": "6123",
    # Kafka bootstrap servers as seen by clients; defaults to host:kafka port
    "IOTFLINK_KAFKA_BOOTSTRAP": "",
    # topics
    "IOTFLINK_TOPIC_READINGS": "sensor-readings",
    "IOTFLINK_TOPIC_AGGREGATES": "sensor-aggregates",
    "IOTFLINK_TOPIC_LATE": "sensor-late",
    "IOTFLINK_TOPIC_DLQ": "sensor-dlq",
    "IOTFLINK_TOPIC_ALERTS": "alerts",
    "IOTFLINK_TOPIC_TRANSACTIONS": "transactions",
    # readings the window job dropped as duplicates of an earlier (device_id, seq)
    "IOTFLINK_TOPIC_DUPLICATES": "sensor-duplicates",
    # dead-letter topics of the jobs: records of sensor-readings / transactions that a job
    # cannot read (written by something other than the bridge), with reason and raw bytes
    "IOTFLINK_TOPIC_WINDOW_DLQ": "sensor-windows-dlq",
    "IOTFLINK_TOPIC_RULES_DLQ": "rules-dlq",
    "IOTFLINK_READINGS_PARTITIONS": "4",
    # replicas of every topic the stack creates, and how many must have a write before the
    # broker acknowledges it (acks=all): 1 and 1 for the local single-broker stack,
    # 3 and 2 in docker-compose.yml (3 brokers)
    "IOTFLINK_KAFKA_REPLICATION_FACTOR": "1",
    "IOTFLINK_KAFKA_MIN_INSYNC_REPLICAS": "1",
    # MQTT bridge
    "IOTFLINK_MQTT_TOPIC_FILTER": "sensors/+/telemetry",
    # the bridge's MQTT username; the broker makes it its client id too (use_username_as_clientid),
    # so its persistent session belongs to this credential (iotflink/runtime/mqtt_auth.py)
    "IOTFLINK_MQTT_BRIDGE_USER": "iotflink-bridge",
    # the bridge's MQTT client id (and Kafka producer client id); empty = its username. Only
    # on a listener without use_username_as_clientid: docker-compose.yml's bridge-only listener,
    # where every bridge replica shares one credential and names itself by its container
    # (iotflink-bridge-<hostname>), so replicas do not take over each other's session
    "IOTFLINK_MQTT_BRIDGE_CLIENT_ID": "",
    # bridge processes the local stack starts (`stack start --bridges N`); bridge i > 0 uses the
    # credential <IOTFLINK_MQTT_BRIDGE_USER>-<i> (its own client id, session and producer)
    "IOTFLINK_BRIDGES": "1",
    # MQTT v5 shared subscription group of the bridges: with IOTFLINK_BRIDGES > 1 each subscribes
    # to $share/<group>/<IOTFLINK_MQTT_TOPIC_FILTER>, and the broker hands each message to one
    # member; with one bridge it subscribes plainly (and leaves the group, should its session
    # still be in it)
    "IOTFLINK_BRIDGE_SHARE_GROUP": "iotflink-bridges",
    # a bridge in a shared subscription group leaves it on a graceful stop (SIGTERM/SIGINT):
    # it unsubscribes, forwards and acks what the broker still sends it, then ends its session,
    # so the remaining members get every later message (true). false = it keeps its session
    # in the group: the broker queues that member's share of the messages until it comes back
    # (or the session expires), which only helps when every bridge stops and restarts together
    "IOTFLINK_BRIDGE_LEAVE_ON_STOP": "true",
    # the bridge's Kafka producer runs in a child process of the bridge (bridge/producer_process.py),
    # so the MQTT client and the producer each get a core (true); false = in the bridge process
    "IOTFLINK_BRIDGE_PRODUCER_PROCESS": "true",
    # how long the bridge's Kafka producer waits to fill a batch before sending it (linger.ms).
    # Each reading and its MQTT PUBACK wait up to this long; in return Kafka gets fewer, larger
    # produce requests: in one run, 50 ms against 5 ms cut Kafka's CPU per record from 23-54 to
    # 7-10 us and raised one bridge's single-reading rate by 9-32 % (bench/bridge_bench.py --linger-ms)
    "IOTFLINK_BRIDGE_LINGER_MS": "50",
    # Flink TaskManagers the local stack starts (`stack start --taskmanagers N`), each as a
    # separate host would run it: its own process, slots (taskmanager.numberOfTaskSlots each),
    # resource id, io.tmp.dirs and RocksDB local directory, log and pid file
    "IOTFLINK_TASKMANAGERS": "1",
    # MQTT credentials (passwd, acl, one password file per client); empty = <run dir>/mosquitto/auth
    "IOTFLINK_MQTT_AUTH_DIR": "",
    # MQTT over TLS on the broker's listener, with a local CA made by the stack (openssl): true | false
    "IOTFLINK_MQTT_TLS": "false",
    # CA certificate clients verify the broker with; empty = <run dir>/mosquitto/tls/ca.crt when TLS is on
    "IOTFLINK_MQTT_CA_FILE": "",
    "IOTFLINK_BRIDGE_MAX_INFLIGHT": "1000",
    # bytes the bridge may hold for messages Kafka has not confirmed (MQTT payload + topic +
    # the record twice, bridge/service.py message_cost). 16 MiB: 20x a full window of 1,000
    # real readings (0.3..0.8 KB each), so MAX_INFLIGHT binds first for honest traffic, and
    # about 19 of the largest hostile messages (~0.85 MB each: max_packet_size of control
    # characters, escaped 6-fold in the dead letter) instead of 1,000 (~850 MB)
    "IOTFLINK_BRIDGE_MAX_INFLIGHT_BYTES": "16777216",
    # watermark heartbeats of the bridge (iotflink.kafka_io.PartitionClock): every interval,
    # each sensor-readings partition without a reading for the quiet period gets a heartbeat
    # record carrying the event time of the active partitions, so the window job needs no idle
    # timeout (exact at any parallelism, jobs/sensor_windows.py). Interval 0 = no heartbeats
    "IOTFLINK_BRIDGE_HEARTBEAT_INTERVAL_MS": "1000",
    "IOTFLINK_BRIDGE_HEARTBEAT_QUIET_MS": "5000",
    # sensor window job
    "IOTFLINK_WINDOW_SIZE_MS": "60000",
    "IOTFLINK_ALLOWED_LATENESS_MS": "120000",
    "IOTFLINK_OUT_OF_ORDERNESS_MS": "10000",
    # source idle timeout of the window job (ms); 0 = none (required at parallelism > 1)
    "IOTFLINK_IDLENESS_MS": "5000",
    # parallelism of the window job; above 1 it needs IOTFLINK_IDLENESS_MS=0 (no idle channel
    # inside the job; the bridge's watermark heartbeats move quiet partitions instead;
    # jobs/sensor_windows.py, "Why the late split is exact")
    "IOTFLINK_JOB_PARALLELISM": "1",
    "IOTFLINK_CONSUMER_GROUP": "iotflink-sensor-windows",
    # checkpoint interval of the window job (ms); 30 s per the fleet calculation in flink-conf/config.yaml
    "IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS": "30000",
    # parallelism of the window job's Kafka source; without an idle timeout at most the
    # partition count of sensor-readings (a source instance without a partition never emits a
    # watermark and would hold every window back)
    "IOTFLINK_WINDOW_SOURCE_PARALLELISM": "1",
    # Kafka sinks of the window job: exactly-once | at-least-once | none
    "IOTFLINK_WINDOW_DELIVERY_GUARANTEE": "exactly-once",
    "IOTFLINK_WINDOW_TXN_ID_PREFIX": "iotflink-sensor-windows",
    # Kafka transaction timeout (ms); must stay below the broker's transaction.max.timeout.ms (15 min)
    "IOTFLINK_KAFKA_TXN_TIMEOUT_MS": "600000",
    # where the window job starts reading when its group has no committed offset: earliest | latest
    "IOTFLINK_WINDOW_OFFSET_RESET": "earliest",
    # keyed dedup on (device_id, seq) in the window job (jobs/sensor_windows.py)
    "IOTFLINK_WINDOW_DEDUP": "true",
    # how long the window job remembers a (device_id, seq) to drop redelivered copies (ms,
    # processing time since the last copy); 1 h, see iotflink/testing/window_model.py (dedup_ttl)
    "IOTFLINK_DEDUP_TTL_MS": "3600000",
    # keyed state of the window job: rocksdb (default: state on local disk, incremental
    # checkpoints) | hashmap (state as Java objects on the TaskManager's heap, full checkpoints;
    # less CPU per reading, only for state that fits the heap: README, "Where the window job's CPU goes")
    "IOTFLINK_WINDOW_STATE_BACKEND": "rocksdb",
    # slow-sink demo switch: when set at submission, a Python UDF before the aggregates sink
    # sleeps IOTFLINK_SLOW_SINK_MS per row while this file exists; empty = off (JVM-only plan)
    "IOTFLINK_SLOW_SINK_FILE": "",
    "IOTFLINK_SLOW_SINK_MS": "20",
    # sensor-late records also carry `watermark` (the watermark that judged them late): true | false
    "IOTFLINK_LATE_WATERMARK_COLUMN": "false",
    # window kind of the window job: tumbling | sliding | daily | session (jobs/sensor_windows.py)
    "IOTFLINK_WINDOW_KIND": "tumbling",
    # session windows: a (device, sensor) session ends after this long without a value (ms);
    # session windows need IOTFLINK_ALLOWED_LATENESS_MS=0 (Flink SQL has no late firing for them)
    "IOTFLINK_WINDOW_GAP_MS": "300000",
    # sliding windows: a window of IOTFLINK_WINDOW_SIZE_MS starts every IOTFLINK_WINDOW_SLIDE_MS
    # (size a multiple of the slide); 0 = the size (no overlap)
    "IOTFLINK_WINDOW_SLIDE_MS": "0",
    # daily windows: IANA time zone whose local midnights bound the days (23 h / 25 h across DST)
    "IOTFLINK_WINDOW_TIME_ZONE": "UTC",
    # name of one of several window jobs run side by side: suffixes its pipeline name, consumer
    # group, transactional ids and output topics with -<name>; empty = the default job
    "IOTFLINK_WINDOW_INSTANCE": "",
    # where the window job's client keeps compiled plans (JSON) of the job versions and settings
    # it submitted, so a resubmission skips SQL optimisation (jobs/common.py execute_cached);
    # empty = <IOTFLINK_RUN_DIR>/plan-cache, "none" = no cache (plan every submission)
    "IOTFLINK_PLAN_CACHE_DIR": "",
    # detection rules (jobs/rules/, sql/rules/*.sql)
    "IOTFLINK_TOPIC_RULES_LATE": "rules-late",
    "IOTFLINK_RULES_CONSUMER_GROUP": "iotflink-rules",
    "IOTFLINK_RULES_OUT_OF_ORDERNESS_MS": "10000",
    "IOTFLINK_RULES_IDLENESS_MS": "5000",
    "IOTFLINK_RULES_PARALLELISM": "1",
    "IOTFLINK_RULES_CHECKPOINT_INTERVAL_MS": "30000",
    # Kafka sink of alerts: at-least-once (ids are deterministic) | exactly-once
    "IOTFLINK_ALERTS_DELIVERY": "at-least-once",
    "IOTFLINK_RULES_DIR": str(PROJECT_ROOT / "sql" / "rules"),
    # TabFormer transaction replayer (iotflink/simulation/transactions.py)
    "IOTFLINK_TXN_DATA": str(PROJECT_ROOT / "data" / "tabformer" / "User0_credit_card_transactions.csv"),
    "IOTFLINK_TXN_SEED": "4",
    "IOTFLINK_TXN_SCENARIOS_PER_KIND": "4",
    "IOTFLINK_TXN_GROUND_TRUTH": "",
    "IOTFLINK_TXN_SPEEDUP": "0",
    # z-score anomaly job (jobs/anomaly.py; each default is justified in its module docstring)
    "IOTFLINK_ANOMALY_THRESHOLD": "10.0",         # |z| at or above which a reading is anomalous
    "IOTFLINK_ANOMALY_EXIT_LEVEL": "2.0",         # |z| below which an alert episode ends (hysteresis)
    "IOTFLINK_ANOMALY_ALERT_AFTER": "1",          # consecutive anomalous readings that raise an alert
    "IOTFLINK_ANOMALY_MIN_SAMPLES": "30",         # readings in a baseline before it scores
    "IOTFLINK_ANOMALY_HALF_LIFE": "1000",         # half-life of the baseline's weights, in readings
    "IOTFLINK_ANOMALY_SEASON_BINS": "12",         # time-of-day baselines per UTC day (0: none)
    "IOTFLINK_ANOMALY_RANGE_TOLERANCE": "0.02",   # beyond the range seen by this fraction of it: anomalous (inf: off)
    "IOTFLINK_ANOMALY_COOLDOWN": "20",            # readings after an alert before its episode may end
    "IOTFLINK_ANOMALY_STATE_TTL_MS": "604800000", # a key silent this long (event time, 7 days) starts afresh
    "IOTFLINK_ANOMALY_OUT_OF_ORDERNESS_MS": "10000",
    "IOTFLINK_ANOMALY_IDLENESS_MS": "5000",
    "IOTFLINK_ANOMALY_PARALLELISM": "1",
    "IOTFLINK_ANOMALY_CHECKPOINT_INTERVAL_MS": "30000",
    "IOTFLINK_ANOMALY_CONSUMER_GROUP": "iotflink-anomaly",
    # Kafka sinks of scores, late readings and dead letters: exactly-once | at-least-once | none
    # (alerts follow IOTFLINK_ALERTS_DELIVERY)
    "IOTFLINK_ANOMALY_DELIVERY_GUARANTEE": "exactly-once",
    # how the Python functions run: thread (embedded in the TaskManager JVM) | process
    "IOTFLINK_ANOMALY_PYTHON_MODE": "thread",
    "IOTFLINK_ANOMALY_TOPIC_SCORES": "sensor-scores",
    "IOTFLINK_ANOMALY_TOPIC_LATE": "sensor-anomaly-late",
    "IOTFLINK_ANOMALY_TOPIC_DLQ": "sensor-anomaly-dlq",
}


def env(name: str, environ: Mapping[str, str] | None = None) -> str:
    """Return environment variable ``name`` or its default from :data:`ENV_VARS`.

    Raises:
        ConfigError: if ``name`` is not one of the project's documented variables.
    """
    if name not in ENV_VARS:
        raise ConfigError(f"undocumented environment variable {name!r}; add it to ENV_VARS")
    source = os.environ if environ is None else environ
    return source.get(name, ENV_VARS[name])


Parse = Callable[[str, str], Any]


def parse_str(_name: str, raw: str) -> str:
    """The text as it is."""
    return raw


def parse_stripped(_name: str, raw: str) -> str:
    """The text without surrounding white space."""
    return raw.strip()


def parse_lower(_name: str, raw: str) -> str:
    """The text without surrounding white space, in lower case (a keyword: ``tumbling``, ...)."""
    return raw.strip().lower()


def parse_path(_name: str, raw: str) -> Path:
    """A file system path."""
    return Path(raw)


def _number_parser(convert: Callable[[str], Any], what: str) -> Parse:
    """A parser of numbers with ``convert`` whose error names the variable and ``what`` it wants."""
    def parse(name: str, raw: str) -> Any:
        try:
            return convert(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not {what}") from exc

    return parse


#: An integer (raises ConfigError naming the variable when ``raw`` is not one).
parse_int: Parse = _number_parser(int, "an integer")
#: A number, ``inf`` allowed (raises ConfigError naming the variable when ``raw`` is not one).
parse_float: Parse = _number_parser(float, "a number")


def parse_bool(name: str, raw: str) -> bool:
    """``true`` / ``1`` / ``yes`` or ``false`` / ``0`` / ``no`` / empty, in any case.

    Raises:
        ConfigError: anything else.
    """
    raw = raw.strip().lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no", ""):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (true | false)")


def setting(var: str, parse: Parse = parse_str) -> Any:
    """A settings field read from environment variable ``var`` (one of :data:`ENV_VARS`).

    Its default is ``parse(var, ENV_VARS[var])``; :func:`read_env` reads it with ``parse``,
    :func:`write_env` writes it back as text.

    Raises:
        ConfigError: ``var`` is not in :data:`ENV_VARS`.
    """
    if var not in ENV_VARS:
        raise ConfigError(f"undocumented environment variable {var!r}; add it to ENV_VARS")
    return field(default=parse(var, ENV_VARS[var]), metadata={"env": var, "parse": parse})


def env_fields(cls: type) -> dict[str, str]:
    """``{field name: environment variable}`` of the fields of settings class ``cls`` that
    :func:`setting` defined."""
    return {f.name: f.metadata["env"] for f in fields(cls) if "env" in f.metadata}


def read_env(cls: type, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The values of ``cls``'s :func:`setting` fields from ``environ`` (default ``os.environ``),
    each variable's default where it is unset: keyword arguments for ``cls``.

    Raises:
        ConfigError: a value its field's parser rejects.
    """
    out = {}
    for f in fields(cls):
        if "env" in f.metadata:
            out[f.name] = f.metadata["parse"](f.metadata["env"], env(f.metadata["env"], environ))
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_env(obj: Any) -> dict[str, str]:
    """The environment variables of ``obj``'s :func:`setting` fields (and of the settings
    dataclasses it holds, e.g. :class:`Topics`), as text ``read_env`` reads back."""
    out: dict[str, str] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if "env" in f.metadata:
            out[f.metadata["env"]] = _text(value)
        elif is_dataclass(value) and not isinstance(value, type):
            out.update(write_env(value))
    return out


@dataclass(frozen=True)
class Topics:
    """Kafka topic names. ``readings_partitions`` is the partition count of ``readings``."""

    readings: str = setting("IOTFLINK_TOPIC_READINGS")
    aggregates: str = setting("IOTFLINK_TOPIC_AGGREGATES")
    late: str = setting("IOTFLINK_TOPIC_LATE")
    dlq: str = setting("IOTFLINK_TOPIC_DLQ")
    alerts: str = setting("IOTFLINK_TOPIC_ALERTS")
    transactions: str = setting("IOTFLINK_TOPIC_TRANSACTIONS")
    readings_partitions: int = setting("IOTFLINK_READINGS_PARTITIONS", parse_int)
    duplicates: str = setting("IOTFLINK_TOPIC_DUPLICATES")
    rules_late: str = setting("IOTFLINK_TOPIC_RULES_LATE")
    window_dlq: str = setting("IOTFLINK_TOPIC_WINDOW_DLQ")
    rules_dlq: str = setting("IOTFLINK_TOPIC_RULES_DLQ")
    scores: str = setting("IOTFLINK_ANOMALY_TOPIC_SCORES")
    anomaly_late: str = setting("IOTFLINK_ANOMALY_TOPIC_LATE")
    anomaly_dlq: str = setting("IOTFLINK_ANOMALY_TOPIC_DLQ")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Topics:
        """Build from ``IOTFLINK_TOPIC_*``, ``IOTFLINK_ANOMALY_TOPIC_*`` and ``IOTFLINK_READINGS_PARTITIONS``."""
        return cls(**read_env(cls, environ))

    def all(self) -> list[str]:
        """Every topic name, readings first."""
        return [self.readings, self.aggregates, self.late, self.dlq, self.alerts, self.transactions,
                self.duplicates, self.rules_late, self.window_dlq, self.rules_dlq, self.scores,
                self.anomaly_late, self.anomaly_dlq]


def mqtt_auth_dir(run_dir: Path) -> Path:
    """The default MQTT credentials directory of a stack whose run directory is ``run_dir``."""
    return Path(run_dir) / "mosquitto" / "auth"


@dataclass(frozen=True)
class StackSettings:
    """Where and on which loopback ports the local stack runs.

    Fields:
        run_dir: state, logs and pid files of every service (ignored by git).
        deps_dir: Maven artifacts installed by setup (Kafka jars, connector jar).
        host: the loopback address every service binds to.
        kafka_port / kafka_controller_port: broker listener and KRaft controller listener.
        mqtt_port: Mosquitto listener.
        flink_rest_port: Flink REST API and web UI.
        flink_rpc_port: JobManager RPC port.
        replication_factor: replicas of each topic :meth:`Stack.create_topics` creates
            (1 on the local single-broker stack).
        min_insync_replicas: the topics' ``min.insync.replicas``: replicas that must hold a
            write before an ``acks=all`` producer (the bridge, Flink's sinks) gets its ack;
            1 <= min_insync_replicas <= replication_factor.
        mqtt_tls: the MQTT listener speaks TLS only (``IOTFLINK_MQTT_TLS``), with a server
            certificate from the local CA in ``mqtt_tls_dir`` (iotflink/runtime/mqtt_auth.py).
        mqtt_bridge_user: the bridge's MQTT username (= its client id at the broker); bridge
            ``i`` > 0 of ``bridges`` uses ``{mqtt_bridge_user}-{i}`` (:meth:`bridge_user`).
        bridges: bridge processes the stack starts (>= 1); they share the load through an
            MQTT v5 shared subscription (:class:`BridgeSettings` ``share_group``).
        taskmanagers: Flink TaskManager processes the stack starts (>= 1,
            ``IOTFLINK_TASKMANAGERS``), each with its own slots and local state directory.
        mqtt_auth_dir_override / mqtt_ca_file_override: ``IOTFLINK_MQTT_AUTH_DIR`` /
            ``IOTFLINK_MQTT_CA_FILE``; empty = the defaults under ``run_dir``.
    """

    run_dir: Path = setting("IOTFLINK_RUN_DIR", parse_path)
    deps_dir: Path = setting("IOTFLINK_DEPS_DIR", parse_path)
    host: str = setting("IOTFLINK_HOST")
    kafka_port: int = setting("IOTFLINK_KAFKA_PORT", parse_int)
    kafka_controller_port: int = setting("IOTFLINK_KAFKA_CONTROLLER_PORT", parse_int)
    mqtt_port: int = setting("IOTFLINK_MQTT_PORT", parse_int)
    flink_rest_port: int = setting("IOTFLINK_FLINK_REST_PORT", parse_int)
    flink_rpc_port: int = setting("IOTFLINK_FLINK_RPC_PORT", parse_int)
    kafka_bootstrap_override: str = setting("IOTFLINK_KAFKA_BOOTSTRAP")
    mqtt_host_override: str = setting("IOTFLINK_MQTT_HOST")
    flink_rest_host_override: str = setting("IOTFLINK_FLINK_REST_HOST")
    topics: Topics = field(default_factory=Topics)
    replication_factor: int = setting("IOTFLINK_KAFKA_REPLICATION_FACTOR", parse_int)
    min_insync_replicas: int = setting("IOTFLINK_KAFKA_MIN_INSYNC_REPLICAS", parse_int)
    mqtt_tls: bool = setting("IOTFLINK_MQTT_TLS", parse_bool)
    mqtt_bridge_user: str = setting("IOTFLINK_MQTT_BRIDGE_USER")
    bridges: int = setting("IOTFLINK_BRIDGES", parse_int)
    taskmanagers: int = setting("IOTFLINK_TASKMANAGERS", parse_int)
    mqtt_auth_dir_override: str = setting("IOTFLINK_MQTT_AUTH_DIR")
    mqtt_ca_file_override: str = setting("IOTFLINK_MQTT_CA_FILE")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StackSettings:
        """Build from the ``IOTFLINK_*`` variables (see :data:`ENV_VARS`).

        Raises:
            ConfigError: a port or replica count is not an integer, or the replica counts
                break 1 <= min_insync_replicas <= replication_factor.
        """
        cfg = cls(**read_env(cls, environ), topics=Topics.from_env(environ))
        if cfg.bridges < 1:
            raise ConfigError(f"IOTFLINK_BRIDGES={cfg.bridges} must be at least 1")
        if cfg.taskmanagers < 1:
            raise ConfigError(f"IOTFLINK_TASKMANAGERS={cfg.taskmanagers} must be at least 1")
        if not 1 <= cfg.min_insync_replicas <= cfg.replication_factor:
            raise ConfigError(
                f"IOTFLINK_KAFKA_MIN_INSYNC_REPLICAS={cfg.min_insync_replicas} must be between 1 and "
                f"IOTFLINK_KAFKA_REPLICATION_FACTOR={cfg.replication_factor}")
        return cfg

    @property
    def mqtt_auth_dir(self) -> Path:
        """Where the MQTT credentials live (iotflink/runtime/mqtt_auth.py): ``<run_dir>/mosquitto/auth``."""
        return Path(self.mqtt_auth_dir_override) if self.mqtt_auth_dir_override else mqtt_auth_dir(self.run_dir)

    @property
    def mqtt_tls_dir(self) -> Path:
        """Where the stack keeps its MQTT CA and server certificate: ``<run_dir>/mosquitto/tls``."""
        return self.run_dir / "mosquitto" / "tls"

    @property
    def mqtt_ca_file(self) -> Path | None:
        """The CA certificate MQTT clients verify the broker with; None when TLS is off."""
        if self.mqtt_ca_file_override:
            return Path(self.mqtt_ca_file_override)
        return self.mqtt_tls_dir / "ca.crt" if self.mqtt_tls else None

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port`` of the Kafka broker as clients reach it."""
        return self.kafka_bootstrap_override or f"{self.host}:{self.kafka_port}"

    @property
    def mqtt_host(self) -> str:
        """Host name clients use to reach Mosquitto."""
        return self.mqtt_host_override or self.host

    @property
    def flink_rest_url(self) -> str:
        """Base URL of the Flink REST API and web UI, e.g. ``http://127.0.0.1:8081``."""
        return f"http://{self.flink_rest_host_override or self.host}:{self.flink_rest_port}"

    @property
    def log_dir(self) -> Path:
        """Directory of every service's log file."""
        return self.run_dir / "logs"

    @property
    def pid_dir(self) -> Path:
        """Directory of every service's pid file."""
        return self.run_dir / "pids"

    @property
    def flink_conf_dir(self) -> Path:
        """The rendered Flink configuration directory (``FLINK_CONF_DIR``)."""
        return self.run_dir / "flink" / "conf"

    def topic_partitions(self, names: Sequence[str] | None = None,
                         partitions: Mapping[str, int] | None = None) -> dict[str, int]:
        """``{topic: partition count}`` of the project's topics (or ``names``): each gets
        ``topics.readings_partitions`` (the result topics as many as ``sensor-readings``, so the
        jobs' sinks write in parallel) unless ``partitions`` names its own count."""
        return {t: (partitions or {}).get(t, self.topics.readings_partitions)
                for t in (self.topics.all() if names is None else names)}

    def bridge_user(self, index: int) -> str:
        """The MQTT username (= client id) of bridge process ``index`` (0-based): the first is
        ``mqtt_bridge_user``, the others ``{mqtt_bridge_user}-{index}``."""
        return self.mqtt_bridge_user if index == 0 else f"{self.mqtt_bridge_user}-{index}"

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process: every
        field's (:func:`write_env`), with the addresses and directories as resolved here (the
        Kafka bootstrap, MQTT and REST hosts, the MQTT auth directory and CA file), so a child
        with another run directory still reaches this stack."""
        return {**write_env(self),
                "IOTFLINK_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "IOTFLINK_MQTT_HOST": self.mqtt_host,
                "IOTFLINK_FLINK_REST_HOST": self.flink_rest_host_override or self.host,
                "IOTFLINK_MQTT_AUTH_DIR": str(self.mqtt_auth_dir),
                "IOTFLINK_MQTT_CA_FILE": str(self.mqtt_ca_file or "")}


#: Kafka bootstrap and Flink REST URL of the default local stack (the defaults of the job settings).
DEFAULT_KAFKA_BOOTSTRAP = f"{ENV_VARS['IOTFLINK_HOST']}:{ENV_VARS['IOTFLINK_KAFKA_PORT']}"
DEFAULT_FLINK_REST_URL = f"http://{ENV_VARS['IOTFLINK_HOST']}:{ENV_VARS['IOTFLINK_FLINK_REST_PORT']}"


@dataclass(frozen=True)
class BridgeSettings:
    """Settings of the MQTT-to-Kafka bridge.

    Fields:
        mqtt_host / mqtt_port: the broker to subscribe to.
        topic_filter: MQTT subscription, ``sensors/+/telemetry`` (``+`` is the device id).
        client_id: MQTT client id; the broker replaces it by ``username``
            (``use_username_as_clientid``), so the persistent session (clean_start=False) is
            the credential's: it survives a bridge restart (QoS 1 messages wait at the broker),
            and nobody without the password can resume or take it over.
        kafka_bootstrap: Kafka ``host:port``.
        readings_topic / dlq_topic: where valid records and dead letters go.
        max_inflight: most MQTT messages accepted but not yet acknowledged to the broker;
            this bounds the bridge's memory while Kafka is slow (backpressure to MQTT).
        max_inflight_bytes: most bytes held for messages whose record Kafka has not yet
            confirmed (``bridge.service.message_cost``: payload + topic + 2 x record), >= 1.
            A message larger than this alone is still admitted, one at a time.
        username / password_file: the bridge's MQTT credential (iotflink/runtime/mqtt_auth.py); the
            file holds the password on one line. Empty username = connect without one (only
            for a broker that allows anonymous clients, e.g. unit tests).
        ca_file: CA certificate to verify the broker's TLS certificate; None = plain MQTT.
        heartbeat_interval_ms: how often the bridge writes watermark heartbeats to the quiet
            partitions of ``readings_topic`` (ms; 0 = never), see
            :class:`iotflink.kafka_io.PartitionClock`.
        heartbeat_quiet_ms: a partition without a confirmed reading for this long is quiet
            and gets heartbeats (ms, > 0); the counterpart of a source idle timeout.
        share_group: MQTT v5 shared subscription group: the bridge subscribes to
            ``$share/{share_group}/{topic_filter}`` so that several bridge processes (each with
            its own credential, session and producer) share the messages, each message going
            to one of them; "" = a plain subscription to ``topic_filter``. ``from_env`` sets it
            only when ``IOTFLINK_BRIDGES`` > 1.
        leave_group: a shared subscription group whose subscription the bridge drops on
            connect (its persistent session may hold it from a run with more bridges, and would
            then get messages twice); "" = none.
        leave_on_stop: with ``share_group`` set, a graceful stop leaves the group: unsubscribe,
            forward and ack what the broker still delivers, end the session
            (``bridge.service.Bridge.stop``). False = keep the session in the group. Without a
            shared subscription the session is always kept (messages wait for the restart).
        linger_ms: the producer's ``linger_ms`` (ms, >= 0): how long a record may wait for
            others to fill its batch. Larger = fewer, fuller produce requests (less CPU in the
            producer and in Kafka per record) and up to that much more latency per reading
            and per PUBACK.
        producer_process: run the Kafka producer in a child process
            (``bridge.producer_process.ProcessProducer``), so that the MQTT client and the
            producer do not share one interpreter lock; False = ``KafkaProducer`` in the
            bridge process.
    """

    mqtt_host: str
    mqtt_port: int
    topic_filter: str
    client_id: str
    kafka_bootstrap: str
    readings_topic: str
    dlq_topic: str
    max_inflight: int = setting("IOTFLINK_BRIDGE_MAX_INFLIGHT", parse_int)
    max_inflight_bytes: int = setting("IOTFLINK_BRIDGE_MAX_INFLIGHT_BYTES", parse_int)
    username: str = ""
    password_file: Path | None = None
    ca_file: Path | None = None
    heartbeat_interval_ms: int = setting("IOTFLINK_BRIDGE_HEARTBEAT_INTERVAL_MS", parse_int)
    heartbeat_quiet_ms: int = setting("IOTFLINK_BRIDGE_HEARTBEAT_QUIET_MS", parse_int)
    share_group: str = ""
    leave_group: str = ""
    leave_on_stop: bool = setting("IOTFLINK_BRIDGE_LEAVE_ON_STOP", parse_bool)
    producer_process: bool = setting("IOTFLINK_BRIDGE_PRODUCER_PROCESS", parse_bool)
    linger_ms: int = setting("IOTFLINK_BRIDGE_LINGER_MS", parse_int)

    @property
    def subscription(self) -> str:
        """The topic filter the bridge subscribes to (with the shared-subscription prefix)."""
        return f"$share/{self.share_group}/{self.topic_filter}" if self.share_group else self.topic_filter

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BridgeSettings:
        """Build from the stack settings and ``IOTFLINK_MQTT_*`` / ``IOTFLINK_BRIDGE_*``.

        The credential is ``IOTFLINK_MQTT_BRIDGE_USER`` with its password file in the MQTT
        auth directory (``<auth dir>/clients/<user>.password``).
        """
        stack = StackSettings.from_env(environ)
        user = stack.mqtt_bridge_user
        group = env("IOTFLINK_BRIDGE_SHARE_GROUP", environ)
        return cls(
            **read_env(cls, environ),
            mqtt_host=stack.mqtt_host,
            mqtt_port=stack.mqtt_port,
            topic_filter=env("IOTFLINK_MQTT_TOPIC_FILTER", environ),
            client_id=env("IOTFLINK_MQTT_BRIDGE_CLIENT_ID", environ) or user,
            username=user,
            password_file=stack.mqtt_auth_dir / "clients" / f"{user}.password",
            ca_file=stack.mqtt_ca_file,
            kafka_bootstrap=stack.kafka_bootstrap,
            readings_topic=stack.topics.readings,
            dlq_topic=stack.topics.dlq,
            share_group=group if stack.bridges > 1 else "",
            leave_group="" if stack.bridges > 1 else group,
        )


def _plan_cache_dir(run_dir: Path, value: str) -> str:
    """``IOTFLINK_PLAN_CACHE_DIR`` as a path: '' -> ``<run_dir>/plan-cache``, ``none`` -> ''."""
    if value.lower() == "none":
        return ""
    return value or str(run_dir / "plan-cache")


@dataclass(frozen=True)
class WindowJobSettings:
    """Settings of ``jobs/sensor_windows``.

    Fields:
        window_size_ms: tumbling event-time window length (ms).
        allowed_lateness_ms: how long a fired window still accepts late events (ms);
            an event later than this goes to the late side output.
        out_of_orderness_ms: bounded-out-of-orderness of the watermark (ms).
        idleness_ms: a Kafka partition with no records for this long (processing time)
            stops holding the watermark back (ms); 0 = no idle timeout (quiet partitions are
            moved by the bridge's watermark heartbeats instead), required at parallelism > 1.
        parallelism: job parallelism (late flag, window, sinks); above 1 only with
            ``idleness_ms == 0``, which keeps the late split exact at any parallelism (see
            ``jobs/sensor_windows.py``). The Kafka source has its own ``source_parallelism``.
        kafka_bootstrap, topics, consumer_group: Kafka wiring used by ``main()`` only.
        checkpoint_interval_ms: exactly-once checkpoint interval (ms).
        source_parallelism: parallelism of the Kafka source; with ``idleness_ms == 0`` at most
            ``topics.readings_partitions`` (an instance without a partition never emits a
            watermark).
        delivery_guarantee: Kafka sinks, ``exactly-once`` | ``at-least-once`` | ``none``.
        transactional_id_prefix: prefix of the exactly-once sinks' transactional ids.
        transaction_timeout_ms: Kafka producer transaction timeout (ms), below the broker's
            ``transaction.max.timeout.ms`` (15 min by default).
        offset_reset: where the consumer group starts without committed offsets.
        dedup: drop copies of a reading (same device_id, seq) before the windows (True), or
            count every copy (False: no dedup operator or state, no sensor-duplicates output).
        dedup_ttl_ms: how long a (device_id, seq) is remembered to drop redelivered copies
            (ms, processing time since its last copy; Flink SQL state TTL).
        state_backend: ``rocksdb`` (default, the cluster's: keyed state in RocksDB on local
            disk, incremental checkpoints) or ``hashmap`` (keyed state as objects on the
            TaskManager's JVM heap, every checkpoint a full copy): less CPU per reading, for a
            job whose dedup and window state fits the heap with room to spare
            (:func:`iotflink.testing.window_model.dedup_ttl` sizes the dedup state).
        slow_sink_file: slow-sink demo switch; empty = off (no Python operator in the plan).
            When set, a Python UDF before the aggregates sink sleeps ``slow_sink_ms`` per row
            while this file exists on the TaskManager's host.
        slow_sink_ms: sleep per aggregate row while the slow-sink file exists (ms).
        late_watermark_column: ``sensor-late`` records also carry ``watermark`` (UTC text).
        window_kind: ``tumbling`` (``window_size_ms``, aligned to the epoch), ``sliding``
            (``window_size_ms`` long, one starting every ``window_slide_ms``), ``daily`` (local
            calendar days of ``time_zone``; ``window_size_ms`` unused) or ``session`` (per
            (device, sensor), closed by a gap of ``window_gap_ms``; needs
            ``allowed_lateness_ms == 0``). The accounting of each kind: ``jobs/sensor_windows.py``.
        window_slide_ms: slide of sliding windows (ms, > 0, dividing ``window_size_ms``, at most
            :data:`MAX_SLIDING_WINDOWS_PER_VALUE` windows per value); 0 = ``window_size_ms``.
        window_gap_ms: gap that closes a session window (ms, > 0).
        time_zone: IANA zone of daily windows (e.g. ``America/New_York``); without a DST
            change within an hour of local midnight (checked by ``from_env``).
        instance: name of one of several window jobs run side by side ('' = the default job);
            ``from_env`` appends ``-<instance>`` to the pipeline name, consumer group,
            transactional id prefix and the four output topics (aggregates, late, duplicates,
            dead letters), so two instances share only ``sensor-readings``.
        plan_cache_dir: directory of the compiled plan cache of ``main()``
            (:func:`jobs.common.execute_cached`); '' = no cache. ``from_env``: ``IOTFLINK_PLAN_CACHE_DIR``,
            default ``<IOTFLINK_RUN_DIR>/plan-cache``, ``none`` = ''. Not part of the job: the
            plan does not depend on it.
    """

    window_size_ms: int = setting("IOTFLINK_WINDOW_SIZE_MS", parse_int)
    allowed_lateness_ms: int = setting("IOTFLINK_ALLOWED_LATENESS_MS", parse_int)
    out_of_orderness_ms: int = setting("IOTFLINK_OUT_OF_ORDERNESS_MS", parse_int)
    idleness_ms: int = setting("IOTFLINK_IDLENESS_MS", parse_int)
    parallelism: int = setting("IOTFLINK_JOB_PARALLELISM", parse_int)
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    topics: Topics = field(default_factory=Topics)
    consumer_group: str = setting("IOTFLINK_CONSUMER_GROUP")
    checkpoint_interval_ms: int = setting("IOTFLINK_WINDOW_CHECKPOINT_INTERVAL_MS", parse_int)
    source_parallelism: int = setting("IOTFLINK_WINDOW_SOURCE_PARALLELISM", parse_int)
    delivery_guarantee: str = setting("IOTFLINK_WINDOW_DELIVERY_GUARANTEE")
    transactional_id_prefix: str = setting("IOTFLINK_WINDOW_TXN_ID_PREFIX")
    transaction_timeout_ms: int = setting("IOTFLINK_KAFKA_TXN_TIMEOUT_MS", parse_int)
    offset_reset: str = setting("IOTFLINK_WINDOW_OFFSET_RESET")
    dedup_ttl_ms: int = setting("IOTFLINK_DEDUP_TTL_MS", parse_int)
    dedup: bool = setting("IOTFLINK_WINDOW_DEDUP", parse_bool)
    state_backend: str = setting("IOTFLINK_WINDOW_STATE_BACKEND", parse_lower)
    slow_sink_file: str = setting("IOTFLINK_SLOW_SINK_FILE")
    slow_sink_ms: int = setting("IOTFLINK_SLOW_SINK_MS", parse_int)
    late_watermark_column: bool = setting("IOTFLINK_LATE_WATERMARK_COLUMN", parse_bool)
    window_kind: str = setting("IOTFLINK_WINDOW_KIND", parse_lower)
    window_slide_ms: int = setting("IOTFLINK_WINDOW_SLIDE_MS", parse_int)
    window_gap_ms: int = setting("IOTFLINK_WINDOW_GAP_MS", parse_int)
    time_zone: str = setting("IOTFLINK_WINDOW_TIME_ZONE", parse_stripped)
    instance: str = setting("IOTFLINK_WINDOW_INSTANCE", parse_stripped)
    plan_cache_dir: str = ""

    @property
    def job_name(self) -> str:
        """``pipeline.name`` of the job: ``sensor_windows``, or ``sensor_windows-<instance>``."""
        return f"sensor_windows-{self.instance}" if self.instance else "sensor_windows"

    @property
    def slide_ms(self) -> int:
        """Effective slide of the windows (ms): ``window_slide_ms``, or the size when 0."""
        return self.window_slide_ms or self.window_size_ms

    def output_topics(self) -> list[str]:
        """The topics the job writes (aggregates, late, duplicates, dead letters)."""
        t = self.topics
        return [t.aggregates, t.late, t.duplicates, t.window_dlq]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WindowJobSettings:
        """Build from ``IOTFLINK_WINDOW_*``, ``IOTFLINK_*_MS`` and the stack settings.

        Raises:
            ConfigError: a value is not an integer, or a duration is not positive.
        """
        stack = StackSettings.from_env(environ)
        cfg = cls(**read_env(cls, environ), kafka_bootstrap=stack.kafka_bootstrap, topics=stack.topics,
                  plan_cache_dir=_plan_cache_dir(stack.run_dir, env("IOTFLINK_PLAN_CACHE_DIR", environ).strip()))
        if cfg.instance:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", cfg.instance):
                raise ConfigError(f"IOTFLINK_WINDOW_INSTANCE={cfg.instance!r}: expected 1-40 of a-z, 0-9, "
                                  "'-' (it becomes part of topic names and transactional ids)")
            sfx = f"-{cfg.instance}"
            t = cfg.topics
            cfg = replace(cfg, consumer_group=cfg.consumer_group + sfx,
                          transactional_id_prefix=cfg.transactional_id_prefix + sfx,
                          topics=replace(t, aggregates=t.aggregates + sfx, late=t.late + sfx,
                                         duplicates=t.duplicates + sfx, window_dlq=t.window_dlq + sfx))
        check_window_kind(cfg.window_kind, cfg.window_size_ms, cfg.window_slide_ms, cfg.time_zone)
        if cfg.window_kind == "session" and (cfg.window_gap_ms <= 0 or cfg.allowed_lateness_ms != 0):
            raise ConfigError(
                f"session windows need IOTFLINK_WINDOW_GAP_MS > 0 (got {cfg.window_gap_ms}) and "
                f"IOTFLINK_ALLOWED_LATENESS_MS=0 (got {cfg.allowed_lateness_ms}): Flink SQL's session "
                "window has no late firing (WindowEmitStrategy), so a session is final when it fires")
        if cfg.window_size_ms <= 0 or cfg.allowed_lateness_ms < 0 or cfg.out_of_orderness_ms < 0:
            raise ConfigError(f"window durations must be positive: {cfg}")
        if cfg.checkpoint_interval_ms <= 0 or cfg.parallelism <= 0 or cfg.source_parallelism <= 0:
            raise ConfigError(f"checkpoint interval and parallelisms must be positive: {cfg}")
        if cfg.idleness_ms < 0:
            raise ConfigError(f"IOTFLINK_IDLENESS_MS={cfg.idleness_ms} must not be negative (0 = no idle timeout)")
        if cfg.parallelism > 1 and cfg.idleness_ms > 0:
            raise ConfigError(
                f"IOTFLINK_JOB_PARALLELISM={cfg.parallelism} needs IOTFLINK_IDLENESS_MS=0 (got "
                f"{cfg.idleness_ms}): with several late-flag subtasks an idle/active switch inside "
                "the job lets a window subtask's watermark pass a flag's, and the window would drop "
                "values the flag let through; without an idle timeout quiet partitions are moved "
                "by the bridge's watermark heartbeats (jobs/sensor_windows.py, 'Why the late split "
                "is exact')")
        if cfg.idleness_ms == 0 and cfg.source_parallelism > cfg.topics.readings_partitions:
            raise ConfigError(
                f"IOTFLINK_WINDOW_SOURCE_PARALLELISM={cfg.source_parallelism} is above the "
                f"{cfg.topics.readings_partitions} partitions of {cfg.topics.readings}: without an idle "
                "timeout a source instance without a partition never emits a watermark and no "
                "window would fire")
        if cfg.delivery_guarantee not in ("exactly-once", "at-least-once", "none"):
            raise ConfigError(f"IOTFLINK_WINDOW_DELIVERY_GUARANTEE={cfg.delivery_guarantee!r}: "
                              "expected exactly-once, at-least-once or none")
        if not 0 < cfg.transaction_timeout_ms <= 900_000:
            raise ConfigError(f"IOTFLINK_KAFKA_TXN_TIMEOUT_MS={cfg.transaction_timeout_ms} must be in "
                              "(0, 900000]: brokers cap transactions at 15 min by default")
        if cfg.offset_reset not in ("earliest", "latest"):
            raise ConfigError(f"IOTFLINK_WINDOW_OFFSET_RESET={cfg.offset_reset!r}: expected earliest or latest")
        if cfg.dedup_ttl_ms <= 0:
            raise ConfigError(f"IOTFLINK_DEDUP_TTL_MS={cfg.dedup_ttl_ms} must be positive "
                              "(0 would keep every (device_id, seq) forever: unbounded state)")
        if cfg.slow_sink_ms < 0:
            raise ConfigError(f"IOTFLINK_SLOW_SINK_MS={cfg.slow_sink_ms} must not be negative")
        if cfg.state_backend not in STATE_BACKENDS:
            raise ConfigError(f"IOTFLINK_WINDOW_STATE_BACKEND={cfg.state_backend!r}: expected one of "
                              f"{', '.join(STATE_BACKENDS)}")
        return cfg


#: Keyed state backends the window job runs with (Flink's ``state.backend.type``).
STATE_BACKENDS = ("rocksdb", "hashmap")


#: Most windows a value of a sliding window job belongs to (``size / slide``): the job
#: explodes each value into one record per window, and the window operator visits each of
#: them ``size / slide`` times (``jobs/sensor_windows.py``), so the cost per value grows with
#: the square of this. 12 covers 1 h sliding by 5 min, measured at 0.06x the tumbling job's
#: events/s (5 min by 1 min: 0.20x; ``bench/window_kinds_bench.py``, a noisy run); for more,
#: use a tumbling job of the slide and combine its windows downstream.
MAX_SLIDING_WINDOWS_PER_VALUE = 12

#: Years over which :func:`check_window_kind` looks for DST changes near local midnight.
ZONE_CHECK_YEARS = (2000, 2060)


def check_window_kind(kind: str, size_ms: int, slide_ms: int, time_zone: str) -> None:
    """Check the window kind settings of the window job (see :class:`WindowJobSettings`).

    Daily windows: ``time_zone`` must be an IANA name known to Python's ``zoneinfo`` and
    have no UTC offset change between 22:30 and 01:30 local time in :data:`ZONE_CHECK_YEARS`.
    Flink turns a window's local end into a timer time by its own rule for skipped and
    repeated local times (``TimeWindowUtil.toEpochMillsForTimer``), which the job's late flag
    cannot repeat near such a change; zones that change at 01:00 or later (the Americas,
    Europe, Oceania but a few) are fine.

    Raises:
        ConfigError: an unknown kind, a bad slide, an unknown zone or one with a DST change
            near midnight.
    """
    if kind not in ("tumbling", "sliding", "daily", "session"):
        raise ConfigError(f"IOTFLINK_WINDOW_KIND={kind!r}: expected tumbling, sliding, daily or session")
    if slide_ms < 0:
        raise ConfigError(f"IOTFLINK_WINDOW_SLIDE_MS={slide_ms} must not be negative")
    if kind == "sliding" and size_ms > 0:
        slide = slide_ms or size_ms
        if size_ms % slide:
            raise ConfigError(f"IOTFLINK_WINDOW_SIZE_MS={size_ms} must be a multiple of "
                              f"IOTFLINK_WINDOW_SLIDE_MS={slide} (every value in size/slide windows)")
        if size_ms // slide > MAX_SLIDING_WINDOWS_PER_VALUE:
            raise ConfigError(f"sliding window {size_ms} ms by {slide} ms: {size_ms // slide} windows per "
                              f"value, more than {MAX_SLIDING_WINDOWS_PER_VALUE} (the cost grows with its square)")
    if kind == "daily":
        import datetime as dt  # noqa: PLC0415
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415

        try:
            zone = ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"IOTFLINK_WINDOW_TIME_ZONE={time_zone!r} is not an IANA time zone") from exc
        day = dt.datetime(ZONE_CHECK_YEARS[0], 1, 1)
        while day.year < ZONE_CHECK_YEARS[1]:
            before = (day - dt.timedelta(minutes=90)).replace(tzinfo=zone).utcoffset()
            after = (day + dt.timedelta(minutes=90)).replace(tzinfo=zone).utcoffset()
            if before != after:
                raise ConfigError(f"IOTFLINK_WINDOW_TIME_ZONE={time_zone!r} changes its UTC offset near "
                                  f"local midnight ({day.date()}): daily windows need a zone whose changes "
                                  "are at least 90 min away from midnight")
            day += dt.timedelta(days=1)


@dataclass(frozen=True)
class RulesSettings:
    """Settings of the detection rule jobs (``jobs/rules/``, ``sql/rules/*.sql``).

    The thresholds of each rule are literals in its ``.sql`` file (documented in its header),
    so that the same file runs unchanged in ``sql-client.sh``; these settings only wire the
    jobs.

    Fields:
        kafka_bootstrap: Kafka ``host:port``.
        topics: readings (in), transactions (in), alerts (out).
        late_topic: where each rule job writes the rows that arrived behind its watermark
            (``rules-late``; separate from ``sensor-late`` so the window job's accounting of
            the window job never counts them twice).
        consumer_group: prefix of the Kafka consumer group; a rule job uses
            ``<prefix>-<rule_id>``.
        out_of_orderness_ms: bounded out-of-orderness of the rules' watermarks (ms).
        idleness_ms: a silent partition stops holding the watermark back after this (ms).
        parallelism: parallelism of every rule job (one slot each at 1).
        checkpoint_interval_ms: checkpoint interval of the rule jobs (ms); 30 s per the fleet
            calculation in flink-conf/config.yaml.
        alerts_delivery: ``at-least-once`` (default: alert ids are deterministic, a
            duplicate is recognised by its id) or ``exactly-once`` (visible on checkpoint).
        transaction_timeout_ms: Kafka transaction timeout of an exactly-once alerts sink (ms),
            at most the broker's 15 min cap.
        rules_dir: directory of the rule files.
        rest_url: Flink REST API of the cluster (``rules list`` / ``stop``).
    """

    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    topics: Topics = field(default_factory=Topics)
    late_topic: str = setting("IOTFLINK_TOPIC_RULES_LATE")
    consumer_group: str = setting("IOTFLINK_RULES_CONSUMER_GROUP")
    out_of_orderness_ms: int = setting("IOTFLINK_RULES_OUT_OF_ORDERNESS_MS", parse_int)
    idleness_ms: int = setting("IOTFLINK_RULES_IDLENESS_MS", parse_int)
    parallelism: int = setting("IOTFLINK_RULES_PARALLELISM", parse_int)
    checkpoint_interval_ms: int = setting("IOTFLINK_RULES_CHECKPOINT_INTERVAL_MS", parse_int)
    alerts_delivery: str = setting("IOTFLINK_ALERTS_DELIVERY")
    transaction_timeout_ms: int = setting("IOTFLINK_KAFKA_TXN_TIMEOUT_MS", parse_int)
    rules_dir: Path = setting("IOTFLINK_RULES_DIR", parse_path)
    rest_url: str = DEFAULT_FLINK_REST_URL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RulesSettings:
        """Build from ``IOTFLINK_RULES_*``, ``IOTFLINK_ALERTS_DELIVERY`` and the stack settings.

        Raises:
            ConfigError: a value is not an integer, a duration is negative, or the delivery
                guarantee is unknown.
        """
        stack = StackSettings.from_env(environ)
        cfg = cls(**read_env(cls, environ), kafka_bootstrap=stack.kafka_bootstrap, topics=stack.topics,
                  rest_url=stack.flink_rest_url)
        if cfg.out_of_orderness_ms < 0 or cfg.idleness_ms < 0 or cfg.parallelism <= 0 \
                or cfg.checkpoint_interval_ms <= 0:
            raise ConfigError(f"rule durations must not be negative, parallelism positive: {cfg}")
        if cfg.alerts_delivery not in ("at-least-once", "exactly-once"):
            raise ConfigError(f"IOTFLINK_ALERTS_DELIVERY={cfg.alerts_delivery!r}: "
                              "expected at-least-once or exactly-once")
        if not 0 < cfg.transaction_timeout_ms <= 900_000:
            raise ConfigError(f"IOTFLINK_KAFKA_TXN_TIMEOUT_MS={cfg.transaction_timeout_ms} must be in "
                              "(0, 900000]: brokers cap transactions at 15 min by default")
        return cfg


@dataclass(frozen=True)
class TransactionSettings:
    """Settings of the TabFormer transaction replayer (``iotflink/simulation/transactions.py``).

    Fields:
        data_path: the TabFormer extract (user 0, 5 cards).
        seed: seed of the injected fraud scenarios (same seed, same stream, same ground truth).
        scenarios_per_kind: how many scenarios of each kind (failed burst, address change,
            velocity) are injected.
        ground_truth_path: where the ground truth JSON is written
            (default ``<run_dir>/transactions_ground_truth.json``).
        speedup: event-time seconds replayed per wall-clock second; 0 = as fast as possible.
        kafka_bootstrap / topic: where the events go (key = card_id).
    """

    data_path: Path
    ground_truth_path: Path
    seed: int = setting("IOTFLINK_TXN_SEED", parse_int)
    scenarios_per_kind: int = setting("IOTFLINK_TXN_SCENARIOS_PER_KIND", parse_int)
    speedup: float = setting("IOTFLINK_TXN_SPEEDUP", parse_float)
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    topic: str = ENV_VARS["IOTFLINK_TOPIC_TRANSACTIONS"]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TransactionSettings:
        """Build from ``IOTFLINK_TXN_*`` and the stack settings.

        Raises:
            ConfigError: a number is malformed or negative.
        """
        stack = StackSettings.from_env(environ)
        gt = env("IOTFLINK_TXN_GROUND_TRUTH", environ)
        cfg = cls(
            **read_env(cls, environ),
            data_path=Path(env("IOTFLINK_TXN_DATA", environ)),
            ground_truth_path=Path(gt) if gt else stack.run_dir / "transactions_ground_truth.json",
            kafka_bootstrap=stack.kafka_bootstrap,
            topic=stack.topics.transactions,
        )
        if cfg.scenarios_per_kind < 0 or cfg.speedup < 0:
            raise ConfigError(f"scenario count and speed-up must not be negative: {cfg}")
        return cfg


@dataclass(frozen=True)
class AnomalyJobSettings:
    """Settings of ``jobs/anomaly`` (z-score anomaly detection per (device_id, sensor)).

    Fields (the model's defaults are justified in ``jobs/anomaly.py``):
        threshold: |z| at or above which a reading counts as anomalous (> 0).
        exit_level: |z| below which an alert episode ends, so a new one can start
            (hysteresis; 0 < exit_level <= threshold).
        alert_after: consecutive anomalous readings that raise an alert (>= 1).
        min_samples: readings a baseline must hold before its readings are scored (>= 2).
        half_life: readings after which a reading's weight in the baseline has halved (> 0);
            also the half-life of each time-of-day baseline, in its own readings.
        season_bins: time-of-day baselines per key: the UTC day cut into this many equal bins,
            each with its own EW mean and variance (0: none; 0..1440).
        range_tolerance: a reading beyond the range of the values seen so far by more than this
            fraction of that range is anomalous (>= 0; ``inf``: no range check).
        cooldown: readings after an alert during which its episode cannot end (>= 0).
        state_ttl_ms: event-time ms without a reading after which a key's baseline is dropped
            (event-time timer); also the processing-time TTL of the keyed state (> 0).
        out_of_orderness_ms: bounded out-of-orderness of the watermark (ms, >= 0).
        idleness_ms: a source subtask without records this long stops holding the watermark
            back (ms, processing time, > 0).
        parallelism: parallelism of every operator (keyed state only: any value is correct).
        checkpoint_interval_ms: exactly-once checkpoint interval (ms).
        kafka_bootstrap, topics, consumer_group: Kafka wiring (``main()`` only); readings come
            from ``topics.readings``, alerts go to ``topics.alerts``.
        scores_topic / late_topic / dlq_topic: the job's own output topics.
        delivery_guarantee: Kafka sinks of scores, late readings and dead letters,
            ``exactly-once`` | ``at-least-once`` | ``none``.
        alerts_delivery: Kafka sink of alerts (``IOTFLINK_ALERTS_DELIVERY``): ``at-least-once``
            (alert ids are deterministic) | ``exactly-once``.
        transaction_timeout_ms: Kafka transaction timeout (ms), at most the broker's 15 min.
        python_mode: ``thread`` (Python functions embedded in the TaskManager JVM) | ``process``.
    """

    threshold: float = setting("IOTFLINK_ANOMALY_THRESHOLD", parse_float)
    exit_level: float = setting("IOTFLINK_ANOMALY_EXIT_LEVEL", parse_float)
    alert_after: int = setting("IOTFLINK_ANOMALY_ALERT_AFTER", parse_int)
    min_samples: int = setting("IOTFLINK_ANOMALY_MIN_SAMPLES", parse_int)
    half_life: float = setting("IOTFLINK_ANOMALY_HALF_LIFE", parse_float)
    season_bins: int = setting("IOTFLINK_ANOMALY_SEASON_BINS", parse_int)
    range_tolerance: float = setting("IOTFLINK_ANOMALY_RANGE_TOLERANCE", parse_float)
    cooldown: int = setting("IOTFLINK_ANOMALY_COOLDOWN", parse_int)
    state_ttl_ms: int = setting("IOTFLINK_ANOMALY_STATE_TTL_MS", parse_int)
    out_of_orderness_ms: int = setting("IOTFLINK_ANOMALY_OUT_OF_ORDERNESS_MS", parse_int)
    idleness_ms: int = setting("IOTFLINK_ANOMALY_IDLENESS_MS", parse_int)
    parallelism: int = setting("IOTFLINK_ANOMALY_PARALLELISM", parse_int)
    checkpoint_interval_ms: int = setting("IOTFLINK_ANOMALY_CHECKPOINT_INTERVAL_MS", parse_int)
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    topics: Topics = field(default_factory=Topics)
    consumer_group: str = setting("IOTFLINK_ANOMALY_CONSUMER_GROUP")
    scores_topic: str = setting("IOTFLINK_ANOMALY_TOPIC_SCORES")
    late_topic: str = setting("IOTFLINK_ANOMALY_TOPIC_LATE")
    dlq_topic: str = setting("IOTFLINK_ANOMALY_TOPIC_DLQ")
    delivery_guarantee: str = setting("IOTFLINK_ANOMALY_DELIVERY_GUARANTEE")
    alerts_delivery: str = setting("IOTFLINK_ALERTS_DELIVERY")
    transaction_timeout_ms: int = setting("IOTFLINK_KAFKA_TXN_TIMEOUT_MS", parse_int)
    python_mode: str = setting("IOTFLINK_ANOMALY_PYTHON_MODE")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AnomalyJobSettings:
        """Build from ``IOTFLINK_ANOMALY_*``, ``IOTFLINK_ALERTS_DELIVERY``,
        ``IOTFLINK_KAFKA_TXN_TIMEOUT_MS`` and the stack settings.

        Raises:
            ConfigError: a value is not a number, or out of the range given for its field.
        """
        stack = StackSettings.from_env(environ)
        cfg = cls(**read_env(cls, environ), kafka_bootstrap=stack.kafka_bootstrap, topics=stack.topics)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`ConfigError` unless every field is within the range its doc gives."""
        import math  # noqa: PLC0415 - only this class needs it

        if not (math.isfinite(self.threshold) and math.isfinite(self.exit_level)
                and 0 < self.exit_level <= self.threshold):
            raise ConfigError(f"anomaly levels must satisfy 0 < exit_level <= threshold: "
                              f"threshold={self.threshold}, exit_level={self.exit_level}")
        if self.alert_after < 1 or self.min_samples < 2 or not (math.isfinite(self.half_life) and self.half_life > 0):
            raise ConfigError(f"anomaly model needs alert_after >= 1, min_samples >= 2, half_life > 0: "
                              f"{self.alert_after}, {self.min_samples}, {self.half_life}")
        if not (0 <= self.season_bins <= 1440 and self.range_tolerance >= 0 and self.cooldown >= 0):
            raise ConfigError(f"anomaly model needs 0 <= season_bins <= 1440, range_tolerance >= 0 (inf: off), "
                              f"cooldown >= 0: {self.season_bins}, {self.range_tolerance}, {self.cooldown}")
        if self.state_ttl_ms <= 0 or self.out_of_orderness_ms < 0 or self.idleness_ms <= 0:
            raise ConfigError(f"anomaly state TTL and idleness must be positive, out-of-orderness not "
                              f"negative: {self.state_ttl_ms}, {self.idleness_ms}, {self.out_of_orderness_ms}")
        if self.parallelism <= 0 or self.checkpoint_interval_ms <= 0:
            raise ConfigError(f"anomaly parallelism and checkpoint interval must be positive: "
                              f"{self.parallelism}, {self.checkpoint_interval_ms}")
        if self.delivery_guarantee not in ("exactly-once", "at-least-once", "none"):
            raise ConfigError(f"IOTFLINK_ANOMALY_DELIVERY_GUARANTEE={self.delivery_guarantee!r}: "
                              "expected exactly-once, at-least-once or none")
        if self.alerts_delivery not in ("at-least-once", "exactly-once"):
            raise ConfigError(f"IOTFLINK_ALERTS_DELIVERY={self.alerts_delivery!r}: "
                              "expected at-least-once or exactly-once")
        if not 0 < self.transaction_timeout_ms <= 900_000:
            raise ConfigError(f"IOTFLINK_KAFKA_TXN_TIMEOUT_MS={self.transaction_timeout_ms} must be in "
                              "(0, 900000]: brokers cap transactions at 15 min by default")
        if self.python_mode not in ("thread", "process"):
            raise ConfigError(f"IOTFLINK_ANOMALY_PYTHON_MODE={self.python_mode!r}: expected thread or process")
