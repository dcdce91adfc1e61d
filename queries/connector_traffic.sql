-- Everything that came through one connector in a time range, newest first
-- Example: tenant=contoso connector=Inbound_Relay_Partner since=2026-11-25 until=2026-11-28
-- The connector name is matched case-insensitively; underscores in the value also match
-- spaces, so names can be typed without quoting.
SELECT received_utc, direction, sender_address, recipient_address, status, ndr_code, subject,
       client_ip, size_bytes, network_message_id
FROM messages
WHERE tenant = $tenant::VARCHAR
  AND in_period(date, received_utc, $since::TIMESTAMPTZ, $until::TIMESTAMPTZ)
  AND lower(connector) IN (lower($connector::VARCHAR), lower(replace($connector::VARCHAR, '_', ' ')))
ORDER BY received_utc DESC, recipient_address
