"""Detection rules as Flink SQL ``MATCH_RECOGNIZE`` jobs: parse, build, explain and run them.

PyFlink has no Python CEP API (Flink's CEP library is Java/Scala only), so every keyed pattern is a SQL file under
``sql/rules/``, one rule per file, run as its own Flink job named ``rule:<rule_id>``. A rule
file holds, in order (see ``sql/rules/bearing_failure.sql``):

- a header comment with ``-- rule: <id>`` (equal to the file's stem), ``-- detects: ...`` and
  one ``-- param: name = value unit. Source: ...`` line per threshold;
- ``SET 'pipeline.name' = 'rule:<id>';``
- ``CREATE TEMPORARY VIEW`` statements, ending in a view of alert records;
- ``EXECUTE STATEMENT SET BEGIN INSERT INTO alerts ...; INSERT INTO rules_late ... FROM
  late_<source>; INSERT INTO rules_dlq ... FROM dlq_<source>; END;``

The tables they use (``readings``, ``transactions``, ``alerts``, ``rules_late``,
``rules_dlq``), the late views and the dead-letter views come from the template ``sql/ddl.sql``, whose ``${...}`` placeholders
:func:`render_ddl` fills from :class:`iotflink.settings.RulesSettings` (Kafka) or from the
options a test injects (bounded files). :func:`build` is the single place both paths go
through, so tests run exactly the statements the cluster runs.

Alert record (topic ``alerts``, key ``alert_id``), JSON::

    {"alert_id": sha256 hex of "rule_id|alert_key|<epoch ms of each matched event>",
     "rule_id": str, "alert_key": device_id | card_id,
     "detection_ms": epoch ms of the event that completed the match (event time),
     "emitted_at": "YYYY-MM-DD HH:MM:SS.sssZ" wall clock of emission (not part of the id),
     "events": [{"ts_ms", "seq", "name", "value"}, ...]  matched events in pattern order,
     "details": JSON text of rule-specific measures}

Late record (topic ``rules-late``, key = device_id / card_id): ``{"rule_id", "source_table",
"record_key", "seq", "ts" (epoch ms), "watermark_utc", "record" (JSON text)}``.

Dead letter (topic ``rules-dlq``, no key): ``{"rule_id", "source_table", "reason", "detail",
"kafka_partition", "kafka_offset", "raw" (base64 of the record's value)}``: a record of
``sensor-readings`` or ``transactions`` the rule job could not read (``json-dlq`` format,
jvm/); the job goes on.

Run one rule against Kafka (``main``; what ``rules deploy`` submits with ``flink run -py``)::

    python jobs/rules.py --rule bearing_failure

Calibration figures quoted in the rule headers (the card amounts, and the bearing rules'
leave-one-bearing-out table, which ``bench/bearing_calibrate.py`` prints and confirms on Flink)::

    iotflink rules calibrate
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import re
import string
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotflink import schema
from iotflink.errors import JobError
from iotflink.settings import PROJECT_ROOT, RulesSettings
from jobs.common import json_dlq_options, kafka_coordinates_sql, options_sql, sql_interval

log = logging.getLogger(__name__)

#: The DDL template of every rule job.
DDL_PATH = PROJECT_ROOT / "sql" / "ddl.sql"

#: Tables whose connector options :func:`render_ddl` needs, and their placeholder names.
TABLE_PLACEHOLDERS = {
    "readings": "readings_options",
    "transactions": "transactions_options",
    "alerts": "alerts_options",
    "rules_late": "late_options",
    "rules_dlq": "dlq_options",
}

#: Source tables of the DDL and the sink tables every rule's statement set writes.
SOURCE_TABLES = ("readings", "transactions")
SINK_TABLES = ("alerts", "rules_late", "rules_dlq")

#: Fields a ``transactions`` record must have (the ``json-dlq`` format's required fields).
TRANSACTION_REQUIRED_FIELDS = ("txn_id", "seq", "card_id", "ts", "event_type")

#: Job name prefix of rule jobs on the cluster (``rule:<rule_id>``).
JOB_PREFIX = "rule:"


class RuleSqlError(JobError):
    """A rule or DDL file is malformed, or Flink rejected one of its statements.

    Attributes:
        path: the file.
        line / column: 1-based position in the file (0 when unknown).
    """

    def __init__(self, path: Path | str, line: int, column: int, message: str) -> None:
        super().__init__(f"{path}:{line}:{column}: {message}")
        self.path = Path(path)
        self.line = line
        self.column = column


# ---------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Statement:
    """One SQL statement of a file.

    Fields:
        text: the statement without its ``;`` (leading comments included, so that Flink's
            "line N, column M" counts from ``line``).
        line: 1-based line of the file where ``text`` starts.
        kind: ``set`` | ``statement_set`` | ``sql``.
        inserts: for ``statement_set``, the INSERT statements inside BEGIN ... END.
    """

    text: str
    line: int
    kind: str = "sql"
    inserts: tuple[Statement, ...] = ()

    def body(self) -> str:
        """The text without comments, whitespace-normalised (for keyword checks)."""
        return " ".join(_strip_comments(self.text).split())


def _strip_comments(sql: str) -> str:
    out, i, n = [], 0, len(sql)
    while i < n:
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif sql[i] in "'`\"":
            q = sql[i]
            j = i + 1
            while j < n:
                if sql[j] == q and not (j + 1 < n and sql[j + 1] == q):
                    break
                j += 2 if sql[j] == q else 1
            out.append(sql[i:j + 1])
            i = j + 1
        else:
            out.append(sql[i])
            i += 1
    return "".join(out)


def _leading_noise(sql: str) -> int:
    """Length of the leading whitespace and comments of ``sql``."""
    i, n = 0, len(sql)
    while i < n:
        if sql[i].isspace():
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            break
    return i


def _raw_split(text: str) -> list[tuple[str, int]]:
    """Split on top-level ``;`` (outside comments, quotes); returns (piece, start line)."""
    pieces: list[tuple[str, int]] = []
    start, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        if c in "'`\"":
            j = i + 1
            while j < n:
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
            continue
        if c == ";":
            pieces.append((text[start:i], text.count("\n", 0, start) + 1))
            start = i + 1
        i += 1
    pieces.append((text[start:], text.count("\n", 0, start) + 1))
    return pieces


_SET_RE = re.compile(r"^SET\s+'([^']+)'\s*=\s*'((?:[^']|'')*)'$", re.IGNORECASE | re.DOTALL)
_SS_RE = re.compile(r"^(?:EXECUTE\s+STATEMENT\s+SET|BEGIN\s+STATEMENT\s+SET)\s*(?:BEGIN\s*)?(.*)$",
                    re.IGNORECASE | re.DOTALL)


def split_statements(text: str, path: Path | str = "<sql>") -> list[Statement]:
    """Split a SQL script into statements, keeping each one's start line.

    ``EXECUTE STATEMENT SET BEGIN ... END;`` becomes one ``statement_set`` statement whose
    ``inserts`` are the INSERTs inside it.

    Raises:
        RuleSqlError: a statement set without ``END``.
    """
    out: list[Statement] = []
    pending: list[Statement] | None = None
    pending_line = 0
    for piece, line in _raw_split(text):
        # move the start past leading blank lines so reported lines point at the statement
        body = _strip_comments(piece).strip()
        if not body:
            continue
        lead = _leading_noise(piece)
        line += piece.count("\n", 0, lead)  # noqa: PLW2901 - the piece's first line, past its leading noise
        piece = piece[lead:]  # noqa: PLW2901
        if pending is not None:
            if body.upper() == "END":
                out.append(Statement("", pending_line, "statement_set", tuple(pending)))
                pending = None
                continue
            pending.append(Statement(piece, line))
            continue
        m = _SS_RE.match(body)
        if m:
            pending, pending_line = [], line
            first = m.group(1).strip()
            if first:
                # INSERT on the same piece as BEGIN: keep its text from "INSERT" on
                idx = re.search(r"\bINSERT\b", piece, re.IGNORECASE)
                ins_text = piece[idx.start():] if idx else first
                ins_line = line + piece.count("\n", 0, idx.start() if idx else 0)
                pending.append(Statement(ins_text, ins_line))
            continue
        if _SET_RE.match(body):
            out.append(Statement(piece, line, "set"))
            continue
        out.append(Statement(piece, line))
    if pending is not None:
        raise RuleSqlError(path, pending_line, 1, "EXECUTE STATEMENT SET without END")
    return out


def set_pair(stmt: Statement) -> tuple[str, str]:
    """``(key, value)`` of a ``SET 'key' = 'value'`` statement."""
    m = _SET_RE.match(stmt.body())
    if not m:
        raise ValueError(f"not a SET statement: {stmt.text!r}")
    return m.group(1), m.group(2).replace("''", "'")


_PARAM_RE = re.compile(r"^--\s*param:\s*([a-z_][a-z0-9_]*)\s*=\s*([-+0-9.eE]+)\s*(.*)$")


@dataclass(frozen=True)
class RuleFile:
    """A parsed rule file.

    Fields:
        path: the file; rule_id: its ``-- rule:`` id (= file stem); detects: the
        ``-- detects:`` text; params: name -> numeric value from ``-- param:`` lines
        (units and sources are in the header text); statements: its SQL statements.
    """

    path: Path
    rule_id: str
    detects: str
    params: dict[str, float]
    statements: list[Statement] = field(default_factory=list)

    @property
    def job_name(self) -> str:
        """The Flink job name of this rule (``rule:<rule_id>``)."""
        return JOB_PREFIX + self.rule_id


#: A parameter's value in a rule's SQL: a number, or a quoted number (``INTERVAL '60'``),
#: followed by ``/*param:name*/``; it must equal the header's ``-- param: name = ...`` value.
_PARAM_MARK_RE = re.compile(r"('?)([-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\1(\s*/\*\s*param:\s*([a-z_][a-z0-9_]*)\s*\*/)")


def parse_rule_file(path: Path | str) -> RuleFile:
    """Read and check a rule file's header and statements (no Flink involved).

    Raises:
        RuleSqlError: missing ``rule``/``detects``/``param`` header lines, a param without a
            ``Source:``, a rule id that differs from the file name, no statement set, a
            statement set that does not insert into ``alerts``, ``rules_late`` and
            ``rules_dlq``, late and dead-letter inserts that read different sources, or a
            value marked ``/*param:name*/`` in the SQL that differs from the header's value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleSqlError(path, 0, 0, f"cannot read: {exc}") from exc
    return parse_rule_text(text, path)


