-- Block, restriction and limit NDRs per tenant, day and code, for the report's NDR timeline
-- Example: since=2026-11-21 until=2026-11-28 tenant=null
SELECT tenant, date AS day, ndr_code, sum(recipients)::BIGINT AS recipients,
       count(DISTINCT sender_address) AS senders
FROM ndr_rollup
WHERE in_period(date, received_utc, $since::TIMESTAMPTZ, $until::TIMESTAMPTZ)
  AND ndr_code IN ('5.7.750', '5.7.705', '5.7.711', '5.1.8', '5.1.90', '5.2.2', '5.7.232',
                   '5.7.233', '5.7.708', '5.7.64')
  AND ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
GROUP BY ALL
ORDER BY tenant, day, ndr_code
