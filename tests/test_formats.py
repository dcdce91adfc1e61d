"""Formats built from the real Format-List dumps, and broken inputs with their exact errors."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from pipeline.errors import InputFormatError
from tests.conftest import DATA, SNAPSHOT, parse


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)


@pytest.mark.parametrize("name", ["inbound_connector_evotec.json", "inbound_connector_evotec.csv"])
def test_inbound_connector_json_and_csv_agree(name: str) -> None:
    p = parse(DATA / name)
    assert p.table == "inbound_connectors"
    assert p.rows.height == 1
    c = p.rows.row(0, named=True)
    assert c["name"] == "Evotec Support"
    assert c["enabled"] is True
    assert c["connector_source"] == "AdminUI"
    assert c["sender_ip_addresses"] == ["37.59.176.140", "37.59.176.139", "37.59.176.138",
                                        "37.59.176.137"]
    assert c["sender_domains"] == ["*"]
    assert (c["require_tls"], c["restrict_domains_to_ip_addresses"]) == (False, True)
    assert c["comment"] is None and c["tls_sender_certificate_name"] is None
    assert c["when_created_utc"] == utc(2017, 2, 1, 18, 7, 24)
    assert c["when_changed_utc"] == utc(2017, 2, 1, 18, 7, 42)
    assert c["snapshot_utc"] == SNAPSHOT


def test_outbound_connector_single_object_json() -> None:
    p = parse(DATA / "outbound_connector_evotec.json")
    c = p.rows.row(0, named=True)
    assert p.table == "outbound_connectors"
    assert c["name"] == "Some Works Connector"
    assert c["connector_type"] == "OnPremises"
    assert c["recipient_domains"] == ["evotec.pl"] and c["smart_hosts"] == ["poczta.evotec.pl"]
    assert c["tls_settings"] == "CertificateValidation"
    assert c["use_mx_record"] is False
    assert c["when_created_utc"] == utc(2019, 3, 15, 1, 31, 6)


def test_accepted_domains_json_objects_wildcards_and_subdomains() -> None:
    p = parse(DATA / "accepted_domain_evotec.json")
    rows = {r["domain_name"]: r for r in p.rows.iter_rows(named=True)}
    assert set(rows) == {"evotecpoland.onmicrosoft.com", "evotec.xyz", "evotec.pl"}
    assert rows["evotecpoland.onmicrosoft.com"]["is_initial"] is True
    assert rows["evotecpoland.onmicrosoft.com"]["when_created_utc"] == utc(2015, 10, 14, 13, 22, 40)
    assert rows["evotec.xyz"]["match_subdomains"] is True  # '*.' prefix
    assert rows["evotec.pl"]["match_subdomains"] is True and rows["evotec.pl"]["is_default"]
    assert set(p.own_domains) == {"*.evotec.pl", "*.evotec.xyz", "evotecpoland.onmicrosoft.com"}


def test_accepted_domains_csv_with_us_dates() -> None:
    p = parse(DATA / "accepted_domain.csv")
    assert p.rows.filter(domain_name="evotec.pl")["when_created_utc"][0] == utc(2016, 3, 5, 9)


def test_message_trace_ps51_csv_with_type_line_and_culture_dates() -> None:
    p = parse(DATA / "messagetrace_ps51.csv")
    assert p.format == "message_trace_ps51"
    assert p.rows.height == 2
    first, spam = p.rows.sort("received_utc").iter_rows(named=True)
    assert first["received_utc"] == utc(2022, 9, 5, 18, 10, 13)  # 9/5 is September: 9/13 decides
    assert first["sender_address"] == "alice@contoso.com" and first["sender_domain"] == "contoso.com"
    assert first["network_message_id"] == "3a1f0000-0000-0000-0000-000000000001"  # lower-cased
    assert first["direction"] == "outbound" and first["to_ip"] == "104.47.1.1"
    assert spam["status"] == "filtered_as_spam" and spam["spam_verdict"] is True
    assert spam["direction"] == "outbound"  # unregistered sender, external recipient: relayed
    assert p.rejects.to_dicts() == [
        {"source_line": 5, "reason": "unparseable or missing timestamp", "raw": "not a date"}]


def test_message_trace_detail_collapses_to_recipient_outcomes() -> None:
    p = parse(DATA / "messagetrace_detail.csv")
    rows = {r["recipient_address"]: r for r in p.rows.iter_rows(named=True)}
    assert rows["x1@gmail.com"]["status"] == "failed"
    assert rows["x1@gmail.com"]["ndr_code"] == "5.7.750"
    assert rows["x1@gmail.com"]["received_utc"] == utc(2026, 11, 27, 6, 1, 0, 123456)
    assert rows["x2@yahoo.com"]["status"] == "delivered" and rows["x2@yahoo.com"]["ndr_code"] is None
    assert {r["direction"] for r in rows.values()} == {"outbound"}


def test_historical_summary_utf16_without_bom() -> None:
    p = parse(DATA / "historical_summary_tostka.csv")
    assert p.format == "historical_search_summary"
    rows = p.rows.sort("recipient_address").to_dicts()
    assert [r["recipient_address"] for r in rows] == [
        '"fname lname<fname.lname"@domain.com', "fname.lname@domain.com"]
    assert [r["status"] for r in rows] == ["failed", "delivered"]
    r = rows[1]
    assert r["received_utc"] == utc(2021, 3, 23, 10, 0, 9, 328489)
    assert r["subject"] == "AW: Fwd: SOME SUBJECT 123456 22-03-2021"
    assert r["size_bytes"] == 49790
    assert r["connector"] == "To_DefaultOpportunisticTLS"
    assert r["client_ip"] == "123.456.789.012"  # kept as exported, even if invalid
    assert r["direction"] == "outbound"  # Originating


@pytest.mark.parametrize("statuses,want", [
    ("a@x.com##Receive, Deliver;;b@y.com##Receive, Fail; ", ["a@x.com", "b@y.com"]),
    ("a@x.com##Receive, Deliver;b@y.com##Receive, Fail", ["a@x.com", "b@y.com"]),
    (None, [None]),  # no recipient at all: the message is kept, as a row without one
])
def test_historical_summary_empty_recipient_entries_are_skipped(tmp_path, statuses,
                                                                want) -> None:
    import polars as pl

    df = pl.DataFrame({"origin_timestamp_utc": ["2026-11-20T08:00:00.1234567Z"],
                       "sender_address": ["s@z.com"], "recipient_status": [statuses],
                       "network_message_id": ["6f1c0000-0000-0000-0000-000000000001"]},
                      schema={c: pl.String for c in ("origin_timestamp_utc", "sender_address",
                              "recipient_status", "network_message_id")})
    path = tmp_path / "summary.csv"
    df.write_csv(path)
    p = parse(path)
    assert p.format == "historical_search_summary" and p.rejects.height == 0
    assert p.rows["recipient_address"].to_list() == want
    assert p.rows["status"].to_list() == [
        {"a@x.com": "delivered", "b@y.com": "failed", None: None}[r] for r in want]


def test_historical_extended_events_and_spam_verdict() -> None:
    p = parse(DATA / "historical_extended_tostka.csv")
    assert p.format == "historical_search_extended"
    r = p.rows.row(0, named=True)
    assert p.rows.height == 1
    assert r["received_utc"] == utc(2021, 11, 23, 19, 49, 36, 900000)  # the RECEIVE event
    assert r["network_message_id"] == "f955f718-d5ff-40a7-137f-08d9aeba6116"
    assert r["status"] == "filtered_as_spam"  # delivered, but SFV=SPM
    assert r["connector"] == "Contoso On-Prem" and r["client_ip"] == "40.107.1.2"
    assert r["envelope_sender"] == "sender@domain.com"


def test_cp1252_bytes_are_read_not_rejected() -> None:
    p = parse(DATA / "messagetrace_cp1252.csv")
    assert p.rows["subject"][0] == "Grüße aus München"


BROKEN = {
    "empty.csv": "empty.csv: the file is empty; export it again",
    "unknown_header.csv": "unknown_header.csv:1: unknown columns Foo, Bar, Baz; expected a "
    "message trace, trace detail, historical search report, tracking log, accepted domain, "
    "connector or audit log export (see docs/formats.md)",
    "historical_summary_truncated.csv": "historical_summary_truncated.csv: the file ends in the "
    "middle of a utf-16-le character (truncated download); download or export the file again",
    "messagetrace_ambiguous_dates.csv": "messagetrace_ambiguous_dates.csv: dates like "
    "'05/09/2022 18:10:13' are ambiguous (day/month order cannot be told from this file); "
    "pass --date-order mdy (e.g. en-US) or --date-order dmy (e.g. en-GB) for this file",
    "inbound_connector_typenames.csv": "inbound_connector_typenames.csv:2: column "
    "'senderipaddresses' holds the PowerShell type name 'System.Collections.ArrayList' instead "
    "of values; export multi-valued properties with @{n='senderipaddresses';e={$_."
    "senderipaddresses -join ';'}} in Select-Object, or use ConvertTo-Json -Depth 5 instead of "
    "Export-Csv",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_inputs_give_their_message(name: str) -> None:
    with pytest.raises(InputFormatError) as exc:
        parse(DATA / name)
    assert str(exc.value) == BROKEN[name]


def test_ambiguous_dates_parse_with_an_explicit_order() -> None:
    p = parse(DATA / "messagetrace_ambiguous_dates.csv", date_order="dmy")
    assert sorted(p.rows["received_utc"].dt.date().to_list()) == [
        datetime(2022, 9, 5).date(), datetime(2022, 9, 6).date()]


def test_csv_cut_inside_a_quoted_field_is_rejected_whole() -> None:
    with pytest.raises(InputFormatError) as exc:
        parse(DATA / "truncated_quote.csv")
    assert str(exc.value) == (
        "truncated_quote.csv: not readable as CSV (could not parse `\"bob@fab` as dtype `str` "
        "at column 'RecipientAddress' (column number 5)); check that the file is a complete "
        "CSV export")


def test_search_unifiedauditlog_cmdlet_csv() -> None:
    p = parse(DATA / "audit_cmdlet.csv")
    assert p.format == "audit_log_csv"
    row = p.rows.row(0, named=True)
    assert row["operation"] == "New-InboundConnector"
    assert row["creation_utc"] == utc(2026, 11, 25, 20, 21)
    assert row["client_ip"] == "2001:db8::5"  # [v6]:port
    assert row["object_id"] == "Inbound Relay Partner"
    assert row["user_id"] == "it-admin@contoso.onmicrosoft.com"
    import json

    assert json.loads(row["parameters"])["SenderDomains"] == "smtp:*;1"
    assert p.rejects.select("source_line", "reason").to_dicts() == [
        {"source_line": 4, "reason": "AuditData is not JSON (Expecting property name enclosed "
                                     "in double quotes)"}]


def test_graph_message_trace_value_envelope_and_camel_case_status() -> None:
    p = parse(DATA / "graph_message_trace.json", own=("contoso.com",))
    assert p.format == "graph_message_trace_json"
    rows = {r["subject"]: r for r in p.rows.iter_rows(named=True)}
    out, back = rows["Disk space low"], rows["Re: Disk space low"]
    assert (out["status"], out["spam_verdict"], out["direction"]) == (
        "filtered_as_spam", True, "outbound")
    assert out["sender_address"] == "alerts@contoso.com"
    assert out["network_message_id"] == "4c5b4a2e-1111-2222-3333-08dd00000001"
    assert (back["status"], back["direction"]) == ("pending", "inbound")
    assert back["received_utc"] == utc(2026, 11, 20, 8, 20, 0, 123456)


@pytest.mark.parametrize("rows", [1, 2, 3, 5])
def test_utf16_streamed_in_chunks_cut_only_between_records(tmp_path, rows: int) -> None:
    """Quoted newlines, commas and quotes near every chunk edge: the chunks, cut at record
    ends, read as the whole file does (line numbers included)."""
    import polars as pl

    from pipeline.formats.source import read_csv_batches, read_csv_frame, read_head

    subjects = ['plain', 'a, comma', 'two\r\nlines', 'quote "x" inside', '"', 'ü ☃ 𝄞',
                'ends with newline\n', '', 'longer than a chunk, ' * 60 + '\n"end"']
    lines = ['"Sender","Subject","N"']
    for i in range(60):
        subject = subjects[i % len(subjects)].replace('"', '""')
        lines.append(f'"s{i}@x.com","{subject}","{i}"')
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xff\xfe" + "\r\n".join(lines).encode("utf-16-le"))
    head = read_head(path, "t.csv")
    whole = read_csv_frame(path, head, "t.csv")
    parts = list(read_csv_batches(path, head, "t.csv", 0, rows))
    streamed = pl.concat(parts).select(whole.columns)
    assert len(parts) > 1 and streamed.equals(whole)
    assert streamed["subject"][2] == "two\r\nlines" and streamed["_line"][-1] == 61


def test_utf16_quote_that_never_closes_is_refused_with_its_line(tmp_path, monkeypatch) -> None:
    from pipeline.formats import source

    monkeypatch.setattr(source, "MAX_RECORD_CHARS", 2000)
    text = '"Sender","Subject"\r\n"a@x.com","ok"\r\n"b@x.com","never closed\r\n' + "x\r\n" * 2000
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("utf-16-le"))
    head = source.read_head(path, "t.csv")
    with pytest.raises(InputFormatError) as exc:
        list(source.read_csv_batches(path, head, "t.csv", 0, 2))
    assert str(exc.value).startswith("t.csv:3: a quoted field runs on for over 2,000 characters")


def test_pending_chunks_number_lines_in_file_order_whichever_is_read_first() -> None:
    """Transcoded chunks read on other threads: the second may be read before the first,
    and its lines still follow the first's; a chunk that cannot be read fails the ones
    after it too (nothing is numbered from a guess)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from pipeline.formats.source import Pending

    start: Future[int] = Future()
    first = Pending(b'"a@x.com","1"\n"b@x.com","2"\n', ["Sender", "N"], "t.csv", start)
    second = Pending(b'"c@x.com","3"\n', ["Sender", "N"], "t.csv", first.end)
    with ThreadPoolExecutor(1) as pool:
        later = pool.submit(second.frame)   # waits for the first chunk's count
        start.set_result(2)
        assert first.frame()["_line"].to_list() == [2, 3]
        assert later.result()["_line"].to_list() == [4]
    broken_start: Future[int] = Future()
    broken_start.set_exception(InputFormatError("t.csv", None, "not readable as CSV", "fix"))
    after = Pending(b'"d@x.com","4"\n', ["Sender", "N"], "t.csv", broken_start)
    with pytest.raises(InputFormatError):
        after.frame()
    with pytest.raises(InputFormatError):
        Pending(b'"e@x.com","5"\n', ["Sender", "N"], "t.csv", after.end).frame()


