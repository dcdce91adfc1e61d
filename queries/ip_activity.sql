-- Every tenant's mail from one client IP: days, directions, senders and connectors
-- Example: client_ip=198.51.100.17
SELECT tenant, date AS day, direction,
       count(*) AS recipients,
       count(DISTINCT sender_address) AS senders,
       list(DISTINCT sender_domain ORDER BY sender_domain)[1:5] AS sample_sender_domains,
       list(DISTINCT connector ORDER BY connector) FILTER (WHERE connector IS NOT NULL) AS connectors
FROM messages
WHERE client_ip = $client_ip::VARCHAR
GROUP BY ALL
ORDER BY tenant, day, direction
