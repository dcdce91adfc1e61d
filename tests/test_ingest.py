"""Ingestion into the lake: idempotency, merging, isolation of tenants, rejects, crashes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.errors import ConfigError, LockError
from pipeline.ingest import ingest
from pipeline.lake import Lake
from pipeline.settings import Settings
from tests.conftest import DATA, ROOT, SNAPSHOT


def lake_digest(lake: Path) -> dict[str, str]:
    """Content of every table, independent of file layout: table → hash of its sorted rows."""
    out = {}
    for table in ("messages", "accepted_domains", "inbound_connectors", "audit_events",
                  "rejects"):
        files = sorted((lake / table).rglob("*.parquet"))
        if not files:
            continue
        df = pl.concat([pl.read_parquet(f, hive_partitioning=True) for f in files],
                       how="vertical_relaxed")  # dictionary and plain text alike: as text
        df = df.sort([c for c, t in df.schema.items() if not t.is_nested()])
        out[table] = hashlib.sha256(df.write_ndjson().encode()).hexdigest()
    return out


def tree_bytes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture()
def inbox(tmp_path: Path) -> Path:
    from pipeline import generate

    spec = generate.Spec(days=8, per_day=12, extra_tenants=1, extra_per_day=10)
    generate.write_inbox(tmp_path / "inbox", spec)
    return tmp_path / "inbox"


def test_ingest_twice_is_a_no_op_that_says_so(inbox: Path, tmp_path: Path) -> None:
    s = Settings(lake=tmp_path / "lake")
    first = ingest([inbox], s)
    assert first.count("rejected") == 0 and first.count("ingested") == len(first.files)
    before = tree_bytes(tmp_path / "lake" / "messages")
    second = ingest([inbox], s)
    assert second.count("skipped") == len(second.files) == len(first.files)
    assert "skipped, already ingested" in second.files[0].summary()
    assert tree_bytes(tmp_path / "lake" / "messages") == before


@pytest.mark.parametrize("big", [False, True])
def test_the_same_bytes_under_another_name_are_skipped_before_any_write(
        inbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, big: bool) -> None:
    """A small new name is hashed first and skipped unread; a big one is hashed beside
    its parsing, and the hash decides before any of its rows is written."""
    from pipeline import formats

    s = Settings(lake=tmp_path / "lake")
    ingest([inbox], s)
    before = tree_bytes(tmp_path / "lake" / "messages")
    trace = next(p for p in sorted(inbox.rglob("*.csv")))
    copy = tmp_path / "copy.csv"
    shutil.copy(trace, copy)
    sniffed: list[str] = []
    real_sniff = formats.sniff
    monkeypatch.setattr(formats, "sniff", lambda p, *a: sniffed.append(p.name) or real_sniff(p, *a))
    if big:
        monkeypatch.setattr(formats, "STREAM_BYTES", 1)
    report = ingest([copy], s, tenant=trace.parent.name)
    assert [f.status for f in report.files] == ["skipped"]
    assert report.files[0].sha256 == hashlib.sha256(trace.read_bytes()).hexdigest()
    assert sniffed == (["copy.csv"] if big else [])
    assert tree_bytes(tmp_path / "lake" / "messages") == before
    # recorded as a duplicate: the next run knows the copy by path, size and time
    from pipeline import ingest as ingest_mod

    manifest = Lake(s.lake).manifest()
    dup = manifest.filter(pl.col("status") == "duplicate")
    assert dup.select("source_file", "rows").rows() == [(f"{trace.parent.name}/copy.csv", 0)]
    hashed: list[str] = []
    real_hash = ingest_mod.file_sha256
    monkeypatch.setattr(ingest_mod, "file_sha256",
                        lambda p: hashed.append(p.name) or real_hash(p))
    again = ingest([copy], s, tenant=trace.parent.name)
    assert [f.status for f in again.files] == ["skipped"] and hashed == []
    assert Lake(s.lake).manifest().height == manifest.height


@pytest.mark.parametrize("case", ["new", "seen before", "unreadable"])
def test_a_big_files_parts_do_not_wait_for_its_hash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """The hash of a big file ends only after several of its parts were parsed and handed
    to the writer: its rows still carry the file's SHA-256, and a copy of a file
    ingested before, or a file that cannot be hashed, writes none."""
    import threading

    from pipeline import formats
    from pipeline import ingest as ingest_mod
    from pipeline.generate import write_historical

    src = tmp_path / "in" / "report.csv"
    write_historical(src, 3000, "utf-8", days=5)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    s = Settings(lake=tmp_path / "lake", flush_rows=1000)
    if case == "seen before":
        ingest([src], s, tenant="bigco")
        src = Path(shutil.copy(src, tmp_path / "in" / "copy.csv"))
    before = tree_bytes(tmp_path / "lake" / "messages") if case == "seen before" else {}
    monkeypatch.setattr(formats, "STREAM_BYTES", 1)
    monkeypatch.setattr(formats, "STREAM_ROWS", 250)
    parsed, enough = [], threading.Event()
    real_parse = formats._parse_csv

    def parse(*args: object) -> object:
        parsed.append(1)
        if len(parsed) >= 6:
            enough.set()
        return real_parse(*args)

    def slow_hash(path: Path) -> tuple[str, int]:
        waited.append(enough.wait(20))
        if case == "unreadable":
            raise OSError(5, "Input/output error")
        return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size

    waited: list[bool] = []
    monkeypatch.setattr(formats, "_parse_csv", parse)
    monkeypatch.setattr(ingest_mod, "file_sha256", slow_hash)
    report = ingest([src], s, tenant="bigco")
    assert waited[0] is True  # 6 parts (2 buffers of rows) parsed before the hash ended
    got = report.files[0]
    if case == "new":
        assert got.status == "ingested" and got.sha256 == sha
        rows = pl.read_parquet(tmp_path / "lake" / "messages", hive_partitioning=True)
        assert rows.height == got.rows > 3000
        assert rows["source_sha256"].cast(pl.String).unique().to_list() == [sha]
    elif case == "seen before":
        assert (got.status, got.duplicate) == ("skipped", True)
        assert tree_bytes(tmp_path / "lake" / "messages") == before
    else:
        assert got.status == "rejected"
        assert got.reason == "cannot read the file (Input/output error)"
        assert not (tmp_path / "lake" / "messages").exists()
        assert sorted(p.name for p in (tmp_path / "lake" / "rejected" / "bigco").iterdir()) == [
            "000000000000-report.csv", "000000000000-report.csv.reason"]


@pytest.mark.parametrize("size", [0, 1, 6, 7, 8, 50])
def test_file_sha256_reads_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     size: int) -> None:
    from pipeline import manifest

    monkeypatch.setattr(manifest, "HASH_BLOCK", 7)
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert manifest.file_sha256(tmp_path / "f") == (hashlib.sha256(data).hexdigest(), size)


def test_rows_seen_in_two_exports_are_merged(tmp_path: Path) -> None:
    s = Settings(lake=tmp_path / "lake")
    ingest([DATA / "messagetrace_ps51.csv"], s, tenant="contoso")
    overlap = tmp_path / "overlap.json"
    overlap.write_text(
        '{"Received":"2022-09-05T18:10:13.5Z","SenderAddress":"alice@contoso.com",'
        '"RecipientAddress":"bob@fabrikam.com","Status":"Failed","MessageTraceId":'
        '"3A1F0000-0000-0000-0000-000000000001","MessageId":"<a1@contoso.com>"}\n'
        '{"Received":"2022-09-05T19:00:00Z","SenderAddress":"alice@contoso.com",'
        '"RecipientAddress":"eve@fabrikam.com","Status":"Delivered","MessageTraceId":'
        '"3a1f0000-0000-0000-0000-000000000009"}\n')
    ingest([overlap], s, tenant="contoso")
    rows = duckdb.sql(
        f"SELECT recipient_address, status, subject, size_bytes, received_utc::VARCHAR AS t "
        f"FROM read_parquet('{tmp_path}/lake/messages/*/*/*.parquet', hive_partitioning=1) "
        "ORDER BY 1").fetchall()
    assert rows == [
        ("bob@fabrikam.com", "failed", "Hello", 12345, "2022-09-05 18:10:13+00"),  # merged
        ("eve@fabrikam.com", "delivered", None, None, "2022-09-05 19:00:00+00"),
        ("victim@gmail.com", "filtered_as_spam", "Cheap ?? meds", 999, "2022-09-13 01:02:03+00"),
    ]


def test_rerun_of_one_tenant_leaves_other_tenants_untouched(inbox: Path, tmp_path: Path) -> None:
    s = Settings(lake=tmp_path / "lake")
    ingest([inbox], s)
    others = {t: tree_bytes(tmp_path / "lake" / "messages" / f"tenant={t}")
              for t in ("fabrikam", "t000")}
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "lake/messages/tenant=fabrikam")
              .rglob("*.parquet")}
    extra = tmp_path / "more.json"
    extra.write_text('{"Received":"2026-11-27T10:00:00Z","SenderAddress":"a@contoso.com",'
                     '"RecipientAddress":"b@x.com","Status":"Delivered","MessageTraceId":'
                     '"00000000-0000-0000-0000-0000000000ff"}')
    ingest([extra], s, tenant="contoso")
    for t, before in others.items():
        assert tree_bytes(tmp_path / "lake" / "messages" / f"tenant={t}") == before
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_bad_files_are_kept_with_reasons_and_the_rest_goes_on(inbox: Path, tmp_path: Path) -> None:
    shutil.copy(DATA / "unknown_header.csv", inbox / "contoso" / "notes.csv")
    shutil.copy(DATA / "historical_summary_truncated.csv", inbox / "contoso" / "cut.csv")
    (inbox / "contoso" / "zero.csv").write_bytes(b"")
    (inbox / "Bad Tenant").mkdir()
    (inbox / "Bad Tenant" / "x.csv").write_text("a,b\n")
    (inbox / "loose.csv").write_text("a,b\n")
    outside = tmp_path / "secret.txt"
    outside.write_text("do not read")
    (inbox / "fabrikam" / "link.csv").symlink_to(outside)
    originals = tree_bytes(inbox)

    report = ingest([inbox], Settings(lake=tmp_path / "lake"))
    rejected = {f.display: f.reason for f in report.files if f.status == "rejected"}
    assert set(rejected) == {"contoso/notes.csv", "contoso/cut.csv", "contoso/zero.csv",
                             "Bad Tenant/x.csv", "loose.csv", "fabrikam/link.csv"}
    assert rejected["fabrikam/link.csv"] == "a symlink pointing outside the inbox"
    assert rejected["Bad Tenant/x.csv"].startswith("folder name 'Bad Tenant' is not a valid")
    assert report.count("ingested") > 10
    assert tree_bytes(inbox) == originals  # raw exports never modified
    kept = tmp_path / "lake" / "rejected"
    reasons = sorted(p.read_text() for p in kept.rglob("*.reason"))
    assert len(reasons) == 6
    assert any("unknown columns" in r for r in reasons)
    assert not any("do not read" in p.read_text(errors="replace")
                   for p in kept.rglob("*") if p.is_file())
    manifest = Lake(tmp_path / "lake").manifest()
    assert manifest.filter(pl.col("status") == "rejected").height == 6


def test_unsafe_tenant_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'../x' is not a valid tenant slug"):
        ingest([DATA / "messagetrace_ps51.csv"], Settings(lake=tmp_path / "lake"), tenant="../x")


def test_second_writer_is_refused_while_the_lake_is_locked(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pipeline.lake import Lake\n"
         "with Lake(sys.argv[1]).locked():\n print('held', flush=True); time.sleep(60)",
         str(tmp_path / "lake")], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(LockError, match=f"the lake is in use by relaywatch pid {holder.pid}"):
            ingest([DATA / "messagetrace_ps51.csv"], Settings(lake=tmp_path / "lake"),
                   tenant="contoso")
    finally:
        holder.kill()
        holder.wait()
    # released by the kernel when its holder died: the next writer goes ahead
    ingest([DATA / "messagetrace_ps51.csv"], Settings(lake=tmp_path / "lake"), tenant="contoso")
    # one process may nest stages under its own lock
    with Lake(tmp_path / "lake").locked():
        ingest([DATA / "messagetrace_ps51.csv"], Settings(lake=tmp_path / "lake"),
               tenant="contoso")


@pytest.mark.parametrize("kill_after", [1, 9, 25, 60])
def test_killed_during_a_write_a_rerun_completes_the_lake(inbox: Path, tmp_path: Path,
                                                          kill_after: int) -> None:
    clean = tmp_path / "clean"
    ingest([inbox], Settings(lake=clean))
    lake = tmp_path / "lake"
    cmd = [sys.executable, "-m", "pipeline", "-q", "ingest", str(inbox), "--lake", str(lake)]
    env = {**os.environ, "RELAYWATCH_FAULT_AFTER_WRITES": str(kill_after),
           "RELAYWATCH_FLUSH_ROWS": "1000", "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(cmd, env=env, capture_output=True)
    assert killed.returncode == -9
    # the lake is readable as it is: no half-written Parquet is visible (a temporary, hidden
    # by its leading dot, may be half-written when another thread's write was cut)
    for f in lake.rglob("*.parquet"):
        if not f.name.startswith(".tmp-relaywatch-"):
            pl.read_parquet(f)
    assert any(p.name.startswith(".tmp-relaywatch-") for p in lake.rglob("*"))
    env.pop("RELAYWATCH_FAULT_AFTER_WRITES")
    rerun = subprocess.run(cmd, env=env, capture_output=True)
    assert rerun.returncode == 0, rerun.stderr
    assert not any(p.name.startswith(".tmp-relaywatch-") for p in lake.rglob("*"))
    assert lake_digest(lake) == lake_digest(clean)


def test_unchanged_files_are_not_read_again(inbox: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import ingest as ingest_mod

    s = Settings(lake=tmp_path / "lake")
    first = ingest([inbox], s)
    hashed: list[Path] = []
    real = ingest_mod.file_sha256
    monkeypatch.setattr(ingest_mod, "file_sha256", lambda p: hashed.append(p) or real(p))
    again = ingest([inbox], s)
    assert hashed == [] and again.count("skipped") == first.count("ingested")
    changed = next(p for p in sorted(inbox.rglob("*.csv")))
    changed.write_bytes(changed.read_bytes() + b"\r\n")   # new content, new mtime
    third = ingest([inbox], s)
    assert hashed == [changed]                            # only the changed file is read
    assert (third.count("ingested"), third.count("skipped")) == (1, first.count("ingested") - 1)
    hashed.clear()
    ingest([inbox], s, rehash=True)
    assert len(hashed) == first.count("ingested")


@pytest.mark.parametrize("encoding,order", [("utf-8", "time"), ("utf-16-le", "time"),
                                            ("utf-8", "shuffled")])
def test_large_files_are_streamed_in_parts_with_the_same_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str, order: str) -> None:
    """Parts parsed side by side, days written as the file moves past them (or merged
    again when an unordered file comes back to a day): the same lake as one whole read."""
    import random

    from pipeline import formats
    from pipeline.generate import write_historical

    src = tmp_path / "in" / "report.csv"
    write_historical(src, 3000, "utf-8", days=5)
    lines = src.read_bytes().decode("utf-8").split("\r\n")
    if order == "shuffled":
        body = lines[1:-1]
        random.Random(7).shuffle(body)
        lines = [lines[0], *body, lines[-1]]
    bad = len(lines) // 2
    lines[bad] = lines[bad].replace('"2026-', '"20X6-', 1)    # one bad timestamp
    src.write_bytes("\r\n".join(lines).encode(encoding))
    whole = Settings(lake=tmp_path / "whole")
    ingest([src], whole, tenant="bigco")
    monkeypatch.setattr(formats, "STREAM_BYTES", 1)
    monkeypatch.setattr(formats, "STREAM_ROWS", 250)
    written: list[str] = []
    real_write = Lake.write_partition
    monkeypatch.setattr(Lake, "write_partition", lambda self, t, d, *rest: written.append(
        d.isoformat()) or real_write(self, t, d, *rest))
    parts = Settings(lake=tmp_path / "parts", flush_rows=1000)
    report = ingest([src], parts, tenant="bigco")
    days = {p.name for p in (tmp_path / "parts" / "messages" / "tenant=bigco").iterdir()}
    if order == "time":   # each day written once: the file had moved past it
        assert sorted(written) == sorted(d.split("=")[1] for d in days)
    else:                 # days revisited are merged again, with no duplicates
        assert len(written) > len(days)
    n_bad = lines[bad].count("##")                             # one reject per recipient
    assert len(lines) > 4 * 250 and report.files[0].rejected_rows == n_bad
    assert lake_digest(tmp_path / "parts") == lake_digest(tmp_path / "whole")
    rejects = pl.read_parquet(tmp_path / "parts" / "rejects", hive_partitioning=True)
    assert rejects["source_line"].to_list() == [bad + 1] * n_bad


def test_a_manifest_of_many_files_without_event_times_first(tmp_path: Path) -> None:
    """Config files (no event times) come first; more than Polars' 100-row schema guess."""
    from pipeline import exports

    inbox = tmp_path / "inbox"
    for i in range(120):
        exports.accepted_domains_json(inbox / f"t{i:03d}" / "accepted_domains.json",
                                      [{"domain_name": f"t{i}.example",
                                        "when_created_utc": SNAPSHOT}])
    shutil.copy(DATA / "messagetrace_ps51.csv", inbox / "t000" / "trace.csv")
    report = ingest([inbox], Settings(lake=tmp_path / "lake"))
    assert report.count("ingested") == 121
    manifest = Lake(tmp_path / "lake").manifest()
    assert manifest.height == 121 and manifest["first_event_utc"].null_count() == 120


