"""``rules validate / deploy / list / stop / render-ddl`` (iotflink/runtime/rules_cli.py).

validate runs the real planner (local TableEnvironment, EXPLAIN against the Kafka DDL);
deploy / list / stop run against a fake of the cluster's REST client, so they need no stack.
"""

from __future__ import annotations

import io
import shutil

import pytest

from iotflink.errors import JobError
from iotflink.runtime import rules_cli
from iotflink.settings import PROJECT_ROOT, RulesSettings

RULES_DIR = PROJECT_ROOT / "sql" / "rules"


def _cfg(rules_dir=RULES_DIR) -> RulesSettings:
    return RulesSettings(rules_dir=rules_dir)


@pytest.mark.minicluster
def test_validate_reports_file_line_and_column(tmp_path):
    for name in ("card_failed_burst", "card_address_change", "card_velocity"):
        shutil.copy(RULES_DIR / f"{name}.sql", tmp_path)
    bad_col = tmp_path / "card_failed_burst.sql"
    lines = bad_col.read_text().splitlines()
    no = next(i for i, line in enumerate(lines) if "F3.errors AS f3_errors" in line)
    lines[no] = lines[no].replace("F3.errors AS f3_errors", "F3.errorz AS f3_errors")
    bad_col.write_text("\n".join(lines) + "\n")
    no_source = tmp_path / "card_velocity.sql"
    text = no_source.read_text()
    cut = "Source: the velocity example this project specifies ($1,200 against a $240 average, 5x)."
    assert cut in text
    no_source.write_text(text.replace(cut, "(5x)."))
    out = io.StringIO()
    errors = rules_cli.validate(_cfg(tmp_path), out=out)
    text = out.getvalue()
    assert errors == 2, text
    col = lines[no].index("errorz") + 1
    assert f"{bad_col}:{no + 1}:" in text and f"line {no + 1}, column {col}" in text
    assert "Column 'errorz' not found" in text
    assert f"{no_source}:" in text and "gives no 'Source:'" in text
    assert "ok    card_address_change" in text
    # the shipped rules are all valid
    out = io.StringIO()
    assert rules_cli.validate(_cfg(), out=out) == 0, out.getvalue()
    assert out.getvalue().count("ok    ") == 6


def test_render_ddl_for_client_fills_every_placeholder():
    text = rules_cli.render_ddl_for_client(_cfg(), "bearing_failure")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    assert "${" not in code and "$" not in code
    for want in ("'topic' = 'sensor-readings'", "'topic' = 'transactions'", "'topic' = 'alerts'",
                 "'topic' = 'rules-late'", "'properties.group.id' = 'iotflink-rules-bearing_failure'",
                 "SET 'rest.port' = '8081'", "INTERVAL '0 00:00:10.000' DAY TO SECOND(3)"):
        assert want in text, want
    assert "sql-client.sh" in rules_cli.SQL_CLIENT_HOWTO


class FakeCtl:
    """The parts of iotflink.runtime.flinkctl.FlinkCtl that rules_cli uses."""

    def __init__(self, jobs):
        self.jobs = jobs
        self.submitted, self.cancelled = [], []

    def list_jobs(self):
        return self.jobs

    def submit(self, name, args):
        assert name == "rules" and args[0] == "--rule"
        self.submitted.append(args[1])
        return f"jid-{args[1]}"

    def cancel(self, jid):
        self.cancelled.append(jid)

    def wait_state(self, jid, states, timeout_s=0):
        return "CANCELED"


def test_deploy_leaves_running_rules_alone(monkeypatch):
    ctl = FakeCtl([{"jid": "j1", "name": "rule:bearing_failure", "state": "RUNNING", "start-time": 2},
                   {"jid": "j0", "name": "rule:card_velocity", "state": "CANCELED", "start-time": 1},
                   {"jid": "w", "name": "sensor_windows", "state": "RUNNING", "start-time": 1}])
    monkeypatch.setattr(rules_cli, "_stack_ctl", lambda: ctl)
    monkeypatch.setattr(rules_cli, "validate", lambda cfg, rules_dir=None, out=None: 0)
    out = io.StringIO()
    assert rules_cli.deploy(_cfg(), out=out) == 0
    assert sorted(ctl.submitted) == ["bearing_impact_rise", "bearing_vibration_rise", "card_address_change",
                                     "card_failed_burst", "card_velocity"]
    assert "keep  bearing_failure          RUNNING j1" in out.getvalue()
    out = io.StringIO()
    rules_cli.list_rules(_cfg(), out=out)
    assert "bearing_failure          RUNNING    j1" in out.getvalue()
    assert "card_velocity            CANCELED   j0" in out.getvalue()
    assert "card_failed_burst        not deployed" in out.getvalue()
    assert rules_cli.stop(_cfg(), "bearing_failure", out=io.StringIO()) == 0
    assert ctl.cancelled == ["j1"]
    with pytest.raises(JobError, match="no running job"):
        rules_cli.stop(_cfg(), "card_velocity", out=io.StringIO())
    with pytest.raises(JobError, match="no rule file"):
        rules_cli.deploy(_cfg(), ["nope"], out=io.StringIO())


def test_alerts_summary_against_ground_truth(tmp_path):
    truth = {"scenarios": [{"scenario_id": "failed_burst-0", "rule_id": "card_failed_burst", "card_id": "0-1",
                            "expected_alert_id": "a1"},
                           {"scenario_id": "velocity-0", "rule_id": "card_velocity", "card_id": "0-2",
                            "expected_alert_id": "a2"}]}
    path = tmp_path / "gt.json"
    path.write_text(__import__("json").dumps(truth))
    alert = {"alert_id": "a1", "rule_id": "card_failed_burst", "alert_key": "0-1", "detection_ms": 1, "events": []}
    natural = dict(alert, alert_id="n1", rule_id="card_velocity")
    out = io.StringIO()
    assert rules_cli.show_alerts(_cfg(), path, 0, out=out, read=lambda: [alert, alert, natural]) == 1
    text = out.getvalue()
    assert "3 alert records, 2 distinct ids" in text and "injected scenarios found: 1/2" in text
    assert "MISSING velocity-0" in text and "card_velocity 1" in text
    second = dict(alert, alert_id="a2", rule_id="card_velocity")
    assert rules_cli.show_alerts(_cfg(), path, 0, out=io.StringIO(), read=lambda: [alert, second]) == 0
