-- Top outbound senders of a tenant in one hour (or any period): recipients, messages, spam share
-- Example: tenant=contoso since=2026-11-27T21:00 until=2026-11-27T22:00 limit=20
SELECT sender_address, envelope_sender,
       count(*) AS recipients,
       count(DISTINCT coalesce(network_message_id, message_id)) AS messages,
       round(avg(is_spam(status, spam_verdict, ndr_code)::INTEGER), 3) AS spam_share,
       list(DISTINCT connector ORDER BY connector) FILTER (WHERE connector IS NOT NULL) AS connectors
FROM messages
WHERE tenant = $tenant::VARCHAR AND direction = 'outbound'
  AND in_period(date, received_utc, $since::TIMESTAMPTZ, $until::TIMESTAMPTZ)
GROUP BY ALL
ORDER BY recipients DESC, sender_address
LIMIT $limit::INTEGER
