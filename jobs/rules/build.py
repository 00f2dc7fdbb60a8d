"""Build a rule job: the DDL and the rule's statements in a TableEnvironment, its statement
set, its plan (EXPLAIN); the environments a rule job runs in."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from iotflink.settings import RulesSettings
from jobs.rules.ddl import DDL_PATH, render_ddl
from jobs.rules.rule_file import RuleFile
from jobs.rules.statements import RuleSqlError, Statement, set_pair, split_statements

_POS_RE = re.compile(r"line (\d+), column (\d+)")


def flink_message(exc: BaseException) -> str:
    """The first line of a Flink / py4j error that says what is wrong (no Java stack frames, no
    exception class prefix); the first 300 characters if there is none."""
    text = str(exc)
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("at ", "org.apache.flink.api.python.shaded", "An error occurred while calling",
                                         "Traceback", "File ")):
            # py4j wraps the Java message as "...Exception: <message>"
            return re.sub(r"^(?::\s*|[\w.$]+(?:Exception|Error):\s*)+", "", line)
    return text[:300]


def _run(path: Path, stmt: Statement, fn, *args):
    """Call ``fn`` and turn a Flink error into a RuleSqlError with the file's line/column."""
    try:
        return fn(*args)
    except Exception as exc:  # py4j raises many types; all are reported
        full = str(exc)
        m = _POS_RE.search(full)
        line, col = (stmt.line, 1)
        if m:
            line, col = stmt.line + int(m.group(1)) - 1, int(m.group(2))
        msg = _POS_RE.sub(lambda p: f"line {stmt.line + int(p.group(1)) - 1}, column {p.group(2)}",
                          flink_message(exc))
        # the root cause usually says what is wrong; keep it when it differs
        causes = re.findall(r"Caused by: [\w.$]+: (.*)", full)
        if causes and causes[-1] not in msg:
            msg = f"{msg} (cause: {causes[-1]})"
        raise RuleSqlError(path, line, col, msg) from exc


def _execute(t_env, path: Path, stmts: Sequence[Statement]) -> None:
    for stmt in stmts:
        if stmt.kind == "set":
            key, value = set_pair(stmt)
            t_env.get_config().set(key, value)
        elif stmt.kind == "statement_set":
            raise RuleSqlError(path, stmt.line, 1, "a statement set is not allowed here")
        else:
            _run(path, stmt, t_env.execute_sql, stmt.text)


def build(t_env, cfg: RulesSettings, rule: RuleFile, sources: Mapping[str, Mapping[str, str]],
          sinks: Mapping[str, Mapping[str, str]], database: str | None = None, statement_set=None):
    """Define the tables and the rule's views in ``t_env``; return the rule's StatementSet.

    Nothing is executed on a cluster: the caller calls ``.execute()`` (a job) or
    ``.explain()`` (validate).

    Args:
        t_env: a streaming TableEnvironment.
        cfg: watermark / idleness settings used by the DDL.
        rule: the parsed rule file.
        sources: options of ``readings`` and ``transactions`` (Kafka in ``main``, bounded
            files in tests).
        sinks: options of ``alerts``, ``rules_late`` and ``rules_dlq``.
        database: if given, create and use this database first, so one TableEnvironment
            can hold several builds (tests share one environment per module).
        statement_set: add the rule's INSERTs to this StatementSet instead of a new one
            (several rules in one job; INSERTs are resolved when added).

    Raises:
        RuleSqlError: a statement of the DDL or of the rule was rejected; the message gives
            the file, line and column.
    """
    if database:
        t_env.execute_sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        t_env.use_database(database)
    ddl = render_ddl(cfg, {**sources, **sinks})
    _execute(t_env, DDL_PATH, split_statements(ddl, DDL_PATH))
    body = [s for s in rule.statements if s.kind != "statement_set"]
    _execute(t_env, rule.path, body)
    stmt_set = t_env.create_statement_set() if statement_set is None else statement_set
    for ins in next(s for s in rule.statements if s.kind == "statement_set").inserts:
        _run(rule.path, ins, stmt_set.add_insert_sql, ins.text)
    return stmt_set


def explain(t_env, cfg: RulesSettings, rule: RuleFile, sources, sinks, database: str | None = None) -> str:
    """Plan the rule (EXPLAIN of its statement set); returns the plan text.

    Raises:
        RuleSqlError: parsing, validation or planning failed (file:line:column).
    """
    from jobs import common  # noqa: PLC0415 - imports pyflink

    stmt_set = build(t_env, cfg, rule, sources, sinks, database)
    ss_stmt = next(s for s in rule.statements if s.kind == "statement_set")
    return _run(rule.path, ss_stmt, common.explain, t_env, stmt_set)


def alert_id(rule_id: str, key: str, event_times_ms: Sequence[int]) -> str:
    """The alert id the SQL computes: SHA-256 hex of ``rule_id|key|t1|t2|...`` (epoch ms)."""
    return hashlib.sha256("|".join([rule_id, key, *map(str, event_times_ms)]).encode()).hexdigest()


# ---------------------------------------------------------------------------- run
def create_env(cfg: RulesSettings, rule: RuleFile, extra: Mapping[str, str] | None = None):
    """A streaming TableEnvironment for a rule job, configured like every project job.

    Uses ``jobs.common`` (checkpointing, RocksDB, restart strategy, uids, connector jar check).
    """
    from jobs import common  # noqa: PLC0415 - imports pyflink

    conf = common.job_configuration(cfg, rule.job_name, use_kafka=True, extra=extra)  # type: ignore[arg-type]
    return common.create_table_env(conf)


def local_env(parallelism: int = 1):
    """A TableEnvironment on a local MiniCluster for bounded test runs.

    ``pipeline.auto-watermark-interval = 0`` makes the watermark assigner emit a watermark
    after every row instead of every 200 ms, so which row is late does not depend on timing.
    No checkpoints: the file sinks commit their files when the bounded input ends.
    """
    from pyflink.table import EnvironmentSettings, TableEnvironment  # noqa: PLC0415

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    for key, value in {"parallelism.default": str(parallelism),
                       "pipeline.auto-watermark-interval": "0 ms",
                       "table.local-time-zone": "UTC"}.items():
        conf.set(key, value)
    return t_env


def validate_env():
    """A local TableEnvironment (:func:`local_env`) that can also plan the Kafka tables: the
    Kafka connector and the ``json-dlq`` format jars are on its ``pipeline.jars`` (``rules
    validate`` EXPLAINs every rule against the Kafka DDL in it)."""
    from jobs.common import format_jar, kafka_connector_jar  # noqa: PLC0415 - imports pyflink

    t_env = local_env()
    jars = [j.as_uri() for j in (kafka_connector_jar(), format_jar()) if j is not None]
    if jars:
        t_env.get_config().set("pipeline.jars", ";".join(jars))
    return t_env
