-- A sender domain's daily timeline in one tenant: messages, recipients, outcome, connectors and IPs
-- Example: tenant=contoso domain=bestpharma-deals.biz
-- Header or envelope domain, compared lower-case; every day the lake holds.
SELECT date AS day,
       count(DISTINCT coalesce(network_message_id, message_id)) AS messages,
       count(*) AS recipients,
       count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status IN ('filtered_as_spam', 'quarantined')) AS spam,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       list(DISTINCT connector ORDER BY connector) FILTER (WHERE connector IS NOT NULL) AS connectors,
       list(DISTINCT client_ip ORDER BY client_ip) FILTER (WHERE client_ip IS NOT NULL)[1:5] AS client_ips,
       min(received_utc) AS first_seen_utc, max(received_utc) AS last_seen_utc
FROM messages
WHERE tenant = $tenant::VARCHAR
  AND (sender_domain = lower($domain::VARCHAR) OR envelope_domain = lower($domain::VARCHAR))
GROUP BY date
ORDER BY date