@pytest.mark.parametrize("streamed", [False, True])
def test_the_row_that_decides_the_day_month_order_may_be_the_last(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool) -> None:
    """Get-MessageTrace writes newest first: days 1-12 at the top, the 25th at the bottom."""
    from pipeline import formats
    from pipeline.formats.common import Context

    rows = [f'"11/{1 + i % 12:02d}/2026 10:{i % 60:02d}:00","a@one.example","r{i}@x.example",'
            f'"Delivered","m{i}"' for i in range(3000)]
    rows.append('"11/25/2026 10:00:00","a@one.example","last@x.example","Delivered","mz"')
    path = tmp_path / "trace.csv"
    path.write_text('"Received","SenderAddress","RecipientAddress","Status","MessageTraceId"\n'
                    + "\n".join(rows) + "\n")
    if streamed:  # the file read in parts of 500 rows, as a big one is
        monkeypatch.setattr(formats, "STREAM_BYTES", 1000)
        monkeypatch.setattr(formats, "STREAM_ROWS", 500)
    sniffed = formats.sniff(path, "t/trace.csv")
    ctx = Context("t/trace.csv", "t", datetime(2026, 11, 28, tzinfo=timezone.utc))
    parts = list(formats.read_parts(path, sniffed, ctx))
    assert len(parts) == (7 if streamed else 1)
    times = pl.concat([p.rows for p in parts])["received_utc"]
    assert times.len() == 3001 and times.dt.month().unique().to_list() == [11]
    assert times.max() == datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)


