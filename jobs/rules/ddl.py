"""The tables of a rule job: the DDL template ``sql/ddl.sql`` filled in, and the connector
options of each table (Kafka for the cluster, bounded JSON-lines files for tests)."""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path

from iotflink import schema
from iotflink.settings import PROJECT_ROOT, RulesSettings
from jobs.common import json_dlq_options, kafka_coordinates_sql, options_sql, sql_interval
from jobs.rules.statements import RuleSqlError

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