def test_temporaries_are_swept_only_after_a_holder_was_killed(tmp_path: Path,
                                                              monkeypatch) -> None:
    """A clean release empties the lock file, so the next run does not walk the lake; a
    holder's name left in it (the holder was killed) makes the next run sweep."""
    lake = Lake(tmp_path / "lake")
    swept: list[int] = []
    real = Lake.sweep_temporaries
    monkeypatch.setattr(Lake, "sweep_temporaries", lambda self: swept.append(1) or real(self))
    with lake.locked():
        assert (lake.root / ".lock").read_text().startswith("relaywatch pid ")
    assert (lake.root / ".lock").read_text() == ""
    with lake.locked():
        pass
    assert swept == []
    left = lake.root / "messages" / "tenant=a" / "date=2026-11-01" / ".tmp-relaywatch-99-data.parquet"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"half")
    (lake.root / ".lock").write_text("relaywatch pid 99\n")   # what a killed holder leaves
    with lake.locked():
        assert not left.exists()
    assert swept == [1]


@pytest.mark.parametrize("order", ["time", "shuffled"])
def test_a_day_bigger_than_the_buffer_is_staged_then_written_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    """One day of more rows than flush_rows is put aside part by part and written once at
    the end (streamed when in time order, merged in memory when not); repeated recipients
    are merged either way, and the lake equals one whole read."""
    import random

    from pipeline import formats
    from pipeline.generate import write_historical

    src = tmp_path / "in" / "report.csv"
    write_historical(src, 3000, "utf-8", days=1)
    lines = src.read_bytes().decode("utf-8").split("\r\n")
    body = [ln for ln in lines[1:] if ln]
    body.insert(len(body) // 2, body[len(body) // 2])           # the same message twice
    if order == "shuffled":
        random.Random(3).shuffle(body)
    src.write_bytes("\r\n".join([lines[0], *body, ""]).encode())
    ingest([src], Settings(lake=tmp_path / "whole"), tenant="bigco")
    monkeypatch.setattr(formats, "STREAM_BYTES", 1)
    monkeypatch.setattr(formats, "STREAM_ROWS", 250)
    staged: list[int] = []
    real_stage = Lake.stage
    monkeypatch.setattr(Lake, "stage", lambda self, t, d, rows, n: staged.append(n)
                        or real_stage(self, t, d, rows, n))
    written: list[str] = []
    real_write = Lake.write_partition
    monkeypatch.setattr(Lake, "write_partition", lambda self, t, d, rows, parts=None:
                        written.append(d.isoformat()) or real_write(self, t, d, rows, parts))
    streamed: list[object] = []
    real_append = Lake._append_staged
    monkeypatch.setattr(Lake, "_append_staged", lambda self, *a: streamed.append(
        real_append(self, *a)) or streamed[-1])
    report = ingest([src], Settings(lake=tmp_path / "parts", flush_rows=1000), tenant="bigco")
    assert report.files[0].status == "ingested" and len(staged) >= 2 and len(written) == 1
    assert (streamed[0] is None) == (order == "shuffled")   # unordered: merged in memory
    assert lake_digest(tmp_path / "parts") == lake_digest(tmp_path / "whole")
    assert not any((tmp_path / "parts" / ".staging").iterdir())
    rows = pl.read_parquet(tmp_path / "parts" / "messages" / "tenant=bigco")
    assert rows.select("network_message_id", "recipient_address").is_duplicated().sum() == 0


@pytest.mark.parametrize("streamed", [False, True])
def test_partitions_written_with_plain_text_columns_merge_with_new_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool) -> None:
    """A lake written before some text columns were stored as dictionaries (direction,
    status, source_*) takes new rows for the same days, merged in memory or streamed from
    staged parts, with the same content as a lake written by this version alone."""
    from pipeline import formats, schema
    from pipeline.generate import write_historical

    whole, first, second = (tmp_path / "in" / f"{n}.csv" for n in ("whole", "first", "second"))
    write_historical(whole, 3000, "utf-8", days=1)
    header, *body = whole.read_text().splitlines()
    half = len(body) // 2   # the second file goes on where the first stops
    first.write_text("\n".join([header, *body[:half]]) + "\n")
    second.write_text("\n".join([header, *body[half:]]) + "\n")
    ingest([first, second], Settings(lake=tmp_path / "new"), tenant="bigco")
    ingest([first], Settings(lake=tmp_path / "old"), tenant="bigco")
    dictionary = [c.name for c in schema.MESSAGES.columns if c.dtype == schema.CATEGORY]
    assert {"direction", "status", "source_file"} <= set(dictionary)
    partitions = sorted((tmp_path / "old" / "messages").rglob("*.parquet"))
    for path in partitions:   # as the earlier writer left them
        pl.read_parquet(path).with_columns(pl.col(dictionary).cast(pl.String)).write_parquet(path)
    assert pl.read_parquet_schema(partitions[0])["direction"] == pl.String
    appended: list[object] = []
    if streamed:
        monkeypatch.setattr(formats, "STREAM_BYTES", 1)
        monkeypatch.setattr(formats, "STREAM_ROWS", 250)
        real_append = Lake._append_staged
        monkeypatch.setattr(Lake, "_append_staged", lambda self, *a: appended.append(
            real_append(self, *a)) or appended[-1])
    ingest([second], Settings(lake=tmp_path / "old", flush_rows=1000 if streamed else 10**6),
           tenant="bigco")
    assert len(appended) == (1 if streamed else 0) and None not in appended
    assert lake_digest(tmp_path / "old") == lake_digest(tmp_path / "new")
    assert pl.read_parquet_schema(partitions[0])["direction"] == schema.CATEGORY
    import pyarrow.parquet as pq

    for path in partitions:  # null counts but no min/max (see lake.PARQUET), either path
        meta = pq.ParquetFile(path).metadata
        stats = [meta.row_group(g).column(c).statistics for g in range(meta.num_row_groups)
                 for c in range(meta.num_columns)]
        assert all(s is not None and s.has_null_count and not s.has_min_max for s in stats)


