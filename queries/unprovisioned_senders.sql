-- Outbound mail from sender domains the tenant has not registered, by domain, connector, client IP and day
-- Example: as_of=2026-11-28 window_days=7 baseline_days=28 tenant=contoso
-- Header (5322.From) and envelope (5321.MailFrom) domains are both checked against the
-- accepted domains at the time of sending; MatchSubDomains and the tenant's own
-- *.onmicrosoft.com domain count as registered. Rows cover the window before as_of;
-- share_of_outbound is the row's recipients over all the tenant's outbound recipients that
-- day; new_domain means the domain sent no unregistered mail in the baseline period.
-- tenant = NULL means every tenant.
WITH b AS (SELECT * FROM detection_bounds($as_of::TIMESTAMPTZ, $window_days::INTEGER, $baseline_days::INTEGER)),
scoped AS (
    SELECT o.*,
           CASE WHEN o.sender_unprovisioned THEN o.sender_domain ELSE o.envelope_domain END AS domain,
           CASE WHEN o.sender_unprovisioned AND o.envelope_unprovisioned THEN 'both'
                WHEN o.sender_unprovisioned THEN 'header' ELSE 'envelope' END AS domain_source,
           o.received_utc >= b.window_start AS in_window
    FROM mail_rollup AS o, b
    WHERE o.direction = 'outbound' AND in_period(o.date, o.received_utc, b.baseline_start, b.as_of)
      AND ($tenant::VARCHAR IS NULL OR o.tenant = $tenant::VARCHAR)
),
daily AS (
    SELECT tenant, date, sum(recipients)::BIGINT AS outbound_recipients FROM scoped WHERE in_window GROUP BY ALL
),
history AS (
    SELECT tenant, domain, sum(recipients)::BIGINT AS baseline_recipients
    FROM scoped
    WHERE NOT in_window AND (sender_unprovisioned OR envelope_unprovisioned)
    GROUP BY ALL
)
SELECT
    s.tenant,
    s.domain,
    s.domain_source,
    s.connector,
    s.client_ip,
    s.date AS day,
    length(list_distinct(flatten(list(s.message_keys)))) AS messages,
    sum(s.recipients)::BIGINT AS recipients,
    sum(s.spam_recipients)::BIGINT AS spam_recipients,
    min(s.received_utc) AS first_seen_utc,
    max(s.received_utc) AS last_seen_utc,
    round(sum(s.recipients) / any_value(d.outbound_recipients), 4) AS share_of_outbound,
    coalesce(any_value(h.baseline_recipients), 0) AS baseline_recipients,
    coalesce(any_value(h.baseline_recipients), 0) = 0 AS new_domain
FROM scoped AS s
JOIN daily AS d ON d.tenant = s.tenant AND d.date = s.date
LEFT JOIN history AS h ON h.tenant = s.tenant AND h.domain = s.domain
WHERE s.in_window AND (s.sender_unprovisioned OR s.envelope_unprovisioned)
GROUP BY s.tenant, s.domain, s.domain_source, s.connector, s.client_ip, s.date
ORDER BY s.tenant, recipients DESC, s.domain, s.date, s.connector NULLS LAST, s.client_ip NULLS LAST
