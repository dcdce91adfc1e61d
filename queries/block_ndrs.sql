-- Block and limit NDRs per tenant and code: what Microsoft refused, since when, how many, from whom
-- Example: as_of=2026-11-28 window_days=7 baseline_days=28 tenant=contoso
-- kind: tenant_block (5.7.750 unregistered domains, 5.7.705 tenant over threshold),
-- connector_block (5.7.711), sender_restricted (5.1.8), rate_limit (5.1.90, 5.2.2, 5.7.232,
-- 5.7.233), refused (5.7.708 IP not accepted, 5.7.64 relay denied). Counts cover the window
-- and the baseline period before it; window_recipients only the window. tenant = NULL means
-- every tenant.
WITH b AS (SELECT * FROM detection_bounds($as_of::TIMESTAMPTZ, $window_days::INTEGER, $baseline_days::INTEGER))
SELECT
    m.tenant,
    m.ndr_code,
    CASE m.ndr_code
        WHEN '5.7.750' THEN 'tenant_block' WHEN '5.7.705' THEN 'tenant_block'
        WHEN '5.7.711' THEN 'connector_block' WHEN '5.1.8' THEN 'sender_restricted'
        WHEN '5.7.708' THEN 'refused' WHEN '5.7.64' THEN 'refused'
        ELSE 'rate_limit' END AS kind,
    CASE m.ndr_code
        WHEN '5.7.750' THEN 'Client blocked from sending from unregistered domains'
        WHEN '5.7.705' THEN 'Tenant exceeded threshold (blocked for spam)'
        WHEN '5.7.711' THEN 'Bad inbound connector (connector restricted)'
        WHEN '5.1.8' THEN 'Bad outbound sender (user restricted)'
        WHEN '5.1.90' THEN 'Sender reached its daily recipient limit'
        WHEN '5.2.2' THEN 'Sender submission quota exceeded'
        WHEN '5.7.232' THEN 'Tenant external recipient rate limit (TERRL)'
        WHEN '5.7.233' THEN 'Tenant external recipient rate limit (TERRL)'
        WHEN '5.7.708' THEN 'Traffic not accepted from this IP'
        ELSE 'Relay access denied' END AS meaning,
    length(list_distinct(flatten(list(m.message_keys)))) AS messages,
    sum(m.recipients)::BIGINT AS recipients,
    coalesce(sum(m.recipients) FILTER (WHERE m.received_utc >= b.window_start), 0)::BIGINT
        AS window_recipients,
    count(DISTINCT m.sender_address) AS senders,
    list(DISTINCT m.sender_address ORDER BY m.sender_address)[1:5] AS sample_senders,
    min(m.received_utc) AS first_seen_utc,
    max(m.received_utc) AS last_seen_utc
FROM ndr_rollup AS m, b
WHERE in_period(m.date, m.received_utc, b.baseline_start, b.as_of)
  AND m.ndr_code IN ('5.7.750', '5.7.705', '5.7.711', '5.1.8', '5.1.90', '5.2.2', '5.7.232',
                     '5.7.233', '5.7.708', '5.7.64')
  AND ($tenant::VARCHAR IS NULL OR m.tenant = $tenant::VARCHAR)
GROUP BY m.tenant, m.ndr_code
ORDER BY m.tenant, last_seen_utc DESC, m.ndr_code
