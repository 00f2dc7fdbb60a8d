-- rule: card_velocity
-- detects: spend velocity on one card: its approved spend over the sliding 5 minutes ending
--   at a purchase is at least k times its historical average per 5 minutes.
--   Key: card_id (PARTITION BY). Input: `transactions`.
-- definition: spend = amount_usd of approved purchases (event_type 'purchase', errors
--   empty); refunds, declines and address changes are not spend.
--   spend_5m_usd  = sum of spend with event time in [t - 5 min, t] (OVER RANGE 5 MINUTE
--                   PRECEDING, evaluated at each purchase t);
--   hist_avg_usd  = mean of spend_5m_usd over all earlier purchases of the card (the
--                   historical 5-minute spend, sampled where the card is active: the
--                   all-time average per calendar 5 minutes of a card used a few times a day
--                   is cents, which every purchase would exceed);
--   alert when at least min_history earlier purchases exist and
--   spend_5m_usd >= k * hist_avg_usd (">=": the specified example, $1,200 against a $240
--   average, meets a 5x threshold). One alert per qualifying purchase.
-- param: k = 5.0 (dimensionless). Source: the velocity example this project specifies ($1,200 against a $240 average, 5x).
-- param: window_s = 300 s (5 min). Source: the pattern's window as this project specifies it (README, "Detection rules").
-- param: min_history = 20 purchases. Source: chosen so that a new card's first purchases do
--   not alert on a baseline of one or two values (about a week of TabFormer user 0's use).
-- late data: rows at or behind the watermark go to rules_late (view late_transactions).
-- unreadable records of `transactions` go to rules_dlq (view dlq_transactions).

SET 'pipeline.name' = 'rule:card_velocity';

CREATE TEMPORARY VIEW card_velocity_spend AS
SELECT card_id, seq, ts, event_time, amount_usd,
       SUM(amount_usd) OVER w AS spend_5m_usd,
       COUNT(*) OVER w AS n_5m,
       MIN(ts) OVER w AS first_5m_ts
FROM transactions
WHERE event_type = 'purchase' AND (errors IS NULL OR errors = '') AND amount_usd > 0
WINDOW w AS (PARTITION BY card_id ORDER BY event_time
             RANGE BETWEEN INTERVAL '5' MINUTE PRECEDING AND CURRENT ROW);

CREATE TEMPORARY VIEW card_velocity_history AS
SELECT *,
       SUM(spend_5m_usd) OVER w - spend_5m_usd AS prior_sum_usd,
       COUNT(*) OVER w - 1 AS prior_n
FROM card_velocity_spend
WINDOW w AS (PARTITION BY card_id ORDER BY event_time
             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);

CREATE TEMPORARY VIEW card_velocity_alerts AS
SELECT
  SHA256(CONCAT_WS('|', 'card_velocity', card_id, CAST(v_ts AS STRING))) AS alert_id,
  'card_velocity' AS rule_id,
  card_id AS alert_key,
  v_ts AS detection_ms,
  CURRENT_TIMESTAMP AS emitted_at,
  ARRAY[ROW(v_ts, v_seq, 'amount_usd', v_usd)] AS events,
  JSON_OBJECT(KEY 'spend_5m_usd' VALUE spend_5m_usd,
              KEY 'hist_avg_usd' VALUE prior_sum_usd / prior_n,
              KEY 'ratio' VALUE spend_5m_usd / (prior_sum_usd / prior_n),
              KEY 'purchases_5m' VALUE n_5m,
              KEY 'first_5m_ts' VALUE first_5m_ts) AS details
FROM card_velocity_history
MATCH_RECOGNIZE (
  PARTITION BY card_id
  ORDER BY event_time, seq
  MEASURES
    V.ts AS v_ts, V.seq AS v_seq, V.amount_usd AS v_usd, V.spend_5m_usd AS spend_5m_usd,
    V.prior_sum_usd AS prior_sum_usd, V.prior_n AS prior_n, V.n_5m AS n_5m,
    V.first_5m_ts AS first_5m_ts
  ONE ROW PER MATCH
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (V)
  DEFINE
    V AS V.prior_n >= 20 AND V.spend_5m_usd >= 5.0 * V.prior_sum_usd / V.prior_n
);

EXECUTE STATEMENT SET
BEGIN
INSERT INTO alerts SELECT * FROM card_velocity_alerts;
INSERT INTO rules_late SELECT 'card_velocity', * FROM late_transactions;
INSERT INTO rules_dlq SELECT 'card_velocity', * FROM dlq_transactions;
END;
