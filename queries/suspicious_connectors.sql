-- Inbound connectors scored with the reasons they look like an attacker's relay
-- Example: as_of=2026-11-28 window_days=7 baseline_days=28 tenant=contoso wide_range_prefix=24 spam_share=0.2 connector_score=40 unprovisioned_min_messages=20 unprovisioned_max_share=0.1 steady_share_cap=0.2 unprovisioned_rise_ratio=3
-- One row per connector known from the tenant's snapshot closest to as_of (the latest
-- before it, else the first after), from New-/Set-/Remove-InboundConnector audit events,
-- or from traffic in the window. Reasons and their scores: created in the window (30),
-- changed in the window (15), OnPremises accepting any sender domain without a certificate
-- restriction (25), an IP range of /wide_range_prefix or wider (10), traffic from IPs
-- outside SenderIPAddresses (25; only for a connector identified by IP, and IPv4 only), unregistered-domain mail through it (40 when it is at least
-- unprovisioned_min_messages recipients and over unprovisioned_max_share of the connector's
-- traffic and not a share as high before the window up to steady_share_cap, else 10: a
-- hybrid connector forwards some external senders' mail), a spam share
-- of its recipients of spam_share or more (20), traffic through a connector missing from the
-- tenant's connector list (40; inbound connector names in Exchange Online traces only: not
-- on-premises receive or send connectors, not the tenant's outbound connectors, not
-- Exchange Online's built-in To_Default* outbound connectors).
-- suspicious = score >= connector_score. tenant = NULL means every tenant.
WITH b AS (SELECT * FROM detection_bounds($as_of::TIMESTAMPTZ, $window_days::INTEGER, $baseline_days::INTEGER)),
snap AS (
    SELECT c.*
    FROM inbound_connectors AS c, b
    WHERE ($tenant::VARCHAR IS NULL OR c.tenant = $tenant::VARCHAR)
    QUALIFY dense_rank() OVER (
        PARTITION BY c.tenant
        ORDER BY c.snapshot_utc > b.as_of, abs(epoch(c.snapshot_utc) - epoch(b.as_of)),
                 c.source_sha256) = 1
),
changes AS (
    SELECT tenant, operation, creation_utc, user_id, client_ip, name, lower(name) AS k
    FROM (SELECT a.*, regexp_replace(coalesce(json_extract_string(a.parameters, '$.Identity'),
                                              json_extract_string(a.parameters, '$.Name'),
                                              a.object_id), '^.*\\', '') AS name
          FROM audit_events AS a) AS a, b
    WHERE a.operation IN ('New-InboundConnector', 'Set-InboundConnector',
                          'Remove-InboundConnector')
      AND a.creation_utc >= b.baseline_start AND a.creation_utc < b.as_of
      AND ($tenant::VARCHAR IS NULL OR a.tenant = $tenant::VARCHAR)
),
change_summary AS (
    SELECT tenant, k,
           arg_max(creation_utc, creation_utc) FILTER (WHERE operation = 'New-InboundConnector') AS created_utc,
           arg_max(user_id, creation_utc) FILTER (WHERE operation = 'New-InboundConnector') AS created_by,
           arg_max(client_ip, creation_utc) FILTER (WHERE operation = 'New-InboundConnector') AS created_from,
           max(creation_utc) FILTER (WHERE operation = 'Set-InboundConnector') AS changed_utc,
           arg_max(user_id, creation_utc) FILTER (WHERE operation = 'Set-InboundConnector') AS changed_by,
           arg_max(client_ip, creation_utc) FILTER (WHERE operation = 'Set-InboundConnector') AS changed_from,
           max(creation_utc) FILTER (WHERE operation = 'Remove-InboundConnector') AS removed_utc,
           arg_max(user_id, creation_utc) FILTER (WHERE operation = 'Remove-InboundConnector') AS removed_by
    FROM changes GROUP BY ALL
),
window_rows AS (
    SELECT m.*, lower(m.connector) AS k
    FROM mail_rollup AS m, b
    WHERE in_period(m.date, m.received_utc, b.window_start, b.as_of)
      AND m.connector IS NOT NULL
      AND ($tenant::VARCHAR IS NULL OR m.tenant = $tenant::VARCHAR)
),
ip_checks AS (  -- each (connector, client IP) checked against SenderIPAddresses once
    -- The list decides only for a connector that mail is matched to by IP: one identified
    -- by its certificate (TlsSenderCertificateName) takes a dual-stack server's mail over
    -- IPv6 too. Addresses compare by ip_in_range (Python's ipaddress, IPv4 and IPv6 alike);
    -- Exchange Online lists IPv4 only, so an IPv6 address is "outside" only a list that
    -- holds IPv6 ranges.
    SELECT p.tenant, p.k, p.client_ip,
           s.name IS NOT NULL AND len(s.sender_ip_addresses) > 0
           AND s.tls_sender_certificate_name IS NULL
           AND (NOT contains(p.client_ip, ':')
                OR list_bool_or(list_transform(s.sender_ip_addresses, lambda r: contains(r, ':'))))
           AND NOT coalesce(list_bool_or(list_transform(
               s.sender_ip_addresses, lambda r: ip_in_range(p.client_ip, r))), false) AS outside
    FROM (SELECT DISTINCT tenant, k, client_ip FROM window_rows) AS p
    LEFT JOIN snap AS s ON s.tenant = p.tenant AND lower(s.name) = p.k
),
traffic AS (
    SELECT m.tenant, m.k, any_value(m.connector) AS connector,
           sum(m.recipients)::BIGINT AS recipients,
           sum(m.spam_recipients)::BIGINT AS spam_recipients,
           coalesce(sum(m.recipients) FILTER (WHERE x.outside), 0)::BIGINT AS outside_ip_recipients,
           list(DISTINCT m.client_ip ORDER BY m.client_ip) FILTER (WHERE x.outside)[1:5]
               AS outside_ips,
           bool_or(m.source_format <> 'exchange_tracking_log') AS seen_in_cloud_trace,
           min(m.received_utc) AS first_traffic_utc,
           max(m.received_utc) AS last_traffic_utc
    FROM window_rows AS m
    LEFT JOIN ip_checks AS x
      ON x.tenant = m.tenant AND x.k = m.k AND x.client_ip IS NOT DISTINCT FROM m.client_ip
    GROUP BY m.tenant, m.k
),
relayed AS (  -- unregistered-domain recipients through each connector, window and before
    SELECT o.tenant, lower(o.connector) AS k,
           coalesce(sum(o.recipients) FILTER (WHERE o.received_utc >= b.window_start), 0)::BIGINT
               AS unprovisioned_recipients,
           coalesce(sum(o.recipients) FILTER (WHERE o.received_utc < b.window_start), 0)::BIGINT
               AS baseline_unprovisioned
    FROM mail_rollup AS o, b
    WHERE o.direction = 'outbound' AND in_period(o.date, o.received_utc, b.baseline_start, b.as_of)
      AND o.connector IS NOT NULL AND (o.sender_unprovisioned OR o.envelope_unprovisioned)
      AND ($tenant::VARCHAR IS NULL OR o.tenant = $tenant::VARCHAR)
    GROUP BY ALL
),
baseline_traffic AS (  -- each connector's outbound recipients before the window (hourly)
    SELECT h.tenant, lower(h.connector) AS k, sum(h.recipients) AS recipients
    FROM outbound_hours(
        lookback_start($as_of::TIMESTAMPTZ, $window_days::INTEGER, $baseline_days::INTEGER),
        $as_of::TIMESTAMPTZ - to_days($window_days::INTEGER)) AS h
    WHERE h.connector IS NOT NULL AND ($tenant::VARCHAR IS NULL OR h.tenant = $tenant::VARCHAR)
    GROUP BY ALL
),
names AS (
    SELECT tenant, k, arg_min(name, priority) AS connector
    FROM (SELECT tenant, lower(name) AS k, name, 1 AS priority FROM snap
          UNION ALL SELECT tenant, k, connector, 2 FROM traffic
          UNION ALL SELECT tenant, k, name, 3 FROM changes)
    GROUP BY ALL
),
judged AS (
    SELECT
        n.tenant, n.connector,
        s.name IS NOT NULL AS in_connector_list,
        s.connector_type, s.enabled, s.sender_ip_addresses, s.sender_domains,
        s.tls_sender_certificate_name,
        coalesce(s.when_created_utc, c.created_utc) AS created_utc,
        c.created_by, c.created_from,
        coalesce(c.changed_utc, s.when_changed_utc) AS changed_utc,
        c.changed_by, c.changed_from, c.removed_utc, c.removed_by,
        coalesce(t.recipients, 0) AS window_recipients,
        coalesce(r.unprovisioned_recipients, 0) AS unprovisioned_recipients,
        coalesce(t.spam_recipients, 0) AS spam_recipients,
        coalesce(t.outside_ip_recipients, 0) AS outside_ip_recipients,
        t.outside_ips, t.first_traffic_utc, t.last_traffic_utc,
        list_min(list_transform(s.sender_ip_addresses, lambda x: range_prefix(x))) AS widest_prefix,
        coalesce(coalesce(s.when_created_utc, c.created_utc) >= b.window_start, false)
            AS created_in_window,
        coalesce(c.changed_utc >= b.window_start, false)
            OR coalesce(s.when_changed_utc >= b.window_start
                        AND s.when_changed_utc > s.when_created_utc + INTERVAL 5 MINUTE, false)
            AS changed_in_window,
        coalesce(s.connector_type = 'OnPremises' AND list_contains(s.sender_domains, '*')
                 AND NOT (coalesce(s.restrict_domains_to_certificate, false)
                          AND s.tls_sender_certificate_name IS NOT NULL), false) AS open_relay,
        s.name IS NULL AND coalesce(t.seen_in_cloud_trace, false)
            AND (EXISTS (SELECT 1 FROM snap AS x WHERE x.tenant = n.tenant)
                 OR EXISTS (SELECT 1 FROM ingest_log AS l WHERE l.tenant = n.tenant
                            AND l.source_format = 'inbound_connectors'
                            AND l.status <> 'rejected'))
            AND NOT starts_with(n.k, 'to_default')
            AND NOT EXISTS (SELECT 1 FROM outbound_connectors AS o
                            WHERE o.tenant = n.tenant AND lower(o.name) = n.k)
            AS unknown_in_traffic,
        coalesce(r.unprovisioned_recipients, 0) >= $unprovisioned_min_messages::INTEGER
            AND coalesce(r.unprovisioned_recipients, 0)
                > $unprovisioned_max_share::DOUBLE * coalesce(t.recipients, 0)
            -- a share as high before the window is the connector's forwarding habit, up
            -- to steady_share_cap (the same rule as the tenant's share)
            AND (coalesce(r.unprovisioned_recipients, 0)
                     > $steady_share_cap::DOUBLE * coalesce(t.recipients, 0)
                 OR coalesce(r.baseline_unprovisioned / nullif(bt.recipients, 0), 0)
                     * $unprovisioned_rise_ratio::DOUBLE
                     < r.unprovisioned_recipients / nullif(t.recipients, 0))
            AS relays_unprovisioned,
        b.window_start
    FROM names AS n
    CROSS JOIN b
    LEFT JOIN snap AS s ON s.tenant = n.tenant AND lower(s.name) = n.k
    LEFT JOIN change_summary AS c ON c.tenant = n.tenant AND c.k = n.k
    LEFT JOIN traffic AS t ON t.tenant = n.tenant AND t.k = n.k
    LEFT JOIN relayed AS r ON r.tenant = n.tenant AND r.k = n.k
    LEFT JOIN baseline_traffic AS bt ON bt.tenant = n.tenant AND bt.k = n.k
),
scored AS (
    SELECT j.*,
        list_filter([
            CASE WHEN created_in_window THEN 'created ' || strftime(created_utc, '%Y-%m-%d %H:%M UTC')
                 || coalesce(' by ' || created_by, '') || coalesce(' from ' || created_from, '') END,
            CASE WHEN changed_in_window THEN 'changed ' || strftime(changed_utc, '%Y-%m-%d %H:%M UTC')
                 || coalesce(' by ' || changed_by, '') || coalesce(' from ' || changed_from, '') END,
            CASE WHEN open_relay THEN 'OnPremises connector accepting any sender domain (smtp:*) '
                 || 'without a certificate restriction' END,
            CASE WHEN widest_prefix <= $wide_range_prefix::INTEGER THEN 'accepts a whole /'
                 || widest_prefix || ' (' || array_to_string(sender_ip_addresses, ', ') || ')' END,
            CASE WHEN outside_ip_recipients > 0 THEN outside_ip_recipients
                 || ' recipients from IPs outside its SenderIPAddresses (e.g. '
                 || array_to_string(outside_ips, ', ') || ')' END,
            CASE WHEN unprovisioned_recipients > 0 THEN unprovisioned_recipients
                 || ' recipients from unregistered domains'
                 || CASE WHEN relays_unprovisioned THEN '' ELSE ' (a small share of its '
                         || window_recipients || ': forwarding-sized)' END END,
            CASE WHEN window_recipients > 0 AND spam_recipients >= $spam_share::DOUBLE * window_recipients
                 THEN spam_recipients || ' of ' || window_recipients
                 || ' recipients filtered as spam or refused' END,
            CASE WHEN unknown_in_traffic THEN 'carries traffic but is not in the tenant''s connector list' END,
            CASE WHEN removed_utc IS NOT NULL THEN 'removed ' || strftime(removed_utc, '%Y-%m-%d %H:%M UTC')
                 || coalesce(' by ' || removed_by, '') END
        ], lambda x: x IS NOT NULL) AS reasons,
        30 * created_in_window::INTEGER + 15 * changed_in_window::INTEGER
        + 25 * open_relay::INTEGER
        + 10 * coalesce(widest_prefix <= $wide_range_prefix::INTEGER, false)::INTEGER
        + 25 * (outside_ip_recipients > 0)::INTEGER
        + CASE WHEN relays_unprovisioned THEN 40 WHEN unprovisioned_recipients > 0 THEN 10
               ELSE 0 END
        + 20 * (window_recipients > 0 AND spam_recipients >= $spam_share::DOUBLE * window_recipients)::INTEGER
        + 40 * unknown_in_traffic::INTEGER AS score
    FROM judged AS j
)
SELECT * EXCLUDE (window_start), score >= $connector_score::INTEGER AS suspicious
FROM scored
ORDER BY tenant, score DESC, connector
