-- Outbound recipients, messages, spam-signalled and bounced (5.1.1, 5.1.10: no such
-- address) recipients per tenant, hour, connector and sender, from mail_rollup: what volume
-- baselines are built from. outbound_hours(since, until) gives the same for any period.
-- messages counts each (connector, sender, message id) once, rows without any id as one.
SELECT tenant, date, date_trunc('hour', received_utc) AS hour, connector, sender_address,
       sum(recipients)::BIGINT AS recipients,
       keys_count(message_keys, idless_recipients) AS messages,
       sum(spam_recipients)::BIGINT AS spam_recipients,
       sum(bounce_recipients)::BIGINT AS bounce_recipients
FROM mail_rollup
WHERE direction = 'outbound'
GROUP BY ALL
