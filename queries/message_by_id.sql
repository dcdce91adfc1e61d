-- One message across all its recipients and the exports that mention it, by network message id or Message-ID
-- Example: message_id=<4C1D2E3F4A5B6C7D8E9F@CONTOSO.PROD.OUTLOOK.COM>
-- Matches network_message_id (case-insensitive) or the Internet Message-ID with or without
-- its angle brackets; every tenant is searched.
SELECT tenant, received_utc, direction, sender_address, envelope_sender, recipient_address,
       status, ndr_code, subject, size_bytes, connector, client_ip, to_ip, message_id,
       network_message_id, source_format, source_file, source_line
FROM messages
WHERE network_message_id = lower($message_id::VARCHAR)
   OR message_id = $message_id::VARCHAR
   OR message_id = '<' || trim($message_id::VARCHAR, '<>') || '>'
ORDER BY received_utc, recipient_address
