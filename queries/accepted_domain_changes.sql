-- Accepted-domain history of a tenant: domains with their creation dates, and audit events that added, changed or removed one
-- Example: tenant=contoso
SELECT creation_utc AS at_utc, 'audit' AS source, operation, object_id AS domain, user_id,
       client_ip, parameters AS detail
FROM audit_events
WHERE tenant = $tenant::VARCHAR AND operation ILIKE '%AcceptedDomain'
UNION ALL
SELECT DISTINCT when_created_utc, 'snapshot', 'created', domain_name, NULL, NULL,
       coalesce(domain_type, '?') || CASE WHEN match_subdomains THEN ', MatchSubDomains' ELSE '' END
       || CASE WHEN is_default THEN ', default' ELSE '' END
FROM accepted_domains WHERE tenant = $tenant::VARCHAR
ORDER BY at_utc DESC NULLS LAST, domain
