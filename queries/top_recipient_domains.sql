-- Top recipient domains of a tenant's outbound mail in one hour (or any period)
-- Example: tenant=contoso since=2026-11-27T21:00 until=2026-11-27T22:00 limit=20
SELECT recipient_domain,
       count(*) AS recipients,
       count(DISTINCT sender_address) AS senders,
       count(*) FILTER (WHERE status = 'delivered') AS delivered
FROM messages
WHERE tenant = $tenant::VARCHAR AND direction = 'outbound'
  AND in_period(date, received_utc, $since::TIMESTAMPTZ, $until::TIMESTAMPTZ)
GROUP BY ALL
ORDER BY recipients DESC, recipient_domain
LIMIT $limit::INTEGER
