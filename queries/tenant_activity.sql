-- Every tenant's data freshness and outbound volumes in the window and the baseline before it
-- Example: as_of=2026-11-28 window_days=7 baseline_days=28 tenant=adatum
-- Tenants are those with anything in the lake: messages in the window and baseline,
-- snapshots, audit events or files in the manifest.
-- last_event_utc is the latest message before as_of within window + baseline; the
-- *_unprovisioned counts are outbound recipients from unregistered domains; last_*_utc
-- give when the last unregistered-domain / spam-signalled outbound mail was seen.
-- has_connector_list: an inbound-connector export was read, an empty one included (a
-- tenant without inbound connectors exports nothing, `[]` or `[null]`: connector_list_empty;
-- a ScubaGear ProviderSettingsExport.json holds the list too).
-- inferred_domains: without an accepted-domains export, the domains taken from the tenant's
-- mail as its own (known_domains), which outbound rows were judged with.
-- removed_domains: accepted domains the tenant has since removed (an audit event, or two
-- whole snapshots), each with when it stopped being its own; mail from them after that
-- counts as unregistered.
-- tenant = NULL means every tenant.
WITH b AS (SELECT * FROM detection_bounds($as_of::TIMESTAMPTZ, $window_days::INTEGER, $baseline_days::INTEGER)),
tenants AS (
    SELECT tenant FROM ingest_log WHERE tenant <> ''
    UNION SELECT m.tenant FROM mail_rollup AS m, b
          WHERE in_period(m.date, m.received_utc, b.baseline_start, b.as_of)
    UNION SELECT tenant FROM accepted_domains
    UNION SELECT tenant FROM inbound_connectors
    UNION SELECT tenant FROM audit_events
),
connector_lists AS (  -- files read as a tenant's inbound-connector list (a ScubaGear section
                      -- that could not be read is none)
    SELECT l.tenant FROM ingest_log AS l
    WHERE l.source_format IN ('inbound_connectors', 'scubagear_provider_settings')
      AND l.status <> 'rejected'
      AND NOT EXISTS (SELECT 1 FROM rejects AS r
                      WHERE r.tenant = l.tenant AND r.source_sha256 = l.source_sha256
                        AND r.source_format = 'scubagear_provider_settings:inbound_connectors'
                        AND starts_with(r.reason, 'section '))
),
events AS (
    SELECT m.tenant,
           min(m.received_utc) AS first_event_utc,
           max(m.received_utc) AS last_event_utc,
           count(DISTINCT m.date) FILTER (WHERE m.received_utc >= b.window_start) AS window_days_with_data,
           count(DISTINCT m.date) FILTER (WHERE m.received_utc < b.window_start) AS baseline_days_with_data,
           coalesce(sum(m.recipients) FILTER (WHERE m.received_utc >= b.window_start), 0)::BIGINT
               AS window_recipients
    FROM mail_rollup AS m, b
    WHERE in_period(m.date, m.received_utc, b.baseline_start, b.as_of)
    GROUP BY m.tenant
),
outbound AS (
    SELECT o.tenant,
           sum(o.recipients) FILTER (WHERE o.received_utc >= b.window_start)::BIGINT AS window_outbound,
           sum(o.recipients) FILTER (WHERE o.received_utc >= b.window_start
                              AND (o.sender_unprovisioned OR o.envelope_unprovisioned))::BIGINT AS window_unprovisioned,
           sum(o.spam_recipients) FILTER (WHERE o.received_utc >= b.window_start)::BIGINT AS window_spam,
           sum(o.recipients) FILTER (WHERE o.received_utc < b.window_start)::BIGINT AS baseline_outbound,
           sum(o.recipients) FILTER (WHERE o.received_utc < b.window_start
                              AND (o.sender_unprovisioned OR o.envelope_unprovisioned))::BIGINT AS baseline_unprovisioned,
           max(o.received_utc) FILTER (WHERE o.sender_unprovisioned OR o.envelope_unprovisioned)
               AS last_unprovisioned_utc,
           max(o.received_utc) FILTER (WHERE o.spam_recipients > 0) AS last_spam_utc
    FROM mail_rollup AS o, b
    WHERE o.direction = 'outbound' AND in_period(o.date, o.received_utc, b.baseline_start, b.as_of)
    GROUP BY o.tenant
)
SELECT
    t.tenant,
    EXISTS (SELECT 1 FROM accepted_domains AS a WHERE a.tenant = t.tenant) AS has_accepted_domains,
    (SELECT list(k.domain_name ORDER BY k.domain_name) FROM known_domains AS k
     WHERE k.tenant = t.tenant AND k.inferred) AS inferred_domains,
    (SELECT list({'domain': k.domain_name, 'removed_utc': k.covered_until}
                 ORDER BY k.covered_until, k.domain_name)
     FROM known_domains AS k
     WHERE k.tenant = t.tenant AND NOT k.inferred AND k.covered_until IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM known_domains AS o
                       WHERE o.tenant = k.tenant AND o.domain_name = k.domain_name
                         AND o.covered_until IS NULL)) AS removed_domains,
    EXISTS (SELECT 1 FROM inbound_connectors AS c WHERE c.tenant = t.tenant)
        OR EXISTS (SELECT 1 FROM connector_lists AS l WHERE l.tenant = t.tenant)
        AS has_connector_list,
    NOT EXISTS (SELECT 1 FROM inbound_connectors AS c WHERE c.tenant = t.tenant)
        AND EXISTS (SELECT 1 FROM connector_lists AS l WHERE l.tenant = t.tenant)
        AS connector_list_empty,
    e.first_event_utc, e.last_event_utc,
    coalesce(e.window_days_with_data, 0) AS window_days_with_data,
    coalesce(e.baseline_days_with_data, 0) AS baseline_days_with_data,
    coalesce(e.window_recipients, 0) AS window_recipients,
    coalesce(o.window_outbound, 0) AS window_outbound,
    coalesce(o.window_unprovisioned, 0) AS window_unprovisioned,
    coalesce(o.window_spam, 0) AS window_spam,
    coalesce(o.baseline_outbound, 0) AS baseline_outbound,
    coalesce(o.baseline_unprovisioned, 0) AS baseline_unprovisioned,
    o.last_unprovisioned_utc, o.last_spam_utc
FROM tenants AS t
LEFT JOIN events AS e ON e.tenant = t.tenant
LEFT JOIN outbound AS o ON o.tenant = t.tenant
WHERE $tenant::VARCHAR IS NULL OR t.tenant = $tenant::VARCHAR
ORDER BY t.tenant
