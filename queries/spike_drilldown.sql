-- What made an hour spike: a tenant's outbound senders and subjects in that hour, biggest first
-- Example: tenant=litware hour=2026-11-23T09:00 limit=25
-- hour is truncated to the hour; one row per (sender, subject) with its recipients, status
-- mix and whether the sender domain was registered.
SELECT sender_address, subject,
       count(*) AS recipients,
       count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE spam_signal) AS spam,
       bool_or(sender_unprovisioned OR envelope_unprovisioned) AS unregistered_domain,
       list(DISTINCT connector ORDER BY connector) FILTER (WHERE connector IS NOT NULL) AS connectors
FROM outbound_mail
WHERE tenant = $tenant::VARCHAR
  AND date = CAST(date_trunc('hour', $hour::TIMESTAMPTZ) AS DATE)
  AND date_trunc('hour', received_utc) = date_trunc('hour', $hour::TIMESTAMPTZ)
GROUP BY sender_address, subject
ORDER BY recipients DESC, sender_address, subject
LIMIT $limit::INTEGER
