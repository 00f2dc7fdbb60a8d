"""Rules on the real stack: ``rules deploy`` to a Flink standalone cluster, the TabFormer
replay into Kafka, and the injected scenarios' alerts read back from the ``alerts`` topic.

The stack the integration modules share (Kafka KRaft + Flink JobManager/TaskManager on free
loopback ports, tests/conftest.py; this module's topics are its own). Two rules are deployed (one slot each): ``card_failed_burst`` and
``card_address_change``; a second deploy leaves them running. The replayer sends the whole
stream; the test polls the alerts topic until the alert id of every injected scenario of
those two rules is there, and checks that no other alert of those rules exists.
"""

from __future__ import annotations

import io

import pytest

from iotflink import kafka_io
from iotflink.poll import wait_for
from iotflink.runtime import rules_cli
from iotflink.runtime.stack import Stack
from iotflink.settings import RulesSettings, StackSettings, TransactionSettings
from iotflink.simulation.transactions import build_stream, ground_truth, publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Services of the module's ``stack`` fixture (tests/conftest.py).
STACK_SERVICES = ('kafka', 'flink-jobmanager', 'flink-taskmanager')
#: the stack shared with the other modules that opt in (tests/conftest.py), topics of its own
SHARED_STACK = True

RULES = ("card_failed_burst", "card_address_change")


def test_deploy_replay_and_alerts(stack, monkeypatch):
    for key, value in stack.s.to_env().items():  # every from_env() below sees this stack
        monkeypatch.setenv(key, value)
    # a transactions topic of one partition: with several, a partition that goes idle and
    # active again while the rules run can put rows behind the watermark (then late, and
    # their alert never comes), depending on timing
    monkeypatch.setenv("IOTFLINK_TOPIC_TRANSACTIONS", "transactions-1p")
    Stack(StackSettings.from_env()).create_topics(partitions={"transactions-1p": 1})
    cfg = RulesSettings.from_env()
    assert cfg.topics.transactions == "transactions-1p"
    kafka_io.create_topics(cfg.kafka_bootstrap, {cfg.late_topic: 1})

    out = io.StringIO()
    assert rules_cli.deploy(cfg, RULES, out=out) == 0, out.getvalue()
    assert sum(line.startswith("start ") for line in out.getvalue().splitlines()) == 2
    ctl = rules_cli._stack_ctl()
    jobs = rules_cli.rule_jobs(ctl)
    for rule in RULES:
        ctl.wait_running(jobs[rule][0]["jid"])
    out = io.StringIO()
    assert rules_cli.deploy(cfg, RULES, out=out) == 0
    assert sum(line.startswith("keep  ") for line in out.getvalue().splitlines()) == 2

    tcfg = TransactionSettings.from_env()
    stream, scenarios = build_stream(tcfg)
    assert publish(tcfg, stream) == len(stream)
    truth = ground_truth(tcfg, stream, scenarios)
    want = {sc["expected_alert_id"] for sc in truth["scenarios"] if sc["rule_id"] in RULES}

    def alert_ids() -> set[str]:
        return {r["value"]["alert_id"] for r in kafka_io.read_topic(cfg.kafka_bootstrap, cfg.topics.alerts)}

    wait_for(lambda: want <= alert_ids(), 180, interval_s=0.5, what="the injected scenarios' alerts")
    assert alert_ids() == want  # nothing else from these two rules
    for rule in RULES:
        assert rules_cli.stop(cfg, rule, out=io.StringIO()) == 0
