-- DDL of the tables the detection rules (sql/rules/*.sql) read and write.
--
-- This file is a template. `jobs/rules/ddl.py` (render_ddl) fills the placeholders listed below from
-- iotflink.settings.RulesSettings; no host, topic or group id is written here. Render it with
--     iotflink rules render-ddl RULE_ID > .run/sql/rules-init.sql
-- and hand it to the stock SQL client as its init file (-i); see iotflink/runtime/rules_cli.py.
--
-- Placeholders (written $${name} in comments so they survive rendering):
--   $${readings_columns}     the physical columns of a reading (the readings topic's value), generated from the
--                           one definition of a reading (iotflink/schema.py)
--   $${readings_coordinates} / $${transactions_coordinates}  kafka_partition and kafka_offset:
--                           the record's Kafka metadata columns, or NULL for file sources
--   $${dlq_options}          WITH options of `rules_dlq` (Kafka, the rules' dead-letter topic)
--   $${idleness_ms}          ms a Kafka partition may stay silent before it stops holding the
--                           watermark back (IOTFLINK_RULES_IDLENESS_MS)
--   $${out_of_orderness}     bounded out-of-orderness of every watermark below, an interval
--                           literal of IOTFLINK_RULES_OUT_OF_ORDERNESS_MS ms
--   $${readings_options}     WITH options of `readings` (Kafka, the readings topic, JSON)
--   $${transactions_options} WITH options of `transactions` (Kafka, the transactions topic, JSON)
--   $${alerts_options}       WITH options of `alerts` (Kafka, the alerts topic, JSON, key alert_id)
--   $${late_options}         WITH options of `rules_late` (Kafka, the rules' late topic, JSON)
--
-- Unreadable records: both sources use the json-dlq format (jvm/): a record the JSON format
-- cannot read (an integer beyond BIGINT, text that is not JSON, a missing field, a non-finite
-- number) is not an exception that fails the job but a row with dlq_reason, dlq_detail and
-- dlq_raw set and every data column NULL. The views `readings` and `transactions` pass only the
-- readable rows; the views dlq_readings / dlq_transactions hold the others, and every rule job
-- writes the one of its source into rules_dlq, so no record is dropped without a trace.
--
-- Late data: MATCH_RECOGNIZE and OVER aggregations drop a row whose event time is not after
-- the operator's current watermark. The views late_readings / late_transactions select
-- exactly those rows with CURRENT_WATERMARK, and every rule job writes them into rules_late
-- next to its alerts (same job, same source scan, so the filter's watermark is never behind
-- the watermark of the rule's operators: no row is dropped without being reported).

SET 'table.exec.source.idle-timeout' = '${idleness_ms} ms';

-- One Kafka record per sensor message (docs/CONTRACT.md): a FEMTO node sends vibration
-- (h_rms_g, v_rms_g, peak_abs_g in g) and temperature (temp_c in degrees C) as separate
-- messages, both keyed by device_id, so both land in one partition and one event-time order.
-- Columns (docs/CONTRACT.md): device_id (node id, Kafka key), seq (per-device sequence number),
-- ts (event time, epoch ms, device clock), readings (sensor name -> value, unit in the name
-- suffix), ingest_ms (bridge clock, epoch ms), drops (firmware drop counters).
CREATE TABLE readings_source (
${readings_columns},
  dlq_reason STRING,                    -- NULL, or why the record could not be read
  dlq_detail STRING,
  dlq_raw    BYTES,                     -- the unreadable record's bytes
${readings_coordinates},
  event_time AS TO_TIMESTAMP_LTZ(COALESCE(ts, 0), 3),  -- a dead letter (no ts) never moves the watermark
  WATERMARK FOR event_time AS event_time - ${out_of_orderness}
) WITH (
  ${readings_options}
);

CREATE TEMPORARY VIEW readings AS
SELECT device_id, seq, ts, readings, ingest_ms, event_time
FROM readings_source
WHERE dlq_reason IS NULL;

-- Card events replayed by iotflink/simulation/transactions.py from TabFormer user 0, keyed by card_id.
CREATE TABLE transactions_source (
  txn_id         STRING,                -- unique id of the event ("tf-<row>" or "inj-...")
  seq            BIGINT,                -- replay sequence number, unique over the stream
  user_id        INT,
  card_id        STRING,                -- "<user>-<card>", Kafka key
  ts             BIGINT,                -- event time, epoch ms UTC
  event_type     STRING,                -- 'purchase' | 'refund' | 'address_change'
  amount_usd     DOUBLE,                -- USD; > 0 purchase, < 0 refund, 0 address change
  use_chip       STRING,
  merchant_name  STRING,
  merchant_city  STRING,
  merchant_state STRING,
  zip            STRING,
  mcc            INT,
  errors         STRING,                -- decline reason(s); NULL when approved
  new_address    STRING,                -- address_change only: the new billing address
  dlq_reason     STRING,                -- NULL, or why the record could not be read
  dlq_detail     STRING,
  dlq_raw        BYTES,                 -- the unreadable record's bytes
${transactions_coordinates},
  event_time AS TO_TIMESTAMP_LTZ(COALESCE(ts, 0), 3),
  WATERMARK FOR event_time AS event_time - ${out_of_orderness}
) WITH (
  ${transactions_options}
);

CREATE TEMPORARY VIEW transactions AS
SELECT txn_id, seq, user_id, card_id, ts, event_type, amount_usd, use_chip, merchant_name,
       merchant_city, merchant_state, zip, mcc, errors, new_address, event_time
FROM transactions_source
WHERE dlq_reason IS NULL;

-- One record per match of any rule. alert_id = SHA-256 hex of
-- rule_id|alert_key|<epoch ms of each matched event, in pattern order>, so a repeated match
-- (replay, at-least-once retry) has the same id.
CREATE TABLE alerts (
  alert_id     STRING,
  rule_id      STRING,
  alert_key    STRING,                  -- the PARTITION BY key: device_id or card_id
  detection_ms BIGINT,                  -- event time (epoch ms) of the event completing the match
  emitted_at   TIMESTAMP_LTZ(3),        -- wall clock when the rule emitted it (not in the id)
  events       ARRAY<ROW<ts_ms BIGINT, seq BIGINT, name STRING, `value` DOUBLE>>,
  details      STRING                   -- JSON object of rule-specific measures
) WITH (
  ${alerts_options}
);

-- Rows a rule job could not use because they arrived after its watermark.
CREATE TABLE rules_late (
  rule_id       STRING,                 -- the rule job that saw the row late
  source_table  STRING,                 -- 'readings' | 'transactions'
  record_key    STRING,                 -- device_id or card_id
  seq           BIGINT,
  ts            BIGINT,                 -- the row's event time, epoch ms
  watermark_utc TIMESTAMP_LTZ(3),       -- the watermark it arrived behind
  record        STRING                  -- JSON of the row's values
) WITH (
  ${late_options}
);

-- Records of a source that a rule job could not read (see "Unreadable records" above).
CREATE TABLE rules_dlq (
  rule_id         STRING,               -- the rule job that could not read the record
  source_table    STRING,               -- 'readings' | 'transactions'
  reason          STRING,               -- parse_error | missing_field | non_finite | null_in_map | no_value
  detail          STRING,
  kafka_partition INT,
  kafka_offset    BIGINT,
  `raw`           BYTES                 -- the record's value (base64 in JSON)
) WITH (
  ${dlq_options}
);

CREATE TEMPORARY VIEW dlq_readings AS
SELECT 'readings' AS source_table, dlq_reason, dlq_detail, kafka_partition, kafka_offset, dlq_raw
FROM readings_source
WHERE dlq_reason IS NOT NULL;

CREATE TEMPORARY VIEW dlq_transactions AS
SELECT 'transactions' AS source_table, dlq_reason, dlq_detail, kafka_partition, kafka_offset, dlq_raw
FROM transactions_source
WHERE dlq_reason IS NOT NULL;

CREATE TEMPORARY VIEW late_readings AS
SELECT 'readings' AS source_table, device_id AS record_key, seq, ts,
       CURRENT_WATERMARK(event_time) AS watermark_utc,
       JSON_STRING(readings) AS record
FROM readings
WHERE event_time <= CURRENT_WATERMARK(event_time);

CREATE TEMPORARY VIEW late_transactions AS
SELECT 'transactions' AS source_table, card_id AS record_key, seq, ts,
       CURRENT_WATERMARK(event_time) AS watermark_utc,
       JSON_OBJECT(KEY 'txn_id' VALUE txn_id, KEY 'event_type' VALUE event_type,
                   KEY 'amount_usd' VALUE amount_usd, KEY 'errors' VALUE errors) AS record
FROM transactions
WHERE event_time <= CURRENT_WATERMARK(event_time);
