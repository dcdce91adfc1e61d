-- Rows ingestion could not use, per tenant, file and reason, with a sample line and value
-- Example: tenant=contoso
SELECT source_file, reason, count(*) AS rows, min(source_line) AS first_line,
       arg_min(raw, source_line) AS first_raw
FROM rejects
WHERE tenant = $tenant::VARCHAR
GROUP BY source_file, reason
ORDER BY rows DESC, source_file, reason