def parse_rule_text(text: str, path: Path | str) -> RuleFile:
    """:func:`parse_rule_file` of a rule's text (``path`` names it in errors and gives the id)."""
    path = Path(path)
    header: list[tuple[int, str]] = []
    for no, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("--"):
            header.append((no, raw))
        elif raw.strip():
            break
    rule_id = detects = ""
    params: dict[str, float] = {}
    for idx, (no, raw) in enumerate(header):
        if m := re.match(r"^--\s*rule:\s*(\S+)\s*$", raw):
            rule_id = m.group(1)
        elif m := re.match(r"^--\s*detects:\s*(.*)$", raw):
            detects = m.group(1).strip()
        elif raw.startswith("-- param:"):
            m = _PARAM_RE.match(raw)
            if not m:
                raise RuleSqlError(path, no, 1, "param line must read '-- param: name = number unit. Source: ...'")
            # the Source may continue on the following indented comment lines
            block = raw
            for _, cont in header[idx + 1:]:
                if not cont.startswith("--   "):
                    break
                block += " " + cont
            if "source:" not in block.lower():
                raise RuleSqlError(path, no, 1, f"param {m.group(1)} gives no 'Source:' for its value")
            params[m.group(1)] = float(m.group(2))
    if not rule_id:
        raise RuleSqlError(path, 1, 1, "header has no '-- rule: <id>' line")
    if rule_id != path.stem:
        raise RuleSqlError(path, 1, 1, f"rule id {rule_id!r} differs from the file name {path.stem!r}")
    if not detects:
        raise RuleSqlError(path, 1, 1, "header has no '-- detects: ...' line")
    if not params:
        raise RuleSqlError(path, 1, 1, "header has no '-- param: ...' line")
    statements = split_statements(text, path)
    sets = [s for s in statements if s.kind == "statement_set"]
    if len(sets) != 1:
        raise RuleSqlError(path, 1, 1, f"expected one EXECUTE STATEMENT SET, found {len(sets)}")
    targets = {re.sub(r"^INSERT\s+INTO\s+(\S+).*$", r"\1", i.body(), flags=re.I | re.S).lower()
               for i in sets[0].inserts}
    if targets != set(SINK_TABLES):
        raise RuleSqlError(path, sets[0].line, 1,
                           f"the statement set must insert into {', '.join(SINK_TABLES)}, found {sorted(targets)}")
    bodies = " ".join(i.body() for i in sets[0].inserts).lower()
    late_src = set(re.findall(r"\blate_(readings|transactions)\b", bodies))
    dlq_src = set(re.findall(r"\bdlq_(readings|transactions)\b", bodies))
    if late_src != dlq_src:
        raise RuleSqlError(path, sets[0].line, 1,
                           f"late rows come from {sorted(late_src)} but dead letters from {sorted(dlq_src)}: "
                           "a rule must write the late_X and dlq_X views of each source X it reads")
    for m in _PARAM_MARK_RE.finditer(text):
        name, line = m.group(4), text.count("\n", 0, m.start()) + 1
        if name not in params:
            raise RuleSqlError(path, line, 1, f"/*param:{name}*/ marks a value but the header has no param {name}")
        if float(m.group(2)) != params[name]:
            raise RuleSqlError(path, line, 1, f"{name} is {m.group(2)} here but {params[name]:g} in the header")
    return RuleFile(path, rule_id, detects, params, statements)