def test_the_extended_report_writer_reads_back_row_for_row(tmp_path: Path) -> None:
    """exports.historical_extended (the report card's sixth format) gives back each
    recipient with its direction, connector, client IP and spam outcome."""
    from pipeline import exports

    when = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)
    rows = [{"received_utc": when, "sender_address": "a@own.example", "recipient_address":
             f"r{i}@ext{i}.example", "status": ["delivered", "filtered_as_spam"][i % 2],
             "network_message_id": "00000000-0000-4000-8000-000000000001",
             "message_id": "<m1@sim>", "subject": "s", "size_bytes": 1000,
             "direction": "outbound", "connector": "Inbound from x", "client_ip": "203.0.113.5"}
            for i in range(3)] + [
            {"received_utc": when, "sender_address": "p@ext.example",
             "recipient_address": "u@own.example", "status": "delivered",
             "network_message_id": "00000000-0000-4000-8000-000000000002",
             "message_id": "<m2@sim>", "direction": "inbound"}]
    exports.historical_extended(tmp_path / "ext.csv", rows)
    p = parse(tmp_path / "ext.csv")
    assert p.format == "historical_search_extended" and p.rejects.height == 0
    got = p.rows.sort("recipient_address").select(
        "recipient_address", "direction", "status", "connector", "client_ip", "received_utc")
    assert got.rows() == [
        ("r0@ext0.example", "outbound", "delivered", "Inbound from x", "203.0.113.5", when),
        ("r1@ext1.example", "outbound", "filtered_as_spam", "Inbound from x", "203.0.113.5", when),
        ("r2@ext2.example", "outbound", "delivered", "Inbound from x", "203.0.113.5", when),
        ("u@own.example", "inbound", "delivered", None, None, when)]


