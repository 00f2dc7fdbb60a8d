"""Bounded runs of detection rules on a local MiniCluster: the harness the rule tests and the
bearing calibration (``bench/bearing_calibrate.py``) use. Inputs are JSON-lines files written in
arrival order, read with the rule job's own DDL (:func:`jobs.rules.build` with
:func:`jobs.rules.file_options`), so the tests run exactly the statements the cluster runs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotflink.errors import JobError
from iotflink.settings import RulesSettings
from jobs import common
from jobs.rules import SOURCE_TABLES, RuleFile, build, file_options, flink_message


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
        common.execute(t_env, stmt_set).wait()
    except Exception as exc:  # py4j error types vary
        raise JobError(f"bounded rule job failed: {flink_message(exc)}") from exc

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
