-- Non-delivery reports of a tenant per hour and code, with senders and a sample of recipients
-- Example: tenant=contoso since=2026-11-20 until=2026-11-28
SELECT date_trunc('hour', received_utc) AS hour, ndr_code,
       count(*) AS recipients,
       count(DISTINCT sender_address) AS senders,
       list(DISTINCT sender_address ORDER BY sender_address)[1:3] AS sample_senders,
       list(DISTINCT recipient_domain ORDER BY recipient_domain)[1:3] AS sample_recipient_domains
FROM messages
WHERE tenant = $tenant::VARCHAR AND ndr_code IS NOT NULL
  AND in_period(date, received_utc, $since::TIMESTAMPTZ, $until::TIMESTAMPTZ)
GROUP BY ALL
ORDER BY hour, ndr_code
