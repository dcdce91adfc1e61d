-- The verdicts of one as-of day, riskiest first: what the report's overview lists
-- Example: as_of=2026-11-28 tenant=null
-- Ordered block before unblock, then blocked now, then score, then tenant.
SELECT *
FROM verdicts
WHERE as_of = $as_of::DATE AND ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
ORDER BY recommendation = 'unblock', NOT blocked_now, score DESC, tenant
