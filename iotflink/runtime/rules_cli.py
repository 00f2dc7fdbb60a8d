"""``rules`` commands: validate, deploy, list and stop the SQL detection rules.

The ``iotflink rules ...`` subcommands (:func:`add_parser`, :func:`run`; ``python -m
iotflink.runtime.rules_cli ...`` is the same):

- ``validate``: parse every ``sql/rules/*.sql`` (header: rule id, detects, params with
  their source) and plan it against the DDL (``sql/ddl.sql`` rendered with the Kafka
  settings) with EXPLAIN, on a local TableEnvironment (no cluster, no broker needed). A
  mistake prints ``path:line:column: message`` and the exit status is 1.
- ``deploy [RULE ...]``: validate, then submit each rule that is not already running as its
  own job ``rule:<id>`` (``flink run -d -pym jobs.rules --rule <id>``). Running rules are
  left alone, so adding a rule = dropping a ``.sql`` file into ``sql/rules/`` and deploying.
- ``list``: every rule file and the state and job id of its job (Flink REST
  ``/jobs/overview``).
- ``stop RULE [--savepoint DIR]``: cancel the rule's running job, or stop it with a
  savepoint.
- ``alerts [--ground-truth F] [--wait-s S]``: summarise the alerts topic by rule; with the
  transaction replayer's ground truth, poll until every injected scenario's alert id is
  there (exit 1 if some are still missing after S seconds). For ``make demo``.
- ``render-ddl RULE``: print the DDL, filled for RULE's Kafka wiring and the cluster, for the
  stock SQL client (below).

The same rule files run unchanged in the stock Flink SQL client; see :data:`SQL_CLIENT_HOWTO`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from iotflink.errors import IotFlinkError, JobError
from iotflink.poll import PollTimeout, poll
from iotflink.settings import RulesSettings, StackSettings

log = logging.getLogger(__name__)

#: Job states in which a rule counts as deployed (deploy leaves it alone).
ACTIVE_STATES = {"INITIALIZING", "CREATED", "RUNNING", "RESTARTING", "RECONCILING", "FAILING", "CANCELLING"}

#: README text: running the rule files in the stock SQL client against the local stack.
SQL_CLIENT_HOWTO = """\
Run a rule in the stock Flink SQL client (the same file `rules deploy` submits):

    mkdir -p .run/sql
    .venv/bin/iotflink rules render-ddl bearing_failure > .run/sql/init-bearing_failure.sql
    FLINK_CONF_DIR=.run/flink/conf .venv/lib/python3.11/site-packages/pyflink/bin/sql-client.sh \\
        -i .run/sql/init-bearing_failure.sql -f sql/rules/bearing_failure.sql

The stock client needs flink-sql-gateway-2.2.1.jar (Maven Central,
org.apache.flink:flink-sql-gateway:2.2.1) in $FLINK_HOME/opt, which the apache-flink wheel
does not ship; setup puts it there. Without it sql-client.sh fails with
NoClassDefFoundError: org/apache/flink/table/gateway/service/context/DefaultContext.

