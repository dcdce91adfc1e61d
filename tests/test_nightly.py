"""The nightly job end to end: verdicts, reruns, kills at any point, concurrency, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.generate import Spec, write_inbox
from tests.conftest import ROOT
from tests.test_ingest import lake_digest, tree_bytes

AS_OF = "2026-11-28"


def nightly(inbox: Path, base: Path, *extra: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["nightly", "--inbox", str(inbox), "--lake", str(base / "lake"),
                                 "--reports", str(base / "reports"), "--as-of", AS_OF,
                                 "--no-email", *extra])
    return r.exit_code, r.stdout, r.stderr


def verdicts(base: Path) -> dict[str, dict]:
    path = base / "reports" / AS_OF / "verdicts.json"
    return {v["tenant"]: v for v in json.loads(path.read_text())}


def test_nightly_on_the_sample_then_again_with_nothing_new(tmp_path: Path) -> None:
    inbox = ROOT / "sample_logs" / "inbox"
    code, out, err = nightly(inbox, tmp_path)
    assert code == 0, err
    assert out.startswith("nightly 2026-11-28 00:00Z: ingested 84 files (22,328 rows), "
                          "skipped 0, rejected 0 files and 0 rows; 9 tenants: 3 tenants to block "
                          "(1 blocked now), 0 ready to unblock; report ")
    assert out.count("\n") == 1
    v = verdicts(tmp_path)
    assert {t: v[t]["recommendation"] for t in v} == {
        "contoso": "block", "adatum": "block", "fabrikam": "unblock", "northwind": "unblock",
        "tailspin": "unblock", "litware": "unblock", "t000": "unblock", "t001": "unblock",
        "wingtip": "block"}
    assert v["contoso"]["blocked_now"] and v["adatum"]["data_state"] == "stale"
    for name in ("report.html", "report.txt", "tenants/contoso.html"):
        assert (tmp_path / "reports" / AS_OF / name).stat().st_size > 1000
    lake_before = tree_bytes(tmp_path / "lake" / "messages")
    report_before = tree_bytes(tmp_path / "reports")
    code, out, err = nightly(inbox, tmp_path)
    assert code == 0, err
    assert "ingested 0 files (0 rows), skipped 84, rejected 0 files" in out
    assert tree_bytes(tmp_path / "lake" / "messages") == lake_before
    assert tree_bytes(tmp_path / "reports") == report_before
    # --quiet: nothing at all on success
    code, out, err = (lambda r: (r.exit_code, r.stdout, r.stderr))(CliRunner().invoke(
        cli, ["-q", "nightly", "--inbox", str(inbox), "--lake", str(tmp_path / "lake"),
              "--reports", str(tmp_path / "reports"), "--as-of", AS_OF, "--no-email"]))
    assert (code, out, err) == (0, "", "")


def test_nightly_needs_recipients_or_no_email(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["nightly", "--inbox", str(tmp_path), "--lake",
                                 str(tmp_path / "lake")])
    assert r.exit_code == 2
    assert r.stderr == ("relaywatch: error: nightly emails the report: give --email-to ADDR, "
                        "set [email] to in relaywatch.toml, or pass --no-email\n")


@pytest.fixture(scope="module")
def small_inbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("small")
    write_inbox(root / "inbox", Spec(days=15, per_day=20, extra_tenants=1))
    return root / "inbox"


def _subprocess(inbox: Path, base: Path, env_extra: dict[str, str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYWATCH_")}
    env.update({"PYTHONPATH": str(ROOT), "RELAYWATCH_FLUSH_ROWS": "1000", **env_extra})
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "-q", "nightly", "--inbox", str(inbox), "--lake",
         str(base / "lake"), "--reports", str(base / "reports"), "--as-of", AS_OF,
         "--no-email"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _state(base: Path) -> tuple[dict[str, str], dict[str, str], str]:
    reports = {k: v for k, v in tree_bytes(base / "reports").items() if "/.tmp-relaywatch-" not in k}
    results = {}
    for table in ("findings", "verdicts"):
        import polars as pl

        df = pl.read_parquet(sorted((base / "lake" / table).rglob("*.parquet")))
        df = df.sort([c for c, t in df.schema.items() if not t.is_nested()])
        results[table] = hashlib.sha256(df.write_ndjson().encode()).hexdigest()
    return lake_digest(base / "lake"), results, json.dumps(reports, sort_keys=True)


@pytest.fixture(scope="module")
def clean_state(small_inbox: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("clean")
    p = _subprocess(small_inbox, base, {})
    assert p.wait(120) == 0, p.stderr.read()
    return _state(base)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["ingest:1", "ingest:6", "detect:1", "detect:2",
                                   "report:1", "report:4"])
def test_killed_at_any_point_a_rerun_gives_the_same_lake_and_report(
        small_inbox: Path, tmp_path: Path, clean_state, fault: str) -> None:  # noqa: ANN001
    killed = _subprocess(small_inbox, tmp_path, {"RELAYWATCH_FAULT_AT": fault})
    assert killed.wait(120) == -9, killed.stderr.read()
    rerun = _subprocess(small_inbox, tmp_path, {})
    assert rerun.wait(120) == 0, rerun.stderr.read()
    assert not [p for p in tmp_path.rglob(".tmp-relaywatch-*")]
    assert _state(tmp_path) == clean_state


@pytest.mark.slow
def test_two_runs_at_once_one_works_one_exits_with_the_lock_message(small_inbox: Path,
                                                                    tmp_path: Path) -> None:
    first = _subprocess(small_inbox, tmp_path, {"RELAYWATCH_FAULT_PAUSE": "4"})
    lock = tmp_path / "lake" / ".lock"
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text().startswith("relaywatch pid")):
        assert time.monotonic() < deadline, "first run never took the lock"
        time.sleep(0.05)
    second = _subprocess(small_inbox, tmp_path, {})
    assert second.wait(60) == 4
    assert second.stderr.read() == (f"relaywatch: error: {tmp_path / 'lake'}: the lake is in use "
                                    f"by relaywatch pid {first.pid}; wait for it to finish (the "
                                    "lock is released automatically when that process ends)\n")
    assert first.wait(120) == 0, first.stderr.read()
    assert (tmp_path / "reports" / AS_OF / "verdicts.json").is_file()


def test_bad_input_tour(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    good = inbox / "good"
    good.mkdir(parents=True)
    shutil.copy(ROOT / "sample_logs" / "inbox" / "t000" / "trace_20261121.csv", good / "t.csv")
    shutil.copy(ROOT / "sample_logs" / "inbox" / "t000" / "accepted_domains.json", good)
    (good / "corrupt.csv").write_bytes(bytes(range(256)) * 40)
    (good / "empty.csv").write_bytes(b"")
    utf16 = (ROOT / "sample_logs" / "inbox" / "adatum" / "historical_search_report.csv").read_bytes()
    (good / "cut_utf16.csv").write_bytes(utf16[:5001])  # odd length: cut inside a character
    header = "Received,SenderAddress,RecipientAddress,Subject,Status,ToIP,FromIP,Size,MessageId,MessageTraceId\n"
    (good / "huge_field.csv").write_text(
        header + '2026-11-21T10:00:00,a@good.example,b@x.example,"' + "A" * 10_000_000
        + '",Delivered,,10.0.0.1,1000,<m1@x>,00000000-0000-4000-8000-000000000001\n')
    (inbox / "..x").mkdir()
    (inbox / "..x" / "t.csv").write_bytes((good / "t.csv").read_bytes())
    (inbox / "Bad Name").mkdir()
    (inbox / "Bad Name" / "t.csv").write_bytes((good / "t.csv").read_bytes())
    outside = tmp_path / "secret.csv"
    outside.write_text("not yours\n")
    (good / "link.csv").symlink_to(outside)
    before = tree_bytes(inbox)
    untouched = {p for p in tmp_path.iterdir()}
    code, out, err = nightly(inbox, tmp_path)
    assert code == 3, err
    # corrupt, empty, cut UTF-16, symlink, and the files of the two badly named folders;
    # the 10 MB field is a rejected row (its file is ingested with 0 rows)
    assert "ingested 3 files (291 rows), skipped 0, rejected 6 files and 1 rows" in out, out
    assert tree_bytes(inbox) == before and outside.read_text() == "not yours\n"
    assert {p for p in tmp_path.iterdir()} == untouched | {tmp_path / "lake",
                                                          tmp_path / "reports"}
    reasons = {p.name: p.read_text() for p in (tmp_path / "lake" / "rejected").rglob("*.reason")}
    joined = "\n".join(reasons.values())
    for expected in ("unknown columns", "the file is empty", "middle of a utf-16-le character",
                     "'..x' is not a valid tenant slug", "'Bad Name' is not a valid tenant slug",
                     "a symlink pointing outside the inbox"):
        assert expected in joined, (expected, joined)
    import duckdb

    ((reason,),) = duckdb.sql(
        f"SELECT reason FROM read_parquet('{tmp_path}/lake/rejects/*/*.parquet')").fetchall()
    assert reason == "field subject is longer than 65,536 bytes (a broken or hostile export)"
    v = verdicts(tmp_path)
    assert v["good"]["data_state"] in ("fresh", "stale")
    text = (tmp_path / "reports" / AS_OF / "report.txt").read_text()
    assert "  rejected file: good/empty.csv: good/empty.csv: the file is empty; export it " \
           "again\n" in text
    assert "  rejected rows: good/huge_field.csv: 1 from line 2: field subject is longer than " \
           "65,536 bytes" in text
    assert "rejected file: Bad Name/t.csv: folder name 'Bad Name' is not a valid" in text
    import polars as pl

    rows = pl.read_parquet(tmp_path / "lake" / "messages", hive_partitioning=True)
    assert rows["tenant"].unique().to_list() == ["good"] and rows.height > 100


def test_retention_drops_old_partitions_and_says_so(tmp_path: Path) -> None:
    inbox = ROOT / "sample_logs" / "inbox"
    code, out, err = nightly(inbox, tmp_path, "--keep-days", "7")
    assert code == 0, err
    assert "dropped " in out and "old partitions" in out
    assert "retention: dropped" in err and "messages/tenant=contoso/date=2026-11-07" in err
    days = {p.name for p in (tmp_path / "lake" / "messages").glob("tenant=*/date=*")}
    assert min(days) == "date=2026-11-21"
    assert (inbox / "contoso" / "messagetrace_20261107.csv").is_file()  # raw exports stay
    code, out, err = nightly(inbox, tmp_path, "--keep-days", "7")
    assert "skipped 84" in out                                         # not re-ingested
    # a week later, every table detect wrote for 2026-11-28 goes too
    r = CliRunner().invoke(cli, ["nightly", "--inbox", str(inbox), "--lake", str(tmp_path / "lake"),
                                 "--reports", str(tmp_path / "reports"), "--as-of", "2026-12-02",
                                 "--no-email", "--keep-days", "3"])
    assert r.exit_code == 0, r.stderr
    results = {p.relative_to(tmp_path / "lake").as_posix()
               for p in (tmp_path / "lake").glob("*/as_of=*")}
    assert results == {f"{t}/as_of=2026-12-02" for t in ("findings", "verdicts", "baselines",
                                                         "chart_hours", "ndr_days")}


def test_retention_refuses_a_future_as_of_and_rehash_restores_what_it_dropped(
        tmp_path: Path) -> None:
    inbox = ROOT / "sample_logs" / "inbox"
    code, out, err = nightly(inbox, tmp_path)
    assert code == 0, err
    before = lake_digest(tmp_path / "lake")
    import polars as pl

    feeding = set(pl.read_parquet(tmp_path / "lake" / "messages")["source_sha256"].cast(pl.String))
    r = CliRunner().invoke(cli, ["nightly", "--inbox", str(inbox), "--lake", str(tmp_path / "lake"),
                                 "--reports", str(tmp_path / "reports"), "--as-of", "2062-11-28",
                                 "--no-email", "--keep-days", "90"])
    assert r.exit_code == 2
    assert r.stderr.startswith("relaywatch: error: --as-of 2062-11-28 00:00Z is in the future")
    assert lake_digest(tmp_path / "lake") == before
    # a past as-of that drops everything: the files become `expired`, not forgotten
    r = CliRunner().invoke(cli, ["nightly", "--inbox", str(inbox), "--lake", str(tmp_path / "lake"),
                                 "--reports", str(tmp_path / "reports"), "--as-of", "2026-12-02",
                                 "--no-email", "--keep-days", "1"])
    assert r.exit_code == 0, r.stderr
    assert not list((tmp_path / "lake" / "messages").glob("tenant=*/date=*"))
    m = pl.read_parquet(tmp_path / "lake" / "ingest_log" / "manifest.parquet")
    expired = set(m.filter(pl.col("status") == "expired")["source_sha256"])
    assert feeding < expired  # and the files merged into others' rows, and old snapshots
    code, out, err = nightly(inbox, tmp_path)                     # skipped: still expired
    assert "ingested 0 files (0 rows), skipped 84" in out
    code, out, err = nightly(inbox, tmp_path, "--rehash")
    assert code == 0, err
    assert f"ingested {len(expired)} files" in out
    assert lake_digest(tmp_path / "lake")["messages"] == before["messages"]
