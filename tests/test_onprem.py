"""The on-premises side (issue 18): receive and send connectors, AD permissions and
on-premises accepted domains read into their own tables, and the open-relay settings they
show found with their evidence and the command that undoes each."""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

import polars as pl

from pipeline import detect, exports, report
from pipeline.ingest import ingest
from pipeline.settings import DetectSettings, Settings
from tests.conftest import AS_OF, SNAPSHOT, real

RELAY = {"Name": "Relay", "Identity": "EXCH01\\Relay", "Server": "EXCH01",
         "Bindings": ["0.0.0.0:25"], "RemoteIPRanges": ["0.0.0.0-255.255.255.255"],
         "PermissionGroups": 33, "AuthMechanism": "Tls, ExternalAuthoritative",
         "TransportRole": "FrontendTransport", "Enabled": True}
FRONTEND = {"Name": "Default Frontend EXCH01", "Identity": "EXCH01\\Default Frontend EXCH01",
            "Server": "EXCH01", "Bindings": ["0.0.0.0:25", "[::]:25"],
            "RemoteIPRanges": ["0.0.0.0-255.255.255.255"],
            "PermissionGroups": "AnonymousUsers, ExchangeServers, ExchangeLegacyServers",
            "AuthMechanism": "Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer",
            "TransportRole": "FrontendTransport", "Enabled": True}
APP = {**RELAY, "Name": "App relay", "Identity": "EXCH01\\App relay",
       "RemoteIPRanges": ["10.0.5.20"], "PermissionGroups": "AnonymousUsers",
       "AuthMechanism": "Tls"}
ANON = ('"Identity","User","ExtendedRights","AccessRights","Deny","IsInherited"\n'
        '"EXCH01\\{c}","NT AUTHORITY\\ANONYMOUS LOGON","ms-Exch-SMTP-Accept-Any-Recipient",'
        '"ExtendedRight","False","False"\n'
        '"EXCH01\\{c}","NT AUTHORITY\\ANONYMOUS LOGON","ms-Exch-SMTP-Submit","ExtendedRight",'
        '"False","False"\n')


def inbox(tmp: Path, receive: list[dict], anon_on: str, relayed: int) -> Path:
    folder = tmp / "inbox" / "solo"
    folder.mkdir(parents=True)
    shutil.copy(real("accepteddomain_clixml_exchange2019_cssexchange.xml"), folder / "ad.xml")
    shutil.copy(real("sendconnector_clixml_exchange_to_o365_cssexchange.xml"), folder / "sc.xml")
    (folder / "receive_connectors.json").write_text(json.dumps(receive))
    text = ANON.format(c=anon_on)
    if anon_on == "App relay":  # only the right to submit, as an app relay should have
        text = "\n".join(ln for ln in text.splitlines() if "Any-Recipient" not in ln) + "\n"
    (folder / "adpermission.csv").write_text(text)
    rows = []
    for i in range(300):  # the tenant's own mail, then spam relayed through the server
        rows.append({"received_utc": AS_OF - timedelta(hours=2 + i), "sender_address":
                     f"u{i % 9}@solo.com", "recipient_address": f"r{i}@ext{i % 40}.example",
                     "status": "delivered", "network_message_id": f"0-0-0-1-{i:012d}"})
    for i in range(relayed):
        rows.append({"received_utc": AS_OF - timedelta(hours=1 + i % 20, minutes=i % 50),
                     "sender_address": f"promo@deal{i % 4}.top", "recipient_address":
                     f"v{i}@t{i % 300}.example", "status": "delivered",
                     "network_message_id": f"0-0-0-2-{i:012d}"})
    exports.message_trace_csv(folder / "trace.csv", rows, "solo.onmicrosoft.com", "ps7", "iso")
    for f in folder.iterdir():  # exported before the night's run
        os.utime(f, (SNAPSHOT.timestamp() - 7200, SNAPSHOT.timestamp() - 7200))
    return tmp / "inbox"


def run(tmp: Path, receive: list[dict], anon_on: str, relayed: int):  # type: ignore[no-untyped-def]
    s = Settings(lake=tmp / "lake")
    ingest([inbox(tmp, receive, anon_on, relayed)], s)
    result = detect.detect(s, AS_OF)
    built = report.build(s.lake, AS_OF.date(), DetectSettings(), "solo").tenants[0]
    return s, result, built


