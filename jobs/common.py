"""Helpers shared by the PyFlink jobs: environments, checkpointing, connector jar, interpreter.

Every job creates its environment through :func:`create_table_env` or
:func:`create_stream_env`, which apply :func:`job_configuration`.

Flink configuration has one layer per kind of value (the rule, also in flink-conf/config.yaml
and the README):

- cluster defaults are written only in ``flink-conf/config.yaml``. Those every job must run
  with also on a MiniCluster (tests, benchmarks read no cluster configuration) are copied from
  there into the job's configuration (:data:`FROM_CLUSTER_CONF`, :func:`cluster_defaults`):
  exactly-once checkpoints retained on cancel, the RocksDB state backend with incremental
  checkpoints, the failure-rate restart strategy (:func:`restart_strategy`);
- what a job needs of its own comes from its settings object: its name, parallelism and
  checkpoint interval (``checkpoint_interval_ms``), with the minimum pause between checkpoints
  derived from that interval (:func:`min_pause_ms`: half of it, as the cluster's default
  pause is half its default interval);
- ``table.local-time-zone = UTC`` (windows on ``TIMESTAMP_LTZ`` align to the epoch);
- ``table.exec.uid.generation = ALWAYS``: SQL operators get stable uids
  (``<exec node id>_<transformation>``), so state maps back after a restart from a
  savepoint of the same SQL (Flink docs, "Upgrading Applications": set operator uids);
- ``python.executable`` = the interpreter running the job (the project's venv, so Python UDF
  workers see the same packages as the client).

The Kafka SQL connector jar and the project's ``json-dlq`` format jar are checked at start-up
(:func:`kafka_connector_jar`, :func:`format_jar`): a missing jar is a clear error, not a
``ClassNotFoundException`` deep in the planner.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from iotflink.errors import JobError
from iotflink.settings import PROJECT_ROOT, WindowJobSettings, env

log = logging.getLogger(__name__)

#: File name of the Kafka SQL connector (pinned in deps/pom.xml).
KAFKA_CONNECTOR_JAR = "flink-sql-connector-kafka-5.0.0-2.2.jar"
#: File name of the project's own format jar (jvm/pom.xml): the ``json-dlq`` table format.
FORMAT_JAR = "iotflink-flink-formats.jar"
#: The cluster's configuration file: the one place cluster defaults are written.
CLUSTER_CONF = PROJECT_ROOT / "flink-conf" / "config.yaml"

#: Keys of :data:`CLUSTER_CONF` every job carries itself (with every ``restart-strategy.*``
#: key), so that a job on a MiniCluster runs as on the cluster: checkpointing mode and
#: retention, state backend, incremental checkpoints.
FROM_CLUSTER_CONF = ("execution.checkpointing.mode", "execution.checkpointing.externalized-checkpoint-retention",
                     "state.backend.type", "execution.checkpointing.incremental")


@functools.cache
def cluster_defaults() -> dict[str, str]:
    """The entries of ``flink-conf/config.yaml`` as ``key -> text`` (YAML booleans as
    ``true``/``false``).

    Raises:
        JobError: the file is missing or not a YAML mapping.
    """
    import yaml  # noqa: PLC0415 - only the client that builds a job reads the file

    try:
        conf = yaml.safe_load(CLUSTER_CONF.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise JobError(f"cannot read the cluster configuration {CLUSTER_CONF}: {exc}") from exc
    if not isinstance(conf, dict):
        raise JobError(f"{CLUSTER_CONF} is not a YAML mapping")
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in conf.items()}


def restart_strategy() -> dict[str, str]:
    """The restart strategy of every job: the ``restart-strategy.*`` entries of
    ``flink-conf/config.yaml`` (justified there). At most 3 failures within a sliding 3 min,
    10 s between a failure and the restart; the 4th failure in 3 min leaves the job FAILED (a
    poison record), slower failures are restarted for ever (an outage of Kafka or of the
    TaskManager)."""
    return {k: v for k, v in cluster_defaults().items() if k.startswith("restart-strategy.")}


def min_pause_ms(checkpoint_interval_ms: int) -> int:
    """The minimum pause between two checkpoints of a job with this interval (ms): half the
    interval, at least 1 ms, so that at least half of every interval is spent on records
    while checkpoints are slow (Flink docs, "Checkpointing": ``min-pause``)."""
    return max(checkpoint_interval_ms // 2, 1)


def flink_home() -> Path:
    """The Flink distribution shipped inside the ``apache-flink`` wheel (``.../pyflink``)."""
    import pyflink  # noqa: PLC0415

    return Path(pyflink.__file__).resolve().parent


def _is_valid_jar(path: Path) -> bool:
    """True if ``path`` is a non-empty zip declaring a table factory (a connector or format)."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile:
        return False
    return "META-INF/services/org.apache.flink.table.factories.Factory" in names


