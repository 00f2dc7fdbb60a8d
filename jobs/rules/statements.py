"""Split a Flink SQL script (a rule file, ``sql/ddl.sql``) into statements with their lines.

Tokenising and splitting are sqlparse's (https://github.com/andialbrecht/sqlparse: a
non-validating SQL parser; its splitter ends a statement at a top-level ``;`` outside quotes
and comments, and keeps a ``BEGIN ... END`` block whole); this module only records where each
statement starts and which kind it is. ``EXECUTE STATEMENT SET BEGIN ... END;`` (Flink SQL,
"EXECUTE Statements" in the Flink documentation) becomes one ``statement_set`` statement that
holds the INSERTs inside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlparse import lexer
from sqlparse import tokens as T
from sqlparse.engine import FilterStack

from iotflink.errors import JobError


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


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a file.

    Fields:
        text: the statement without its ``;`` and without the comments and blank lines before
            it (comments inside it stay), so that Flink's "line N, column M" counts from ``line``.
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
        return " ".join(strip_comments(self.text).split())


def strip_comments(sql: str) -> str:
    """``sql`` with every ``--`` and ``/* */`` comment (hints included) replaced by a space."""
    return "".join(" " if ttype in T.Comment else value for ttype, value in lexer.tokenize(sql))


def _significant(ttype) -> bool:
    return not (ttype in T.Whitespace or ttype in T.Comment)


def _pieces(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """The statements of ``text[start:end]`` as ``(begin, stop)`` offsets into ``text``:
    ``begin`` past the comments and whitespace before the statement, ``stop`` at its
    terminating ``;`` (the end of the range for a last statement without one). Pieces with
    nothing but comments and whitespace are left out."""
    end = len(text) if end is None else end
    out: list[tuple[int, int]] = []
    pos = start
    for stmt in FilterStack().run(text[start:end]):
        begin = stop = None
        at = pos
        for tok in stmt.flatten():
            if _significant(tok.ttype):
                if begin is None:
                    begin = at
                stop = at if (tok.ttype is T.Punctuation and tok.value == ";") else None
            at += len(tok.value)
        if begin is not None and begin != stop:
            out.append((begin, stop if stop is not None else at))
        pos = at
    return out


_SET_RE = re.compile(r"^SET\s+'([^']+)'\s*=\s*'((?:[^']|'')*)'$", re.IGNORECASE | re.DOTALL)
_SS_RE = re.compile(r"^(?:EXECUTE\s+STATEMENT\s+SET\s+BEGIN|BEGIN\s+STATEMENT\s+SET\s*;?)\b", re.IGNORECASE)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _statement_set(text: str, begin: int, stop: int, path: Path | str) -> Statement:
    """The ``statement_set`` statement of ``text[begin:stop]`` (``EXECUTE STATEMENT SET BEGIN
    ... END`` or ``BEGIN STATEMENT SET; ... END``) with its INSERTs.

    Raises:
        RuleSqlError: no ``END`` closes it.
    """
    line = _line(text, begin)
    toks = []  # (offset, upper-case value) of the significant tokens
    at = begin
    for ttype, value in lexer.tokenize(text[begin:stop]):
        if _significant(ttype):
            toks.append((at, value.upper()))
        at += len(value)
    if toks[-1][1] != "END":
        raise RuleSqlError(path, line, 1, "EXECUTE STATEMENT SET without END")
    # the INSERTs start after "SET BEGIN" (or after "SET" and its ";"); they end at END
    first = next(i for i, (_, v) in enumerate(toks) if v == "SET") + 1
    if toks[first][1] in ("BEGIN", ";"):
        first += 1
    inner_start = toks[first][0] if first < len(toks) - 1 else toks[-1][0]
    inserts = tuple(Statement(text[b:s], _line(text, b)) for b, s in _pieces(text, inner_start, toks[-1][0]))
    return Statement("", line, "statement_set", inserts)


def split_statements(text: str, path: Path | str = "<sql>") -> list[Statement]:
    """Split a SQL script into statements, keeping each one's start line.

    ``EXECUTE STATEMENT SET BEGIN ... END;`` becomes one ``statement_set`` statement whose
    ``inserts`` are the INSERTs inside it.

    Raises:
        RuleSqlError: a statement set without ``END``.
    """
    out: list[Statement] = []
    for begin, stop in _pieces(text):
        piece = text[begin:stop]
        body = " ".join(strip_comments(piece).split())
        if _SS_RE.match(body):
            out.append(_statement_set(text, begin, stop, path))
        elif _SET_RE.match(body):
            out.append(Statement(piece, _line(text, begin), "set"))
        else:
            out.append(Statement(piece, _line(text, begin)))
    return out


def set_pair(stmt: Statement) -> tuple[str, str]:
    """``(key, value)`` of a ``SET 'key' = 'value'`` statement.

    Raises:
        ValueError: ``stmt`` is not such a statement.
    """
    m = _SET_RE.match(stmt.body())
    if not m:
        raise ValueError(f"not a SET statement: {stmt.text!r}")
    return m.group(1), m.group(2).replace("''", "'")
