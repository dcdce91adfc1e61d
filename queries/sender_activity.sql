-- One sender's messages in a tenant over a period, newest first, one row per recipient
-- Example: tenant=contoso sender=billing@bestpharma-deals.biz since=2026-11-20 until=2026-11-28
SELECT received_utc, direction, recipient_address, status, ndr_code, subject, connector,
       client_ip, network_message_id
FROM messages
WHERE tenant = $tenant::VARCHAR AND sender_address = lower($sender::VARCHAR)
  AND in_period(date, received_utc, $since::TIMESTAMPTZ, $until::TIMESTAMPTZ)
ORDER BY received_utc DESC, recipient_address