def test_on_premises_exports_land_in_their_own_tables(tmp_path: Path) -> None:
    s, _, _ = run(tmp_path, [RELAY, FRONTEND], "Relay", 0)
    import duckdb

    lake = s.lake
    rc = duckdb.sql(f"SELECT name, server, permission_groups, auth_mechanism FROM "
                    f"read_parquet('{lake}/receive_connectors/*/*.parquet') ORDER BY name").fetchall()
    assert rc == [("Default Frontend EXCH01", "EXCH01",
                   ["AnonymousUsers", "ExchangeServers", "ExchangeLegacyServers"],
                   ["Tls", "Integrated", "BasicAuth", "BasicAuthRequireTLS", "ExchangeServer"]),
                  ("Relay", "EXCH01", ["AnonymousUsers", "Custom"], ["Tls", "ExternalAuthoritative"])]
    perms = duckdb.sql(f"SELECT identity, \"user\", extended_rights, deny FROM "
                       f"read_parquet('{lake}/ad_permissions/*/*.parquet') ORDER BY 3").fetchall()
    assert perms == [("EXCH01\\Relay", "NT AUTHORITY\\ANONYMOUS LOGON",
                      ["ms-Exch-SMTP-Accept-Any-Recipient"], False),
                     ("EXCH01\\Relay", "NT AUTHORITY\\ANONYMOUS LOGON", ["ms-Exch-SMTP-Submit"], False)]
    sends = duckdb.sql(f"SELECT name FROM read_parquet('{lake}/send_connectors/*/*.parquet')")
    assert sends.fetchall() == [("Mail to O365",)]


def test_an_open_relay_is_found_named_and_undone(tmp_path: Path) -> None:
    """Every open-relay setting of the real samples plus a relay connector: found with its
    server, connector and setting, step 3 fails on them, the verdict blocks while spam is
    relayed, and the report gives the command that undoes each."""
    _, result, t = run(tmp_path, [RELAY, FRONTEND], "Relay", 400)
    got = result.findings.filter(pl.col("detection") == "onprem_relay_setting")
    assert sorted(got["subject"].to_list()) == [
        "anonymous_accept_any_recipient:EXCH01\\Relay", "anonymous_wide_ranges:EXCH01\\Relay",
        "relay_domain_wildcard:*.com", "send_connector_to_eop_for_all:Mail to O365"]
    assert set(got["severity"]) == {"compromise"}  # the tenant relays: 400 recipients
    assert t.recommendation == "block"
    step3 = t.steps[2]
    assert not step3.ok and "ANONYMOUS LOGON" in step3.evidence and "*.com" in step3.evidence
    commands = [c.command for c in t.next_steps]
    assert ("Remove-ADPermission -Identity 'EXCH01\\Relay' -User 'NT AUTHORITY\\ANONYMOUS "
            "LOGON' -ExtendedRights 'ms-Exch-SMTP-Accept-Any-Recipient'") in commands
    assert "Set-ReceiveConnector -Identity 'EXCH01\\Relay' -PermissionGroups ExchangeServers" \
        in commands
    assert ("Get-AcceptedDomain | Where-Object { $_.DomainName.ToString() -eq '*.com' } | "
            "Remove-AcceptedDomain") in commands


def test_a_restricted_app_relay_is_no_open_relay(tmp_path: Path) -> None:
    """The other side: the internet-facing Default Frontend connector (anonymous, but no
    relay right) and an app relay limited to one server's IP are not open relays; with no
    spam relayed, the settings the real samples still hold are warnings, not a block."""
    _, result, t = run(tmp_path, [APP, FRONTEND], "App relay", 0)
    got = result.findings.filter(pl.col("detection") == "onprem_relay_setting")
    assert sorted(got["subject"].to_list()) == [
        "relay_domain_wildcard:*.com", "send_connector_to_eop_for_all:Mail to O365"]
    assert set(got["severity"]) == {"warning"}
    assert t.recommendation == "unblock" and not t.steps[2].ok