def test_accepted_domains_already_in_the_lake_decide_direction(build, tmp_path: Path) -> None:
    """Every snapshot a tenant has in the lake counts (subdomains honoured), each tenant only
    its own, whatever its name looks like."""
    from pipeline import exports
    from tests.conftest import at

    build.domains("007", "a.example", created=at(1))
    build.domains("007", "b.example.org", created=at(2), subdomains=("b.example.org",))
    build.domains("acme", "acme.example")
    rows = [("ext@out.example", "x@a.example"), ("x@a.example", "y@mail.b.example.org"),
            ("x@a.example", "z@acme.example"), ("x@a.example", "w@out.example")]
    for tenant in ("007", "acme"):
        exports.message_trace_csv(
            tmp_path / "inbox" / tenant / "trace.csv",
            [{"received_utc": at(20, 9, i), "sender_address": s, "recipient_address": r,
              "status": "delivered", "network_message_id": f"{tenant}-{i}"}
             for i, (s, r) in enumerate(rows)], f"{tenant}x.onmicrosoft.com", "ps7", "iso")
    ingest([tmp_path / "inbox"], Settings(lake=build.root))
    got = duckdb.sql(
        f"SELECT tenant, recipient_address, direction FROM read_parquet("
        f"'{build.root}/messages/*/*/*.parquet', hive_partitioning = true, "
        f"hive_types = {{'tenant': VARCHAR}}) ORDER BY ALL").fetchall()
    assert got == [
        ("007", "w@out.example", "outbound"), ("007", "x@a.example", "inbound"),
        ("007", "y@mail.b.example.org", "internal"), ("007", "z@acme.example", "outbound"),
        ("acme", "w@out.example", "outbound"), ("acme", "x@a.example", "outbound"),
        ("acme", "y@mail.b.example.org", "outbound"), ("acme", "z@acme.example", "inbound"),
    ]


