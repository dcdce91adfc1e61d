-- Every recipient row, its direction decided (below), each with whether its header and envelope sender domains were
-- the tenant's own when it was sent (NULL: the tenant's own domains are unknown, so nothing
-- can be said), and whether it carries a spam signal. The own domains are known_domains:
-- the accepted domains as they were when it was sent (MatchSubDomains honoured), or
-- those inferred from the tenant's mail when it has no accepted-domain export. Coverage is
-- worked out once per (tenant, domain) and joined back, which costs one join, not a lookup
-- per row. Direction is decided here too, from the own domains the lake holds now (to an
-- own domain is inbound, internal from one; to any other domain outbound), so an export
-- that comes a night late corrects the next run. Only a direction the export itself states
-- (directionality: historical search reports, tracking logs) is kept as ingested.
WITH owners AS (SELECT DISTINCT tenant FROM known_domains),
used AS (  -- every domain of the rows: senders and envelopes, and recipients for direction
    SELECT DISTINCT tenant, sender_domain AS dom FROM messages WHERE sender_domain IS NOT NULL
    UNION
    SELECT DISTINCT tenant, envelope_domain FROM messages WHERE envelope_domain IS NOT NULL
    UNION
    SELECT DISTINCT tenant, recipient_domain FROM messages WHERE recipient_domain IS NOT NULL
),
coverage AS (  -- a domain's spans as the tenant's own (one, still open, for nearly all)
    SELECT u.tenant, u.dom, min(k.covered_since) AS covered_since,
           count(*) > 1 OR bool_or(k.covered_until IS NOT NULL) AS ended,
           list(struct_pack(span_from := k.covered_since, span_to := k.covered_until)) AS spans
    FROM used AS u
    JOIN known_domains AS k
      ON k.tenant = u.tenant
     AND (u.dom = k.domain_name OR (k.match_subdomains AND ends_with(u.dom, '.' || k.domain_name)))
    GROUP BY u.tenant, u.dom
),
resolved AS (
    SELECT m.* REPLACE (
        CASE WHEN m.recipient_domain IS NULL OR m.tenant NOT IN (SELECT tenant FROM owners)
                  OR (m.direction <> 'unknown' AND states_direction(m.source_format))
                  THEN m.direction
             WHEN covered(r.covered_since, r.ended, r.spans, m.received_utc)
                  THEN CASE WHEN covered(s.covered_since, s.ended, s.spans, m.received_utc)
                            THEN 'internal' ELSE 'inbound' END
             ELSE 'outbound' END AS direction)
    FROM messages AS m
    LEFT JOIN coverage AS r ON r.tenant = m.tenant AND r.dom = m.recipient_domain
    LEFT JOIN coverage AS s ON s.tenant = m.tenant AND s.dom = m.sender_domain
)
SELECT
    m.*,
    CASE WHEN w.tenant IS NULL THEN NULL
         ELSE NOT (m.sender_domain IS NULL OR m.sender_domain = m.tenant || '.onmicrosoft.com'
                   OR covered(cs.covered_since, cs.ended, cs.spans, m.received_utc))
         END AS sender_unprovisioned,
    CASE WHEN w.tenant IS NULL THEN NULL
         ELSE NOT (m.envelope_domain IS NULL OR m.envelope_domain = m.tenant || '.onmicrosoft.com'
                   OR covered(ce.covered_since, ce.ended, ce.spans, m.received_utc))
         END AS envelope_unprovisioned,
    is_spam(m.status, m.spam_verdict, m.ndr_code) AS spam_signal
FROM resolved AS m
LEFT JOIN owners AS w ON w.tenant = m.tenant
LEFT JOIN coverage AS cs ON cs.tenant = m.tenant AND cs.dom = m.sender_domain
LEFT JOIN coverage AS ce ON ce.tenant = m.tenant AND ce.dom = m.envelope_domain
