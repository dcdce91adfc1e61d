"""Every real export sample in ../shared/fixtures/real parses with the values SOURCES.md lists."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pipeline.errors import InputFormatError
from tests.conftest import parse, real


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)


def test_exchange2010_log_has_no_messages_and_does_not_fail() -> None:
    p = parse(real("msgtrk_exchange2010_beats.log"))
    assert p.format == "exchange_tracking_log"
    assert p.rows.height == 0  # two NOTIFYMAPI events without recipient or message id
    assert p.rejects.height == 0


def test_exchange2016_log_gives_one_outbound_message() -> None:
    p = parse(real("msgtrk_exchange2016_artefacts.log"))
    assert p.rows.height == 1
    row = p.rows.row(0, named=True)
    assert row["received_utc"] == utc(2022, 9, 19, 15, 2, 29, 450000)
    assert row["recipient_address"] == "user.name4@gmail.com"
    assert row["recipient_domain"] == "gmail.com"
    assert row["sender_address"] == row["envelope_sender"] == "user.name1@domain.com"
    assert row["network_message_id"] == "6a638d20-1e63-493a-80a2-08da9a4ff8da"
    assert row["message_id"] == "<XXX@domain.com>"
    assert row["size_bytes"] == 3750222
    assert row["subject"] == "MAIL SUBJECT"
    assert row["direction"] == "outbound"  # Originating, to gmail.com
    assert row["client_ip"] == "fe80::1234:5678:4321:1010"  # %scope dropped


def test_headerless_rows_are_refused_with_the_fix() -> None:
    with pytest.raises(InputFormatError) as exc:
        parse(real("msgtrk_rows_noheader_elastic.rows"))
    assert str(exc.value) == (
        "msgtrk_rows_noheader_elastic.rows:1: message tracking rows without a '#Fields:' header "
        "line; copy the header lines from a MSGTRK*.LOG file of the same server, or pass "
        "--headerless-msgtrk exchange2013 (30 fields) or exchange2010 (26 fields)")


def test_headerless_rows_parse_with_the_2013_field_set() -> None:
    p = parse(real("msgtrk_rows_noheader_elastic.rows"), headerless="exchange2013")
    rows = {r["subject"]: r for r in p.rows.iter_rows(named=True)}
    assert len(rows) == 4
    send = rows["ein Titel"]
    assert send["received_utc"] == utc(2024, 1, 7, 0, 0, 7, 463000)
    assert send["recipient_address"] == "uwe.musterman@example.com"
    assert send["message_id"] == "20240107001234.567E6224C8@monitor.example.com"
    assert send["connector"] == "Intra-Organization SMTP Send Connector"
    assert send["size_bytes"] == 38663
    assert send["status"] == "delivered"
    backup = rows["vzdump backup status (host01.my.domain.com): backup successful"]
    assert backup["size_bytes"] == 7229
    assert backup["connector"] == "Default exchange-mail"  # SERVER\ prefix removed
    assert rows["Undelivered Mail Returned to Sender"]["envelope_sender"] == (
        "root@host01.my.domain.com")


def test_message_trace_ndjson() -> None:
    p = parse(real("messagetrace_elastic.ndjson"))
    assert p.format == "message_trace_json"
    assert p.rows.height == 2
    by_subject = {r["subject"]: r for r in p.rows.iter_rows(named=True)}
    r2 = by_subject["testmail 2"]
    assert r2["received_utc"] == utc(2022, 10, 21, 17, 25, 36, 969376)
    assert r2["message_id"] == (
        "<GVAP278MB037586A65EF1FB2F844B0258DA2D9@GVAP278MB0375.CHEP278.PROD.OUTLOOK.COM>")
    assert r2["client_ip"] == "40.107.23.54" and r2["to_ip"] is None
    assert r2["size_bytes"] == 22761
    assert r2["network_message_id"] == "a5e6dc0f-23df-4b20-d240-08dab38944a1"
    assert by_subject["testmail 1"]["received_utc"] == utc(2022, 10, 21, 17, 25, 30, 600688)
    assert {r["status"] for r in p.rows.iter_rows(named=True)} == {"delivered"}
    assert {r["direction"] for r in p.rows.iter_rows(named=True)} == {"inbound"}
    assert p.own_domains == ("contoso.com",)


def test_reporting_web_service_record_without_z_is_utc() -> None:
    p = parse(real("messagetrace_reporting_ws_elastic.ndjson"))
    row = p.rows.row(0, named=True)
    assert row["received_utc"] == utc(2022, 9, 5, 18, 10, 13, 490765)
    assert row["sender_domain"] == "microsoft.com"
    assert row["recipient_address"] == "linus@wildsecurity.onmicrosoft.com"
    assert row["size_bytes"] == 87891
    assert (row["client_ip"], row["to_ip"]) == ("81.2.69.144", "216.160.83.56")
    assert row["direction"] == "inbound"


def test_management_api_audit_records_dedupe_on_id() -> None:
    p = parse(real("audit_exchange_admin_elastic.ndjson"))
    assert p.table == "audit_events"
    assert p.rows.height == 67  # 100 lines, 33 exact duplicates
    counts = dict(p.rows.group_by("operation").len().iter_rows())
    assert counts["Set-Mailbox"] == 47
    assert counts["Set-TransportConfig"] == 4
    assert counts["Install-ResourceConfig"] == 1
    assert p.rows["creation_utc"].min() == utc(2020, 2, 7, 20, 48, 4)
    assert p.rows["creation_utc"].max() == utc(2020, 2, 10, 7, 37, 24)
    first = p.rows.row(0, named=True)
    assert first["record_id"] == "1c7412a6-858d-49ff-3f93-08d7ac0f45bf"
    assert first["organization"] == "testsiem.onmicrosoft.com"
    assert p.own_domains == ("testsiem.onmicrosoft.com",)


def test_purview_export() -> None:
    p = parse(real("purview_auditlog_export_huntressctf.csv"))
    assert p.format == "audit_log_csv"
    assert p.rows.height == 219 and p.rejects.height == 0
    types = dict(p.rows.group_by("record_type").len().iter_rows())
    assert types == {"1": 89, "8": 71, "15": 21, "6": 13, "14": 9, "4": 6, "13": 3, "43": 3,
                     "56": 3, "36": 1}
    rules = p.rows.filter(operation="New-InboxRule")
    assert rules.height == 38
    assert set(rules["user_id"]) == {"DebraB@M365B132131.OnMicrosoft.com"}
    assert rules["creation_utc"].min() == utc(2023, 9, 26, 1, 56, 15)
    assert rules["creation_utc"].max() == utc(2023, 9, 26, 2, 12, 10)
    assert "185.73.124.135" in set(rules["client_ip"])  # port removed
    first = p.rows.row(0, named=True)
    assert first["record_id"] == "538815b7-273a-4a3f-9957-c86897966eec"
    assert first["source_line"] == 2


@pytest.mark.parametrize("name", ["accepteddomain_formatlist_evotec.txt",
                                  "inboundconnector_formatlist_evotec.txt",
                                  "outboundconnector_formatlist_evotec.txt",
                                  "historicalsearch_records_formatlist_tostka.txt"])
def test_powershell_display_text_is_refused_with_the_export_to_use(name: str) -> None:
    with pytest.raises(InputFormatError) as err:
        parse(real(name))
    assert "PowerShell display text (Format-List or Format-Table output), not an export" \
        in str(err.value)
    assert "export with Export-Csv -NoTypeInformation or ConvertTo-Json -Depth 5" \
        in str(err.value)


def test_missing_shared_fixtures_skip_outside_ci_and_fail_in_ci(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests import conftest

    monkeypatch.setattr(conftest, "REAL", tmp_path / "absent")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="shared fixtures must sit in ../shared"):
        conftest.real("messagetrace_elastic.ndjson")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="shared fixtures must sit in ../shared"):
        conftest.real("messagetrace_elastic.ndjson")


def test_scubagear_provider_settings_feed_three_tables(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ScubaGear's ProviderSettingsExport.json (CISA's published sample): one file, the
    accepted domains, inbound and (as `[null]`: none) outbound connectors each into its
    table, with the values the file holds; one manifest row for the file."""
    import duckdb

    from pipeline import detect
    from pipeline.ingest import ingest
    from pipeline.settings import Settings
    from tests.conftest import AS_OF, real

    s = Settings(lake=tmp_path / "lake")
    ingest([real("scubagear_providersettings_exo_export.json")], s, tenant="tqhjy")
    lake = s.lake
    domains = duckdb.sql(
        f"SELECT domain_name, domain_type, is_default, match_subdomains FROM read_parquet("
        f"'{lake}/accepted_domains/*/*.parquet') ORDER BY domain_name").fetchall()
    assert domains == [
        ("example.com", "Authoritative", False, False),
        ("sub.subdomain.example.com", "Authoritative", False, False),
        ("subdomain.example.com", "Authoritative", False, False),
        ("test365.tqhjy.dhs.gov", "Authoritative", False, False),
        ("testtesttest.test365.tqhjy.dhs.gov", "Authoritative", False, False),
        ("tqhjy.mail.onmicrosoft.com", "Authoritative", False, False),
        ("tqhjy.onmicrosoft.com", "Authoritative", True, False)]
    (inbound,) = duckdb.sql(
        f"SELECT name, connector_type, enabled, sender_domains, sender_ip_addresses, "
        f"require_tls, when_created_utc::DATE FROM read_parquet("
        f"'{lake}/inbound_connectors/*/*.parquet')").fetchall()
    assert inbound[:6] == ("inbound connector test 1", "Partner", True, ["test.domain.com"], [],
                           True)
    assert str(inbound[6]) == "2026-03-03"
    log = duckdb.sql(f"SELECT source_format, status, rows, table_rows FROM read_parquet("
                     f"'{lake}/ingest_log/*.parquet')").fetchall()
    assert log == [("scubagear_provider_settings", "ingested", 12,  # one row, a table each
                    "accepted_domains:7, exo_settings:4, inbound_connectors:1, "
                    "outbound_connectors:0")]
    activity = detect.evaluate(lake, detect.Run(AS_OF, None, s.detect)).rows["tenant_activity"]
    assert activity.row(0, named=True)["has_connector_list"]


