-- rule: card_failed_burst_proctime
-- detects: 3 or more failed (declined) transactions on one card within 5 minutes, in processing
--   time: the fast path of the payment-fraud scenario (iotflink/simulation/scenarios/payment_fraud.py). Same
--   pattern as sql/rules/card_failed_burst.sql, ordered by arrival (PROCTIME()) instead of event
--   time, so a match is emitted when its third failure arrives, without waiting for the watermark;
--   the event-time rule stays the exact record for audit.
--   Key: card_id (PARTITION BY). Input: `transactions`; a failed transaction is any event
--   whose `errors` is not empty (TabFormer "Errors?": Bad PIN, Insufficient Balance, ...).
--   Approved events between the failures do not break the pattern (they are filtered out
--   before matching).
-- definition: F1 F2 F3 = three consecutive failures of the card, the third less than
--   within_s after the first (Flink WITHIN; a burst spanning exactly 5 min or more does not
--   match). AFTER MATCH SKIP PAST LAST ROW: one alert per 3 failures (6 failures in 5 min
--   give 2 alerts, 4 give 1).
-- param: min_failures = 3 failures. Source: the card-fraud pattern this project detects (README, "Detection rules").
-- param: within_s = 300 s (5 min). Source: the pattern's window as this project specifies it (README, "Detection rules").
-- late data: rows at or behind the watermark go to rules_late (view late_transactions).
-- unreadable records of `transactions` go to rules_dlq (view dlq_transactions).

SET 'pipeline.name' = 'rule:card_failed_burst_proctime';
-- the fast path flushes its network buffers after at most 5 ms instead of Flink's default
-- 100 ms (Flink docs, "Network Buffer Tuning" / execution.buffer-timeout.interval)
SET 'execution.buffer-timeout.interval' = '5 ms';

CREATE TEMPORARY VIEW card_failed_burst_proctime_alerts AS
SELECT
  SHA256(CONCAT_WS('|', 'card_failed_burst_proctime', card_id, CAST(f1_ts AS STRING),
                   CAST(f2_ts AS STRING), CAST(f3_ts AS STRING))) AS alert_id,
  'card_failed_burst_proctime' AS rule_id,
  card_id AS alert_key,
  f3_ts AS detection_ms,
  CURRENT_TIMESTAMP AS emitted_at,
  ARRAY[ROW(f1_ts, f1_seq, 'amount_usd', f1_usd),
        ROW(f2_ts, f2_seq, 'amount_usd', f2_usd),
        ROW(f3_ts, f3_seq, 'amount_usd', f3_usd)] AS events,
  JSON_OBJECT(KEY 'errors' VALUE f3_errors, KEY 'span_ms' VALUE f3_ts - f1_ts) AS details
FROM (SELECT *, PROCTIME() AS proc_time FROM transactions WHERE errors IS NOT NULL AND errors <> '')
MATCH_RECOGNIZE (
  PARTITION BY card_id
  ORDER BY proc_time
  MEASURES
    F1.ts AS f1_ts, F1.seq AS f1_seq, F1.amount_usd AS f1_usd,
    F2.ts AS f2_ts, F2.seq AS f2_seq, F2.amount_usd AS f2_usd,
    F3.ts AS f3_ts, F3.seq AS f3_seq, F3.amount_usd AS f3_usd, F3.errors AS f3_errors
  ONE ROW PER MATCH
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (F1 F2 F3) WITHIN INTERVAL '5' MINUTE
  DEFINE
    F1 AS F1.errors IS NOT NULL,
    F2 AS F2.errors IS NOT NULL,
    F3 AS F3.errors IS NOT NULL
);

EXECUTE STATEMENT SET
BEGIN
INSERT INTO alerts SELECT * FROM card_failed_burst_proctime_alerts;
INSERT INTO rules_late SELECT 'card_failed_burst_proctime', * FROM late_transactions;
INSERT INTO rules_dlq SELECT 'card_failed_burst_proctime', * FROM dlq_transactions;
END;
