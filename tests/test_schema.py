"""Unit tests of iotflink.schema: the Flink columns, check_kafka_value, and that the
documentation and the jobs' source columns agree with the schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge import contract
from iotflink import schema
from iotflink.errors import ValidationError

ROOT = Path(__file__).resolve().parents[1]
NOW_MS = 1_767_225_600_000


def good(**over) -> dict:
    value = {"device_id": "dev-1", "seq": 1, "ts": NOW_MS - 1000, "readings": {"temp_c": 21.5},
             "ingest_ms": NOW_MS, "drops": {"buffer": 0}}
    value.update(over)
    return {k: v for k, v in value.items() if v is not _DROP}


_DROP = object()


# ---------------------------------------------------------------- columns
def test_flink_columns_sql():
    assert schema.flink_columns_sql() == (
        "  device_id STRING,\n"
        "  seq BIGINT,\n"
        "  ts BIGINT,\n"
        "  readings MAP<STRING, DOUBLE>,\n"
        "  ingest_ms BIGINT,\n"
        "  drops MAP<STRING, BIGINT>")
    assert schema.flink_columns_sql(indent="").splitlines()[0] == "device_id STRING,"
    assert schema.flink_columns_sql(indent="\t\t").splitlines()[-1] == "\t\tdrops MAP<STRING, BIGINT>"


def test_required_fields():
    assert schema.REQUIRED_FIELDS == ("device_id", "seq", "ts", "readings")
    assert [f.name for f in schema.FIELDS] == ["device_id", "seq", "ts", "readings", "ingest_ms", "drops"]
    assert [f.name for f in schema.FIELDS if not f.required] == ["drops"]


def test_ranges_are_the_bigint_and_double_ranges():
    assert schema.INT64_MAX == 9_223_372_036_854_775_807 and schema.INT64_MIN == -schema.INT64_MAX - 1
    assert schema.SEQ_MAX == schema.DROPS_MAX == schema.INGEST_MS_MAX == schema.INT64_MAX
    assert schema.SEQ_MIN == schema.DROPS_MIN == 0
    import sys  # noqa: PLC0415

    assert schema.DOUBLE_MAX == sys.float_info.max


# ---------------------------------------------------------------- check_kafka_value
def test_good_values_pass():
    schema.check_kafka_value(good())
    schema.check_kafka_value(good(drops=_DROP))
    schema.check_kafka_value(good(drops={}))
    schema.check_kafka_value(good(seq=schema.INT64_MAX, drops={"b": schema.INT64_MAX}))
    schema.check_kafka_value(good(ts=schema.TS_FLOOR_MS))
    schema.check_kafka_value(good(ts=NOW_MS + schema.MAX_FUTURE_MS))
    schema.check_kafka_value(good(readings={"a": -0.0, "b": 5e-324, "c": 1.7976931348623157e308}))
    schema.check_kafka_value(good(device_id="x" * 64, readings={"a" * 64: 1.0}))


@pytest.mark.parametrize(
    "value, reason",
    [
        ([], "not_object"),
        (good(device_id=_DROP), "missing_field"),
        (good(ingest_ms=_DROP), "missing_field"),
        (good(extra=1), "unknown_field"),
        (good(device_id="a b"), "bad_type"),
        (good(device_id="x" * 65), "bad_type"),
        (good(device_id=1), "bad_type"),
        (good(seq=2**63), "out_of_range"),
        (good(seq=-1), "out_of_range"),
        (good(seq=True), "bad_type"),
        (good(seq=1.0), "bad_type"),
        (good(ingest_ms=-1), "out_of_range"),
        (good(ingest_ms=2**63), "out_of_range"),
        (good(ts=2**63), "out_of_range"),
        (good(ts="1"), "bad_type"),
        (good(ts=schema.TS_FLOOR_MS - 1), "ts_too_old"),
        (good(ts=NOW_MS + schema.MAX_FUTURE_MS + 1), "ts_in_future"),
        (good(readings={}), "bad_type"),
        (good(readings={f"s{i}": 1.0 for i in range(65)}), "bad_type"),
        (good(readings=[1.0]), "bad_type"),
        (good(readings={"Temp": 1.0}), "bad_type"),
        (good(readings={"a" * 65: 1.0}), "bad_type"),
        (good(readings={"t": 1}), "bad_type"),  # the bridge converts to float
        (good(readings={"t": float("nan")}), "non_finite"),
        (good(readings={"t": float("inf")}), "non_finite"),
        (good(drops=None), "bad_type"),
        (good(drops={"b": 2**63}), "out_of_range"),
        (good(drops={"b": -1}), "out_of_range"),
        (good(drops={"b": 1.0}), "bad_type"),
        (good(drops={"B": 1}), "bad_type"),
        (good(drops={f"d{i}": 1 for i in range(65)}), "bad_type"),
    ],
)
def test_bad_values_are_rejected(value, reason):
    with pytest.raises(ValidationError) as info:
        schema.check_kafka_value(value)
    assert info.value.reason == reason
    assert reason in schema.VALUE_REASONS


# ---------------------------------------------------------------- consistency
def _doc() -> str:
    return (ROOT / "docs" / "CONTRACT.md").read_text()


def test_every_field_with_its_type_is_in_the_contract_doc():
    doc = _doc()
    for f in schema.FIELDS:
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{f.name}` |")), None)
        assert row is not None, f"docs/CONTRACT.md has no table row for {f.name}"
        assert f"`{f.flink_type}`" in row, f"the row of {f.name} does not give {f.flink_type}"
        assert ("yes" if f.required else "no") in row.split("|")[3], f"required? of {f.name}"


def test_every_reason_and_limit_is_in_the_contract_doc():
    doc = _doc()
    for reason in contract.REASONS + ("internal_error", "record_too_large"):  # + the bridge's own
        assert f"`{reason}`" in doc, reason
    order = [doc.index(f"| `{r}` |") for r in contract.REASONS]
    assert order == sorted(order), "docs/CONTRACT.md lists the reasons in another order"
    for text in (schema.DEVICE_ID_PATTERN, schema.NAME_PATTERN, "2^63-1", "65,536",
                 "2020-01-01T00:00:00Z", "60 s", str(schema.MAX_READINGS)):
        assert text in doc, text


def test_readings_table_of_the_rules_ddl_agrees_with_the_schema():
    # sql/ddl.sql either takes the columns from the schema (a placeholder the rules filled
    # with flink_columns_sql) or writes them out; written-out columns must have the schema's types
    ddl = (ROOT / "sql" / "ddl.sql").read_text()
    cols = {}
    for table in re.finditer(r"CREATE TABLE (readings\w*) \((.*?)\n\) WITH", ddl, re.S):
        for line in table.group(2).splitlines():
            m = re.match(r"\s*(\w+)\s+(STRING|BIGINT|DOUBLE|MAP<[^>]+>)", line.split("--")[0])
            if m and m.group(1) in schema.FIELDS_BY_NAME:
                cols[m.group(1)] = m.group(2)
    assert cols or "${readings_columns}" in ddl, "sql/ddl.sql declares no readings columns"
    for name, typ in cols.items():
        assert schema.FIELDS_BY_NAME[name].flink_type == typ, f"sql/ddl.sql readings {name} {typ}"


def test_window_job_source_columns_agree_with_the_schema():
    from jobs import sensor_windows  # noqa: PLC0415

    seen = set()
    for line in sensor_windows.SOURCE_COLUMNS.strip().split(",\n"):
        name, typ = line.strip().split(" ", 1)
        if name in schema.FIELDS_BY_NAME:
            assert schema.FIELDS_BY_NAME[name].flink_type == typ, f"SOURCE_COLUMNS {name} {typ}"
            seen.add(name)
    assert set(schema.REQUIRED_FIELDS) <= seen


def test_contract_doc_kafka_section_agrees_with_the_schema():
    # docs/CONTRACT.md writes the value's keys and the Flink source columns out for a reader:
    # both must be the schema's (iotflink.schema is the source; this test fails on a difference)
    kafka = _doc().split("## Kafka", 1)[1]
    keys = re.search(r"value = JSON\s+`(\{.*?\})`", kafka, re.S).group(1)
    assert re.findall(r'"(\w+)"', keys) == [f.name for f in schema.FIELDS]
    cols = re.search(r"flink_columns_sql\(\)`\):\s+`(.*?)`\.", kafka, re.S).group(1)
    assert " ".join(cols.split()) == " ".join(schema.flink_columns_sql(indent="").split())


def test_bridge_writes_the_schemas_fields_in_column_order():
    import json  # noqa: PLC0415

    value = good()
    encoded = json.loads(contract.encode_reading(value))
    assert list(encoded) == [f.name for f in schema.FIELDS]
    assert encoded == value
    schema.check_kafka_value(encoded)


def test_duplicates_sink_carries_the_schemas_reading_columns():
    from jobs import sensor_windows  # noqa: PLC0415

    lines = [line.strip() for line in sensor_windows.DUPLICATE_COLUMNS.strip().split(",\n")]
    assert lines[-1] == "copy_no BIGINT"
    for line in lines[:-1]:
        name, typ = line.split(" ", 1)
        assert schema.FIELDS_BY_NAME[name].flink_type == typ, line