def with_params(rule: RuleFile, values: Mapping[str, float]) -> RuleFile:
    """The rule file of ``rule`` (as on disk) with other parameter values (calibration and
    tests run variants of a rule).

    Every SQL literal marked ``/*param:name*/`` and the header's ``-- param: name = ...`` value
    are replaced; an integer literal must get an integral value. Nothing is written to disk.

    Raises:
        RuleSqlError: a name that is not a marked parameter of the rule, or a fractional value
            for an integer literal.
    """
    text = rule.path.read_text(encoding="utf-8")
    marked = {m.group(4) for m in _PARAM_MARK_RE.finditer(text)}
    unknown = set(values) - marked
    if unknown:
        raise RuleSqlError(rule.path, 1, 1, f"no /*param:NAME*/ value in the SQL for {sorted(unknown)}")

    def literal(old: str, value: float) -> str:
        if re.fullmatch(r"[-+]?[0-9]+", old):
            if float(value) != int(value):
                raise RuleSqlError(rule.path, 1, 1, f"an integer parameter cannot take {value}")
            return str(int(value))
        return repr(float(value))

    def mark(m: re.Match) -> str:
        name = m.group(4)
        if name not in values:
            return m.group(0)
        q = m.group(1)
        return f"{q}{literal(m.group(2), values[name])}{q}{m.group(3)}"

    text = _PARAM_MARK_RE.sub(mark, text)
    for name, value in values.items():
        text = re.sub(rf"^(--\s*param:\s*{name}\s*=\s*)([-+0-9.eE]+)",
                      lambda m: m.group(1) + literal(m.group(2), value), text, count=1, flags=re.M)  # noqa: B023
    return parse_rule_text(text, rule.path)


