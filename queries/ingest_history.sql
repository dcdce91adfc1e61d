-- What the lake holds for a tenant: each ingested or rejected file with its format, rows, rejected rows and time span
-- Example: tenant=contoso
SELECT source_file, source_format, status, rows, rejected_rows, reason, first_event_utc,
       last_event_utc, ingested_utc, size_bytes, source_sha256
FROM ingest_log
WHERE tenant = $tenant::VARCHAR
ORDER BY ingested_utc DESC, source_file
