-- On-premises settings that make an Exchange server an open relay, from each tenant's latest on-premises configuration snapshots
-- Example: as_of=2026-11-28 tenant=tailspin
-- One row per setting found in each table's snapshot nearest as_of (one taken before it
-- preferred, as for the inbound connectors):
--   relay_domain_wildcard: an accepted domain `*` or `*.<public suffix>` (`*.com`,
--     `*.co.uk`: anyone can register under it, by the Public Suffix List) of type
--     InternalRelay or ExternalRelay: the server relays mail for the whole internet;
--   anonymous_accept_any_recipient: a receive connector grants ms-Exch-SMTP-Accept-Any-
--     Recipient to NT AUTHORITY\ANONYMOUS LOGON (Get-ADPermission): anyone who reaches it
--     may relay;
--   anonymous_wide_ranges: AnonymousUsers on a receive connector open to a /8 or wider
--     (RemoteIPRanges, e.g. 0.0.0.0-255.255.255.255) that also relays externally
--     (ExternalAuthoritative, or the anonymous right above);
--   send_connector_to_eop_for_all: a send connector routing every domain (`*`) to
--     Exchange Online: whatever an on-premises relay accepts leaves as the tenant's mail.
-- server, connector and setting name what to change; tenant = NULL means every tenant.
WITH latest AS (  -- per table, the snapshot nearest as_of (one taken before it first)
    SELECT t, tenant, snap_at FROM (
        SELECT DISTINCT 'accepted_domains' AS t, tenant, snapshot_utc AS snap_at FROM accepted_domains
        UNION ALL
        SELECT DISTINCT 'receive_connectors', tenant, snapshot_utc FROM receive_connectors
        UNION ALL
        SELECT DISTINCT 'send_connectors', tenant, snapshot_utc FROM send_connectors
        UNION ALL
        SELECT DISTINCT 'ad_permissions', tenant, snapshot_utc FROM ad_permissions)
    QUALIFY row_number() OVER (
        PARTITION BY t, tenant
        ORDER BY snap_at > $as_of::TIMESTAMPTZ, abs(epoch(snap_at) - epoch($as_of::TIMESTAMPTZ))) = 1
),
domains AS (
    SELECT a.* FROM accepted_domains AS a
    JOIN latest AS l ON l.t = 'accepted_domains' AND l.tenant = a.tenant AND l.snap_at = a.snapshot_utc
),
receive AS (
    SELECT r.*, coalesce(r.server || '\' || r.name, r.identity, r.name) AS key
    FROM receive_connectors AS r
    JOIN latest AS l ON l.t = 'receive_connectors' AND l.tenant = r.tenant AND l.snap_at = r.snapshot_utc
),
anonymous_relay AS (  -- receive connectors anyone may relay through (by their Identity)
    SELECT DISTINCT p.tenant, p.identity, p.snapshot_utc
    FROM ad_permissions AS p
    JOIN latest AS l ON l.t = 'ad_permissions' AND l.tenant = p.tenant AND l.snap_at = p.snapshot_utc
    WHERE NOT p.deny
      AND upper(p.user) LIKE '%ANONYMOUS LOGON%'
      AND list_contains(list_transform(p.extended_rights, lambda x: lower(x)),
                        'ms-exch-smtp-accept-any-recipient')
),
sends AS (
    SELECT s.* FROM send_connectors AS s
    JOIN latest AS l ON l.t = 'send_connectors' AND l.tenant = s.tenant AND l.snap_at = s.snapshot_utc
),
found AS (
    SELECT tenant, 'relay_domain_wildcard' AS kind, NULL AS server,
           CASE WHEN domain_name = '*' THEN '*' ELSE '*.' || domain_name END AS object,
           'accepted domain ' || CASE WHEN domain_name = '*' THEN '*' ELSE '*.' || domain_name END
               || ' of type ' || domain_type || ' relays mail for every domain under it'
               AS setting,
           snapshot_utc
    FROM domains
    WHERE lower(domain_type) IN ('internalrelay', 'externalrelay')
      AND (domain_name = '*' OR (match_subdomains AND is_public_suffix(domain_name)))
    UNION ALL
    SELECT p.tenant, 'anonymous_accept_any_recipient',
           regexp_extract(p.identity, '^([^\\]+)\\', 1), p.identity,
           'NT AUTHORITY\ANONYMOUS LOGON holds ms-Exch-SMTP-Accept-Any-Recipient on receive '
               || 'connector ' || p.identity || ': anyone who reaches it may relay',
           p.snapshot_utc
    FROM anonymous_relay AS p
    UNION ALL
    SELECT r.tenant, 'anonymous_wide_ranges', r.server, r.key,
           'receive connector ' || r.key || ' takes AnonymousUsers from '
               || array_to_string(r.remote_ip_ranges, ', ') || ' and relays externally ('
               || CASE WHEN list_contains(list_transform(r.auth_mechanism, lambda x: lower(x)),
                                          'externalauthoritative')
                       THEN 'AuthMechanism ExternalAuthoritative'
                       ELSE 'anonymous ms-Exch-SMTP-Accept-Any-Recipient' END || ')',
           r.snapshot_utc
    FROM receive AS r
    WHERE coalesce(r.enabled, true)
      AND list_contains(list_transform(r.permission_groups, lambda x: lower(x)), 'anonymoususers')
      AND list_min(list_transform(r.remote_ip_ranges, lambda x: range_prefix(x))) <= 8
      AND (list_contains(list_transform(r.auth_mechanism, lambda x: lower(x)),
                         'externalauthoritative')
           OR EXISTS (SELECT 1 FROM anonymous_relay AS a
                      WHERE a.tenant = r.tenant AND lower(a.identity) IN (lower(r.key), lower(r.name))))
    UNION ALL
    SELECT s.tenant, 'send_connector_to_eop_for_all', NULL, s.name,
           'send connector ' || s.name || ' routes every domain (*) to Exchange Online ('
               || array_to_string(s.smart_hosts, ', ') || ') from '
               || coalesce(array_to_string(s.source_transport_servers, ', '), 'its servers')
               || ': whatever an on-premises server accepts leaves as the tenant''s mail',
           s.snapshot_utc
    FROM sends AS s
    WHERE coalesce(s.enabled, true) AND list_contains(s.address_spaces, '*')
      AND (coalesce(s.cloud_services_mail_enabled, false)
           OR list_bool_or(list_transform(s.smart_hosts, lambda h: ends_with(lower(h), '.mail.protection.outlook.com'))))
)
SELECT * FROM found
WHERE $tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR
ORDER BY tenant, kind, object