def discover_rules(rules_dir: Path | str) -> list[RuleFile]:
    """Every ``*.sql`` rule file under ``rules_dir``, parsed, sorted by rule id.

    Raises:
        RuleSqlError: from :func:`parse_rule_file` (the first bad file).
    """
    return [parse_rule_file(p) for p in sorted(Path(rules_dir).glob("*.sql"))]


# ---------------------------------------------------------------------------- DDL
def render_ddl(cfg: RulesSettings, table_options: Mapping[str, Mapping[str, str]],
               template: Path = DDL_PATH) -> str:
    """Fill ``sql/ddl.sql`` with the watermark settings and each table's connector options.

    Args:
        cfg: out_of_orderness_ms and idleness_ms are used.
        table_options: table name (``readings``, ``transactions``, ``alerts``,
            ``rules_late``) -> connector options (see :func:`kafka_options`).

    Raises:
        RuleSqlError: a table's options are missing, or the template has an unknown
            placeholder.
    """
    missing = [t for t in TABLE_PLACEHOLDERS if t not in table_options]
    if missing:
        raise RuleSqlError(template, 0, 0, f"no connector options for table(s) {missing}")
    values = {ph: options_sql(table_options[t]) for t, ph in TABLE_PLACEHOLDERS.items()}
    values["readings_columns"] = schema.flink_columns_sql()
    for table in SOURCE_TABLES:
        values[f"{table}_coordinates"] = kafka_coordinates_sql(table_options[table].get("connector") == "kafka")
    values["out_of_orderness"] = sql_interval(cfg.out_of_orderness_ms)
    values["idleness_ms"] = str(cfg.idleness_ms)
    try:
        return string.Template(template.read_text(encoding="utf-8")).substitute(values)
    except (KeyError, ValueError) as exc:
        raise RuleSqlError(template, 0, 0, f"bad placeholder: {exc}") from exc


def source_format_options(table: str) -> dict[str, str]:
    """``json-dlq`` format options of source ``table`` (``readings`` or ``transactions``), the
    same for the Kafka and the filesystem connector: unreadable records become dead-letter rows.

    Raises:
        KeyError: ``table`` is not a source table.
    """
    required = {"readings": schema.REQUIRED_FIELDS, "transactions": TRANSACTION_REQUIRED_FIELDS}[table]
    return json_dlq_options(required)


