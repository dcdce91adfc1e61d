-- The NDRs per day detect stored for one as-of day, for the report's NDR timeline
-- Example: as_of=2026-11-28 tenant=contoso
SELECT tenant, day, ndr_code, recipients, senders
FROM ndr_days
WHERE as_of = $as_of::DATE AND ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
ORDER BY tenant, day, ndr_code
