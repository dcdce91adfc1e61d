-- Configuration changes and the unregistered-domain or spam mail that followed them: which change started it
-- Example: as_of=2026-11-28 window_days=7 baseline_days=28 change_follow_hours=24 tenant=contoso
-- A change is an audit event that created or changed a connector, accepted domain, transport
-- rule, remote domain, connection filter, transport config or receive connector permission
-- (New-/Set-/Add-/Enable-, with who and from which IP), or what the snapshots show when no
-- audit event does (WhenCreatedUTC / WhenChangedUTC of inbound and receive connectors,
-- accepted domains and transport rules; a snapshot time within 10 minutes of an audit event
-- on the same object is that event). For each change since change_follow_hours before the
-- window: the outbound mail of the change_follow_hours after it that came from an
-- unregistered domain or carried a spam signal (through that connector, for an inbound
-- connector; the tenant's, otherwise), against the same span before it. Only changes
-- followed by more such mail than preceded them are listed; minutes_after is from the
-- change to the first of it.
-- tenant = NULL means every tenant.
WITH b AS (SELECT * FROM detection_bounds($as_of::TIMESTAMPTZ, $window_days::INTEGER, $baseline_days::INTEGER)),
span AS (SELECT to_hours($change_follow_hours::INTEGER) AS follow),
audited AS (
    SELECT a.tenant, a.creation_utc AS changed_utc, a.operation AS change,
           coalesce(a.object_id, json_extract_string(a.parameters, '$.Identity'),
                    json_extract_string(a.parameters, '$.Name')) AS object,
           a.user_id AS changed_by, a.client_ip AS from_ip, 'audit' AS source,
           a.operation ILIKE '%InboundConnector' AS connector_scoped
    FROM audit_events AS a
    WHERE regexp_matches(a.operation, '^(New|Set|Add|Enable)-(InboundConnector|OutboundConnector|'
                         || 'AcceptedDomain|TransportRule|RemoteDomain|HostedConnectionFilterPolicy|'
                         || 'TransportConfig|ReceiveConnector|SendConnector|ADPermission)$', 'i')
      AND coalesce(lower(a.result_status) IN ('success', 'succeeded', 'true'), true)
),
objects AS (  -- what snapshots date: created and last changed
    SELECT tenant, 'inbound connector' AS what, name AS object, true AS connector_scoped,
           when_created_utc AS created, when_changed_utc AS changed
    FROM inbound_connectors
    UNION ALL
    SELECT tenant, 'receive connector', identity, false, when_created_utc, when_changed_utc
    FROM receive_connectors
    UNION ALL
    SELECT tenant, 'transport rule', name, false, when_created_utc, when_changed_utc
    FROM exo_settings WHERE section = 'transport_rule'
),
snapshots AS (
    SELECT DISTINCT tenant, created AS changed_utc, what || ' created' AS change, object,
           connector_scoped
    FROM objects WHERE created IS NOT NULL
    UNION
    SELECT DISTINCT tenant, changed, what || ' changed', object, connector_scoped
    FROM objects
    WHERE changed > coalesce(created, '-infinity'::TIMESTAMPTZ) + INTERVAL 10 MINUTE
    UNION
    SELECT DISTINCT tenant, when_created_utc, 'accepted domain added', domain_name, false
    FROM accepted_domains WHERE when_created_utc IS NOT NULL
),
changes AS (
    SELECT * FROM audited
    UNION ALL
    SELECT s.tenant, s.changed_utc, s.change, s.object, NULL, NULL, 'snapshot', s.connector_scoped
    FROM snapshots AS s
    WHERE NOT EXISTS (SELECT 1 FROM audited AS a
                      WHERE a.tenant = s.tenant AND lower(a.object) = lower(s.object)
                        AND abs(epoch(a.changed_utc) - epoch(s.changed_utc)) <= 600)
),
scoped AS (
    SELECT c.* FROM changes AS c, b, span
    WHERE c.changed_utc >= b.window_start - span.follow AND c.changed_utc < b.as_of
      AND ($tenant::VARCHAR IS NULL OR c.tenant = $tenant::VARCHAR)
),
suspect AS (  -- unregistered-domain or spam-signalled outbound mail around the changes
    SELECT o.tenant, o.received_utc, o.connector, o.sender_domain,
           coalesce(o.sender_unprovisioned OR o.envelope_unprovisioned, false) AS unprovisioned,
           CASE WHEN coalesce(o.sender_unprovisioned OR o.envelope_unprovisioned, false)
                THEN o.recipients ELSE o.spam_recipients END AS recipients
    FROM mail_rollup AS o, b, span
    WHERE o.direction = 'outbound' AND in_period(o.date, o.received_utc, b.baseline_start, b.as_of)
      AND (coalesce(o.sender_unprovisioned OR o.envelope_unprovisioned, false)
           OR o.spam_recipients > 0)
      AND o.tenant IN (SELECT tenant FROM scoped)
),
around AS (
    SELECT c.tenant, c.changed_utc, c.change, c.object, c.changed_by, c.from_ip, c.source,
           c.connector_scoped,
           coalesce(sum(m.recipients) FILTER (WHERE m.received_utc >= c.changed_utc), 0)::BIGINT
               AS recipients_after,
           coalesce(sum(m.recipients) FILTER (WHERE m.received_utc < c.changed_utc), 0)::BIGINT
               AS recipients_before,
           count(DISTINCT m.sender_domain) FILTER (WHERE m.received_utc >= c.changed_utc
                                                    AND m.unprovisioned) AS unregistered_domains,
           min(m.received_utc) FILTER (WHERE m.received_utc >= c.changed_utc) AS first_after_utc
    FROM scoped AS c, span
    LEFT JOIN suspect AS m
      ON m.tenant = c.tenant
     AND m.received_utc >= c.changed_utc - span.follow
     AND m.received_utc < c.changed_utc + span.follow
     AND (NOT c.connector_scoped OR m.connector = c.object)
    GROUP BY ALL
)
SELECT tenant, changed_utc, change, object, changed_by, from_ip, source,
       CASE WHEN connector_scoped THEN 'connector' ELSE 'tenant' END AS traffic_scope,
       first_after_utc,
       round((epoch(first_after_utc) - epoch(changed_utc)) / 60)::BIGINT AS minutes_after,
       recipients_after, unregistered_domains, recipients_before
FROM around
WHERE recipients_after > recipients_before
ORDER BY tenant, changed_utc, object