def test_discovery_lists_files_by_folder_and_names_what_it_cannot_take(tmp_path: Path) -> None:
    from pipeline import inbox as inbox_mod
    from pipeline.inbox import discover

    inbox = tmp_path / "inbox"
    t = inbox / "acme"
    (t / "b" / "deep").mkdir(parents=True)
    (t / ".hidden").mkdir()
    for f in ("z.csv", "a.csv", "b/x.csv", "b/deep/y.csv", ".DS_Store", ".hidden/h.csv"):
        (t / f).write_text("x")
    (t / "inside.csv").symlink_to(t / "a.csv")
    (t / "linked").symlink_to(t / "b", target_is_directory=True)
    os.mkfifo(t / "pipe")
    got = [(f.display, f.problem) for f in discover([inbox], None)]
    assert got == [
        ("acme/linked", "a symlinked folder; copy the files into the inbox instead"),
        ("acme/a.csv", None), ("acme/inside.csv", None),
        ("acme/pipe", inbox_mod.NOT_REGULAR), ("acme/z.csv", None),
        ("acme/b/x.csv", None), ("acme/b/deep/y.csv", None),
    ]
    assert [f.tenant for f in discover([t], "other")][1:3] == ["other", "other"]
    assert [f.display for f in discover([t], "other")][-1] == "other/b/deep/y.csv"


