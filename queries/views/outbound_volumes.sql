-- Outbound recipients, messages, spam-signalled and bounced (5.1.1, 5.1.10: no such
-- address) recipients per tenant, hour, connector and sender: what volume baselines are built from. Detection's cache keeps these per day,
-- so a night's baselines read hours, not 35 days of rows; outbound_hours(since, until)
-- gives the same volumes for any period, its partial first and last hours from the rows.
-- messages counts each (connector, sender, message id) once, rows without any id as one.
SELECT tenant, date, date_trunc('hour', received_utc) AS hour, connector, sender_address,
       count(*) AS recipients,
       message_count(network_message_id, message_id) AS messages,
       count(*) FILTER (WHERE spam_signal) AS spam_recipients,
       count(*) FILTER (WHERE is_bounce(ndr_code)) AS bounce_recipients
FROM outbound_mail
GROUP BY ALL
