-- The NDR rollup (lake table ndr_rollup, rollups/ndr/tenant=/date=/): recipient rows refused
-- with an enhanced status code, summed per (tenant, day, received time, sender, code), with
-- their message ids (distinct, sorted). Codes are per recipient, so they have a rollup of
-- their own; block_ndrs, restricted_senders and the report's NDR timeline read it.
SELECT tenant, date, received_utc, sender_address, ndr_code,
       count(*) AS recipients,
       count(*) FILTER (WHERE network_message_id IS NULL) AS idless_recipients,
       coalesce(list(DISTINCT network_message_id ORDER BY network_message_id)
                    FILTER (WHERE network_message_id IS NOT NULL), []) AS message_keys
FROM messages
WHERE ndr_code IS NOT NULL
GROUP BY ALL