def kafka_options(cfg: RulesSettings, rule_id: str) -> dict[str, dict[str, str]]:
    """Kafka connector options of the five tables, for the job of ``rule_id``.

    Sources read with consumer group ``<consumer_group>-<rule_id>`` from its committed
    offsets (earliest without any), in the ``json-dlq`` format. ``alerts`` is keyed by
    ``alert_id`` and delivers ``cfg.alerts_delivery``; ``rules_late`` is keyed by the record's
    device / card id; ``rules_dlq`` has no key.
    """
    def source(topic: str, table: str) -> dict[str, str]:
        return {
            "connector": "kafka", "topic": topic,
            "properties.bootstrap.servers": cfg.kafka_bootstrap,
            "properties.group.id": f"{cfg.consumer_group}-{rule_id}",
            "scan.startup.mode": "group-offsets",
            "properties.auto.offset.reset": "earliest",
            "properties.isolation.level": "read_committed",
            **source_format_options(table),
        }

    def sink(topic: str, key: str | None, exactly_once: bool) -> dict[str, str]:
        opts = {
            "connector": "kafka", "topic": topic,
            "properties.bootstrap.servers": cfg.kafka_bootstrap,
            **({"key.format": "raw", "key.fields": key} if key else {}),
            "value.format": "json", "value.fields-include": "ALL",
        }
        if exactly_once:
            opts.update({
                "sink.delivery-guarantee": "exactly-once",
                "sink.transactional-id-prefix": f"{cfg.consumer_group}-{rule_id}-{topic}",
                "properties.transaction.timeout.ms": str(cfg.transaction_timeout_ms),
            })
        else:
            opts["sink.delivery-guarantee"] = "at-least-once"
        return opts

    eo = cfg.alerts_delivery == "exactly-once"
    return {
        "readings": source(cfg.topics.readings, "readings"),
        "transactions": source(cfg.topics.transactions, "transactions"),
        "alerts": sink(cfg.topics.alerts, "alert_id", eo),
        "rules_late": sink(cfg.late_topic, "record_key", eo),
        "rules_dlq": sink(cfg.topics.rules_dlq, None, eo),
    }


def file_options(path: Path | str, source_table: str | None = None) -> dict[str, str]:
    """Options of a bounded JSON-lines file table (tests; same schema as the Kafka table):
    a sink, or with ``source_table`` the source in the ``json-dlq`` format of the Kafka one."""
    if source_table is not None:
        return {"connector": "filesystem", "path": str(path), **source_format_options(source_table)}
    return {"connector": "filesystem", "path": str(path), "format": "json"}


# ---------------------------------------------------------------------------- build
_POS_RE = re.compile(r"line (\d+), column (\d+)")


def _flink_message(exc: BaseException) -> str:
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
                          _flink_message(exc))
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
    stmt_set = build(t_env, cfg, rule, sources, sinks, database)
    ss_stmt = next(s for s in rule.statements if s.kind == "statement_set")
    return _run(rule.path, ss_stmt, stmt_set.explain)


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


def run_rule(cfg: RulesSettings, rule: RuleFile):
    """Build ``rule`` against Kafka and submit it; returns the TableResult (job client inside)."""
    t_env = create_env(cfg, rule)
    opts = kafka_options(cfg, rule.rule_id)
    stmt_set = build(t_env, cfg, rule,
                     {k: opts[k] for k in SOURCE_TABLES}, {k: opts[k] for k in SINK_TABLES})
    result = stmt_set.execute()
    client = result.get_job_client()
    if client is not None:
        log.info("rule %s submitted as job %s", rule.rule_id, client.get_job_id())
    return result


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


@dataclass
class BoundedRun:
    """One rule on bounded inputs, for :func:`run_bounded_many`.

    Fields: rule; workdir (inputs and outputs go there); readings / transactions: rows in
    arrival order (dicts with the DDL's columns, or ``bytes``: one raw record, written as is);
    database: where its tables and views live; alerts / late / dlq: filled in after the job, as
    dicts of the alert / late / dead-letter records.
    """

    rule: RuleFile
    workdir: Path
    readings: Sequence[Mapping[str, Any]] = ()
    transactions: Sequence[Mapping[str, Any]] = ()
    database: str = ""
    alerts: list[dict] = field(default_factory=list)
    late: list[dict] = field(default_factory=list)
    dlq: list[dict] = field(default_factory=list)


