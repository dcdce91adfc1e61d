-- The mail rollup (lake table mail_rollup, rollups/mail/tenant=/date=/): mail_judged's rows
-- summed per (tenant, day, received time, direction, connector, client IP, sender, sender
-- and envelope domains, their registration, source format). Every key is an attribute of
-- the message, never of a recipient, so a message's recipients of one direction fall in
-- one row; what differs per recipient (status, NDR, spam flag, recipient domain) is a
-- measure. The exact received time is a key, so any period, cut anywhere (an as-of time
-- not on the hour, a configuration change, the first 5.1.8), sums exactly; the message
-- ids are kept (distinct, sorted, each with its recipients and spam recipients) so that
-- distinct-message counts over any set of rows are exact too, and the on-premises hop of a
-- message can be found. (pipeline.rollups
-- writes each partition sorted by its keys: the same rows give the same bytes.)
WITH per_key AS (  -- first per message id (NULL: rows with neither id)
    SELECT tenant, date, received_utc, direction, connector, client_ip, sender_address,
           sender_domain, envelope_domain, sender_unprovisioned, envelope_unprovisioned,
           source_format, network_message_id AS k,
           count(*) AS recipients,
           count(*) FILTER (WHERE spam_signal) AS spam_recipients,
           count(*) FILTER (WHERE is_bounce(ndr_code)) AS bounce_recipients,
           list(DISTINCT recipient_domain) FILTER (WHERE direction = 'outbound'
                                                    AND recipient_domain IS NOT NULL) AS domains
    FROM mail_judged
    GROUP BY ALL
)
SELECT tenant, date, received_utc, direction, connector, client_ip, sender_address,
       sender_domain, envelope_domain, sender_unprovisioned, envelope_unprovisioned,
       source_format,
       sum(recipients)::BIGINT AS recipients,
       sum(spam_recipients)::BIGINT AS spam_recipients,
       sum(bounce_recipients)::BIGINT AS bounce_recipients,
       coalesce(sum(recipients) FILTER (WHERE k IS NULL), 0)::BIGINT AS idless_recipients,
       coalesce(list(k ORDER BY k) FILTER (WHERE k IS NOT NULL), []) AS message_keys,
       coalesce(list(recipients ORDER BY k) FILTER (WHERE k IS NOT NULL), [])
           AS key_recipients,
       coalesce(list(spam_recipients ORDER BY k) FILTER (WHERE k IS NOT NULL), [])
           AS key_spam_recipients,
       list_sort(list_distinct(flatten(list(domains) FILTER (WHERE direction = 'outbound'))))
           AS recipient_domains
FROM per_key
GROUP BY ALL
