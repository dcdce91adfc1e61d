"""Writers of the export formats, as Exchange Online / PowerShell / on-premises Exchange write
them: used by `relaywatch generate` and by the round-trip tests of the parsers.

Each writer takes canonical-style rows (dicts with the canonical column names) so that
`parse(write(rows)) == rows` can be checked for every format.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

Row = dict[str, Any]
TRACE_STATUS = {"delivered": "Delivered", "failed": "Failed", "pending": "Pending",
                "filtered_as_spam": "FilteredAsSpam", "quarantined": "Quarantined",
                "expanded": "Expanded"}
EVENT_FOR = {"delivered": "Deliver", "failed": "Fail", "pending": "Defer",
             "expanded": "Expand", "filtered_as_spam": "Deliver", "quarantined": "Deliver"}


def _write_text(path: Path, text: str, encoding: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if encoding == "utf-16-le-bom":
        path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    elif encoding == "ascii":  # Windows PowerShell 5.1 Export-Csv: non-ASCII becomes '?'
        path.write_bytes(text.encode("ascii", errors="replace"))
    else:
        path.write_bytes(text.encode(encoding))


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]], quote_all: bool = True,
         lineterminator: str = "\r\n") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL,
                   lineterminator=lineterminator)
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue()


def fmt_time(ts: datetime, style: str) -> str:
    """A UTC time as the exporting tool writes it."""
    ts = ts.astimezone(timezone.utc)
    if style == "us":  # en-US culture, 12-hour clock, no zone
        return f"{ts.month}/{ts.day}/{ts.year} {(ts.hour % 12) or 12}:{ts:%M:%S} " + (
            "AM" if ts.hour < 12 else "PM")
    if style == "gb":
        return f"{ts:%d/%m/%Y %H:%M:%S}"
    if style == "de":
        return f"{ts:%d.%m.%Y %H:%M:%S}"
    if style == "msdate":  # Windows PowerShell 5.1 ConvertTo-Json
        return f"/Date({int(ts.timestamp() * 1000)})/"
    if style == "iso7":
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    if style == "ms":  # tracking logs: milliseconds and Z
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


TRACE_FIELDS = ["Organization", "MessageId", "Received", "SenderAddress", "RecipientAddress",
                "Subject", "Status", "ToIP", "FromIP", "Size", "MessageTraceId", "StartDate",
                "EndDate", "Index"]


def _trace_values(rows: Sequence[Row], org: str, time_style: str) -> list[list[Any]]:
    if not rows:
        return []
    start = min(r["received_utc"] for r in rows)
    end = max(r["received_utc"] for r in rows)
    return [[org, r.get("message_id"), fmt_time(r["received_utc"], time_style),
             r.get("sender_address"), r.get("recipient_address"), r.get("subject"),
             TRACE_STATUS.get(r.get("status") or "", "None"), r.get("to_ip"), r.get("client_ip"),
             r.get("size_bytes"), r.get("network_message_id"), fmt_time(start, time_style),
             fmt_time(end, time_style), i] for i, r in enumerate(rows)]


def message_trace_csv(path: Path, rows: Sequence[Row], org: str, dialect: str = "ps51",
                      time_style: str = "us") -> None:
    """Get-MessageTrace | Export-Csv: 'ps51' (#TYPE, ASCII, culture dates) or 'ps7' (UTF-8)."""
    text = _csv(TRACE_FIELDS, _trace_values(rows, org, time_style))
    if dialect == "ps51":
        text = ("#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace"
                "\r\n" + text)
        _write_text(path, text, "ascii")
    else:
        _write_text(path, text.replace("\r\n", "\n"), "utf-8")


def message_trace_json(path: Path, rows: Sequence[Row], org: str, style: str = "ndjson") -> None:
    """ConvertTo-Json: 'ps51' array with /Date(ms)/, 'ps7' array ISO, 'ndjson' one per line;
    'graph': Microsoft Graph's exchangeMessageTrace (`{"value": [...]}`, camelCase)."""
    if style == "graph":
        _write_text(path, json.dumps({"value": [
            {"id": r.get("network_message_id"), "senderAddress": r.get("sender_address"),
             "recipientAddress": r.get("recipient_address"), "subject": r.get("subject"),
             "status": (lambda v: v[:1].lower() + v[1:])(
                 TRACE_STATUS.get(r.get("status") or "", "None")),
             "fromIP": r.get("client_ip"), "toIP": r.get("to_ip"), "size": r.get("size_bytes"),
             "messageId": r.get("message_id"),
             "receivedDateTime": fmt_time(r["received_utc"], "iso")} for r in rows]},
            indent=2), "utf-8")
        return
    time_style = "msdate" if style == "ps51" else "iso"
    objs = [dict(zip(TRACE_FIELDS, v, strict=False)) for v in _trace_values(rows, org, time_style)]
    if style == "ndjson":
        text = "\n".join(json.dumps(o, separators=(",", ":")) for o in objs)
    else:
        text = json.dumps(objs, indent=2)
        if style == "ps51":
            text = text.replace("/Date(", "\\/Date(").replace(")/", ")\\/")
    _write_text(path, text, "utf-8")


CLIXML_NS = 'xmlns="http://schemas.microsoft.com/powershell/2004/04"'


class Clixml:
    """Export-Clixml's writing: each object and list gets a RefId and is written once,
    repeats as <Ref>; control characters as _xHHHH_; times as <DT>; `type_name` in <TN>."""

    def __init__(self, type_name: str | None = None) -> None:
        self.ref = 0
        self.seen: dict[int, int] = {}
        self.type_name = type_name

    def value(self, v: object, name: str | None = None) -> str:
        n = f' N="{escape(name, {chr(34): "&quot;"})}"' if name is not None else ""
        if v is None:
            return f"<Nil{n} />"
        if isinstance(v, bool):
            return f"<B{n}>{str(v).lower()}</B>"
        if isinstance(v, int):
            return f"<I64{n}>{v}</I64>"
        if isinstance(v, datetime):
            return f"<DT{n}>{fmt_time(v, 'iso7')}</DT>"
        if isinstance(v, str):
            text = "".join(f"_x{ord(c):04X}_" if ord(c) < 32 else c for c in v)
            return f"<S{n}>{escape(text)}</S>"
        if id(v) in self.seen:
            return f'<Ref{n} RefId="{self.seen[id(v)]}" />'
        self.seen[id(v)] = ref = self.ref
        self.ref += 1
        if isinstance(v, list):
            items = "".join(self.value(x) for x in v)
            return (f'<Obj{n} RefId="{ref}"><TN RefId="{ref}"><T>System.Object[]</T></TN>'
                    f"<LST>{items}</LST></Obj>")
        assert isinstance(v, dict)
        props = "".join(self.value(x, k) for k, x in v.items())
        tn = (f'<TN RefId="t{ref}"><T>Deserialized.{self.type_name}</T></TN>'
              if self.type_name and name is None else "")
        return f'<Obj{n} RefId="{ref}">{tn}<Props>{props}</Props></Obj>'

    def document(self, objects: Sequence[dict]) -> str:
        return (f'<Objs Version="1.1.0.1" {CLIXML_NS}>' + "".join(self.value(o) for o in objects)
                + "</Objs>")


def message_trace_clixml(path: Path, rows: Sequence[Row], org: str) -> None:
    """Get-MessageTrace | Export-Clixml (UTF-8 with BOM; times as <DT>, sizes as numbers)."""
    objs = []
    for values in _trace_values(rows, org, "iso"):
        o = dict(zip(TRACE_FIELDS, values, strict=True))
        for k in ("Received", "StartDate", "EndDate"):
            o[k] = datetime.fromisoformat(o[k])
        objs.append(o)
    _write_text(path, Clixml("Microsoft.Exchange.Management.FfoReporting.MessageTrace")
                .document(objs), "utf-8-sig")


def detail_events(rows: Sequence[Row]) -> list[Row]:
    """Get-MessageTraceDetail's events for canonical rows: Receive, a Spam event where EOP's
    filter caught it (SFV=SPM), then the outcome (Deliver, Fail with its NDR, ...)."""
    out = []
    for r in rows:
        out.append({**r, "time": r["received_utc"], "event": "Receive",
                    "detail": "Message received by: AM0PR01MB1234.eurprd01.prod.outlook.com"})
        if r.get("status") in ("filtered_as_spam", "quarantined"):
            out.append({**r, "time": r["received_utc"] + timedelta(seconds=1), "event": "Spam",
                        "action": "", "detail": "Message was marked as spam",
                        "data": "<MEP Name=\"CustomData\" String=\"S:SFV=SPM;SCL=5\"/>"})
        out.append({**r, "time": r["received_utc"] + timedelta(seconds=2),
                    "event": EVENT_FOR.get(r.get("status") or "", "Deliver"), "action": "",
                    "detail": r.get("ndr") or ""})
    return out


def message_trace_detail_csv(path: Path, events: Sequence[Row], org: str) -> None:
    """Get-MessageTraceDetail | Export-Csv -NoTypeInformation (PowerShell 7, ISO dates)."""
    header = ["Organization", "MessageId", "MessageTraceId", "Date", "Event", "Action",
              "Detail", "Data", "RecipientAddress", "SenderAddress"]
    _write_text(path, _csv(header, ([org, e.get("message_id"), e.get("network_message_id"),
                                     fmt_time(e["time"], "iso"), e["event"], e.get("action"),
                                     e.get("detail"), e.get("data"), e.get("recipient_address"),
                                     e.get("sender_address")] for e in events)), "utf-8")


def graph_trace_detail_json(path: Path, events: Sequence[Row]) -> None:
    """Microsoft Graph's exchangeMessageTraceDetail (getDetailsByRecipient), as saved from
    the API: `{"value": [...]}`; the records name the message by its Message-ID only."""
    _write_text(path, json.dumps({"value": [
        {"@odata.type": "#microsoft.graph.exchangeMessageTraceDetail",
         "id": f"{i:08x}-0000-4000-8000-000000000000", "messageId": e.get("message_id"),
         "dateTime": fmt_time(e["time"], "iso"), "event": e["event"],
         "action": e.get("action") or None, "description": e.get("detail"),
         "data": e.get("data")} for i, e in enumerate(events)]}, indent=2), "utf-8")


SUMMARY_FIELDS = ["origin_timestamp_utc", "sender_address", "recipient_status",
                  "message_subject", "total_bytes", "message_id", "network_message_id",
                  "original_client_ip", "directionality", "connector_id", "delivery_priority"]


def historical_summary(path: Path, rows: Sequence[Row], encoding: str = "utf-16-le") -> None:
    """The EAC enhanced summary report: one line per message, UTF-16LE (BOM optional)."""
    _write_text(path, _csv(SUMMARY_FIELDS, summary_lines(rows)), encoding)


def historical_summary_stream(path: Path, days: Iterable[Sequence[Row]],
                              encoding: str = "utf-8") -> int:
    """The same report written a day at a time (for files of millions of rows); returns
    the CSV rows written (one per message)."""
    codec = "utf-16-le" if encoding.startswith("utf-16") else encoding
    n = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        if encoding == "utf-16-le-bom":
            fh.write(b"\xff\xfe")
        fh.write(_csv(SUMMARY_FIELDS, []).encode(codec))
        for rows in days:
            lines = summary_lines(rows)
            text = _csv(SUMMARY_FIELDS, lines)
            fh.write(text[text.index("\r\n") + 2:].encode(codec))
            n += len(lines)
    return n


def summary_lines(rows: Sequence[Row]) -> list[list[Any]]:
    by_msg: dict[str, list[Row]] = {}
    for r in rows:
        by_msg.setdefault(r["network_message_id"], []).append(r)
    lines = []
    for msgs in by_msg.values():
        r = msgs[0]
        status = ";".join(f"{m['recipient_address']}##Receive, "
                          f"{EVENT_FOR.get(m['status'], 'Deliver')}"
                          for m in msgs)
        lines.append([fmt_time(r["received_utc"], "iso7"), r["sender_address"], status,
                      r.get("subject"), r.get("size_bytes"), r.get("message_id"),
                      r["network_message_id"], r.get("client_ip"),
                      "Incoming" if r.get("direction") == "inbound" else "Originating",
                      r.get("connector"), "Normal"])
    return lines


def historical_extended(path: Path, rows: Sequence[Row], encoding: str = "utf-16-le") -> None:
    """The EAC extended report: a RECEIVE event and an outcome event (DELIVER, SEND, FAIL)
    per recipient, the tracking log's 27 fields with underscores, UTF-16LE."""
    from pipeline.formats.tracking import MSGTRK_2013

    fields = [f.replace("-", "_") for f in MSGTRK_2013[:27]]
    fields[0] = "date_time_utc"
    lines = []
    for r in rows:
        base = {"client_ip": r.get("client_ip"), "connector_id": r.get("connector"),
                "message_id": r.get("message_id"), "total_bytes": r.get("size_bytes"),
                "network_message_id": r["network_message_id"], "recipient_count": 1,
                "recipient_address": r["recipient_address"], "message_subject": r.get("subject"),
                "sender_address": r["sender_address"], "return_path": r["sender_address"],
                "directionality": "Incoming" if r.get("direction") == "inbound" else "Originating",
                "original_client_ip": r.get("client_ip")}
        status = r.get("status", "delivered")
        outcome = ("FAIL" if status == "failed" else
                   "DELIVER" if r.get("direction") == "inbound" else "SEND")
        lines.append({**base, "date_time_utc": fmt_time(r["received_utc"], "iso7"),
                      "source": "SMTP", "event_id": "RECEIVE"})
        lines.append({**base, "date_time_utc": fmt_time(r["received_utc"] + timedelta(seconds=2),
                                                        "iso7"),
                      "source": "SMTP" if outcome != "DELIVER" else "STOREDRIVER",
                      "event_id": outcome, "recipient_status": r.get("ndr") or "",
                      "custom_data": "S:SFV=SPM" if status in ("filtered_as_spam",
                                                               "quarantined") else ""})
    _write_text(path, _csv(fields, ([e.get(f) for f in fields] for e in lines)), encoding)


def tracking_log(path: Path, events: Sequence[Row], version: str = "15.01.2375.007") -> None:
    """An on-premises MSGTRK*.LOG: UTF-8 BOM, '#' header lines, each file's own #Fields."""
    from pipeline.formats.tracking import MSGTRK_2010, MSGTRK_2013

    fields = MSGTRK_2010 if version.startswith("14.") else MSGTRK_2013
    first = min((e["time"] for e in events), default=datetime(2026, 1, 1, tzinfo=timezone.utc))
    head = ("#Software: Microsoft Exchange Server\r\n"
            f"#Version: {version}\r\n#Log-type: Message Tracking Log\r\n"
            f"#Date: {fmt_time(first, 'ms')}\r\n#Fields: {','.join(fields)}\r\n")
    body = io.StringIO()
    w = csv.writer(body, lineterminator="\r\n")
    for e in events:
        values = {"date-time": fmt_time(e["time"], "ms"), **e["fields"]}
        w.writerow([values.get(f, "") for f in fields])
    _write_text(path, "\ufeff" + head + body.getvalue(), "utf-8")


def tracking_events(rows: Sequence[Row], server: str,
                    send_connector: str = "Outbound to Office 365") -> list[Row]:
    """The tracking-log events of an on-premises server `server` for canonical rows (its
    users' mail, relayed to Exchange Online by the send connector, and mail from Exchange
    Online delivered to its mailboxes), for tracking_log(). A row's "onprem" dict overrides
    the RECEIVE event's fields (client-ip, client-hostname, connector-id)."""
    events = []
    for r in rows:
        inbound = r.get("direction") == "inbound"
        f = {"client-ip": "10.0.0.25", "client-hostname": f"wks.{server.lower()}.local",
             "server-hostname": server, "source": "SMTP",
             "connector-id": f"{server}\\{'Default Frontend' if inbound else 'Client Frontend'}"
                             f" {server}",
             "message-id": r.get("message_id"), "network-message-id": r.get("network_message_id"),
             "recipient-address": r["recipient_address"], "recipient-count": 1,
             "sender-address": r["sender_address"], "return-path": r["sender_address"],
             "directionality": "Incoming" if inbound else "Originating",
             "message-subject": r.get("subject"), **r.get("onprem", {})}
        t0 = r["received_utc"] - timedelta(seconds=2)
        events.append({"time": t0, "fields": {**f, "event-id": "RECEIVE"}})
        events.append({"time": t0 + timedelta(seconds=1), "fields": {
            **f, "event-id": "DELIVER", "source": "STOREDRIVER", "connector-id": ""} if inbound
            else {**f, "event-id": "SEND", "connector-id": send_connector,
                  "recipient-status": "250 2.6.0 Queued mail for delivery"}})
    return sorted(events, key=lambda e: e["time"])


def _domain_objects(domains: Sequence[Row], time_style: str | None) -> list[Row]:
    """Get-AcceptedDomain objects; times as `time_style` text, or (None) as datetimes."""
    return [{"DomainName": {"Domain": d["domain_name"], "Address": d["domain_name"],
                            "IncludeSubDomains": False} if time_style else d["domain_name"],
             "DomainType": d.get("domain_type", "Authoritative"),
             "Default": d.get("is_default", False),
             "MatchSubDomains": d.get("match_subdomains", False),
             "InitialDomain": d["domain_name"].endswith(".onmicrosoft.com"),
             "WhenCreatedUTC": fmt_time(d["when_created_utc"], time_style) if time_style
             else d["when_created_utc"]} for d in domains]


def _ps51_json(value: Any) -> str:
    """Windows PowerShell 5.1 ConvertTo-Json: `\\/Date(ms)\\/` times."""
    return json.dumps(value, indent=2).replace("/Date(", "\\/Date(").replace(")/", ")\\/")


def accepted_domains_json(path: Path, domains: Sequence[Row]) -> None:
    _write_text(path, _ps51_json(_domain_objects(domains, "msdate")), "utf-8")


def accepted_domains_clixml(path: Path, domains: Sequence[Row]) -> None:
    """Get-AcceptedDomain | Export-Clixml."""
    _write_text(path, Clixml("Microsoft.Exchange.Data.Directory.SystemConfiguration."
                             "AcceptedDomain").document(_domain_objects(domains, None)),
                "utf-8-sig")


INBOUND_FIELDS = ["Name", "Enabled", "ConnectorType", "ConnectorSource", "SenderIPAddresses",
                  "SenderDomains", "TlsSenderCertificateName", "RequireTls",
                  "RestrictDomainsToIPAddresses", "RestrictDomainsToCertificate",
                  "CloudServicesMailEnabled", "TreatMessagesAsInternal", "Comment",
                  "WhenCreatedUTC", "WhenChangedUTC"]


def accepted_domains_csv(path: Path, domains: Sequence[Row]) -> None:
    """Get-AcceptedDomain | Select-Object ... | Export-Csv -NoTypeInformation (PowerShell 7)."""
    _write_text(path, _csv(["DomainName", "DomainType", "Default", "MatchSubDomains",
                            "InitialDomain", "WhenCreatedUTC"], ([
        d["domain_name"], d.get("domain_type", "Authoritative"),
        "True" if d.get("is_default") else "False",
        "True" if d.get("match_subdomains") else "False",
        "True" if d["domain_name"].endswith(".onmicrosoft.com") else "False",
        fmt_time(d["when_created_utc"], "iso")] for d in domains)).replace("\r\n", "\n"),
        "utf-8")


def _inbound_values(c: Row, time_style: str, join: str | None) -> list[Any]:
    def multi(v: list[str]) -> Any:
        return join.join(v) if join is not None else v
    return [c["name"], c.get("enabled", True), c.get("connector_type", "OnPremises"),
            c.get("connector_source", "AdminUI"), multi(c.get("sender_ip_addresses", [])),
            multi([f"smtp:{d};1" for d in c.get("sender_domains", [])]),
            c.get("tls_sender_certificate_name"), c.get("require_tls", False),
            c.get("restrict_domains_to_ip_addresses", False),
            c.get("restrict_domains_to_certificate", False), True, False, c.get("comment"),
            fmt_time(c["when_created_utc"], time_style),
            fmt_time(c.get("when_changed_utc") or c["when_created_utc"], time_style)]


def _inbound_objects(connectors: Sequence[Row]) -> list[Row]:
    return [dict(zip(INBOUND_FIELDS, _inbound_values(c, "msdate", None), strict=False))
            for c in connectors]


def inbound_connectors_json(path: Path, connectors: Sequence[Row]) -> None:
    _write_text(path, _ps51_json(_inbound_objects(connectors)), "utf-8")


def inbound_connectors_clixml(path: Path, connectors: Sequence[Row]) -> None:
    """Get-InboundConnector | Export-Clixml (lists as <LST>, times as <DT>)."""
    objs = [{**o, "WhenCreatedUTC": c["when_created_utc"],
             "WhenChangedUTC": c.get("when_changed_utc") or c["when_created_utc"]}
            for o, c in zip(_inbound_objects(connectors), connectors, strict=True)]
    _write_text(path, Clixml("Microsoft.Exchange.Data.Directory.SystemConfiguration."
                             "TenantInboundConnector").document(objs), "utf-8-sig")


def scubagear_export(path: Path, domains: Sequence[Row], connectors: Sequence[Row],
                     when: datetime) -> None:
    """CISA ScubaGear's ProviderSettingsExport.json with the Exchange Online provider's
    accepted domains and connectors (`[null]`: none), as Windows PowerShell 5.1 writes it."""
    _write_text(path, _ps51_json({
        "baseline_version": "1", "module_version": "1.8.0",
        "timestamp_zulu": fmt_time(when, "iso"),
        "accepted_domains": _domain_objects(domains, "msdate"),
        "inbound_connectors": _inbound_objects(connectors) or [None],
        "outbound_connectors": [None]}), "utf-8")


def inbound_connectors_csv(path: Path, connectors: Sequence[Row], time_style: str = "de") -> None:
    """Export-Csv with multi-valued properties joined by ';' (the documented fix)."""
    rows = [[("True" if v is True else "False" if v is False else v)
             for v in _inbound_values(c, time_style, ";")] for c in connectors]
    _write_text(path, "#TYPE Selected.Microsoft.Exchange.Data.Directory.SystemConfiguration."
                "TenantInboundConnector\r\n" + _csv(INBOUND_FIELDS, rows), "utf-8")


def purview_audit_csv(path: Path, events: Sequence[Row], org: str) -> None:
    """Purview portal audit export: AuditData JSON inside a quoted CSV field."""
    header = ["RecordId", "CreationDate", "RecordType", "Operation", "UserId", "AuditData",
              "AssociatedAdminUnits", "AssociatedAdminUnitsNames"]
    lines = []
    for e in events:
        data = {"CreationTime": e["creation_utc"].strftime("%Y-%m-%dT%H:%M:%S"),
                "Id": e["record_id"], "Operation": e["operation"], "OrganizationName": org,
                "RecordType": 1, "ResultStatus": "True", "UserKey": "10032001A1B2C3D4",
                "UserType": 2, "Version": 1, "Workload": "Exchange",
                "ClientIP": f"{e['client_ip']}:{e.get('port', 50112)}",
                "ObjectId": e["object_id"], "UserId": e["user_id"], "ExternalAccess": False,
                "OrganizationId": "00000000-0000-0000-0000-000000000000",
                "Parameters": [{"Name": k, "Value": v} for k, v in e["parameters"].items()]}
        lines.append([e["record_id"], fmt_time(e["creation_utc"], "us"), 1, e["operation"],
                      e["user_id"], json.dumps(data, separators=(",", ":")), "", ""])
    _write_text(path, _csv(header, lines, quote_all=False), "utf-8")


def onprem_config_json(path: Path, objects: Sequence[Row]) -> None:
    """Get-ReceiveConnector / Get-SendConnector | ConvertTo-Json (PowerShell 7, as the
    Exchange Management Shell's remote session gives them: enums and lists as text)."""
    _write_text(path, json.dumps(list(objects), indent=2, default=str), "utf-8")


def ad_permissions_csv(path: Path, entries: Sequence[Row]) -> None:
    """Get-ADPermission | Select-Object Identity,User,@{n='ExtendedRights';e={$_.ExtendedRights
    -join ';'}},... | Export-Csv -NoTypeInformation."""
    header = ["Identity", "User", "ExtendedRights", "AccessRights", "Deny", "IsInherited"]
    _write_text(path, _csv(header, ([e["identity"], e["user"], ";".join(e["rights"]),
                                     "ExtendedRight", "False", "False"] for e in entries)),
                "utf-8")
