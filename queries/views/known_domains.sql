-- Each tenant's own domains, as outbound_mail judges direction and registration with them,
-- one row per span of time a domain was the tenant's own (covered_since, covered_until;
-- covered_until NULL: still is). Accepted domains (inferred = false) are the tenant's own
-- as they were at each message's time:
--   * from WhenCreatedUTC of a snapshot that lists them, or a successful New-AcceptedDomain
--     audit event (its DomainName);
--   * until a successful Remove-AcceptedDomain audit event (its Identity, else ObjectId; an
--     accepted domain's Name is its DomainName unless an admin chose otherwise), unless a
--     later snapshot still lists the domain created before that event (the snapshot wins);
--   * or until the first snapshot that no longer lists it, where both that snapshot and the
--     one before list the tenant's initial *.onmicrosoft.com domain (two whole cloud
--     exports: an on-premises Get-AcceptedDomain or a filtered export is not a removal).
--     The removal happened at some time before that snapshot; counting the mail up to it as
--     the tenant's own errs towards unblock, never towards a false block.
-- For a tenant the lake holds no accepted-domain export for, the domains its mail shows it
-- owns (inferred = true, subdomains included, covered at any time):
--   * any *.onmicrosoft.com domain it receives mail for (<tenant>.onmicrosoft.com counts as
--     its own anyway, but is no evidence: a tenant with nothing else inferred stays unjudged);
--   * the recipient domains of rows its exports call inbound or internal (directionality,
--     or the trace's Organization);
--   * a domain that both sends mail to and receives mail from at least
--     infer_min_counterparties() ([detect] setting) other domains outside the set. A tenant's
--     own domain writes to and hears from the world; a correspondent (gmail.com, a partner)
--     only writes to and hears from the tenant's own domains; a domain an attacker sends
--     from hears from nobody (an NDR at most). Two rounds: the second counts counterparties
--     outside the first round's set, so a partner writing to several own domains drops out.
-- The evidence says when domains were inferred (tenant_activity.inferred_domains).
WITH listed AS (SELECT DISTINCT tenant FROM accepted_domains),
mail AS (  -- who wrote to whom, in the tenants without an accepted-domain export
    SELECT DISTINCT tenant, direction, sender_domain AS s, recipient_domain AS r
    FROM messages
    WHERE tenant NOT IN (SELECT tenant FROM listed) AND recipient_domain IS NOT NULL
),
seeds AS (
    SELECT DISTINCT tenant, r AS dom FROM mail
    WHERE direction IN ('inbound', 'internal') OR ends_with(r, '.onmicrosoft.com')
),
links AS (  -- each domain's counterparties, both ways
    SELECT DISTINCT tenant, s AS dom, r AS other, true AS sends FROM mail
    WHERE s IS NOT NULL AND s <> r
    UNION
    SELECT DISTINCT tenant, r, s, false FROM mail WHERE s IS NOT NULL AND s <> r
),
round1 AS (
    SELECT l.tenant, l.dom FROM links AS l
    LEFT JOIN seeds AS k ON k.tenant = l.tenant AND k.dom = l.other
    WHERE k.dom IS NULL
    GROUP BY l.tenant, l.dom
    HAVING least(count(*) FILTER (WHERE l.sends), count(*) FILTER (WHERE NOT l.sends))
           >= infer_min_counterparties()
    UNION SELECT tenant, dom FROM seeds
),
round2 AS (
    SELECT l.tenant, l.dom FROM links AS l
    LEFT JOIN round1 AS k ON k.tenant = l.tenant AND k.dom = l.other
    WHERE k.dom IS NULL
    GROUP BY l.tenant, l.dom
    HAVING least(count(*) FILTER (WHERE l.sends), count(*) FILTER (WHERE NOT l.sends))
           >= infer_min_counterparties()
    UNION SELECT tenant, dom FROM seeds
),
present AS (  -- `*`, `*.com` or `*.co.uk` (on premises: a public suffix) covers the
              -- internet, not an own domain: an open-relay finding (onprem_relay_settings)
    SELECT DISTINCT tenant, snapshot_utc, domain_name, match_subdomains,
           coalesce(when_created_utc, '-infinity'::TIMESTAMPTZ) AS created
    FROM accepted_domains WHERE NOT is_public_suffix(domain_name)
),
audited AS (
    SELECT tenant, creation_utc AS at_utc, operation,
           lower(trim(trim(coalesce(
               CASE WHEN operation ILIKE 'New-%' THEN json_extract_string(parameters, '$.DomainName') END,
               json_extract_string(parameters, '$.Identity'), object_id)), '*.')) AS dom
    FROM audit_events
    WHERE operation IN ('New-AcceptedDomain', 'Remove-AcceptedDomain')
      AND coalesce(lower(result_status) IN ('success', 'succeeded', 'true'), true)
),
whole AS (  -- cloud snapshots (they list the initial domain), each with the one after it
    SELECT tenant, snapshot_utc,
           lead(snapshot_utc) OVER (PARTITION BY tenant ORDER BY snapshot_utc) AS next_utc
    FROM accepted_domains GROUP BY tenant, snapshot_utc HAVING bool_or(is_initial)
),
added AS (
    SELECT DISTINCT tenant, domain_name AS dom, match_subdomains, created AS added_utc FROM present
    UNION
    SELECT tenant, dom, false, at_utc FROM audited
    WHERE operation = 'New-AcceptedDomain' AND NOT is_public_suffix(dom)
),
removed AS (
    SELECT a.tenant, a.dom, a.at_utc FROM audited AS a
    WHERE a.operation = 'Remove-AcceptedDomain' AND NOT EXISTS (
        SELECT 1 FROM present AS p
        WHERE p.tenant = a.tenant AND p.domain_name = a.dom
          AND p.snapshot_utc > a.at_utc AND p.created <= a.at_utc)
    UNION
    SELECT p.tenant, p.domain_name, w.next_utc FROM present AS p
    JOIN whole AS w ON w.tenant = p.tenant AND w.snapshot_utc = p.snapshot_utc
    WHERE w.next_utc IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM present AS q
        WHERE q.tenant = p.tenant AND q.domain_name = p.domain_name
          AND q.snapshot_utc = w.next_utc)
),
spans AS (  -- each addition lasts until the first removal after it
    SELECT a.tenant, a.dom, a.match_subdomains, a.added_utc, min(r.at_utc) AS removed_utc
    FROM added AS a
    LEFT JOIN removed AS r ON r.tenant = a.tenant AND r.dom = a.dom AND r.at_utc > a.added_utc
    GROUP BY ALL
)
SELECT tenant, dom AS domain_name, match_subdomains, min(added_utc) AS covered_since,
       removed_utc AS covered_until, false AS inferred
FROM spans
GROUP BY tenant, dom, match_subdomains, removed_utc
UNION ALL
SELECT tenant, dom, true, '-infinity'::TIMESTAMPTZ, NULL::TIMESTAMPTZ, true FROM round2