def _flink_jar(file_name: str, what: str, deps_dir: Path | None) -> Path | None:
    """Find jar ``file_name`` in ``$FLINK_HOME/lib`` or ``<deps_dir>/flink/`` (see
    :func:`kafka_connector_jar`); ``None`` when it is in lib, else its path under deps."""
    deps = Path(env("IOTFLINK_DEPS_DIR")) if deps_dir is None else deps_dir
    in_lib = flink_home() / "lib" / file_name
    in_deps = deps / "flink" / file_name
    bad = [p for p in (in_lib, in_deps) if p.exists() and not _is_valid_jar(p)]
    if bad:
        raise JobError(f"{what} jar is empty or not a table factory jar: {', '.join(map(str, bad))}; "
                       "delete it and run setup again (make demo / make test)")
    if in_lib.exists():
        return None
    if in_deps.exists():
        return in_deps
    raise JobError(f"{what} jar not found: expected {in_lib} or {in_deps}; "
                   "run setup (make demo / make test), which builds or downloads it with Maven")


def kafka_connector_jar(deps_dir: Path | None = None) -> Path | None:
    """Check that the Kafka SQL connector jar is usable; say whether it must be shipped.

    The jar is found either in ``$FLINK_HOME/lib`` (setup copies it there; both the local
    MiniCluster and the standalone cluster load it from there) or in
    ``<deps_dir>/flink/`` (``IOTFLINK_DEPS_DIR``, default ``.deps``).

    Returns:
        ``None`` when the jar is in ``$FLINK_HOME/lib`` (nothing to add), else the path of the
        jar under ``deps_dir``, to be put in ``pipeline.jars``.

    Raises:
        JobError: neither copy exists, or a copy is empty / not a jar (a failed download or a
            volume mount can leave an empty file), naming every path looked at.
    """
    return _flink_jar(KAFKA_CONNECTOR_JAR, "Kafka SQL connector", deps_dir)


def format_jar(deps_dir: Path | None = None) -> Path | None:
    """Check the project's ``json-dlq`` format jar (jvm/, built by setup) like
    :func:`kafka_connector_jar`: ``None`` when in ``$FLINK_HOME/lib``, else its path.

    Raises:
        JobError: missing, empty or not a jar.
    """
    return _flink_jar(FORMAT_JAR, "json-dlq format (jvm/)", deps_dir)


