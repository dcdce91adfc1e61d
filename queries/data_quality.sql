-- Per tenant: files ingested and rejected, rows kept and rejected, and when data last arrived
-- Example: tenant=null
SELECT tenant,
       count(*) FILTER (WHERE status = 'ingested') AS files_ingested,
       count(*) FILTER (WHERE status = 'rejected') AS files_rejected,
       coalesce(sum(rows), 0) AS rows,
       coalesce(sum(rejected_rows), 0) AS rejected_rows,
       max(ingested_utc) AS last_ingested_utc,
       max(last_event_utc) AS last_event_utc
FROM ingest_log
WHERE ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
GROUP BY tenant
ORDER BY files_rejected DESC, rejected_rows DESC, tenant