def test_a_touched_file_stays_ingested_and_is_not_read_again(inbox: Path, tmp_path: Path) -> None:
    """The same file with a new modification time is skipped by its hash; its manifest row
    stays `ingested` (not `duplicate`), so later runs skip it too."""
    s = Settings(lake=tmp_path / "lake")
    first = ingest([inbox], s)
    before = tree_bytes(tmp_path / "lake" / "messages")
    trace = next(p for p in sorted(inbox.rglob("*.csv")))
    os.utime(trace, (1_700_000_000, 1_700_000_000))
    for _ in range(2):
        again = ingest([inbox], s)
        assert again.count("ingested") == 0 and again.count("skipped") == first.count("ingested")
    manifest = Lake(s.lake).manifest()
    name = f"{trace.parent.name}/{trace.name}"
    assert manifest.filter(pl.col("source_file") == name)["status"].to_list() == ["ingested"]
    assert manifest.filter(pl.col("status") == "duplicate").height == 0
    assert tree_bytes(tmp_path / "lake" / "messages") == before


def test_the_sweep_removes_only_relaywatchs_own_temporaries(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    with lake.locked():
        pass
    ours = lake.root / "messages" / "tenant=a" / ".tmp-relaywatch-7-data.parquet"
    theirs = lake.root / "messages" / "tenant=a" / ".tmp-notes.txt"
    ours.parent.mkdir(parents=True)
    ours.write_bytes(b"half")
    theirs.write_text("an analyst's file")
    (lake.root / ".lock").write_text("relaywatch pid 99\n")
    with lake.locked():
        pass
    assert not ours.exists() and theirs.read_text() == "an analyst's file"


@pytest.mark.parametrize("case", ["root", "home", "foreign", "other_tool", "a_file"])
def test_a_lake_root_that_is_not_relaywatchs_is_refused(tmp_path: Path, case: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    root = {"root": Path("/"), "home": tmp_path / "home", "foreign": tmp_path / "docs",
            "other_tool": tmp_path / "warehouse", "a_file": tmp_path / "f"}[case]
    if case == "foreign":
        root.mkdir()
        (root / "thesis.tex").write_text("x")
    if case == "other_tool":
        (root / "messages").mkdir(parents=True)
        (root / "messages" / "part-0.parquet").write_bytes(b"PAR1")
    if case == "a_file":
        root.write_text("x")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ConfigError) as err:
        with Lake(root).locked():
            pass
    assert {"root": "refusing to use /", "home": "refusing to use", "a_file": "not a folder",
            "foreign": "not a relaywatch lake", "other_tool": "not a relaywatch lake"}[case] \
        in str(err.value)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_lake_made_before_the_marker_is_adopted(tmp_path: Path) -> None:
    from pipeline.lake import MARKER

    lake = Lake(tmp_path / "lake")
    with lake.locked():
        pass
    (lake.root / MARKER).unlink()
    (lake.root / "ingest_log").mkdir()
    (lake.root / "ingest_log" / "manifest.parquet").write_bytes(b"x")
    with lake.locked():
        pass
    assert (lake.root / MARKER).is_file()


def test_overlapping_folders_and_symlinked_tenant_folders_are_refused(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "a").mkdir(parents=True)
    shutil.copy(DATA / "accepted_domain.csv", inbox / "a" / "ad.csv")
    (inbox / "all").symlink_to(".")
    (inbox / "b").symlink_to(inbox / "a")
    for args, message in [
            (["nightly", "--inbox", str(inbox), "--lake", str(inbox), "--no-email"],
             f"the inbox ({inbox}) and the lake ({inbox}) overlap"),
            (["nightly", "--inbox", str(inbox), "--lake", str(tmp_path / "l"), "--reports",
              str(inbox / "r"), "--no-email"], f"the inbox ({inbox}) and the reports"),
            (["ingest", str(inbox), "--lake", str(inbox / "lake")], "the lake ("),
    ]:
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 2 and message in r.stderr, r.stderr
    assert sorted(p.name for p in inbox.iterdir()) == ["a", "all", "b"]
    r = CliRunner().invoke(cli, ["ingest", str(inbox), "--lake", str(tmp_path / "lake")])
    assert r.exit_code == 3
    assert "all: REJECTED: a symlinked folder" in r.stderr
    assert "b: REJECTED: a symlinked folder" in r.stderr
    m = pl.read_parquet(tmp_path / "lake" / "ingest_log" / "manifest.parquet")
    assert sorted(m.filter(pl.col("status") == "ingested")["source_file"]) == ["a/ad.csv"]


def _peak_rss_of_ingest(path: Path, lake: Path) -> int:
    """Peak resident memory (bytes) of a `relaywatch ingest` of one file, in a process of
    its own."""
    code = ("import resource, subprocess, sys; "
            "r = subprocess.run([sys.executable, '-m', 'pipeline', '-q', 'ingest', sys.argv[1], "
            "'--tenant', 'big', '--lake', sys.argv[2]]); "
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(lake)], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout.split()
    assert out[0] == "0"
    return int(out[1]) * 1024


def test_json_memory_stays_flat_whatever_the_file_size(tmp_path: Path) -> None:
    """NDJSON is read a record at a time and parsed in parts: four times the file takes
    about the same memory, not four times as much (a 96 MB file took 1.16 GB read whole)."""
    import json

    def write(path: Path, n: int) -> int:
        with open(path, "w", encoding="utf-8") as fh:
            for i in range(n):
                fh.write(json.dumps({
                    "Received": f"2026-11-{20 + i % 7:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
                    "SenderAddress": f"s{i % 500}@contoso.example",
                    "RecipientAddress": f"r{i}@fabrikam{i % 97}.example",
                    "Subject": f"quarterly report {i} " + "x" * 120, "Status": "Delivered",
                    "Size": 20000 + i, "MessageId": f"<{i}@contoso.example>",
                    "MessageTraceId": f"00000000-0000-4000-8000-{i:012d}",
                    "Organization": "contoso.onmicrosoft.com", "FromIP": "10.0.0.1"}) + "\n")
        return path.stat().st_size

    small, large = tmp_path / "small.json", tmp_path / "large.json"
    assert write(large, 320_000) > 4 * write(small, 80_000) * 0.95
    peak_small = _peak_rss_of_ingest(small, tmp_path / "l1")
    peak_large = _peak_rss_of_ingest(large, tmp_path / "l2")
    rows = pl.read_parquet(tmp_path / "l2" / "messages").height
    assert rows == 320_000
    # the large file is ~110 MB: read whole it would add far more than this
    assert peak_large - peak_small < 250 * 2**20, (peak_small, peak_large)


def test_an_unreadable_folder_or_file_is_one_rejected_item(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Permissions cannot be taken from root (tests and CI run as root), so the refusals
    are raised where the operating system would raise them."""
    from pipeline import formats

    inbox = tmp_path / "inbox"
    for tenant in ("good", "locked", "secret"):
        (inbox / tenant).mkdir(parents=True)
        shutil.copy(DATA / "accepted_domain.csv", inbox / tenant / "ad.csv")
    real_scandir, real_sniff = os.scandir, formats.sniff

    def scandir(path):  # type: ignore[no-untyped-def]
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def sniff(path, *a):  # type: ignore[no-untyped-def]
        if "secret" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_sniff(path, *a)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(formats, "sniff", sniff)
    report = ingest([inbox], Settings(lake=tmp_path / "lake"))
    got = {f.display: (f.status, f.reason) for f in report.files}
    assert got == {
        "good/ad.csv": ("ingested", ""),
        "locked": ("rejected", "cannot read the folder (Permission denied)"),
        "secret/ad.csv": ("rejected", "cannot read the file (Permission denied)"),
    }
