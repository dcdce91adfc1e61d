"""The sample's on-premises side (issue 18): the configuration exports of its hybrid story
tenant tailspin (a clean Exchange organisation), and wingtip, a hybrid tenant whose
on-premises server MAIL01 was left an open relay: a receive connector for a scanner open to
anonymous senders from anywhere, with the relay right, and a send connector routing every
domain to Exchange Online. Spam injected there two days ago shows in the cloud's extended
report and in MAIL01's tracking logs, and the report names the server, the connector, the
client and the permission."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

from pipeline import exports

Out = Callable[[Path, int], None]


def tailspin_config(d: Path, out: Out) -> None:
    """A clean organisation's receive and send connectors and relay permissions."""
    exports.onprem_config_json(d / "receive_connectors.json", [
        {"Name": "Default EX01", "Identity": "EX01\\Default EX01", "Server": "EX01",
         "Bindings": ["0.0.0.0:2525", "[::]:2525"], "RemoteIPRanges": ["0.0.0.0-255.255.255.255"],
         "PermissionGroups": "ExchangeUsers, ExchangeServers, ExchangeLegacyServers",
         "AuthMechanism": "Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer",
         "TransportRole": "HubTransport", "Enabled": True},
        {"Name": "Default Frontend EX01", "Identity": "EX01\\Default Frontend EX01",
         "Server": "EX01", "Bindings": ["0.0.0.0:25", "[::]:25"],
         "RemoteIPRanges": ["0.0.0.0-255.255.255.255"],
         "PermissionGroups": "AnonymousUsers, ExchangeServers, ExchangeLegacyServers",
         "AuthMechanism": "Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer",
         "TransportRole": "FrontendTransport", "Enabled": True}])
    out(d / "receive_connectors.json", 2)
    exports.onprem_config_json(d / "send_connectors.json", [
        {"Name": "Outbound to Office 365", "Identity": "Outbound to Office 365",
         "AddressSpaces": ["smtp:tailspin.mail.onmicrosoft.com;1"],
         "SmartHosts": ["tailspin-com.mail.protection.outlook.com"],
         "SourceTransportServers": ["EX01"], "RequireTLS": True, "Enabled": True,
         "CloudServicesMailEnabled": True}])
    out(d / "send_connectors.json", 1)
    exports.ad_permissions_csv(d / "receive_connector_permissions.csv", [
        {"identity": "EX01\\Default Frontend EX01", "user": "NT AUTHORITY\\ANONYMOUS LOGON",
         "rights": ["ms-Exch-SMTP-Submit", "ms-Exch-Accept-Headers-Routing"]}])
    out(d / "receive_connector_permissions.csv", 1)


def wingtip(inbox: Path, days: list[date], end: date, created: datetime, out: Out,
            tenant_cls: type, per_day: int, seed: float) -> None:
    """The open on-premises relay story (its own random stream: the other stories keep
    their data)."""
    t = tenant_cls("wingtip", "wingtip.com", random.Random(seed), per_day)
    rng = t.rng
    d = inbox / t.slug
    via = "Inbound from Wingtip on-premises"
    cloud: list[dict] = []
    start = datetime(end.year, end.month, end.day, tzinfo=created.tzinfo) - timedelta(days=2)
    for day in days:
        cloud += t.ordinary_day(day)
    spam = t.relay_spam(start, start + timedelta(hours=30), max(6, per_day // 4), via, None)
    cloud += spam
    for r in cloud:  # what leaves MAIL01 reaches Exchange Online from its public address
        if r["direction"] != "inbound":
            r["connector"], r["client_ip"] = via, "203.0.113.80"
    cloud.sort(key=lambda r: r["received_utc"])
    relayed = {r["network_message_id"] for r in spam}
    sent = [r for r in cloud if r["direction"] != "inbound"]
    for r in sent:
        bad = r["network_message_id"] in relayed
        r["onprem"] = {"client-ip": "185.220.101.7" if bad else f"10.2.0.{rng.randint(10, 60)}",
                       "client-hostname": "vps-4471.example-hosting.net" if bad
                       else "wks.wingtip.local",
                       "connector-id": "MAIL01\\Scanner relay" if bad
                       else "MAIL01\\Client Frontend MAIL01"}
    events = exports.tracking_events(sent, "MAIL01", "Mail to Office 365")
    for day in {e["time"].date() for e in events}:
        p = d / f"MSGTRK{day:%Y%m%d}00-1.LOG"
        exports.tracking_log(p, [e for e in events if e["time"].date() == day])
        out(p, 2 * sum(e["time"].date() == day for e in events))
    p = d / "historical_search_extended.csv"
    exports.historical_extended(p, cloud)
    out(p, 2 * len(cloud))
    p = d / "accepted_domains.json"
    exports.accepted_domains_json(p, [
        {"domain_name": t.org, "when_created_utc": created},
        {"domain_name": t.domain, "is_default": True, "when_created_utc": created}])
    out(p, 2)
    exports.inbound_connectors_json(d / "inbound_connectors.json", [
        {"name": via, "connector_type": "OnPremises", "sender_domains": ["*"],
         "sender_ip_addresses": [], "tls_sender_certificate_name": "mail.wingtip.com",
         "restrict_domains_to_certificate": True, "require_tls": True,
         "when_created_utc": created, "when_changed_utc": created}])
    out(d / "inbound_connectors.json", 1)
    exports.onprem_config_json(d / "receive_connectors.json", [
        {"Name": "Client Frontend MAIL01", "Identity": "MAIL01\\Client Frontend MAIL01",
         "Server": "MAIL01", "Bindings": ["0.0.0.0:587"],
         "RemoteIPRanges": ["0.0.0.0-255.255.255.255"], "PermissionGroups": "ExchangeUsers",
         "AuthMechanism": "Tls, BasicAuth, BasicAuthRequireTLS",
         "TransportRole": "FrontendTransport", "Enabled": True},
        {"Name": "Scanner relay", "Identity": "MAIL01\\Scanner relay", "Server": "MAIL01",
         "Bindings": ["0.0.0.0:25"], "RemoteIPRanges": ["0.0.0.0-255.255.255.255"],
         "PermissionGroups": "AnonymousUsers", "AuthMechanism": "Tls, ExternalAuthoritative",
         "TransportRole": "FrontendTransport", "Enabled": True}])
    out(d / "receive_connectors.json", 2)
    exports.onprem_config_json(d / "send_connectors.json", [
        {"Name": "Mail to Office 365", "Identity": "Mail to Office 365",
         "AddressSpaces": ["SMTP:*;1"], "SmartHosts": ["wingtip-com.mail.protection.outlook.com"],
         "SourceTransportServers": ["MAIL01"], "Enabled": True,
         "CloudServicesMailEnabled": True}])
    out(d / "send_connectors.json", 1)
    exports.ad_permissions_csv(d / "receive_connector_permissions.csv", [
        {"identity": "MAIL01\\Scanner relay", "user": "NT AUTHORITY\\ANONYMOUS LOGON",
         "rights": ["ms-Exch-SMTP-Submit", "ms-Exch-SMTP-Accept-Any-Recipient"]}])
    out(d / "receive_connector_permissions.csv", 2)
