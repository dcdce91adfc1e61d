-- Which on-premises server and receive connector injected a tenant's unregistered-domain or spam-signalled mail
-- Example: as_of=2026-11-28 window_days=7 baseline_days=28 tenant=tailspin
-- For a tenant with both cloud traces and on-premises tracking logs: outbound mail of the
-- window that was from an unregistered domain or carried a spam signal in the cloud export,
-- joined to its on-premises hop (the same network message id, else Message-ID) in the
-- tracking logs (onprem_hops). One row per server, receive connector and client that
-- submitted it: the recipients and messages, the sender domains, the first and last time,
-- and the open-relay settings found on that connector (onprem_relay_settings).
-- tenant = NULL means every tenant.
WITH b AS (SELECT * FROM detection_bounds($as_of::TIMESTAMPTZ, $window_days::INTEGER, $baseline_days::INTEGER)),
cloud AS (  -- per message: a rollup row holds several only when sent in the same second
    SELECT * FROM (
        SELECT o.tenant, unnest(o.message_keys) AS k, unnest(o.key_recipients) AS all_n,
               unnest(o.key_spam_recipients) AS spam_recipients, o.sender_domain,
               o.received_utc,
               coalesce(o.sender_unprovisioned OR o.envelope_unprovisioned, false) AS unprovisioned
        FROM mail_rollup AS o, b
        WHERE o.direction = 'outbound'
          AND in_period(o.date, o.received_utc, b.window_start, b.as_of)
          AND o.source_format <> 'exchange_tracking_log'
          AND ($tenant::VARCHAR IS NULL OR o.tenant = $tenant::VARCHAR))
    WHERE unprovisioned OR spam_recipients > 0
),
onprem AS (  -- the on-premises hop (onprem_hops: tracking logs' RECEIVE events)
    SELECT DISTINCT h.tenant, coalesce(h.network_message_id, h.message_id) AS k, h.server,
           h.connector, h.client_ip, h.client_hostname
    FROM onprem_hops AS h, b
    WHERE h.received_utc >= b.window_start - INTERVAL 1 DAY AND h.received_utc < b.as_of
      AND h.tenant IN (SELECT DISTINCT tenant FROM cloud)
),
joined AS (
    SELECT c.tenant, p.server, p.connector, p.client_ip,
           any_value(p.client_hostname) AS client_hostname,
           sum(CASE WHEN c.unprovisioned THEN c.all_n ELSE c.spam_recipients END)::BIGINT
               AS recipients,
           count(DISTINCT c.k) AS messages,
           coalesce(sum(c.all_n) FILTER (WHERE c.unprovisioned), 0)::BIGINT
               AS unprovisioned_recipients,
           sum(c.spam_recipients)::BIGINT AS spam_recipients,
           list(DISTINCT c.sender_domain ORDER BY c.sender_domain)[1:5] AS sender_domains,
           min(c.received_utc) AS first_seen_utc, max(c.received_utc) AS last_seen_utc
    FROM cloud AS c
    JOIN onprem AS p ON p.tenant = c.tenant AND p.k = c.k
    GROUP BY c.tenant, p.server, p.connector, p.client_ip
),
settings AS (
    SELECT tenant, lower(regexp_replace(object, '^.*\\', '')) AS name,
           list(setting ORDER BY kind) AS relay_settings
    FROM onprem_relay_settings(as_of_ := $as_of::TIMESTAMPTZ)
    WHERE kind IN ('anonymous_accept_any_recipient', 'anonymous_wide_ranges')
    GROUP BY ALL
)
SELECT j.tenant, j.server, j.connector, j.client_ip, j.client_hostname, j.recipients,
       j.messages,
       j.unprovisioned_recipients, j.spam_recipients, j.sender_domains,
       j.first_seen_utc, j.last_seen_utc, g.relay_settings
FROM joined AS j
LEFT JOIN settings AS g ON g.tenant = j.tenant AND g.name = lower(j.connector)
ORDER BY j.tenant, j.recipients DESC, j.connector, j.client_ip