def test_tracking_log_rows_with_their_own_header_are_an_on_premises_log(tmp_path: Path) -> None:
    """A tracking log saved as a plain CSV (its `#Fields:` names as the header, no `#`
    lines) is an on-premises log with its hops, not the cloud's extended report."""
    src = (DATA / "MSGTRKMS2026112709-1.LOG").read_text(encoding="utf-8-sig").splitlines()
    rows = [ln.removeprefix("#Fields: ") for ln in src if not ln.startswith("#")
            or ln.startswith("#Fields:")]
    path = tmp_path / "tracking_rows.csv"
    path.write_text("\n".join(rows) + "\n")
    p = parse(path)
    assert (p.format, p.rows.height) == ("exchange_tracking_log", 2)
    assert p.also[0].rows.select("server", "connector", "client_ip").rows() == [
        ("EXCH01", "Relay", "45.9.8.7")]


TRACKING_CMDLET = [  # Get-MessageTrackingLog | ConvertTo-Json (PowerShell 7: offsets kept)
    {"Timestamp": "2026-11-27T10:15:02.1230000+01:00", "ClientIp": "45.9.8.7",
     "ClientHostname": "scanner.contoso.local", "ServerHostname": "EXCH01",
     "ConnectorId": "EXCH01\\Relay", "Source": "SMTP", "EventId": "RECEIVE",
     "MessageId": "<a1@contoso.com>", "NetworkMessageId": "6a638d20-1e63-493a-80a2-08da9a4ff8da",
     "Recipients": ["a@x.example", "b@y.example"], "RecipientStatus": [], "TotalBytes": 5120,
     "Sender": "promo@deal.top", "ReturnPath": "promo@deal.top", "Directionality": "Originating",
     "MessageSubject": "offer"},
    {"Timestamp": "2026-11-27T10:15:03.5000000+01:00", "ServerHostname": "EXCH01",
     "ConnectorId": "Outbound to Office 365", "Source": "SMTP", "EventId": "SEND",
     "MessageId": "<a1@contoso.com>", "NetworkMessageId": "6a638d20-1e63-493a-80a2-08da9a4ff8da",
     "Recipients": ["a@x.example", "b@y.example"],
     "RecipientStatus": ["250 2.6.0 Queued", "250 2.6.0 Queued"],
     "Sender": "promo@deal.top", "Directionality": "Originating", "MessageSubject": "offer"}]


