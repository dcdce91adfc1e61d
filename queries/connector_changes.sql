-- Inbound and outbound connector change history of a tenant: audit events and snapshot dates, newest first
-- Example: tenant=contoso
-- Audit rows say who changed what from which IP (with the cmdlet's parameters); snapshot
-- rows give each connector's WhenCreatedUTC / WhenChangedUTC as exported.
SELECT creation_utc AS at_utc, 'audit' AS source, operation, object_id AS connector, user_id,
       client_ip, parameters AS detail
FROM audit_events
WHERE tenant = $tenant::VARCHAR AND operation ILIKE '%connector'
UNION ALL
SELECT DISTINCT when_created_utc, 'inbound snapshot', 'created', name, NULL, NULL,
       'type ' || coalesce(connector_type, '?') || ', IPs ' || array_to_string(sender_ip_addresses, ', ')
FROM inbound_connectors WHERE tenant = $tenant::VARCHAR AND when_created_utc IS NOT NULL
UNION ALL
SELECT DISTINCT when_changed_utc, 'inbound snapshot', 'changed', name, NULL, NULL, NULL
FROM inbound_connectors
WHERE tenant = $tenant::VARCHAR AND when_changed_utc > when_created_utc
UNION ALL
SELECT DISTINCT when_created_utc, 'outbound snapshot', 'created', name, NULL, NULL,
       'smart hosts ' || array_to_string(smart_hosts, ', ')
FROM outbound_connectors WHERE tenant = $tenant::VARCHAR AND when_created_utc IS NOT NULL
ORDER BY at_utc DESC NULLS LAST, connector