The init file (-i) holds the DDL of sql/ddl.sql with the Kafka bootstrap servers, topics and
group ids filled in from the IOTFLINK_* settings, plus the cluster's REST address; the rule
file (-f) is used as it is: it sets the job name `rule:<id>` and submits its
`EXECUTE STATEMENT SET` (alerts + late rows) as one job. `rules list` shows it afterwards.
"""


def _stack_ctl():
    from iotflink.runtime.flinkctl import FlinkCtl  # noqa: PLC0415 - imports the stack module

    return FlinkCtl(StackSettings.from_env())


def validate(cfg: RulesSettings, rules_dir: Path | None = None, out=sys.stdout) -> int:
    """Parse and EXPLAIN every rule file; prints one line per rule; returns the error count."""
    from jobs import rules as R  # noqa: PLC0415 - imports pyflink lazily

    directory = Path(rules_dir or cfg.rules_dir)
    paths = sorted(directory.glob("*.sql"))
    if not paths:
        print(f"{directory}: no rule files", file=out)
        return 1
    t_env = R.validate_env()
    errors = 0
    for i, path in enumerate(paths):
        try:
            rule = R.parse_rule_file(path)
            opts = R.kafka_options(cfg, rule.rule_id)
            R.explain(t_env, cfg, rule, {k: opts[k] for k in R.SOURCE_TABLES},
                      {k: opts[k] for k in R.SINK_TABLES}, database=f"validate_{i}")
        except R.RuleSqlError as exc:
            errors += 1
            print(f"{exc}", file=out)
            continue
        print(f"ok    {rule.rule_id:<24} {path}", file=out)
    return errors


def rule_jobs(ctl) -> dict[str, list[dict]]:
    """Rule id -> jobs named ``rule:<id>`` on the cluster (newest first)."""
    from jobs.rules import JOB_PREFIX  # noqa: PLC0415

    out: dict[str, list[dict]] = {}
    for job in sorted(ctl.list_jobs(), key=lambda j: -j.get("start-time", 0)):
        name = job.get("name", "")
        if name.startswith(JOB_PREFIX):
            out.setdefault(name[len(JOB_PREFIX):], []).append(job)
    return out


def deploy(cfg: RulesSettings, only: Sequence[str] = (), out=sys.stdout) -> int:
    """Submit every rule (or ``only`` these) whose job is not active; returns the error count.

    Raises:
        JobError: the cluster is unreachable.
    """
    from jobs.rules import discover_rules  # noqa: PLC0415

    if validate(cfg, out=out):
        print("deploy aborted: fix the rules above first", file=out)
        return 1
    rules = discover_rules(cfg.rules_dir)
    unknown = set(only) - {r.rule_id for r in rules}
    if unknown:
        raise JobError(f"no rule file for {sorted(unknown)} in {cfg.rules_dir}")
    ctl = _stack_ctl()
    jobs = rule_jobs(ctl)
    failed = 0
    for rule in rules:
        if only and rule.rule_id not in only:
            continue
        active = [j for j in jobs.get(rule.rule_id, []) if j["state"] in ACTIVE_STATES]
        if active:
            print(f"keep  {rule.rule_id:<24} {active[0]['state']} {active[0]['jid']}", file=out)
            continue
        try:
            jid = ctl.submit("rules", ["--rule", rule.rule_id])
        except JobError as exc:
            failed += 1
            print(f"FAIL  {rule.rule_id:<24} {exc}", file=out)
            continue
        print(f"start {rule.rule_id:<24} {jid}", file=out)
    return failed


def list_rules(cfg: RulesSettings, out=sys.stdout) -> int:
    """Print each rule file with its job's state (or ``not deployed``), and unknown rule jobs."""
    from jobs.rules import discover_rules  # noqa: PLC0415

    jobs = rule_jobs(_stack_ctl())
    ids = [r.rule_id for r in discover_rules(cfg.rules_dir)]
    for rid in ids + sorted(set(jobs) - set(ids)):
        job = jobs.get(rid, [None])[0]
        state = f"{job['state']:<10} {job['jid']}" if job else "not deployed"
        print(f"{rid:<24} {state}{'' if rid in ids else '  (no rule file)'}", file=out)
    return 0


def stop(cfg: RulesSettings, rule_id: str, savepoint_dir: str | None = None, out=sys.stdout) -> int:
    """Cancel (or stop with a savepoint) the active job of ``rule_id``.

    Raises:
        JobError: no active job of that rule, or the REST call failed.
    """
    ctl = _stack_ctl()
    active = [j for j in rule_jobs(ctl).get(rule_id, []) if j["state"] in ACTIVE_STATES]
    if not active:
        raise JobError(f"rule {rule_id!r} has no running job")
    for job in active:
        if savepoint_dir:
            where = ctl.stop_with_savepoint(job["jid"], target_dir=savepoint_dir)
            print(f"stopped {rule_id} ({job['jid']}) with savepoint {where}", file=out)
        else:
            ctl.cancel(job["jid"])
            ctl.wait_state(job["jid"], {"CANCELED", "FINISHED"}, timeout_s=60)
            print(f"cancelled {rule_id} ({job['jid']})", file=out)
    return 0


def render_ddl_for_client(cfg: RulesSettings, rule_id: str) -> str:
    """The SQL client's init file for ``rule_id``: cluster address + the rendered DDL."""
    from jobs.rules import kafka_options, render_ddl  # noqa: PLC0415

    stack = StackSettings.from_env()
    head = (f"-- rendered by `rules render-ddl {rule_id}` from sql/ddl.sql; do not edit\n"
            "SET 'execution.target' = 'remote';\n"
            f"SET 'rest.address' = '{stack.host}';\n"
            f"SET 'rest.port' = '{stack.flink_rest_port}';\n"
            f"SET 'parallelism.default' = '{cfg.parallelism}';\n"
            "SET 'table.local-time-zone' = 'UTC';\n")
    return head + render_ddl(cfg, kafka_options(cfg, rule_id))


def summarize_alerts(alerts: Sequence[dict], truth: dict | None) -> tuple[list[str], list[dict]]:
    """Report lines for alert records (dicts of the alerts topic's values), and the injected
    scenarios of ``truth`` (the replayer's ground truth) that no alert matches yet."""
    by_rule: dict[str, set[str]] = {}
    for a in alerts:
        by_rule.setdefault(a["rule_id"], set()).add(a["alert_id"])
    lines = [f"{len(alerts)} alert records, {sum(map(len, by_rule.values()))} distinct ids"]
    lines += [f"  {rule:<24} {len(ids)}" for rule, ids in sorted(by_rule.items())]
    missing: list[dict] = []
    if truth is not None:
        found = set().union(*by_rule.values()) if by_rule else set()
        scenarios = truth.get("scenarios", [])
        missing = [sc for sc in scenarios if sc["expected_alert_id"] not in found]
        expected = {sc["expected_alert_id"] for sc in scenarios}
        lines.append(f"injected scenarios found: {len(scenarios) - len(missing)}/{len(scenarios)}")
        lines += [f"  MISSING {sc['scenario_id']} ({sc['rule_id']}, card {sc['card_id']})" for sc in missing]
        others = {rule: len(ids - expected) for rule, ids in by_rule.items() if ids - expected}
        if others:
            lines.append("other alerts (natural data; card_velocity: spend bursts of TabFormer user 0): "
                         + ", ".join(f"{r} {n}" for r, n in sorted(others.items())))
    return lines, missing


