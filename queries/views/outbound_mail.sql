-- Outbound recipient rows, each with whether its header and envelope sender domains were
-- covered by the tenant's accepted domains when it was sent (NULL: the tenant has no
-- accepted-domain snapshot, so nothing can be said), and whether it carries a spam signal.
SELECT
    m.*,
    CASE WHEN d.tenant IS NULL THEN NULL
         ELSE NOT is_provisioned(m.tenant, m.sender_domain, m.received_utc) END AS sender_unprovisioned,
    CASE WHEN d.tenant IS NULL THEN NULL
         ELSE NOT is_provisioned(m.tenant, m.envelope_domain, m.received_utc) END AS envelope_unprovisioned,
    is_spam(m.status, m.spam_verdict, m.ndr_code) AS spam_signal
FROM messages AS m
LEFT JOIN (SELECT DISTINCT tenant FROM accepted_domains) AS d ON d.tenant = m.tenant
WHERE m.direction = 'outbound'
