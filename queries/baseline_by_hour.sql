-- Each tenant's typical outbound recipients per hour of day and kind of day, from the baseline before `since`
-- Example: since=2026-11-21 baseline_days=28 tenant=null
-- Median over the baseline_days before `since`, zero-filled from the tenant's first hour of
-- data; the report draws it as the baseline under the hourly chart.
WITH b AS (SELECT $since::TIMESTAMPTZ AS since,
                  $since::TIMESTAMPTZ - to_days($baseline_days::INTEGER) AS base_start),
hours AS (
    SELECT tenant, hour, sum(recipients) AS recipients
    FROM outbound_hours($since::TIMESTAMPTZ - to_days($baseline_days::INTEGER), $since::TIMESTAMPTZ)
    WHERE $tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR
    GROUP BY ALL
),
history AS (
    SELECT h.tenant, series.hour
    FROM (SELECT tenant, min(hour) AS first_hour FROM hours GROUP BY tenant) AS h, b,
         unnest(generate_series(h.first_hour, b.since - INTERVAL 1 HOUR, INTERVAL 1 HOUR))
             AS series(hour)
)
SELECT k.tenant, hour(k.hour) AS hour_of_day, isodow(k.hour) >= 6 AS weekend,
       median(coalesce(h.recipients, 0)) AS baseline, count(*) AS hours_seen
FROM history AS k
LEFT JOIN hours AS h ON h.tenant = k.tenant AND h.hour = k.hour
GROUP BY ALL
ORDER BY k.tenant, weekend, hour_of_day
