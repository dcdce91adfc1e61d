-- Hours and days whose outbound volume (per tenant, connector or sender) spikes above a robust baseline of the tenant's own history
-- Example: as_of=2026-11-28 window_days=7 baseline_days=28 tenant=litware spike_min_hour=50 spike_min_day=300 spike_mads=5 spike_ratio=3
-- The baseline of a bucket is the median and MAD of recipients in comparable buckets of the
-- baseline period (same hour of day and weekday-or-weekend for hours; weekday-or-weekend
-- for days), zero-filled from the tenant's first data on, so a sender or connector with no
-- history starts from zero. Only buckets in the window with at least spike_min_hour /
-- spike_min_day recipients are judged, and only when the tenant has three or more
-- comparable buckets of history. A spike exceeds median + spike_mads x max(1.4826 MAD, 1)
-- and spike_ratio x median. over_mailbox_limit marks a sender-day above the 10,000
-- recipients/day mailbox limit. history_days: the days the sender or connector sent on before
-- the window; window_domains: the distinct recipient domains it reached in the window.
-- tenant = NULL means every tenant.
WITH b AS (SELECT * FROM detection_bounds($as_of::TIMESTAMPTZ, $window_days::INTEGER, $baseline_days::INTEGER)),
hours AS (  -- recipients, messages and spam per tenant, hour, connector and sender
    SELECT *
    FROM outbound_hours(lookback_start($as_of::TIMESTAMPTZ, $window_days::INTEGER, $baseline_days::INTEGER), $as_of::TIMESTAMPTZ)
    WHERE $tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR
),
starts AS (SELECT tenant, min(hour) AS first_hour FROM hours GROUP BY tenant),
window_hourly AS (  -- the window's hours per tenant, connector and sender
    SELECT tenant,
           CASE WHEN grouping(connector) = 0 THEN 'connector'
                WHEN grouping(sender_address) = 0 THEN 'sender' ELSE 'tenant' END AS scope,
           CASE WHEN grouping(connector) = 0 THEN connector
                WHEN grouping(sender_address) = 0 THEN sender_address ELSE tenant END AS key,
           hour,
           sum(recipients)::BIGINT AS recipients,
           sum(messages)::BIGINT AS messages,
           sum(spam_recipients)::BIGINT AS spam_recipients,
           sum(bounce_recipients)::BIGINT AS bounce_recipients
    FROM hours, b
    WHERE hours.hour >= b.window_start
    GROUP BY GROUPING SETS ((tenant, hour), (tenant, connector, hour), (tenant, sender_address, hour))
),
candidates AS (  -- window hours and days busy enough to be judged
    SELECT tenant, scope, key, 'hour' AS grain, hour AS bucket, recipients, messages,
           spam_recipients, bounce_recipients
    FROM window_hourly
    WHERE key IS NOT NULL AND recipients >= $spike_min_hour::BIGINT
    UNION ALL
    SELECT tenant, scope, key, 'day', date_trunc('day', hour), sum(recipients)::BIGINT,
           sum(messages)::BIGINT, sum(spam_recipients)::BIGINT, sum(bounce_recipients)::BIGINT
    FROM window_hourly, b
    WHERE key IS NOT NULL
    GROUP BY tenant, scope, key, date_trunc('day', hour), b.window_start
    HAVING date_trunc('day', hour) >= b.window_start
       AND sum(recipients) >= $spike_min_day::BIGINT
),
keys AS (SELECT DISTINCT tenant, scope, key FROM candidates),
history AS (  -- every hour of the candidates' tenants, connectors and senders
    SELECT h.tenant, 'tenant' AS scope, h.tenant AS key, h.hour, sum(h.recipients) AS recipients
    FROM hours AS h SEMI JOIN keys AS k ON k.tenant = h.tenant AND k.scope = 'tenant'
    GROUP BY ALL
    UNION ALL
    SELECT h.tenant, 'connector', h.connector, h.hour, sum(h.recipients)
    FROM hours AS h SEMI JOIN keys AS k
      ON k.tenant = h.tenant AND k.scope = 'connector' AND k.key = h.connector
    GROUP BY ALL
    UNION ALL
    SELECT h.tenant, 'sender', h.sender_address, h.hour, sum(h.recipients)
    FROM hours AS h SEMI JOIN keys AS k
      ON k.tenant = h.tenant AND k.scope = 'sender' AND k.key = h.sender_address
    GROUP BY ALL
),
habits AS (  -- the days each candidate sent on before the window (a person's mailbox: most)
    SELECT h.tenant, h.scope, h.key, count(DISTINCT date_trunc('day', h.hour)) AS history_days
    FROM history AS h, b
    WHERE h.hour < b.window_start AND h.recipients > 0
    GROUP BY h.tenant, h.scope, h.key
),
spread AS (  -- the distinct recipient domains each candidate sender and connector reached
    SELECT o.tenant, 'sender' AS scope, o.sender_address AS key,
           length(list_distinct(flatten(list(o.recipient_domains)))) AS window_domains
    FROM mail_rollup AS o, b
    SEMI JOIN keys AS k ON k.tenant = o.tenant AND k.scope = 'sender' AND k.key = o.sender_address
    WHERE o.direction = 'outbound' AND in_period(o.date, o.received_utc, b.window_start, b.as_of)
    GROUP BY ALL
    UNION ALL
    SELECT o.tenant, 'connector', o.connector,
           length(list_distinct(flatten(list(o.recipient_domains))))
    FROM mail_rollup AS o, b
    SEMI JOIN keys AS k ON k.tenant = o.tenant AND k.scope = 'connector' AND k.key = o.connector
    WHERE o.direction = 'outbound' AND in_period(o.date, o.received_utc, b.window_start, b.as_of)
    GROUP BY ALL
),
buckets AS (
    SELECT tenant, scope, key, 'hour' AS grain, hour AS bucket, recipients FROM history
    UNION ALL
    SELECT tenant, scope, key, 'day', date_trunc('day', hour), sum(recipients)::BIGINT
    FROM history
    GROUP BY tenant, scope, key, date_trunc('day', hour)
),
history_start AS (  -- the first hour or day of history a candidate is compared with
    SELECT c.*, date_trunc(c.grain, greatest(b.baseline_start, s.first_hour)) AS first_past
    FROM candidates AS c, b, starts AS s
    WHERE s.tenant = c.tenant
),
calendar AS (  -- one day apart: an hour is compared only with the same hour on other days
    SELECT h.tenant, h.scope, h.key, h.grain, h.bucket,
           unnest(generate_series(
               CASE WHEN h.grain = 'day' THEN h.first_past
                    WHEN hour(h.first_past) <= hour(h.bucket)
                    THEN date_trunc('day', h.first_past) + to_hours(hour(h.bucket))
                    ELSE date_trunc('day', h.first_past) + INTERVAL 1 DAY + to_hours(hour(h.bucket))
               END,
               date_trunc(h.grain, b.window_start) - CASE h.grain WHEN 'hour' THEN INTERVAL 1 HOUR
                                                                  ELSE INTERVAL 1 DAY END,
               INTERVAL 1 DAY)) AS past
    FROM history_start AS h, b
),
baseline AS (
    SELECT k.tenant, k.scope, k.key, k.grain, k.bucket,
           count(*) AS baseline_n,
           median(coalesce(h.recipients, 0)) AS baseline_median,
           mad(coalesce(h.recipients, 0)) AS baseline_mad
    FROM calendar AS k
    LEFT JOIN buckets AS h
      ON h.tenant = k.tenant AND h.scope = k.scope AND h.key = k.key AND h.grain = k.grain
     AND h.bucket = k.past
    WHERE (isodow(k.past) >= 6) = (isodow(k.bucket) >= 6)
      AND (k.grain = 'day' OR hour(k.past) = hour(k.bucket))
    GROUP BY ALL
)
SELECT
    c.tenant, c.scope, c.key, c.grain, c.bucket, c.recipients, c.messages, c.spam_recipients,
    round(c.spam_recipients / c.recipients, 4) AS spam_share, c.bounce_recipients,
    round(c.bounce_recipients / c.recipients, 4) AS bounce_share,
    k.baseline_n, k.baseline_median, k.baseline_mad,
    round(k.baseline_median + $spike_mads::DOUBLE * greatest(1.4826 * k.baseline_mad, 1), 1)
        AS threshold,
    round(c.recipients / greatest(k.baseline_median, 1), 1) AS ratio,
    c.scope = 'sender' AND c.grain = 'day' AND c.recipients > 10000 AS over_mailbox_limit,
    coalesce(hb.history_days, 0) AS history_days, coalesce(sp.window_domains, 0) AS window_domains
FROM candidates AS c
JOIN baseline AS k
  ON k.tenant = c.tenant AND k.scope = c.scope AND k.key = c.key AND k.grain = c.grain
 AND k.bucket = c.bucket
LEFT JOIN habits AS hb ON hb.tenant = c.tenant AND hb.scope = c.scope AND hb.key = c.key
LEFT JOIN spread AS sp ON sp.tenant = c.tenant AND sp.scope = c.scope AND sp.key = c.key
WHERE k.baseline_n >= 3
  AND c.recipients > k.baseline_median + $spike_mads::DOUBLE * greatest(1.4826 * k.baseline_mad, 1)
  AND c.recipients >= $spike_ratio::DOUBLE * k.baseline_median
ORDER BY c.tenant, c.grain, c.bucket, c.scope DESC, c.recipients DESC, c.key