def test_scubagear_keeps_the_settings_sections_whole(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """transport_rule, transport_config, remote_domains and conn_filter land in exo_settings
    with their names, states and times, each object kept as JSON."""
    import duckdb

    from pipeline.ingest import ingest
    from pipeline.settings import Settings
    from tests.conftest import real

    s = Settings(lake=tmp_path / "lake")
    ingest([real("scubagear_providersettings_exo_export.json")], s, tenant="tqhjy")
    rows = duckdb.sql(
        "SELECT section, name, state, when_created_utc::VARCHAR, "
        "json_extract_string(properties, '$.DomainName') FROM read_parquet("
        f"'{s.lake}/exo_settings/*/*.parquet') ORDER BY section").fetchall()
    assert rows == [
        ("conn_filter", "Default", None, "2021-04-27 00:49:46+00", None),
        ("remote_domains", "Default", None, "2021-04-27 00:46:52+00", "*"),
        ("transport_config", "Transport Settings", None, "2021-04-27 00:46:38+00", None),
        ("transport_rule", 'Sender is located outside the organization prepend "[External]"',
         "Enabled", None, None)]


def test_a_scubagear_section_that_cannot_be_read_is_a_reject_the_others_land(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One file, many tables: a section that cannot be read (a connector's IP list written
    as its .NET type name) is a reject naming the section and the fix; the accepted domains
    and the settings still land, and the tenant is not taken to have no connectors."""
    import json

    import duckdb

    from pipeline import detect
    from pipeline.ingest import ingest
    from pipeline.settings import Settings
    from tests.conftest import AS_OF, real

    doc = json.loads(real("scubagear_providersettings_exo_export.json").read_text("utf-8-sig"))
    doc["inbound_connectors"][0]["SenderIPAddresses"] = "System.Collections.ArrayList"
    path = tmp_path / "in" / "ProviderSettingsExport.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc), encoding="utf-8")
    s = Settings(lake=tmp_path / "lake")
    ingest([path], s, tenant="tqhjy")
    lake = s.lake
    (reject,) = duckdb.sql(f"SELECT source_format, reason FROM read_parquet("
                           f"'{lake}/rejects/*/*.parquet')").fetchall()
    assert reject[0] == "scubagear_provider_settings:inbound_connectors"
    assert reject[1].startswith("section inbound_connectors: ") and "-join" in reject[1]
    assert not (lake / "inbound_connectors").exists() or not list(
        (lake / "inbound_connectors").rglob("*.parquet"))
    counts = dict(duckdb.sql(
        f"SELECT 'domains', count(*) FROM read_parquet('{lake}/accepted_domains/*/*.parquet') "
        f"UNION ALL SELECT 'settings', count(*) FROM read_parquet("
        f"'{lake}/exo_settings/*/*.parquet')").fetchall())
    assert counts == {"domains": 7, "settings": 4}
    activity = detect.evaluate(lake, detect.Run(AS_OF, None, s.detect)).rows["tenant_activity"]
    assert not activity.row(0, named=True)["has_connector_list"]
