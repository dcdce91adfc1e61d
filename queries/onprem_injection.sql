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
cloud AS (
    SELECT o.tenant, coalesce(o.network_message_id, o.message_id) AS k, o.sender_domain,
           o.received_utc, coalesce(o.sender_unprovisioned OR o.envelope_unprovisioned, false)
               AS unprovisioned, o.spam_signal
    FROM outbound_mail AS o, b
    WHERE in_period(o.date, o.received_utc, b.window_start, b.as_of)
      AND o.source_format <> 'exchange_tracking_log'
      AND (coalesce(o.sender_unprovisioned OR o.envelope_unprovisioned, false) OR o.spam_signal)
      AND ($tenant::VARCHAR IS NULL OR o.tenant = $tenant::VARCHAR)
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
           count(*) AS recipients, count(DISTINCT c.k) AS messages,
           count(*) FILTER (WHERE c.unprovisioned) AS unprovisioned_recipients,
           count(*) FILTER (WHERE c.spam_signal) AS spam_recipients,
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
