"""A detection rule file (``sql/rules/<rule_id>.sql``): read it and check its header and shape.

A rule file holds, in order (see ``sql/rules/bearing_failure.sql``): a header comment with
``-- rule: <id>`` (equal to the file's stem), ``-- detects: ...`` and one ``-- param: name =
value unit. Source: ...`` line per threshold; ``SET 'pipeline.name' = 'rule:<id>';``; ``CREATE
TEMPORARY VIEW`` statements ending in a view of alert records; and one ``EXECUTE STATEMENT SET
BEGIN ... END;`` that inserts into ``alerts``, ``rules_late`` and ``rules_dlq``. Values marked
``/*param:name*/`` in the SQL must equal the header's; :func:`with_params` makes variants.
No Flink is involved here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jobs.rules.ddl import SINK_TABLES
from jobs.rules.statements import RuleSqlError, Statement, split_statements

#: Job name prefix of rule jobs on the cluster (``rule:<rule_id>``).
JOB_PREFIX = "rule:"

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
