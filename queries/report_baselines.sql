-- The hourly baselines detect stored for one as-of day, for the report's charts
-- Example: as_of=2026-11-28 tenant=contoso
SELECT tenant, hour_of_day, weekend, baseline, hours_seen
FROM baselines
WHERE as_of = $as_of::DATE AND ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
ORDER BY tenant, weekend, hour_of_day
