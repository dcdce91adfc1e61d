"""Ad hoc SQL, named queries and the catalog: what they return, output formats, sandbox."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from pipeline import output, sql
from pipeline.cli import cli
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden"


def lake_frame(lake: Path) -> pl.DataFrame:
    """The messages table read by Polars straight from the files (not through our SQL)."""
    return pl.read_parquet(lake / "messages", hive_partitioning=True)


def run(lake: Path, name: str, **params: object) -> pl.DataFrame:
    with sql.Session(lake) as session:
        return session.run(name, params)


def cli_run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_at_least_ten_investigation_queries_beyond_the_detections() -> None:
    from pipeline.detect import DETECTIONS

    assert len(set(sql.queries()) - set(DETECTIONS)) >= 10


def test_message_by_id_finds_every_recipient(sample_lake: Path) -> None:
    m = lake_frame(sample_lake).filter(pl.col("tenant") == "contoso")
    nid, mid = (m.group_by("network_message_id", "message_id").len()
                .filter(pl.col("len") >= 3).sort("network_message_id").row(0)[:2])
    expected = m.filter(pl.col("network_message_id") == nid).height
    assert run(sample_lake, "message_by_id", message_id=nid.upper()).height == expected
    assert run(sample_lake, "message_by_id", message_id=mid.strip("<>")).height == expected


def test_connector_domain_ndr_and_ip_queries_match_the_files(sample_lake: Path) -> None:
    m = lake_frame(sample_lake)
    relay = m.filter(pl.col("connector") == "Inbound Relay Partner")
    got = run(sample_lake, "connector_traffic", tenant="contoso", connector="inbound_relay_partner",
              since="2026-11-01", until="2026-11-28")
    assert got.height == relay.height == 2603
    timeline = run(sample_lake, "domain_timeline", tenant="contoso", domain="BestPharma-Deals.biz")
    spam = m.filter((pl.col("tenant") == "contoso") & (pl.col("sender_domain") == "bestpharma-deals.biz"))
    assert timeline["recipients"].sum() == spam.height
    assert timeline["day"].to_list() == sorted(spam["date"].unique().to_list())
    ndr = run(sample_lake, "ndr_timeline", tenant="contoso", since="2026-11-20", until="2026-11-28")
    assert ndr["recipients"].sum() == 300 and ndr["ndr_code"].unique().to_list() == ["5.7.750"]
    ip = run(sample_lake, "ip_activity", client_ip="198.51.100.17")
    assert set(ip["tenant"]) == {"contoso", "fabrikam"}  # the same relay hit both tenants
    assert ip["recipients"].sum() == m.filter(pl.col("client_ip") == "198.51.100.17").height


def test_top_senders_recipient_domains_and_spike_drilldown(sample_lake: Path) -> None:
    m = lake_frame(sample_lake)
    hour = m.filter((pl.col("tenant") == "contoso") & (pl.col("direction") == "outbound")
                    & (pl.col("received_utc").dt.truncate("1h")
                       == pl.datetime(2026, 11, 27, 21, time_zone="UTC")))
    top = run(sample_lake, "top_senders", tenant="contoso", since="2026-11-27T21:00",
              until="2026-11-27T22:00", limit=3)
    expected = hour.group_by("sender_address").len().sort(["len", "sender_address"],
                                                           descending=[True, False]).head(3)
    assert top.select("sender_address", "recipients").rows() == expected.rows()
    domains = run(sample_lake, "top_recipient_domains", tenant="contoso",
                  since="2026-11-27T21:00", until="2026-11-27T22:00", limit=50)
    assert domains["recipients"].sum() == hour.height
    drill = run(sample_lake, "spike_drilldown", tenant="litware", hour="2026-11-23T09:17", limit=5)
    first = drill.row(0, named=True)
    assert (first["sender_address"], first["subject"], first["recipients"],
            first["unregistered_domain"]) == ("newsletter@litware.com", "Litware autumn news",
                                              540, False)


def test_change_history_and_ingest_queries(sample_lake: Path) -> None:
    changes = run(sample_lake, "connector_changes", tenant="contoso")
    audit = changes.filter(pl.col("source") == "audit").row(0, named=True)
    assert (audit["operation"], audit["connector"], audit["user_id"], audit["client_ip"]) == (
        "New-InboundConnector", "Inbound Relay Partner", "it-admin@contoso.onmicrosoft.com",
        "185.220.101.47")
    assert set(changes.filter(pl.col("source") == "inbound snapshot")["connector"]) == {
        "Inbound Relay Partner", "Contoso On-Premises"}
    domains = run(sample_lake, "accepted_domain_changes", tenant="tailspin")
    assert set(domains["domain"]) == {"tailspin.com", "tailspin.onmicrosoft.com"}
    assert "MatchSubDomains" in domains.filter(pl.col("domain") == "tailspin.com")["detail"][0]
    history = run(sample_lake, "ingest_history", tenant="contoso")
    assert history.height == 8 and set(history["status"]) == {"ingested"}
    assert run(sample_lake, "rejected_rows", tenant="contoso").height == 0
    sender = run(sample_lake, "sender_activity", tenant="contoso",
                 sender="Billing@bestpharma-deals.biz", since="2026-11-20", until="2026-11-28")
    assert sender.height > 0 and sender["received_utc"].is_sorted(descending=True)


@pytest.mark.parametrize("hostile", ["contoso' OR '1'='1", "contoso'; DROP VIEW messages; --",
                                     "%", "contoso\x00", "*"])
def test_injection_through_parameters_matches_nothing(sample_lake: Path, hostile: str) -> None:
    assert run(sample_lake, "ingest_history", tenant=hostile).height == 0
    assert run(sample_lake, "connector_traffic", tenant="contoso", connector=hostile,
               since="2026-11-01", until="2026-11-28").height == 0
    assert run(sample_lake, "ingest_history", tenant="contoso").height == 8


@pytest.mark.parametrize("statement, refused", [
    ("SELECT * FROM read_csv('/etc/passwd')", "Cannot access file \"/etc/passwd\""),
    ("SELECT * FROM read_text('/etc/hostname')", "Cannot access file"),
    ("SELECT * FROM glob('/*')", "Cannot access file"),
    ("SELECT * FROM read_parquet('https://example.com/x.parquet')", "Cannot access file"),
    ("SELECT * FROM read_parquet('{lake}/../outside.parquet')", "Cannot access file"),
    ("SET enable_external_access = true", "SET statements are refused"),
    ("SELECT 1; SET lock_configuration = false", "give one statement, not 2"),
    ("COPY (SELECT 1) TO '{lake}/x.csv'", "COPY statements are refused"),
    ("EXPORT DATABASE '{lake}/dump'", "EXPORT statements are refused"),
    ("ATTACH '{lake}/x.db' AS x", "ATTACH statements are refused"),
    ("INSTALL httpfs", "LOAD statements are refused"),
    ("LOAD httpfs", "LOAD statements are refused"),
    ("CREATE TABLE t AS SELECT 1", "CREATE statements are refused"),
    ("DROP VIEW messages", "DROP statements are refused"),
    ("SELECT * FROM query('SET enable_external_access = true')", "query failed"),
])
def test_sandbox_escapes_are_refused(sample_lake: Path, statement: str, refused: str) -> None:
    before = sorted(p.name for p in sample_lake.iterdir())
    code, out, err = cli_run("sql", statement.format(lake=sample_lake), "--lake", str(sample_lake))
    assert code == 2 and out == ""
    assert err.startswith("relaywatch: error: ") and refused in err
    assert sorted(p.name for p in sample_lake.iterdir()) == before
    code, out, _ = cli_run("sql", "SELECT count(*) AS n FROM messages", "--lake", str(sample_lake))
    assert (code, out) == (0, "n\n17181\n")


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), \
        f"{name} changed; if on purpose: UPDATE_GOLDEN=1 make test"


HOSTILE = ("SELECT * FROM (VALUES ('=HYPERLINK(\"http://x\")', -3, ['a', 'b'], "
           "TIMESTAMPTZ '2026-11-27 21:00:00+00'), ('@SUM(1)', 4, NULL, NULL), "
           "('+1 urgent', NULL, [], NULL), ('-x', 0, ['c'], NULL), ('plain, \"quoted\"', 1, "
           "NULL, NULL)) AS t(subject, n, tags, seen_utc) ORDER BY n NULLS LAST")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_output_formats_are_golden(sample_lake: Path, fmt: str) -> None:
    code, out, err = cli_run("sql", HOSTILE, "--lake", str(sample_lake), "--format", fmt)
    assert code == 0, err
    _golden(f"sql_hostile.{fmt}", out)
    code, out, err = cli_run("query", "run", "block_ndrs", "-p", "tenant", "null", "-p", "as_of",
                             "2026-11-28", "--lake", str(sample_lake), "--format", fmt)
    assert code == 0, err
    _golden(f"query_block_ndrs.{fmt}", out)


def test_csv_neutralises_formulas_and_parquet_goes_to_a_file(sample_lake: Path,
                                                             tmp_path: Path) -> None:
    code, out, _ = cli_run("sql", HOSTILE, "--lake", str(sample_lake), "--format", "csv")
    cells = [line.split(",")[0] for line in out.splitlines()[1:]]
    assert all(not c.lstrip('"').startswith(("=", "+", "-", "@")) for c in cells)
    assert output.neutralise("=1+1") == "'=1+1" and output.neutralise("a=b") == "a=b"
    code, _, err = cli_run("sql", HOSTILE, "--lake", str(sample_lake), "--format", "parquet")
    assert code == 2 and "needs --output FILE" in err
    target = tmp_path / "out.parquet"
    code, out, _ = cli_run("sql", "FROM verdicts", "--lake", str(sample_lake), "--format",
                           "parquet", "-o", str(target))
    assert code == 0 and out == "" and pl.read_parquet(target).columns[:3] == [
        "as_of", "as_of_utc", "tenant"]
    code, out, _ = cli_run("sql", "SELECT 1 AS x", "--lake", str(sample_lake), "--format", "table")
    assert "│ x   │" in out and out.endswith("1 row\n")


def test_query_commands_list_show_and_parameter_errors(sample_lake: Path) -> None:
    code, out, _ = cli_run("query", "list")
    line = next(ln for ln in out.splitlines() if ln.startswith("spike_drilldown\t"))
    assert line.endswith("\t$hour $limit $tenant")
    code, out, _ = cli_run("query", "show", "spike_drilldown")
    assert out == (ROOT / "queries" / "spike_drilldown.sql").read_text()
    lake = ["--lake", str(sample_lake)]
    code, _, err = cli_run("query", "run", "spike_drilldown", "-p", "tenant", "x", *lake)
    assert code == 2 and err == ("relaywatch: error: query spike_drilldown: missing parameter(s)"
                                 " -p hour VALUE, -p limit VALUE\n")
    code, _, err = cli_run("query", "run", "ingest_history", "-p", "tenant", "x", "-p", "day",
                           "1", *lake)
    assert code == 2 and err == ("relaywatch: error: query ingest_history has no parameter day;"
                                 " it takes tenant\n")
    code, _, err = cli_run("query", "run", "top_senders", "-p", "tenant", "contoso", "-p",
                           "since", "2026-11-27", "-p", "until", "2026-11-28", "-p", "limit",
                           "many", *lake)
    assert code == 2 and err.startswith("relaywatch: error: query top_senders: a parameter has "
                                        "the wrong type (Conversion Error:")
    code, _, err = cli_run("query", "run", "../etc/passwd", *lake)
    assert code == 2 and "no query named '../etc/passwd'" in err


def test_catalog_opens_in_plain_duckdb_after_the_folder_moves(sample_lake: Path,
                                                              tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(sample_lake, lake)
    code, out, err = cli_run("catalog", "--lake", str(lake))
    assert code == 0, err
    assert out == f"{lake.resolve() / 'lake.duckdb'}\n"
    moved = tmp_path / "moved"
    lake.rename(moved)
    os.chdir(moved)
    con = duckdb.connect("lake.duckdb", read_only=True)
    assert con.sql("SELECT count(*) FROM messages").fetchall() == [(17181,)]
    assert con.sql("SELECT count(*) FROM outbound_mail WHERE sender_unprovisioned")\
        .fetchall()[0][0] > 0
    views = {r[0] for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal")
             .fetchall()}
    assert {"messages", "verdicts", "findings", "accepted_domains", "outbound_mail"} <= views
    text = con.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'messages'").fetchall()[0][0]
    assert str(tmp_path) not in text  # relative paths only
    con.close()
    assert json.loads("[]") == []


def test_a_lake_written_before_a_column_existed_stays_readable(tmp_path: Path) -> None:
    from pipeline import schema

    old = pl.DataFrame({"tenant": ["t"], "source_sha256": ["ab"], "source_file": ["t/x.csv"],
                        "status": ["ingested"]})  # an older manifest: fewer columns
    (tmp_path / "lake" / "ingest_log").mkdir(parents=True)
    old.write_parquet(tmp_path / "lake" / "ingest_log" / "manifest.parquet")
    with sql.Session(tmp_path / "lake") as session:
        got = session.frame("SELECT * FROM ingest_log")
    assert got.columns == [c.name for c in schema.INGEST_LOG.columns]
    assert got.row(0, named=True)["file_mtime_ns"] is None
    assert got.row(0, named=True)["source_file"] == "t/x.csv"


def test_a_session_over_some_tables_opens_only_their_views(sample_lake: Path) -> None:
    """The report opens only the small tables detect writes, not thousands of message
    partitions; what it did not open is an error, not an empty table."""
    from pipeline.errors import LakeError
    from pipeline.report import REPORT_TABLES

    with sql.Session(sample_lake, tables=REPORT_TABLES) as s:
        views = set(s.frame("SELECT view_name FROM duckdb_views() WHERE NOT internal")
                    ["view_name"].to_list())
        assert views == set(REPORT_TABLES)
        from pipeline.lake import Lake

        files = Lake(sample_lake).manifest().height
        assert files > 0 and s.frame("SELECT count(*) AS n FROM ingest_log")["n"][0] == files
        with pytest.raises(LakeError, match="messages does not exist"):
            s.frame("SELECT count(*) FROM messages")


def test_debug_log_gives_each_named_query_its_rows_and_time(sample_lake: Path, caplog) -> None:
    """`--debug` says how long each query took (which one grows with the history)."""
    import logging
    import re

    with caplog.at_level(logging.DEBUG, logger="relaywatch"):
        got = run(sample_lake, "top_senders", tenant="contoso", since="2026-11-01",
                  until="2026-11-28", limit=5)
    assert got.height > 0
    assert re.search(rf"query top_senders: {got.height} rows, \d+\.\d\d s", caplog.text)


def test_table_output_shows_control_and_bidi_characters_escaped(sample_lake: Path) -> None:
    code, out, err = cli_run("sql", "SELECT chr(27) || '[2J' || chr(8238) || 'exe.pdf' AS name",
                             "--lake", str(sample_lake), "--format", "table")
    assert code == 0, err
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b[2J\\u202eexe.pdf" in out


def test_spill_folders_of_killed_sessions_are_removed_by_the_next(sample_lake: Path) -> None:
    import subprocess
    import tempfile

    gone = subprocess.Popen(["true"])
    gone.wait()
    base = Path(tempfile.gettempdir())
    dead = base / f"{sql.SPILL_PREFIX}{gone.pid}-x1"
    alive = base / f"{sql.SPILL_PREFIX}1-x2"  # pid 1 is always there
    other = base / "relaywatch-duckdbx-notours"
    for folder in (dead, alive, other):
        folder.mkdir(exist_ok=True)
        (folder / "duckdb_temp_storage-0.tmp").write_bytes(b"x")
    try:
        with sql.Session(sample_lake) as session:
            assert session.frame("SELECT 1 AS x")["x"][0] == 1
        assert not dead.exists() and alive.is_dir() and other.is_dir()
    finally:
        for folder in (dead, alive, other):
            shutil.rmtree(folder, ignore_errors=True)


def test_a_parameter_takes_the_type_the_query_declares_not_the_one_it_looks_like(
        build) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import at

    build.send("007", at(20), "a@zero.example", 3)
    build.send("7", at(20), "b@seven.example", 5)
    code, out, err = cli_run("query", "run", "top_senders", "-p", "tenant", "007", "-p", "since",
                             "2026-11-01", "-p", "until", "2026-12-01", "-p", "limit", "10",
                             "--lake", str(build.root), "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["sender_address"], r["recipients"]) for r in rows] == [("a@zero.example", 3)]
    for path in sql.QUERIES.rglob("*.sql"):
        sql.load_query(path)  # every use of every parameter carries its type


def test_ctrl_c_stops_a_runaway_query_at_once(sample_lake: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "sql", "SELECT count(*) FROM range(100000) a, "
         "range(100000) b, range(100000) c", "--lake", str(sample_lake), "--timeout", "600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 130 and err.strip().endswith("relaywatch: interrupted"), err
    assert "Traceback" not in err


def test_limits_stop_a_query_and_say_which(sample_lake: Path) -> None:
    code, out, err = cli_run("sql", "SELECT count(*) FROM range(100000) a, range(100000) b, "
                             "range(100000) c", "--lake", str(sample_lake), "--timeout", "1")
    assert code == 1 and out == ""
    assert err == ("relaywatch: error: the query ran past the 1 s statement timeout and was "
                   "stopped; narrow it (a WHERE on date, a LIMIT) or raise --timeout ([sql] "
                   "timeout_seconds)\n")
    code, out, err = cli_run("sql", "FROM range(2000)", "--lake", str(sample_lake),
                             "--max-rows", "1000")
    assert code == 1 and err.startswith("relaywatch: error: the result has more than 1,000 rows")
    code, out, err = cli_run("sql", "SELECT count(*) FROM range(30000000) a JOIN "
                             "range(30000000) b USING (range)", "--lake", str(sample_lake),
                             "--memory-limit", "50MB", "--timeout", "120")
    assert code == 1 and "memory limit" in err, err
    code, out, err = cli_run("sql", "SELECT 1", "--lake", str(sample_lake), "--memory-limit",
                             "lots")
    assert code == 2 and "memory_limit = 'lots'" in err


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_every_duckdb_type_prints_in_every_format(sample_lake: Path, fmt: str) -> None:
    code, out, err = cli_run(
        "sql", "SELECT INTERVAL 2 DAY AS i, TIMESTAMP '2026-01-01 10:00' AS t, '\\xAA'::BLOB "
        "AS b, '101'::BITSTRING AS bits, union_value(n := 1) AS u, [INTERVAL 1 DAY] AS li, "
        "1::HUGEINT AS h, TIMETZ '10:00:00+02' AS tt, MAP {'k': 1} AS m", "--lake",
        str(sample_lake), "--format", fmt)
    assert code == 0, err
    for shown in ("2 days", "2026-01-01", "\\xAA", "101", "[1 day]", "10:00:00+02"):
        assert shown in out, (shown, out)
