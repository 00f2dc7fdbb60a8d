"""Detection rules as Flink SQL ``MATCH_RECOGNIZE`` jobs: parse, build, explain and run them.

The package by concern: :mod:`~jobs.rules.statements` (split a SQL script into statements),
:mod:`~jobs.rules.rule_file` (a rule file's header and shape), :mod:`~jobs.rules.ddl` (the DDL
template and each table's connector options), :mod:`~jobs.rules.build` (build, EXPLAIN, the
environments), :mod:`~jobs.rules.job` (the job's entry point). This module is their public API
(what ``iotflink rules`` and the tests use). The bounded test runs are in
:mod:`iotflink.testing.rules_harness`.

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

Run one rule against Kafka (:func:`jobs.rules.job.main`; what ``rules deploy`` submits with
``flink run -pym jobs.rules``)::

    python -m jobs.rules --rule bearing_failure

Calibration figures quoted in the rule headers (the card amounts, and the bearing rules'
leave-one-bearing-out table, which ``bench/bearing_calibrate.py`` prints and confirms on Flink)::

    iotflink rules calibrate
"""

from jobs.rules.build import alert_id, build, create_env, explain, flink_message, local_env, validate_env
from jobs.rules.ddl import (
    DDL_PATH,
    SINK_TABLES,
    SOURCE_TABLES,
    TABLE_PLACEHOLDERS,
    TRANSACTION_REQUIRED_FIELDS,
    file_options,
    kafka_options,
    render_ddl,
    source_format_options,
)
from jobs.rules.job import run_rule
from jobs.rules.rule_file import JOB_PREFIX, RuleFile, discover_rules, parse_rule_file, parse_rule_text, with_params
from jobs.rules.statements import RuleSqlError, Statement, set_pair, split_statements

__all__ = [
    "DDL_PATH", "JOB_PREFIX", "SINK_TABLES", "SOURCE_TABLES", "TABLE_PLACEHOLDERS", "TRANSACTION_REQUIRED_FIELDS",
    "RuleFile", "RuleSqlError", "Statement", "alert_id", "build", "create_env", "discover_rules", "explain",
    "file_options", "flink_message", "kafka_options", "local_env", "parse_rule_file", "parse_rule_text",
    "render_ddl", "run_rule", "set_pair", "source_format_options", "split_statements", "validate_env", "with_params",
]