def job_configuration(cfg: WindowJobSettings, job_name: str, *, use_kafka: bool = True,
                      extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Flink configuration every job runs with, as ``key -> value`` strings.

    Args:
        cfg: job settings (parallelism, checkpoint interval, idleness).
        job_name: ``pipeline.name`` shown in the web UI and the REST API.
        use_kafka: check the Kafka connector jar and add it to ``pipeline.jars`` if needed
            (the ``json-dlq`` format jar is always checked and added the same way).
        extra: entries that override the defaults (tests: shorter intervals etc.).

    Raises:
        JobError: the format jar, or with ``use_kafka`` the connector jar, is missing (see
            :func:`kafka_connector_jar`, :func:`format_jar`); ``flink-conf/config.yaml``
            cannot be read.
    """
    conf = {
        "pipeline.name": job_name,
        "parallelism.default": str(cfg.parallelism),
        # checkpointing: exactly-once, retained on cancel, RocksDB incremental
        "execution.checkpointing.interval": f"{cfg.checkpoint_interval_ms} ms",
        "execution.checkpointing.min-pause": f"{min_pause_ms(cfg.checkpoint_interval_ms)} ms",
        **{k: cluster_defaults()[k] for k in FROM_CLUSTER_CONF},
        **restart_strategy(),
        # SQL
        "table.local-time-zone": "UTC",
        "table.exec.uid.generation": "ALWAYS",
        # Python workers (none on the SQL hot path; the bench's DataStream variant uses them)
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
    }
    jars = [format_jar()]  # every job reads its sources with the json-dlq format
    if use_kafka:
        jars.append(kafka_connector_jar())
    shipped = [j.as_uri() for j in jars if j is not None]
    if shipped:
        conf["pipeline.jars"] = ";".join(shipped)
    conf.update(extra or {})
    return conf


def create_table_env(conf: Mapping[str, str]):
    """A streaming :class:`pyflink.table.TableEnvironment` configured with ``conf``.

    When no cluster is configured (tests, bench) it runs on a local MiniCluster; under
    ``flink run`` it targets the cluster the client was pointed at.
    """
    from pyflink.common import Configuration  # noqa: PLC0415
    from pyflink.table import EnvironmentSettings, TableEnvironment  # noqa: PLC0415

    jconf = Configuration()
    for key, value in conf.items():
        jconf.set_string(key, value)
    settings = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(jconf).build()
    t_env = TableEnvironment.create(settings)
    log.info("table environment for %s (parallelism %s)", conf.get("pipeline.name"), conf.get("parallelism.default"))
    return t_env


def create_stream_env(conf: Mapping[str, str]):
    """A :class:`pyflink.datastream.StreamExecutionEnvironment` configured with ``conf``."""
    from pyflink.common import Configuration  # noqa: PLC0415
    from pyflink.datastream import StreamExecutionEnvironment  # noqa: PLC0415

    jconf = Configuration()
    for key, value in conf.items():
        jconf.set_string(key, value)
    return StreamExecutionEnvironment.get_execution_environment(jconf)


def sql_interval(ms: int) -> str:
    """A Flink SQL interval literal for ``ms`` milliseconds.

    Example: ``sql_interval(90_500) == "INTERVAL '0 00:01:30.500' DAY TO SECOND(3)"``
    (a plain ``SECOND`` literal is capped at 99 s by its default precision).

    Raises:
        ValueError: ``ms`` is negative or 100 days or more.
    """
    if not 0 <= ms < 100 * 86_400_000:
        raise ValueError(f"interval out of range [0, 100 days): {ms} ms")
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY TO SECOND(3)"


def sql_str(value: str) -> str:
    """Quote ``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def options_sql(options: Mapping[str, str]) -> str:
    """Connector options as ``'key' = 'value'`` lines, comma-separated (the inside of a
    ``WITH (...)`` clause); values are converted with ``str``."""
    return ",\n  ".join(f"{sql_str(k)} = {sql_str(str(v))}" for k, v in options.items())


def json_dlq_options(required_fields: Sequence[str], prefix: str = "") -> dict[str, str]:
    """Options of a source in the ``json-dlq`` format (jvm/, ``DlqJsonFormatFactory``): Flink's
    JSON format that turns a record it cannot read into a dead-letter row (``dlq_reason``,
    ``dlq_detail``, ``dlq_raw`` set) instead of failing the job.

    Args:
        required_fields: columns that must not be NULL after parsing (else ``missing_field``).
        prefix: ``"value."`` for the Kafka connector's value format, ``""`` for ``format``.
    """
    return {
        f"{prefix}format": "json-dlq",
        f"{prefix}json-dlq.fail-on-missing-field": "false",
        f"{prefix}json-dlq.required-fields": ";".join(required_fields),
    }


def kafka_coordinates_sql(kafka: bool) -> str:
    """Columns ``kafka_partition INT`` and ``kafka_offset BIGINT`` of a source table, for its
    dead letters: the record's Kafka metadata (``kafka=True``), or NULL (a filesystem source of
    tests and benchmarks, which has no such metadata)."""
    if kafka:
        return ("  kafka_partition INT METADATA FROM 'partition' VIRTUAL,\n"
                "  kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL")
    return "  kafka_partition AS CAST(NULL AS INT),\n  kafka_offset AS CAST(NULL AS BIGINT)"


def with_clause(options: Mapping[str, str]) -> str:
    """Render a DDL ``WITH (...)`` clause from connector options."""
    return "WITH (\n  " + options_sql(options) + "\n)"


# --------------------------------------------------------------------------- compiled plan cache
#: How many compiled plans of one job the cache keeps (the newest by modification time); each
#: job version and settings has its own.
PLAN_CACHE_KEEP = 8


def plan_cache_key(t_env, parts: Sequence[str]) -> str:
    """Key of a job's compiled plan: SHA-256 (hex, 24 digits) over everything the plan is made of.

    That is: the Flink version; the name and size of the jars the planner loads connectors and
    formats from (:func:`kafka_connector_jar`, :func:`format_jar`); the source of every loaded
    module of the packages ``jobs``, ``iotflink`` and ``udfs`` (the code that writes the SQL);
    the table environment's ``table.*`` options and ``parallelism.default``; and ``parts``
    (the job's settings and its DDL, in the caller's words). Anything that can change the
    plan changes the key, so a stale plan is never loaded; the price of a change is one
    compilation.
    """
    import hashlib  # noqa: PLC0415

    from pyflink.version import __version__ as flink_version  # noqa: PLC0415

    h = hashlib.sha256()

    def add(label: str, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        h.update(f"{label}:{len(data)}:".encode())
        h.update(data)

    add("flink", flink_version)
    for name in (KAFKA_CONNECTOR_JAR, FORMAT_JAR):
        for where in (flink_home() / "lib" / name, Path(env("IOTFLINK_DEPS_DIR")) / "flink" / name):
            if where.is_file():
                add("jar", f"{where.name}:{where.stat().st_size}")
    for mod_name in sorted(sys.modules):
        if mod_name.split(".", 1)[0] not in ("jobs", "iotflink", "udfs"):
            continue
        file = getattr(sys.modules[mod_name], "__file__", None)
        if file and file.endswith(".py") and Path(file).is_file():
            add(f"module {mod_name}", Path(file).read_bytes())
    conf = t_env.get_config().get_configuration().to_dict()
    for key in sorted(conf):
        if key.startswith("table.") or key == "parallelism.default":
            add(f"conf {key}", conf[key])
    for i, part in enumerate(parts):
        add(f"part {i}", part)
    return h.hexdigest()[:24]


def _planner_threads():
    """The JVM class ``io.iotflink.flink.planner.PlannerThreads`` (jvm/, in :data:`FORMAT_JAR`).

    Raises:
        JobError: the project's jar is not on the JVM's class path (run ``scripts/setup.sh``).
    """
    from py4j.java_gateway import JavaClass  # noqa: PLC0415
    from pyflink.java_gateway import get_gateway  # noqa: PLC0415

    cls = get_gateway().jvm.io.iotflink.flink.planner.PlannerThreads
    if not isinstance(cls, JavaClass):
        raise JobError(f"io.iotflink.flink.planner.PlannerThreads not found: {FORMAT_JAR} is missing from "
                       f"{flink_home() / 'lib'} (run scripts/setup.sh)")
    return cls


def explain(t_env, stmt_set) -> str:
    """``stmt_set.explain()``, planned on the JVM thread that serves this call.

    PyFlink reaches its JVM through Py4J, which serves each connection on a JVM thread of its
    own and opens another connection whenever two Python threads call at once; Calcite's
    metadata provider is per JVM thread and Flink's planner sets it only on the thread that
    created it (Apache Flink JIRA FLINK-23020), so planning on another thread fails with
    ``NullPointerException: metadataHandlerProvider``. The helpers here (:func:`explain`,
    :func:`compile_plan`, :func:`execute`) install the provider and plan in one JVM call
    (``PlannerThreads`` in jvm/), so a process with several Python threads plans reliably.

    Args:
        t_env: the TableEnvironment ``stmt_set`` belongs to.
        stmt_set: a ``pyflink.table.StatementSet``.

    Returns:
        the plan text (EXPLAIN).

    Raises:
        JobError: the project's jar is missing; the planner's errors as PyFlink raises them.
    """
    return _planner_threads().explain(t_env._j_tenv, stmt_set._j_statement_set)  # noqa: SLF001


def compile_plan(t_env, stmt_set):
    """``stmt_set.compile_plan()`` on the calling JVM thread (see :func:`explain`).

    Returns:
        a ``pyflink.table.CompiledPlan``.
    """
    from pyflink.table import CompiledPlan  # noqa: PLC0415

    j_plan = _planner_threads().compilePlan(t_env._j_tenv, stmt_set._j_statement_set)  # noqa: SLF001
    return CompiledPlan(j_compiled_plan=j_plan, t_env=t_env)


def execute(t_env, stmts):
    """Submit a ``StatementSet`` or a ``CompiledPlan`` (its ``execute()``), planned on the
    calling JVM thread (see :func:`explain`).

    Returns:
        the ``pyflink.table.TableResult`` of the submission.
    """
    from pyflink.table import CompiledPlan, TableResult  # noqa: PLC0415

    t_env._before_execute()  # noqa: SLF001 - what StatementSet.execute() does first (pipeline.jars)
    j_stmts = stmts._j_compiled_plan if isinstance(stmts, CompiledPlan) else stmts._j_statement_set  # noqa: SLF001
    return TableResult(_planner_threads().execute(t_env._j_tenv, j_stmts))  # noqa: SLF001


def attach_as_datastream(t_env, stmt_set) -> None:
    """``stmt_set.attach_as_datastream()`` (a ``StreamStatementSet`` planned into the
    environment's DataStream program) on the calling JVM thread (see :func:`explain`)."""
    _planner_threads().attachAsDataStream(t_env._j_tenv, stmt_set._j_statement_set)  # noqa: SLF001


def reset_exec_node_ids(t_env) -> None:
    """Number the next exec nodes the planner creates from 1 again.

    The planner numbers exec nodes with one counter per JVM (``ExecNodeContext``), and the
    operator uids are ``<exec node id>_<transformation>`` (``table.exec.uid.generation =
    ALWAYS``). A ``flink run`` client is a fresh JVM, so its job's ids start at 1; a plan
    compiled in a JVM that planned before would have other ids, and so uids that a savepoint of
    the job does not map to. Called before a plan is compiled for the cache.
    """
    loader = t_env._j_tenv.getPlanner().getClass().getClassLoader()  # noqa: SLF001 - the planner's own loader
    cls = loader.loadClass("org.apache.flink.table.planner.plan.nodes.exec.ExecNodeContext")
    (reset,) = [m for m in cls.getMethods() if m.getName() == "resetIdCounter"]
    reset.invoke(None, None)


def load_or_compile(t_env, build, key: str, cache_dir: Path, name: str, on_step=None):
    """The job's compiled plan: loaded from ``<cache_dir>/<name>-<key>.json``, else built,
    compiled and stored there (see :func:`execute_cached`, which executes it).

    Returns:
        a ``pyflink.table.CompiledPlan``.

    Raises:
        Whatever ``build`` raises (a cache that cannot be written is only logged).
    """
    from py4j.protocol import Py4JError  # noqa: PLC0415
    from pyflink.table import CompiledPlan, PlanReference  # noqa: PLC0415
    from pyflink.util.exceptions import JavaException  # noqa: PLC0415

    step = on_step or (lambda _step: None)
    path = Path(cache_dir) / f"{name}-{key}.json"
    plan = None
    if path.is_file():
        try:
            # TableEnvironment.load_plan of PyFlink 2.2.1 hands the Java table environment to
            # the CompiledPlan it returns, whose execute() then fails ("Method _before_execute([])
            # does not exist"); the plan is wrapped with the Python one instead
            ref = PlanReference.from_file(str(path))
            plan = CompiledPlan(t_env._j_tenv.loadPlan(ref._j_plan_reference), t_env)  # noqa: SLF001
            log.info("%s: compiled plan loaded from %s", name, path)
        except (JavaException, Py4JError) as exc:  # the planner's TableException, as PyFlink raises it
            log.warning("%s: cached plan %s does not load (%s); compiling again", name, path,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if plan is None:
        stmts = build()
        step("build")
        t_env.get_config().set("table.plan.compile.catalog-objects", "IDENTIFIER")
        reset_exec_node_ids(t_env)
        plan = compile_plan(t_env, stmts)
        _store_plan(Path(cache_dir), path, plan.as_json_string(), name)
    step("plan")
    return plan


def execute_cached(t_env, build, key: str, cache_dir: Path | None, name: str, on_step=None):
    """Execute a pipeline from its compiled plan, compiling it only when the cache lacks it.

    Flink SQL's optimiser (Calcite) is most of a job's start-up; its output, the compiled plan
    (``StatementSet.compile_plan()``, JSON), can be loaded and executed instead
    (``TableEnvironment.load_plan``; Flink docs, "Upgrading Table Programs": compiled plans).
    The plan is cached as ``<cache_dir>/<name>-<key>.json`` (directory 0700, file 0600).

    - Cache hit: the plan is loaded; ``build`` is not called (no SQL is parsed, validated or
      optimised). The plan names the tables only (``table.plan.compile.catalog-objects =
      IDENTIFIER``): their schemas and options are looked up in the catalog at load, so the
      caller runs the job's DDL first, and the cache holds no connector option.
    - Cache miss (or a plan that does not load): ``build()`` is called, its plan compiled,
      stored, and that plan executed. Exec node ids (and so the operator uids under
      ``table.exec.uid.generation = ALWAYS``) are numbered from 1 (:func:`reset_exec_node_ids`),
      as ``StatementSet.execute()`` numbers them in a fresh client; a loaded plan keeps them.
      So a savepoint maps to the job whether it was submitted with or without the cache
      (``tests/test_plan_cache.py`` compares the uids).

    Args:
        t_env: the job's table environment, its DDL already run and its options set.
        build: ``() -> StatementSet`` of the job (called on a miss only).
        key: :func:`plan_cache_key` of the job.
        cache_dir: directory of the cache; ``None`` = no cache (``build().execute()``).
        name: the job's name (file name prefix; only the newest :data:`PLAN_CACHE_KEEP` plans of
            a name are kept).
        on_step: optional ``(step) -> None`` called after ``"build"`` (miss only) and
            ``"plan"`` (benchmarks time the steps with it).

    Returns:
        the ``TableResult`` of the submission.

    Raises:
        Whatever ``build`` raises (``JobError`` for the jobs of this project); a cache that
        cannot be written is only logged.
    """
    if cache_dir is None:
        stmts = build()
        (on_step or (lambda _step: None))("build")
        return execute(t_env, stmts)
    return execute(t_env, load_or_compile(t_env, build, key, cache_dir, name, on_step))


def _store_plan(cache_dir: Path, path: Path, text: str, name: str) -> None:
    """Write ``text`` to ``path`` atomically (0600, directory 0700); prune old plans of ``name``.
    A cache that cannot be written is logged, not raised: the submission goes on."""
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    try:
        cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=cache_dir)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only client: the job runs, the next submission compiles again
        log.warning("%s: compiled plan not cached, %s cannot be written (%s)", name, path, exc)
        return
    log.info("%s: compiled plan stored in %s", name, path)
    own = re.compile(rf"{re.escape(name)}-[0-9a-f]{{24}}\.json")
    plans = sorted((p for p in cache_dir.iterdir() if own.fullmatch(p.name)), key=lambda p: p.stat().st_mtime,
                   reverse=True)
    for old in plans[PLAN_CACHE_KEEP:]:
        old.unlink(missing_ok=True)