def test_get_messagetrackinglog_objects_read_with_their_offsets(tmp_path: Path) -> None:
    import json

    path = tmp_path / "tracking.json"
    path.write_text(json.dumps(TRACKING_CMDLET))
    p = parse(path)
    assert p.format.startswith("exchange_tracking_log") and p.rows.height == 2
    got = p.rows.sort("recipient_address").select("recipient_address", "received_utc",
                                                  "status", "connector", "client_ip").rows()
    assert got == [("a@x.example", datetime(2026, 11, 27, 9, 15, 2, 123000, tzinfo=timezone.utc),
                    "delivered", "Relay", "45.9.8.7"),
                   ("b@y.example", datetime(2026, 11, 27, 9, 15, 2, 123000, tzinfo=timezone.utc),
                    "delivered", "Relay", "45.9.8.7")]


def test_get_messagetrackinglog_csv_without_offsets_is_refused_with_the_fix(
        tmp_path: Path) -> None:
    path = tmp_path / "tracking.csv"
    path.write_text('"Timestamp","EventId","Source","Sender","Recipients","MessageId"\n'
                    '"27/11/2026 10:15:02","RECEIVE","SMTP","promo@deal.top",'
                    '"a@x.example;b@y.example","<a1@contoso.com>"\n')
    with pytest.raises(InputFormatError, match="local time without its UTC offset") as err:
        parse(path)
    assert "ToUniversalTime" in str(err.value) and "tracking.csv" in str(err.value)


def test_the_graph_trace_writer_reads_back_as_the_graph_format(tmp_path: Path) -> None:
    """exports.message_trace_json(style='graph') (a report card format) gives back each row."""
    from pipeline import exports

    when = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)
    rows = [{"received_utc": when, "sender_address": "a@own.example", "recipient_address":
             f"r{i}@ext.example", "status": ["delivered", "filtered_as_spam"][i],
             "network_message_id": f"00000000-0000-4000-8000-00000000000{i}",
             "message_id": f"<m{i}@sim>", "size_bytes": 100 + i} for i in range(2)]
    exports.message_trace_json(tmp_path / "graph.json", rows, "own.onmicrosoft.com", "graph")
    p = parse(tmp_path / "graph.json")
    assert p.rejects.height == 0
    assert p.rows.sort("recipient_address").select(
        "recipient_address", "status", "received_utc", "size_bytes").rows() == [
        ("r0@ext.example", "delivered", when, 100),
        ("r1@ext.example", "filtered_as_spam", when, 101)]