def run_bounded_many(t_env, cfg: RulesSettings, runs: Sequence[BoundedRun]) -> None:
    """Run several rules on bounded inputs as ONE job (a MiniCluster start costs seconds).

    Each run's inputs are written as JSON lines in arrival order and read with the DDL's
    schema and watermark, in the run's own database; its sinks are JSON files under its
    workdir. Blocks until the job has finished (bounded input: the final watermark flushes
    every pending match), then fills ``alerts`` and ``late`` of every run.

    Raises:
        RuleSqlError: a statement was rejected.
        JobError: the job failed.
    """
    import json  # noqa: PLC0415

    stmt_set = t_env.create_statement_set()
    outs = []
    for i, run in enumerate(runs):
        run.workdir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, rows in (("readings", run.readings), ("transactions", run.transactions)):
            paths[name] = run.workdir / f"{name}.jsonl"
            paths[name].write_bytes(b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n"
                                             for r in rows))
        out = {"alerts": run.workdir / "out_alerts", "rules_late": run.workdir / "out_late",
               "rules_dlq": run.workdir / "out_dlq"}
        outs.append(out)
        build(t_env, cfg, run.rule, {k: file_options(paths[k], k) for k in SOURCE_TABLES},
              {k: file_options(v) for k, v in out.items()},
              database=run.database or f"run{i}_{run.rule.rule_id}", statement_set=stmt_set)
    try:
        stmt_set.execute().wait()
    except Exception as exc:  # py4j error types vary
        raise JobError(f"bounded rule job failed: {_flink_message(exc)}") from exc

    def read(d: Path) -> list[dict]:
        files = sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))
        return [json.loads(line) for p in files for line in p.read_text(encoding="utf-8").splitlines() if line]

    for run, out in zip(runs, outs, strict=True):
        run.alerts, run.late, run.dlq = read(out["alerts"]), read(out["rules_late"]), read(out["rules_dlq"])


def run_bounded(t_env, cfg: RulesSettings, rule: RuleFile, workdir: Path,
                readings: Sequence[Mapping[str, Any]] = (),
                transactions: Sequence[Mapping[str, Any]] = (),
                database: str | None = None) -> tuple[list[dict], list[dict]]:
    """Run one rule on bounded inputs; returns ``(alerts, late records)`` (see run_bounded_many)."""
    run = BoundedRun(rule, workdir, readings, transactions, database or "")
    run_bounded_many(t_env, cfg, [run])
    return run.alerts, run.late


# ---------------------------------------------------------------------------- calibration
TABFORMER_CSV = PROJECT_ROOT / "data" / "tabformer" / "User0_credit_card_transactions.csv"


def calibrate_cards() -> dict[str, Any]:
    """Figures behind the card rules' thresholds: percentiles of TabFormer user 0's purchase
    amounts (USD) and the share below 500 USD. (The bearing rules are calibrated by
    ``bench/bearing_calibrate.py``, on :mod:`iotflink.testing.bearing`.)"""
    amounts = sorted(float(r["Amount"].lstrip("$")) for r in csv.DictReader(open(TABFORMER_CSV, encoding="utf-8"))
                     if float(r["Amount"].lstrip("$")) > 0)
    pct = {p: amounts[min(len(amounts) - 1, int(p / 100 * len(amounts)))] for p in (50, 90, 99, 99.5, 99.9)}
    share_500 = sum(a < 500 for a in amounts) / len(amounts)
    return {"purchases": len(amounts), "amount_percentiles_usd": pct, "share_below_500_usd": round(share_500, 4)}


# ---------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """The rule job's entry point (what ``rules deploy`` submits with ``flink run -py``): run the
    rule ``--rule ID`` (file stem under ``--rules-dir``, default ``IOTFLINK_RULES_DIR``) against
    Kafka. These are the job's own arguments on the cluster, not a user command (the
    calibration figures are ``iotflink rules calibrate``).

    Raises:
        SystemExit: status 2, no ``--rule``.
        JobError: the rule file is invalid or the job cannot be built.
    """
    parser = argparse.ArgumentParser(prog="jobs/rules.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rule", required=True, help="rule id (file stem under the rules directory)")
    parser.add_argument("--rules-dir", help="default: IOTFLINK_RULES_DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = RulesSettings.from_env()
    path = Path(args.rules_dir or cfg.rules_dir) / f"{args.rule}.sql"
    run_rule(cfg, parse_rule_file(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
