-- Senders Microsoft restricted (5.1.8) that still push mail afterwards
-- Example: as_of=2026-11-28 window_days=7 baseline_days=28 tenant=contoso
-- For each sender with a 5.1.8 NDR in the window: when it was first restricted, and the
-- outbound recipients (direction as mail_rollup judges it) it still sent (or tried to)
-- from then until as_of, and how many of them were refused with 5.1.8 (ndr_rollup).
-- tenant = NULL means every tenant.
WITH b AS (SELECT * FROM detection_bounds($as_of::TIMESTAMPTZ, $window_days::INTEGER, $baseline_days::INTEGER)),
restricted AS (
    SELECT m.tenant, m.sender_address, min(m.received_utc) AS first_restricted_utc
    FROM ndr_rollup AS m, b
    WHERE in_period(m.date, m.received_utc, b.window_start, b.as_of)
      AND m.ndr_code = '5.1.8'
      AND ($tenant::VARCHAR IS NULL OR m.tenant = $tenant::VARCHAR)
    GROUP BY ALL
)
SELECT
    r.tenant,
    r.sender_address,
    r.first_restricted_utc,
    sum(o.recipients)::BIGINT AS recipients_after,
    coalesce((SELECT sum(n.recipients) FROM ndr_rollup AS n
              WHERE n.tenant = r.tenant AND n.sender_address = r.sender_address
                AND n.ndr_code = '5.1.8' AND n.date >= CAST(r.first_restricted_utc AS DATE)
                AND n.received_utc >= r.first_restricted_utc AND n.received_utc < b.as_of),
             0)::BIGINT AS refused_after,
    max(o.received_utc) AS last_seen_utc
FROM restricted AS r
CROSS JOIN b
JOIN mail_rollup AS o
  ON o.tenant = r.tenant AND o.sender_address = r.sender_address AND o.direction = 'outbound'
WHERE o.date >= CAST(r.first_restricted_utc AS DATE)
  AND o.received_utc >= r.first_restricted_utc AND o.received_utc < b.as_of
GROUP BY ALL
ORDER BY r.tenant, recipients_after DESC, r.sender_address