def show_alerts(cfg: RulesSettings, truth_path: Path | None, wait_s: float, sample: int = 3,
                out=sys.stdout, read=None) -> int:
    """Print the alerts topic by rule; with a ground truth, poll until every injected
    scenario has its alert or ``wait_s`` passed. Returns 1 if scenarios are still missing."""
    if read is None:
        from iotflink.kafka_io import read_topic  # noqa: PLC0415

        def read():
            return [r["value"] for r in read_topic(cfg.kafka_bootstrap, cfg.topics.alerts) if r["value"]]
    truth = json.loads(truth_path.read_text(encoding="utf-8")) if truth_path else None
    def summary() -> tuple[list[dict], list[str], list[dict]]:
        alerts = read()
        return (alerts, *summarize_alerts(alerts, truth))

    try:  # polling the topic until every scenario has its alert
        alerts, lines, missing = poll(summary, wait_s, interval_s=2.0, what="an alert per scenario",
                                      until=lambda answer: not answer[2], retry_on=())
    except PollTimeout as exc:
        alerts, lines, missing = exc.last
    for line in lines:
        print(line, file=out)
    for a in alerts[:sample]:
        print("  " + json.dumps({k: a[k] for k in ("rule_id", "alert_key", "detection_ms", "events")}), file=out)
    return 1 if missing else 0


def add_parser(cli_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``iotflink rules`` (its subcommands, :func:`run`) on the CLI's subparsers."""
    p = cli_sub.add_parser("rules", help="validate, deploy, list or stop detection rules",
                           description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="action", required=True)
    v = sub.add_parser("validate", help="parse and EXPLAIN every rule file")
    v.add_argument("--rules-dir", type=Path, help="default: IOTFLINK_RULES_DIR (sql/rules)")
    d = sub.add_parser("deploy", help="submit rules that are not running")
    d.add_argument("rule", nargs="*", help="only these rule ids (default: all)")
    sub.add_parser("list", help="rules and their jobs")
    s = sub.add_parser("stop", help="stop a rule's job")
    s.add_argument("rule")
    s.add_argument("--savepoint", metavar="DIR", help="stop with a savepoint into DIR instead of cancelling")
    r = sub.add_parser("render-ddl", help="print the SQL client init file for a rule")
    r.add_argument("rule")
    sub.add_parser("howto", help="print how to run the rules in the stock SQL client")
    a = sub.add_parser("alerts", help="summarise the alerts topic (and check the replay's ground truth)")
    a.add_argument("--ground-truth", type=Path, help="the transaction replayer's ground truth JSON")
    a.add_argument("--wait-s", type=float, default=0.0, help="poll until every injected scenario is found")
    sub.add_parser("calibrate", help="print the figures behind the card and bearing rules' thresholds")
    p.set_defaults(func=run)
    return p


def calibrate(out: TextIO | None = None) -> int:
    """``rules calibrate``: the card rules' figures (:func:`iotflink.testing.calibration.calibrate_cards`, JSON) and
    the bearing rules' calibration table (:mod:`iotflink.testing.bearing`) on ``out`` (default stdout);
    exit status 0."""
    out = out or sys.stdout
    from iotflink.testing import bearing, calibration  # noqa: PLC0415

    print(json.dumps({"cards": calibration.calibrate_cards()}, indent=2), file=out)
    runs = bearing.load_runs(RulesSettings.from_env().out_of_orderness_ms)
    print(bearing.table(bearing.calibrate(runs), runs), file=out)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a ``rules`` command; returns the exit status (errors are printed, not raised)."""
    try:
        cfg = RulesSettings.from_env()
        if args.action == "validate":
            cfg = RulesSettings(**{**cfg.__dict__, "rules_dir": args.rules_dir or cfg.rules_dir})
            return 1 if validate(cfg) else 0
        if args.action == "deploy":
            return 1 if deploy(cfg, args.rule) else 0
        if args.action == "list":
            return list_rules(cfg)
        if args.action == "stop":
            return stop(cfg, args.rule, args.savepoint)
        if args.action == "alerts":
            return show_alerts(cfg, args.ground_truth, args.wait_s)
        if args.action == "render-ddl":
            print(render_ddl_for_client(cfg, args.rule))
            return 0
        if args.action == "calibrate":
            return calibrate()
        print(SQL_CLIENT_HOWTO)
        return 0
    except IotFlinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m iotflink.runtime.rules_cli ...``: the same as ``iotflink rules ...``."""
    from iotflink import cli  # noqa: PLC0415 - the CLI imports this module

    return cli.main(["rules", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
