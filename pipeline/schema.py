"""The canonical schema of every lake table, stated once: names, types and meanings.

docs/data-dictionary.md is generated from this module (`relaywatch schema --markdown`) and a
test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from polars._typing import PolarsDataType

UTC_TS = pl.Datetime("us", "UTC")
STR_LIST = pl.List(pl.String)
INT_LIST = pl.List(pl.Int64)
# Text with few distinct values (a direction, a status, a domain, the file a row came from),
# held as a dictionary: the Parquet writer stores the codes it already has instead of
# hashing every row's string to find them (writing a 7.4M-row lake: 5.4 -> 3.7 CPU-s), and
# grouping by them compares codes. SQL sees VARCHAR. Polars keeps every category for the
# process's life (~60 bytes each: a run that meets 1M distinct domains holds ~60 MB more),
# so open-ended text (addresses, subjects) stays plain.
CATEGORY = pl.Categorical()


def text_type(dtype: PolarsDataType) -> PolarsDataType:
    """The type as SQL and the docs see it (a dictionary column is text)."""
    return pl.String if dtype == CATEGORY else dtype


@dataclass(frozen=True)
class Column:
    name: str
    dtype: PolarsDataType
    meaning: str


@dataclass(frozen=True)
class Table:
    name: str
    layout: str
    meaning: str
    columns: tuple[Column, ...]

    @property
    def schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.dtype for c in self.columns})

    def file_columns(self) -> list[str]:
        """Columns stored inside the Parquet files (hive partition keys live in the path)."""
        keys = {p.split("=")[0] for p in self.layout.split("/") if "=" in p}
        return [c.name for c in self.columns if c.name not in keys]

    def file_exprs(self) -> list[pl.Expr]:
        """The stored columns in order and type (files an earlier version wrote may hold
        plain text where this one keeps a dictionary)."""
        types = self.schema
        return [pl.col(c).cast(types[c]) for c in self.file_columns()]

    def conform(self, df: pl.DataFrame) -> pl.DataFrame:
        """Add missing columns as nulls, cast, and order columns as documented."""
        exprs = []
        for c in self.columns:
            if c.name in df.columns:
                exprs.append(pl.col(c.name).cast(c.dtype))
            else:
                exprs.append(pl.lit(None, dtype=c.dtype).alias(c.name))
        return df.select(exprs)


def _c(name: str, dtype: PolarsDataType, meaning: str) -> Column:
    return Column(name, dtype, meaning)


_SOURCE = (
    _c("source_format", CATEGORY, "Recognised export format, e.g. `message_trace_csv`."),
    _c("source_file", CATEGORY, "Input file as `<tenant>/<file name>`."),
    _c("source_sha256", CATEGORY, "SHA-256 of the input file's bytes."),
    _c("source_line", pl.Int64, "Line of the input file the row came from (first line = 1)."),
)

# The source format whose message rows are about a whole message, not a recipient (Graph's
# exchangeMessageTraceDetail names none): the lake folds them into the message's rows
WHOLE_MESSAGE_FORMAT = "graph_message_trace_detail"

_CREATED_CHANGED = (
    _c("when_created_utc", UTC_TS, "WhenCreatedUTC."),
    _c("when_changed_utc", UTC_TS, "WhenChangedUTC."),
)

_SNAPSHOT = (
    _c("tenant", pl.String, "Tenant slug."),
    _c("snapshot_utc", UTC_TS, "When the snapshot was taken (export file's modification time)."),
)

MESSAGES = Table(
    "messages",
    "messages/tenant=<slug>/date=<YYYY-MM-DD>/data.parquet",
    "One row per (message, recipient). Event logs are collapsed to each recipient's outcome; "
    "rows seen in several exports are merged on (message, recipient).",
    (
        _c("tenant", pl.String, "Tenant slug (the inbox folder name)."),
        _c("date", pl.Date, "UTC day of `received_utc` (partition key)."),
        _c("received_utc", UTC_TS, "When the service received the message, UTC."),
        _c("direction", CATEGORY, "`outbound`, `inbound`, `internal` or `unknown`."),
        _c("sender_address", pl.String, "Header/trace sender address, lower-case."),
        _c("sender_domain", CATEGORY, "Domain of `sender_address`, lower-case."),
        _c("envelope_sender", pl.String,
           "Envelope sender (return-path / P1 MAIL FROM), when the export has it."),
        _c("envelope_domain", CATEGORY, "Domain of `envelope_sender`."),
        _c("recipient_address", pl.String, "Recipient address, lower-case."),
        _c("recipient_domain", CATEGORY, "Domain of `recipient_address`."),
        _c("status", CATEGORY, "delivered, failed, filtered_as_spam, quarantined, pending, "
                               "expanded, received, resolved or none."),
        _c("ndr_code", pl.String, "Enhanced status code of a non-delivery, e.g. `5.7.750`."),
        _c("subject", pl.String, "Message subject (attacker-controlled text)."),
        _c("size_bytes", pl.Int64, "Message size in bytes."),
        _c("message_id", pl.String, "Internet Message-ID, with angle brackets as exported."),
        _c("network_message_id", pl.String,
           "Exchange network message id (MessageTraceId), lower-case."),
        _c("connector", pl.String, "Connector the message came through, when known."),
        _c("client_ip", pl.String,
           "IP the message was received from (FromIP / original client IP)."),
        _c("to_ip", pl.String, "IP the message was sent to (ToIP), when known."),
        _c("spam_verdict", pl.Boolean, "True when the export marks the message as spam."),
        *_SOURCE,
    ),
)

ACCEPTED_DOMAINS = Table(
    "accepted_domains",
    "accepted_domains/tenant=<slug>/<sha>.parquet",
    "Get-AcceptedDomain snapshots, one row per domain per snapshot.",
    (
        *_SNAPSHOT,
        _c("domain_name", pl.String, "Domain, lower-case, without a leading `*.`."),
        _c("domain_type", pl.String, "Authoritative, InternalRelay or ExternalRelay."),
        _c("is_default", pl.Boolean, "The tenant's default domain."),
        _c("match_subdomains", pl.Boolean,
           "Also covers every subdomain (also true for `*.` names)."),
        _c("is_initial", pl.Boolean, "The tenant's initial `*.onmicrosoft.com` domain."),
        *_CREATED_CHANGED,
        *_SOURCE,
    ),
)

_CONNECTOR_HEAD = (
    *_SNAPSHOT,
    _c("name", pl.String, "Connector name (attacker-controlled text)."),
    _c("enabled", pl.Boolean, "Enabled."),
    _c("connector_type", pl.String, "OnPremises or Partner."),
    _c("connector_source", pl.String, "Default, Migrated, HybridWizard or AdminUI."),
)
_CONNECTOR_TAIL = (
    _c("comment", pl.String, "Comment."),
    *_CREATED_CHANGED,
    *_SOURCE,
)

INBOUND_CONNECTORS = Table(
    "inbound_connectors",
    "inbound_connectors/tenant=<slug>/<sha>.parquet",
    "Get-InboundConnector snapshots, one row per connector per snapshot.",
    (
        *_CONNECTOR_HEAD,
        _c("sender_ip_addresses", STR_LIST, "SenderIPAddresses (IPs and CIDR ranges)."),
        _c("sender_domains", STR_LIST, "SenderDomains without `smtp:` and cost, e.g. `*`."),
        _c("tls_sender_certificate_name", pl.String, "TlsSenderCertificateName."),
        _c("require_tls", pl.Boolean, "RequireTls."),
        _c("restrict_domains_to_ip_addresses", pl.Boolean, "RestrictDomainsToIPAddresses."),
        _c("restrict_domains_to_certificate", pl.Boolean, "RestrictDomainsToCertificate."),
        _c("cloud_services_mail_enabled", pl.Boolean, "CloudServicesMailEnabled."),
        _c("treat_messages_as_internal", pl.Boolean, "TreatMessagesAsInternal."),
        *_CONNECTOR_TAIL,
    ),
)

OUTBOUND_CONNECTORS = Table(
    "outbound_connectors",
    "outbound_connectors/tenant=<slug>/<sha>.parquet",
    "Get-OutboundConnector snapshots, one row per connector per snapshot.",
    (
        *_CONNECTOR_HEAD,
        _c("recipient_domains", STR_LIST, "RecipientDomains."),
        _c("smart_hosts", STR_LIST, "SmartHosts."),
        _c("tls_settings", pl.String, "TlsSettings."),
        _c("use_mx_record", pl.Boolean, "UseMXRecord."),
        _c("route_all_messages_via_on_premises", pl.Boolean, "RouteAllMessagesViaOnPremises."),
        _c("all_accepted_domains", pl.Boolean, "AllAcceptedDomains."),
        *_CONNECTOR_TAIL,
    ),
)

RECEIVE_CONNECTORS = Table(
    "receive_connectors",
    "receive_connectors/tenant=<slug>/<sha>.parquet",
    "On-premises Get-ReceiveConnector snapshots, one row per connector per snapshot.",
    (
        *_SNAPSHOT,
        _c("name", pl.String, "Connector name (attacker-controlled text)."),
        _c("server", pl.String, "Exchange server it runs on."),
        _c("identity", pl.String, "Identity, `SERVER\\Name`."),
        _c("enabled", pl.Boolean, "Enabled."),
        _c("transport_role", pl.String, "FrontendTransport or HubTransport."),
        _c("bindings", STR_LIST, "Bindings (`0.0.0.0:25`, `[::]:25`)."),
        _c("remote_ip_ranges", STR_LIST, "RemoteIPRanges it accepts connections from."),
        _c("permission_groups", STR_LIST, "PermissionGroups, e.g. AnonymousUsers."),
        _c("auth_mechanism", STR_LIST,
           "AuthMechanism, e.g. Tls, Integrated, ExternalAuthoritative."),
        _c("fqdn", pl.String, "Fqdn."),
        *_CREATED_CHANGED,
        *_SOURCE,
    ),
)

SEND_CONNECTORS = Table(
    "send_connectors",
    "send_connectors/tenant=<slug>/<sha>.parquet",
    "On-premises Get-SendConnector snapshots, one row per connector per snapshot.",
    (
        *_SNAPSHOT,
        _c("name", pl.String, "Connector name (attacker-controlled text)."),
        _c("identity", pl.String, "Identity."),
        _c("enabled", pl.Boolean, "Enabled."),
        _c("address_spaces", STR_LIST, "AddressSpaces without `SMTP:` and cost, e.g. `*`."),
        _c("smart_hosts", STR_LIST, "SmartHosts."),
        _c("source_transport_servers", STR_LIST, "SourceTransportServers."),
        _c("require_tls", pl.Boolean, "RequireTLS."),
        _c("tls_certificate_name", pl.String, "TlsCertificateName."),
        _c("cloud_services_mail_enabled", pl.Boolean, "CloudServicesMailEnabled."),
        *_CREATED_CHANGED,
        *_SOURCE,
    ),
)

AD_PERMISSIONS = Table(
    "ad_permissions",
    "ad_permissions/tenant=<slug>/<sha>.parquet",
    "Get-ADPermission on receive connectors: one row per permission entry per snapshot.",
    (
        *_SNAPSHOT,
        _c("identity", pl.String, "The object, e.g. the receive connector `SERVER\\Name`."),
        _c("user", pl.String, "Who holds it, e.g. `NT AUTHORITY\\ANONYMOUS LOGON`."),
        _c("extended_rights", STR_LIST, "ExtendedRights, e.g. ms-Exch-SMTP-Accept-Any-Recipient."),
        _c("access_rights", STR_LIST, "AccessRights, e.g. ExtendedRight."),
        _c("deny", pl.Boolean, "A deny entry."),
        _c("is_inherited", pl.Boolean, "Inherited from a parent object."),
        *_SOURCE,
    ),
)

ONPREM_HOPS = Table(
    "onprem_hops",
    "onprem_hops/tenant=<slug>/<sha>.parquet",
    "Where each message entered an on-premises Exchange server (tracking logs' SMTP RECEIVE "
    "events): one row per message, server, receive connector and client. `messages` merges "
    "a message's on-premises and cloud hops into one row per recipient; this keeps the first.",
    (
        _c("tenant", pl.String, "Tenant slug."),
        _c("server", pl.String, "The server that logged it (server-hostname)."),
        _c("connector", pl.String, "Receive connector name, server prefix removed."),
        _c("client_ip", pl.String, "IP that submitted it."),
        _c("source_line", pl.Int64, "Line of the log's first RECEIVE event of the message."),
        _c("received_utc", UTC_TS, "When it was received, UTC."),
        _c("network_message_id", pl.String, "Network message id, lower-case."),
        _c("message_id", pl.String, "Internet Message-ID."),
        _c("client_hostname", pl.String, "Host name the client gave."),
        _c("sender_address", pl.String, "Sender address."),
        _c("recipients", pl.Int64, "Recipients it was received for."),
        _c("source_format", CATEGORY, "Recognised export format."),
        _c("source_file", CATEGORY, "Input file as `<tenant>/<file name>`."),
        _c("source_sha256", CATEGORY, "SHA-256 of the input file's bytes."),
    ),
)

EXO_SETTINGS = Table(
    "exo_settings",
    "exo_settings/tenant=<slug>/<sha>.parquet",
    "Exchange Online settings objects ScubaGear's ProviderSettingsExport.json holds "
    "(transport rules, transport config, remote domains, connection filter), one row per "
    "object per snapshot, the whole object kept as JSON for the findings and ad hoc SQL.",
    (
        *_SNAPSHOT,
        _c("section", pl.String, "transport_rule, transport_config, remote_domains or "
                                 "conn_filter (ScubaGear's key)."),
        _c("name", pl.String, "Name, else Identity (attacker-controlled text)."),
        _c("state", pl.String, "A transport rule's State (Enabled, Disabled)."),
        *_CREATED_CHANGED,
        _c("properties", pl.String, "The object as ScubaGear wrote it (JSON)."),
        *_SOURCE,
    ),
)

AUDIT_EVENTS = Table(
    "audit_events",
    "audit_events/tenant=<slug>/<sha>.parquet",
    "Unified audit log records (AuditData parsed), de-duplicated on record id within a file.",
    (
        _c("tenant", pl.String, "Tenant slug."),
        _c("record_id", pl.String, "AuditData Id (or RecordId)."),
        _c("creation_utc", UTC_TS, "AuditData CreationTime, UTC."),
        _c("record_type", pl.String, "RecordType (1 = ExchangeAdmin)."),
        _c("workload", pl.String, "Workload, e.g. Exchange."),
        _c("operation", pl.String, "Operation (cmdlet name), e.g. New-InboundConnector."),
        _c("user_id", pl.String, "Who did it."),
        _c("client_ip", pl.String, "From which IP (port removed)."),
        _c("object_id", pl.String, "Target object, e.g. the connector's name."),
        _c("result_status", pl.String, "ResultStatus."),
        _c("organization", pl.String, "OrganizationName."),
        _c("parameters", pl.String, "Parameters as a JSON object {Name: Value}."),
        *_SOURCE,
    ),
)

REJECTS = Table(
    "rejects",
    "rejects/tenant=<slug>/<sha>.parquet",
    "Input rows that could not be used, with the reason; nothing is dropped silently.",
    (
        _c("tenant", pl.String, "Tenant slug."),
        _c("source_file", pl.String, "Input file as `<tenant>/<file name>`."),
        _c("source_sha256", pl.String, "SHA-256 of the input file."),
        _c("source_format", pl.String, "Recognised export format."),
        _c("source_line", pl.Int64, "Line of the rejected row."),
        _c("reason", pl.String, "Why the row was rejected."),
        _c("raw", pl.String, "The offending value(s), cut to 1,000 characters."),
    ),
)

INGEST_LOG = Table(
    "ingest_log",
    "ingest_log/manifest.parquet",
    "The manifest: one row per input file and tenant, by content hash.",
    (
        _c("tenant", pl.String, "Tenant slug (empty when the folder name was refused)."),
        _c("source_sha256", pl.String, "SHA-256 of the file's bytes."),
        _c("source_file", pl.String, "Input file as `<tenant>/<file name>`."),
        _c("size_bytes", pl.Int64, "File size."),
        _c("source_format", pl.String, "Recognised format (empty when rejected)."),
        _c("status", pl.String, "`ingested`, `rejected`, `duplicate` (the same bytes as "
                                "a file ingested before, under another name: nothing "
                                "written; recorded so it is not read again) or `expired` "
                                "(ingested, with events before a retention cutoff: not read "
                                "again, unless `--rehash` restores its rows) or `restore` "
                                "(its rows were in a damaged lake file: read again by the "
                                "next ingest)."),
        _c("rows", pl.Int64, "Canonical rows written."),
        _c("table_rows", pl.String, "Rows written per lake table, for a file that feeds "
                                    "several (a ScubaGear export: `accepted_domains:7, "
                                    "exo_settings:4, inbound_connectors:1`; a tracking log: "
                                    "`messages` and `onprem_hops`)."),
        _c("rejected_rows", pl.Int64, "Rows sent to `rejects`."),
        _c("reason", pl.String, "Why the file was rejected."),
        _c("first_event_utc", UTC_TS, "Earliest event time in the file."),
        _c("last_event_utc", UTC_TS, "Latest event time in the file."),
        _c("ingested_utc", UTC_TS, "When this file was ingested."),
        _c("seconds", pl.Float64, "Time spent on the file."),
        _c("file_mtime_ns", pl.Int64, "The file's modification time (ns) when it was hashed: "
                                      "with the same path and size, a later run trusts the "
                                      "hash instead of reading the file again (--rehash "
                                      "reads every file)."),
    ),
)

_AS_OF = (
    _c("as_of", pl.Date, "UTC day of `as_of_utc` (partition key): one result set per as-of day."),
    _c("as_of_utc", UTC_TS, "The moment the detections judged: data before it, nothing after."),
    _c("tenant", pl.String, "Tenant slug."),
)

FINDINGS = Table(
    "findings",
    "findings/as_of=<YYYY-MM-DD>/data.parquet",
    "What the detections in `queries/` found, one row per finding; written by "
    "`relaywatch detect`, replacing that as-of day's earlier rows for the tenants it ran on.",
    (
        *_AS_OF,
        _c("detection", pl.String, "unprovisioned_domain, volume_spike, suspicious_connector, "
                                   "block_ndr or restricted_sender."),
        _c("severity", pl.String, "`compromise` (evidence for block), `warning` or `info`."),
        _c("subject", pl.String, "What the finding is about: a domain, connector, sender, NDR "
                                 "code or `tenant` (attacker-controlled text)."),
        _c("first_seen_utc", UTC_TS, "First event of the finding."),
        _c("last_seen_utc", UTC_TS, "Last event of the finding."),
        _c("messages", pl.Int64, "Messages involved."),
        _c("recipients", pl.Int64, "Recipient rows involved."),
        _c("score", pl.Float64, "Weight of the finding in the tenant's score."),
        _c("reasons", STR_LIST, "Short reasons, each with its numbers."),
        _c("evidence", pl.String, "The query row behind the finding, as JSON."),
    ),
)

BASELINES = Table(
    "baselines",
    "baselines/as_of=<YYYY-MM-DD>/data.parquet",
    "Each tenant's typical outbound recipients per hour of day and kind of day over the "
    "baseline period before the window, written by `relaywatch detect` for the report's chart.",
    (
        *_AS_OF,
        _c("hour_of_day", pl.Int64, "Hour of the day, UTC (0-23)."),
        _c("weekend", pl.Boolean, "Saturday or Sunday."),
        _c("baseline", pl.Float64, "Median recipients of such hours (zero-filled)."),
        _c("hours_seen", pl.Int64, "How many such hours the median is taken over."),
    ),
)

CHART_HOURS = Table(
    "chart_hours",
    "chart_hours/as_of=<YYYY-MM-DD>/data.parquet",
    "Outbound recipients per tenant and hour over the window, registered vs unregistered "
    "sender domains, written by `relaywatch detect` for the report's chart (hours without "
    "outbound mail are absent).",
    (
        *_AS_OF,
        _c("hour", UTC_TS, "Start of the hour, UTC."),
        _c("registered", pl.Int64, "Recipients of mail from registered domains."),
        _c("unprovisioned", pl.Int64, "Recipients of mail from unregistered domains."),
        _c("spam", pl.Int64, "Recipients with a spam signal."),
    ),
)

NDR_DAYS = Table(
    "ndr_days",
    "ndr_days/as_of=<YYYY-MM-DD>/data.parquet",
    "Block, restriction and limit NDRs per tenant, day and code over the window, written by "
    "`relaywatch detect` for the report's NDR timeline.",
    (
        *_AS_OF,
        _c("day", pl.Date, "UTC day."),
        _c("ndr_code", pl.String, "Enhanced status code, e.g. `5.7.750`."),
        _c("recipients", pl.Int64, "Recipients refused with it that day."),
        _c("senders", pl.Int64, "Distinct senders refused."),
    ),
)

_MESSAGE_KEYS = _c("message_keys", STR_LIST,
                   "Distinct network message ids (else Message-IDs) of the rows, sorted.")
_IDLESS = _c("idless_recipients", pl.Int64, "Recipient rows with neither id.")

MAIL_ROLLUP = Table(
    "mail_rollup",
    "rollups/mail/tenant=<slug>/date=<YYYY-MM-DD>/data.parquet",
    "`messages` summed per message-level key (queries/rollups/mail.sql): what the detections "
    "read. Rebuilt by `relaywatch rollups` (ingest and detect run it) when its message "
    "partition changes, and for a tenant when its accepted domains do. Direction and "
    "registration are judged with the accepted domains; a tenant without them is judged at "
    "detect time from its mail (NULL here).",
    (
        _c("tenant", pl.String, "Tenant slug."),
        _c("date", pl.Date, "UTC day (partition key)."),
        _c("received_utc", UTC_TS, "When the service received the message, UTC."),
        _c("direction", pl.String, "As `outbound_mail` decides it."),
        _c("connector", pl.String, "Connector the mail came through."),
        _c("client_ip", pl.String, "IP it was received from."),
        _c("sender_address", pl.String, "Header sender address."),
        _c("sender_domain", pl.String, "Its domain."),
        _c("envelope_domain", pl.String, "Envelope sender domain."),
        _c("sender_unprovisioned", pl.Boolean, "As in `outbound_mail`."),
        _c("envelope_unprovisioned", pl.Boolean, "As in `outbound_mail`."),
        _c("source_format", pl.String, "Recognised export format."),
        _c("recipients", pl.Int64, "Recipient rows."),
        _c("spam_recipients", pl.Int64, "Of them, with a spam signal."),
        _c("bounce_recipients", pl.Int64,
           "Of them, bounced as unknown addresses (5.1.1, 5.1.10, 5.4.1, 5.1.0)."),
        _IDLESS,
        _MESSAGE_KEYS,
        _c("key_recipients", INT_LIST, "Recipient rows of each of `message_keys`."),
        _c("key_spam_recipients", INT_LIST,
           "Of them, with a spam signal (each of `message_keys`)."),
        _c("recipient_domains", STR_LIST, "Distinct recipient domains (outbound rows only)."),
    ),
)

NDR_ROLLUP = Table(
    "ndr_rollup",
    "rollups/ndr/tenant=<slug>/date=<YYYY-MM-DD>/data.parquet",
    "Recipient rows refused with an enhanced status code, summed per received time, sender "
    "and code (queries/rollups/ndr.sql); rebuilt with `mail_rollup`.",
    (
        _c("tenant", pl.String, "Tenant slug."),
        _c("date", pl.Date, "UTC day (partition key)."),
        _c("received_utc", UTC_TS, "When the service received the message, UTC."),
        _c("sender_address", pl.String, "Header sender address."),
        _c("ndr_code", pl.String, "Enhanced status code, e.g. `5.7.750`."),
        _c("recipients", pl.Int64, "Recipient rows refused with it."),
        _IDLESS,
        _MESSAGE_KEYS,
    ),
)

ROLLUPS = (MAIL_ROLLUP, NDR_ROLLUP)

# Microsoft's unblock procedure for a tenant blocked from sending from unregistered domains
CHECKLIST = (
    "every domain the tenant sends from is registered as an accepted domain.",
    "no unusual inbound connectors.",
    "no sign the on-premises side still relays spam, for `clean_hours`, on fresh data.",
    "ready to ask Microsoft support for an unblock (steps 1-3 ok; the evidence to quote).",
)

VERDICTS = Table(
    "verdicts",
    "verdicts/as_of=<YYYY-MM-DD>/data.parquet",
    "One verdict per tenant and as-of day: block or unblock, with the four-step unblock "
    "checklist. `reports/<date>/verdicts.json` holds the same content.",
    (
        *_AS_OF,
        _c("recommendation", pl.String, "`block` (active compromise, or data too stale to "
                                        "vouch for the tenant) or `unblock`."),
        _c("blocked_now", pl.Boolean, "A tenant-block NDR (5.7.750, 5.7.705, 5.7.711) was seen "
                                      "within `blocked_now_hours` of the as-of time."),
        _c("score", pl.Float64, "Risk, 0-100: the sum of the findings' scores, capped."),
        _c("reasons", STR_LIST, "Why, most important first."),
        _c("data_state", pl.String, "`fresh`, `stale` or `no_data`."),
        _c("last_event_utc", UTC_TS, "Latest message event of the tenant before the as-of time."),
        _c("block_code", pl.String, "The block NDR code to quote to support, when seen."),
        _c("block_first_seen_utc", UTC_TS, "First block NDR in the lookback."),
        _c("block_last_seen_utc", UTC_TS, "Last block NDR in the lookback."),
        *(col for i, step in enumerate(CHECKLIST, 1) for col in (
            _c(f"step{i}_ok", pl.Boolean, f"Step {i}: {step}"),
            _c(f"step{i}_evidence", pl.String, f"Evidence for step {i} (or what is missing)."))),
    ),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (MESSAGES, ACCEPTED_DOMAINS, INBOUND_CONNECTORS, OUTBOUND_CONNECTORS,
              RECEIVE_CONNECTORS, SEND_CONNECTORS, AD_PERMISSIONS, ONPREM_HOPS, AUDIT_EVENTS,
              EXO_SETTINGS,
              REJECTS,
              INGEST_LOG, FINDINGS, VERDICTS, BASELINES, CHART_HOURS, NDR_DAYS, *ROLLUPS)
}


# Views derived from the tables (queries/views/<name>.sql), documented like the tables.
OUTBOUND_MAIL = Table(
    "outbound_mail",
    "view over `mail_judged` (queries/views/outbound_mail.sql)",
    "Outbound rows of `messages` with the sender-domain verdict (drill-down queries read it; "
    "the detections read the same rows summed in `mail_rollup`).",
    (
        *MESSAGES.columns,
        _c("sender_unprovisioned", pl.Boolean, "The header sender domain was not covered by an "
                                               "accepted domain when sent (NULL: no snapshot)."),
        _c("envelope_unprovisioned", pl.Boolean, "The same for the envelope sender domain."),
        _c("spam_signal", pl.Boolean, "Filtered as spam, quarantined, marked spam, or refused "
                                      "with a block/restriction NDR."),
    ),
)

MAIL_JUDGED = Table(
    "mail_judged",
    "view over `messages` (queries/views/mail_judged.sql)",
    "Every row of `messages`, its direction decided with the tenant's own domains, with the "
    "sender-domain verdict and spam signal: what `mail_rollup` sums.",
    OUTBOUND_MAIL.columns,
)

OUTBOUND_VOLUMES = Table(
    "outbound_volumes",
    "view over `mail_rollup` (queries/views/outbound_volumes.sql)",
    "Outbound volumes per tenant, hour, connector and sender: what volume baselines are "
    "built from. The table macro `outbound_hours(since, until)` gives the same columns for "
    "any period (a partial first or last hour counts only the part inside it).",
    (
        _c("tenant", pl.String, "Tenant slug."),
        _c("date", pl.Date, "UTC day of the hour."),
        _c("hour", UTC_TS, "The hour (UTC, truncated)."),
        _c("connector", pl.String, "Connector the mail came through (NULL: none named)."),
        _c("sender_address", pl.String, "Header sender address."),
        _c("recipients", pl.Int64, "Outbound recipient rows."),
        _c("messages", pl.Int64, "Distinct messages (network message id, else message id; "
                                 "rows with neither count as one)."),
        _c("spam_recipients", pl.Int64, "Recipient rows with a spam signal."),
        _c("bounce_recipients", pl.Int64,
           "Recipient rows bounced as unknown addresses (5.1.1, 5.1.10, 5.4.1, 5.1.0)."),
    ),
)

KNOWN_DOMAINS = Table(
    "known_domains",
    "view over `accepted_domains`, `audit_events` and `messages` "
    "(queries/views/known_domains.sql)",
    "Each tenant's own domains, which direction and registration are judged with, a row per "
    "span of time a domain was its own: its accepted domains as they were at each "
    "message's time (snapshots and audit events), or, without an accepted-domains export, "
    "the domains inferred from its mail (received for, or exchanging mail both ways with "
    "`infer_min_counterparties` other domains).",
    (
        _c("tenant", pl.String, "Tenant slug."),
        _c("domain_name", pl.String, "Domain, lower-case."),
        _c("match_subdomains", pl.Boolean, "Also covers every subdomain (always for inferred)."),
        _c("covered_since", UTC_TS, "Start of a span the domain was the tenant's own: its "
                                    "WhenCreatedUTC or a New-AcceptedDomain audit event "
                                    "(-infinity when unknown or inferred); mail sent earlier "
                                    "was not from a registered domain."),
        _c("covered_until", UTC_TS, "End of that span: a Remove-AcceptedDomain audit event or "
                                    "the first whole snapshot without it (NULL: still the "
                                    "tenant's own)."),
        _c("inferred", pl.Boolean, "Inferred from the tenant's mail, not from an export."),
    ),
)

VIEWS: dict[str, Table] = {KNOWN_DOMAINS.name: KNOWN_DOMAINS,
                           MAIL_JUDGED.name: MAIL_JUDGED,
                           OUTBOUND_MAIL.name: OUTBOUND_MAIL,
                           OUTBOUND_VOLUMES.name: OUTBOUND_VOLUMES}


def _type_name(dtype: PolarsDataType) -> str:
    dtype = text_type(dtype)
    if dtype == UTC_TS:
        return "TIMESTAMP WITH TIME ZONE (UTC)"
    if dtype == STR_LIST:
        return "VARCHAR[]"
    if dtype == INT_LIST:
        return "BIGINT[]"
    return {pl.String: "VARCHAR", pl.Int64: "BIGINT", pl.Boolean: "BOOLEAN",
            pl.Date: "DATE", pl.Float64: "DOUBLE"}[dtype]  # type: ignore[index]


def markdown() -> str:
    """The data dictionary as Markdown (docs/data-dictionary.md)."""
    out = ["# Data dictionary", "",
           "Generated from `pipeline/schema.py` by `relaywatch schema --markdown`; a test keeps "
           "it in sync. Each table and view below is a view of the same name in "
           "`relaywatch sql`, `relaywatch query` and the `relaywatch catalog` database; "
           "timestamps are UTC (`SET TimeZone = 'UTC'` in your own DuckDB client).", ""]
    for t in (*TABLES.values(), *VIEWS.values()):
        out += [f"## `{t.name}`", "", t.meaning, "", f"Layout: `{t.layout}`", "",
                "| column | type | meaning |", "|---|---|---|"]
        out += [f"| `{c.name}` | {_type_name(c.dtype)} | {c.meaning} |" for c in t.columns]
        out.append("")
    return "\n".join(out)
