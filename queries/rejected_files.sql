-- Input files that could not be read, newest first, with the reason and where the copy is kept
-- Example: tenant=null
-- A copy of each is kept in <lake>/rejected/<tenant>/ with a .reason file beside it.
SELECT tenant, source_file, reason, size_bytes, ingested_utc, source_sha256
FROM ingest_log
WHERE status = 'rejected' AND ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
ORDER BY ingested_utc DESC, source_file
