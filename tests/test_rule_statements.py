"""Statement splitting of the project's SQL files (``jobs.rules.statements``, on sqlparse),
checked against an independent reference: a character scanner that cuts at every ``;``
outside quotes and comments (the splitter the project used before sqlparse). sqlparse's
splitter has changed between releases (``BEGIN ... END`` blocks, for one), so every ``*.sql``
file of the repository is split both ways and the statements, their start lines and the
INSERTs of each statement set must agree. No Flink.
"""

from __future__ import annotations

import pytest

from iotflink.settings import PROJECT_ROOT
from jobs.rules import RuleSqlError, split_statements
from jobs.rules.statements import strip_comments

SQL_FILES = sorted(p for d in ("sql", "iotflink") for p in (PROJECT_ROOT / d).rglob("*.sql"))


def _skip_comment(text: str, i: int) -> int | None:
    """End of the comment that starts at ``i`` (None: no comment there)."""
    if text.startswith("--", i):
        j = text.find("\n", i)
        return len(text) if j < 0 else j + 1
    if text.startswith("/*", i):
        j = text.find("*/", i + 2)
        return len(text) if j < 0 else j + 2
    return None


def reference_split(text: str) -> list[tuple[int, str]]:
    """``(start line, text)`` of every piece between top-level ``;`` (outside ``'...'``,
    ``"..."``, backquoted names and comments; a doubled quote is an escaped one), past its
    leading comments and whitespace; pieces that are only comments are left out. A statement
    set's ``EXECUTE STATEMENT SET BEGIN INSERT ...``, its other INSERTs and its ``END`` are
    separate pieces here."""
    cuts, i, n = [], 0, len(text)
    while i < n:
        end = _skip_comment(text, i)
        if end is not None:
            i = end
        elif text[i] in "'\"`":
            j = i + 1
            while j < n and not (text[j] == text[i] and text[j + 1:j + 2] != text[i]):
                j += 2 if text[j] == text[i] else 1
            i = j + 1
        else:
            if text[i] == ";":
                cuts.append(i)
            i += 1
    out, start = [], 0
    for stop in [*cuts, n]:
        i = start
        while i < stop:
            end = _skip_comment(text, i)
            if end is not None:
                i = end
            elif text[i].isspace():
                i += 1
            else:
                break
        if i < stop:
            out.append((text.count("\n", 0, i) + 1, text[i:stop]))
        start = stop + 1
    return out


def flattened(text: str) -> list[tuple[int, str]]:
    """``split_statements`` in the reference's shape: a statement set as its INSERTs, the
    first one prefixed with the ``EXECUTE STATEMENT SET BEGIN`` it follows, then ``END``."""
    out = []
    for s in split_statements(text):
        if s.kind != "statement_set":
            out.append((s.line, s.text))
            continue
        out += [(i.line, i.text) for i in s.inserts]
        out.append((0, "END"))
    return out


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_project_sql_files_split_as_the_reference(path):
    text = path.read_text(encoding="utf-8")
    ref = reference_split(text)
    got = flattened(text)
    assert len(got) == len(ref), [t[:40] for _, t in ref]
    for (line, stmt), (ref_line, ref_text) in zip(got, ref, strict=True):
        if stmt == "END":
            assert " ".join(strip_comments(ref_text).split()).upper() == "END"
            continue
        # the first INSERT of a statement set shares its piece with EXECUTE STATEMENT SET BEGIN
        assert ref_text.endswith(stmt)
        assert line == ref_line + ref_text[: len(ref_text) - len(stmt)].count("\n")


def test_every_rule_file_has_one_statement_set_of_three_inserts():
    for path in SQL_FILES:
        sets = [s for s in split_statements(path.read_text(encoding="utf-8"), path) if s.kind == "statement_set"]
        if path.name != "ddl.sql":
            assert len(sets) == 1 and len(sets[0].inserts) == 3, path
            assert all(i.body().upper().startswith("INSERT INTO") for i in sets[0].inserts)


def test_case_end_inside_a_statement_set_and_the_older_begin_syntax():
    sql = ("BEGIN STATEMENT SET;\nINSERT INTO a SELECT CASE WHEN x THEN 1 ELSE 2 END FROM t;\n"
           "INSERT INTO b SELECT ';' FROM `u;v`;\nEND;\nSELECT 1")
    stmts = split_statements(sql)
    assert [(s.kind, s.line) for s in stmts] == [("statement_set", 1), ("sql", 5)]
    assert [(i.line, i.body()) for i in stmts[0].inserts] == [
        (2, "INSERT INTO a SELECT CASE WHEN x THEN 1 ELSE 2 END FROM t"), (3, "INSERT INTO b SELECT ';' FROM `u;v`")]
    assert flattened(sql) == [(2, stmts[0].inserts[0].text), (3, stmts[0].inserts[1].text), (0, "END"), (5, "SELECT 1")]


def test_a_statement_set_without_end_is_an_error_with_its_line():
    with pytest.raises(RuleSqlError, match=r"x\.sql:2:1: EXECUTE STATEMENT SET without END"):
        split_statements("SET 'a' = 'b';\nEXECUTE STATEMENT SET BEGIN\nINSERT INTO t SELECT 1;\n", "x.sql")
