-- Outbound recipient rows, each with whether its header and envelope sender domains were
-- covered by the tenant's accepted domains when it was sent (NULL: the tenant has no
-- accepted-domain snapshot, so nothing can be said), and whether it carries a spam signal.
-- Coverage is worked out once per (tenant, domain) - the earliest WhenCreatedUTC of an
-- accepted domain covering it, MatchSubDomains honoured - and joined back, which is the
-- same as is_provisioned(tenant, domain, received_utc) but costs one join, not a lookup
-- per row. Rows whose direction ingest could not tell (no accepted domains or Organization
-- yet) take it here from the accepted domains the lake holds now, so an export that comes
-- a night late corrects the next run: to an accepted domain is inbound (internal from
-- one), to any other domain outbound.
WITH listed AS (SELECT DISTINCT tenant FROM accepted_domains),
used AS (  -- the domains judged: senders of outbound rows, and every domain of the rows
           -- whose direction is still to be told
    SELECT DISTINCT tenant, sender_domain AS dom FROM messages
    WHERE direction IN ('outbound', 'unknown') AND sender_domain IS NOT NULL
    UNION
    SELECT DISTINCT tenant, envelope_domain FROM messages
    WHERE direction IN ('outbound', 'unknown') AND envelope_domain IS NOT NULL
    UNION
    SELECT DISTINCT tenant, recipient_domain FROM messages
    WHERE direction = 'unknown' AND recipient_domain IS NOT NULL
),
coverage AS (
    SELECT u.tenant, u.dom,
           min(coalesce(a.when_created_utc, '-infinity'::TIMESTAMPTZ)) AS covered_since
    FROM used AS u
    JOIN accepted_domains AS a
      ON a.tenant = u.tenant
     AND (u.dom = a.domain_name OR (a.match_subdomains AND ends_with(u.dom, '.' || a.domain_name)))
    GROUP BY u.tenant, u.dom
),
resolved AS (  -- direction from the accepted domains (at any time) where ingest had none
    SELECT m.* REPLACE (
        CASE WHEN m.direction <> 'unknown' OR m.recipient_domain IS NULL
                  OR m.tenant NOT IN (SELECT tenant FROM listed) THEN m.direction
             WHEN r.dom IS NOT NULL AND s.dom IS NOT NULL THEN 'internal'
             WHEN r.dom IS NOT NULL THEN 'inbound'
             ELSE 'outbound' END AS direction)
    FROM messages AS m
    LEFT JOIN coverage AS r ON m.direction = 'unknown' AND r.tenant = m.tenant
                           AND r.dom = m.recipient_domain
    LEFT JOIN coverage AS s ON m.direction = 'unknown' AND s.tenant = m.tenant
                           AND s.dom = m.sender_domain
)
SELECT
    m.*,
    CASE WHEN l.tenant IS NULL THEN NULL
         ELSE NOT (m.sender_domain IS NULL OR m.sender_domain = m.tenant || '.onmicrosoft.com'
                   OR coalesce(m.received_utc >= cs.covered_since, false)) END AS sender_unprovisioned,
    CASE WHEN l.tenant IS NULL THEN NULL
         ELSE NOT (m.envelope_domain IS NULL OR m.envelope_domain = m.tenant || '.onmicrosoft.com'
                   OR coalesce(m.received_utc >= ce.covered_since, false)) END AS envelope_unprovisioned,
    is_spam(m.status, m.spam_verdict, m.ndr_code) AS spam_signal
FROM resolved AS m
LEFT JOIN listed AS l ON l.tenant = m.tenant
LEFT JOIN coverage AS cs ON cs.tenant = m.tenant AND cs.dom = m.sender_domain
LEFT JOIN coverage AS ce ON ce.tenant = m.tenant AND ce.dom = m.envelope_domain
WHERE m.direction = 'outbound'
