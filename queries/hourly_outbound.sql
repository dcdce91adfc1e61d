-- Hourly outbound recipients per tenant, registered vs unregistered sender domains, and spam-signalled
-- Example: since=2026-11-21 until=2026-11-28 tenant=contoso
-- Only hours with outbound mail are returned (the report fills the gaps with zero).
-- tenant = NULL means every tenant.
SELECT tenant, date_trunc('hour', received_utc) AS hour,
       coalesce(sum(recipients) FILTER (
           WHERE NOT coalesce(sender_unprovisioned OR envelope_unprovisioned, false)), 0)::BIGINT
           AS registered,
       coalesce(sum(recipients) FILTER (WHERE sender_unprovisioned OR envelope_unprovisioned),
                0)::BIGINT AS unprovisioned,
       sum(spam_recipients)::BIGINT AS spam
FROM mail_rollup
WHERE direction = 'outbound' AND in_period(date, received_utc, $since::TIMESTAMPTZ, $until::TIMESTAMPTZ)
  AND ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
GROUP BY ALL
ORDER BY tenant, hour
