-- Each tenant's own domains, as outbound_mail judges direction and registration with them:
-- its accepted domains (inferred = false, covered from their earliest WhenCreatedUTC), or,
-- for a tenant the lake holds no accepted-domain export for, the domains its mail shows it
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
)
SELECT tenant, domain_name, match_subdomains,
       min(coalesce(when_created_utc, '-infinity'::TIMESTAMPTZ)) AS covered_since,
       false AS inferred
FROM accepted_domains
WHERE contains(domain_name, '.')  -- `*` or `*.com` (on premises) covers the internet, not an
                                  -- own domain: an open-relay finding (onprem_relay_settings)
GROUP BY tenant, domain_name, match_subdomains
UNION ALL
SELECT tenant, dom, true, '-infinity'::TIMESTAMPTZ, true FROM round2