def test_the_server_and_connector_that_injected_the_spam_are_named(tmp_path: Path) -> None:
    """Cloud historical-search summary + on-premises tracking logs of the same messages:
    the spam's on-premises hop (receive connector, client IP, servers from the connector
    export, the setting that let it in) with its numbers, counted here independently."""
    import random

    rng = random.Random(7)
    folder = tmp_path / "inbox" / "hyb"
    folder.mkdir(parents=True)
    exports.accepted_domains_json(folder / "accepted_domains.json", [
        {"domain_name": "hyb.example", "when_created_utc": AS_OF - timedelta(days=900)}])
    (folder / "receive_connectors.json").write_text(json.dumps([
        {**RELAY, "Server": "EXCH01", "Identity": "EXCH01\\Relay"},
        {**RELAY, "Server": "EXCH02", "Identity": "EXCH02\\Relay"}, FRONTEND]))
    (folder / "adpermission.csv").write_text(ANON.format(c="Relay"))
    cloud, events, expect = [], [], {"recipients": 0, "messages": 0, "unprovisioned": 0,
                                     "spam": 0, "domains": set()}
    for i in range(400):
        spam = rng.random() < 0.4
        when = AS_OF - timedelta(hours=rng.randint(1, 120), minutes=rng.randint(0, 59))
        sender = f"promo@deal{i % 3}.top" if spam else f"u{i % 20}@hyb.example"
        if spam and rng.random() < 0.3:  # registered sender, but filtered as spam
            sender = f"u{i % 20}@hyb.example"
        status = "filtered_as_spam" if spam and rng.random() < 0.5 else "delivered"
        nid = f"00000000-0000-4000-8000-{i:012d}"
        rcpts = [f"r{i}-{k}@x{rng.randrange(90)}.example" for k in range(rng.randint(1, 4))]
        for r in rcpts:
            cloud.append({"received_utc": when + timedelta(seconds=5), "sender_address": sender,
                          "recipient_address": r, "status": status, "network_message_id": nid,
                          "message_id": f"<{nid}@hyb>", "connector": "Inbound from hyb",
                          "client_ip": "203.0.113.10", "direction": "outbound"})
        unprov = not sender.endswith("@hyb.example")
        if unprov or status == "filtered_as_spam":
            expect["recipients"] += len(rcpts)
            expect["messages"] += 1
            expect["unprovisioned"] += len(rcpts) * unprov
            expect["spam"] += len(rcpts) * (status == "filtered_as_spam")
            expect["domains"].add(sender.split("@")[1])
        via, ip = (("EXCH01\\Relay", "45.9.8.7") if spam else
                   ("EXCH01\\Default Frontend EXCH01", "10.1.0.20"))
        f = {"client-ip": ip, "server-hostname": "EXCH01", "connector-id": via, "source": "SMTP",
             "message-id": f"<{nid}@hyb>", "network-message-id": nid,
             "recipient-address": ";".join(rcpts), "recipient-count": len(rcpts),
             "sender-address": sender, "return-path": sender, "directionality": "Originating"}
        events.append({"time": when, "fields": {**f, "event-id": "RECEIVE"}})
        events.append({"time": when + timedelta(seconds=1), "fields": {
            **f, "event-id": "SEND", "connector-id": "Outbound to Office 365",
            "recipient-status": "250 2.6.0 Queued mail for delivery"}})
    exports.historical_extended(folder / "extended.csv", sorted(cloud, key=lambda r: r["received_utc"]))
    exports.tracking_log(folder / "MSGTRK2026112800-1.LOG", sorted(events, key=lambda e: e["time"]))
    for p in folder.iterdir():
        os.utime(p, (SNAPSHOT.timestamp() - 7200, SNAPSHOT.timestamp() - 7200))
    s = Settings(lake=tmp_path / "lake")
    ingest([tmp_path / "inbox"], s)
    result = detect.detect(s, AS_OF)
    rows = result.rows["onprem_injection"]
    assert rows.height == 1, rows
    r = rows.row(0, named=True)
    assert (r["server"], r["connector"], r["client_ip"]) == ("EXCH01", "Relay", "45.9.8.7")
    assert (r["recipients"], r["messages"], r["unprovisioned_recipients"],
            r["spam_recipients"]) == (expect["recipients"], expect["messages"],
                                      expect["unprovisioned"], expect["spam"])
    assert r["sender_domains"] == sorted(expect["domains"])[:5]
    assert any("ANONYMOUS LOGON" in x for x in r["relay_settings"])
    t = report.build(s.lake, AS_OF.date(), DetectSettings(), "hyb").tenants[0]
    assert t.recommendation == "block"
    assert "receive connector 'Relay' on EXCH01 from 45.9.8.7" in t.steps[2].evidence


def test_a_tracking_log_keeps_each_messages_on_premises_hop() -> None:
    """onprem_hops: one row per message, server, receive connector and client, from the
    SMTP RECEIVE event (the SEND to Exchange Online is not a way in)."""
    from tests.conftest import DATA, parse

    p = parse(DATA / "MSGTRKMS2026112709-1.LOG")
    assert p.table == "messages" and p.rows.height == 2
    (hop,) = p.also
    assert hop.table == "onprem_hops"
    assert hop.rows.select("server", "connector", "client_ip", "client_hostname", "recipients",
                           "network_message_id", "sender_address").rows() == [
        ("EXCH01", "Relay", "45.9.8.7", "scanner.contoso.local", 2,
         "6a638d20-1e63-493a-80a2-08da9a4ff8da", "promo@deal.top")]


def test_a_wildcard_under_any_public_suffix_covers_the_internet(build) -> None:  # type: ignore[no-untyped-def]
    """`*.co.uk` or `*.github.io` covers everyone's domains as `*.com` does (the Public
    Suffix List decides, not a count of dots); `*.contoso.co.uk` covers one organisation's.
    Mail from a domain under a public-suffix wildcard is not the tenant's own."""
    from pipeline import sql
    from tests.conftest import at

    build.table("accepted_domains", "uk", [
        {"domain_name": d, "match_subdomains": True, "domain_type": t, "snapshot_utc": SNAPSHOT}
        for d, t in (("co.uk", "ExternalRelay"), ("github.io", "InternalRelay"),
                     ("contoso.co.uk", "InternalRelay"), ("contoso.com", "Authoritative"))])
    build.send("uk", at(27), "promo@cheap-pills.co.uk", 7)
    build.send("uk", at(27), "app@mail.contoso.co.uk", 3)
    with sql.Session(build.rolled()) as session:
        found = session.run("onprem_relay_settings", {"as_of": AS_OF, "tenant": "uk"})
        own = session.run("unprovisioned_senders", {
            "as_of": AS_OF, "tenant": "uk", "window_days": 7, "baseline_days": 28})
    assert sorted(found["object"].to_list()) == ["*.co.uk", "*.github.io"]
    assert own.select("domain", "recipients").rows() == [("cheap-pills.co.uk", 7)]
