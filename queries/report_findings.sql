-- The findings of one as-of day, compromise evidence first, for the report's tenant sections
-- Example: as_of=2026-11-28 tenant=contoso
SELECT *
FROM findings
WHERE as_of = $as_of::DATE AND ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
ORDER BY tenant, CASE severity WHEN 'compromise' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
         detection, recipients DESC NULLS LAST, subject
