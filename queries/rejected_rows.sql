-- Rows ingestion could not use, per tenant, file and reason, with a sample line and value
-- Example: tenant=contoso
-- tenant = NULL means every tenant.
SELECT tenant, source_file, reason, count(*) AS rows, min(source_line) AS first_line,
       arg_min(raw, source_line) AS first_raw
FROM rejects
WHERE $tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR
GROUP BY tenant, source_file, reason
ORDER BY rows DESC, tenant, source_file, reason
