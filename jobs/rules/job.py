"""The rule job's entry point: run one rule file against Kafka on the cluster (what ``iotflink
rules deploy`` submits, ``flink run -pym jobs.rules --rule <id>``)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from iotflink.settings import RulesSettings
from jobs import common
from jobs.rules.build import build, create_env
from jobs.rules.ddl import SINK_TABLES, SOURCE_TABLES, kafka_options
from jobs.rules.rule_file import RuleFile, parse_rule_file

log = logging.getLogger(__name__)


def run_rule(cfg: RulesSettings, rule: RuleFile):
    """Build ``rule`` against Kafka and submit it; returns the TableResult (job client inside)."""
    t_env = create_env(cfg, rule)
    opts = kafka_options(cfg, rule.rule_id)
    stmt_set = build(t_env, cfg, rule,
                     {k: opts[k] for k in SOURCE_TABLES}, {k: opts[k] for k in SINK_TABLES})
    result = common.execute(t_env, stmt_set)
    client = result.get_job_client()
    if client is not None:
        log.info("rule %s submitted as job %s", rule.rule_id, client.get_job_id())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """The rule job's entry point (what ``rules deploy`` submits: ``flink run -pym jobs.rules``): run the
    rule ``--rule ID`` (file stem under ``--rules-dir``, default ``IOTFLINK_RULES_DIR``) against
    Kafka. These are the job's own arguments on the cluster, not a user command (the
    calibration figures are ``iotflink rules calibrate``).

    Raises:
        SystemExit: status 2, no ``--rule``.
        JobError: the rule file is invalid or the job cannot be built.
    """
    parser = argparse.ArgumentParser(prog="python -m jobs.rules", description=__doc__.splitlines()[0])
    parser.add_argument("--rule", required=True, help="rule id (file stem under the rules directory)")
    parser.add_argument("--rules-dir", help="default: IOTFLINK_RULES_DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = RulesSettings.from_env()
    path = Path(args.rules_dir or cfg.rules_dir) / f"{args.rule}.sql"
    run_rule(cfg, parse_rule_file(path))
    return 0
