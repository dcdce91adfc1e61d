"""Whatever bytes land in an inbox, the nightly job ends with a summary line and a known
exit code: no traceback, the inbox untouched, the other tenants' rows intact."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.cli import cli
from tests.conftest import DATA

# starts of real exports, cut and spliced with arbitrary bytes
PREFIXES = [b"", b"\xef\xbb\xbf", b"\xff\xfe", b"#TYPE x\r\n", b"[", b"{", b"[{\"Received\":",
            b"#Software: Microsoft Exchange Server\r\n#Fields: date-time,sender-address\r\n",
            (DATA / "messagetrace_ps51.csv").read_bytes()[:300],
            (DATA / "accepted_domain.csv").read_bytes()]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(PREFIXES), st.binary(max_size=400),
                          st.sampled_from([b"", b"\r", b"\n", b"\r\n", b"\x00", b"\"", b"]"])),
                min_size=1, max_size=3))
def test_random_files_never_break_the_night(tmp_path_factory, files) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("fuzz")
    inbox = root / "inbox"
    (inbox / "good").mkdir(parents=True)
    shutil.copy(DATA / "messagetrace_ps51.csv", inbox / "good" / "trace.csv")
    shutil.copy(DATA / "accepted_domain.csv", inbox / "good" / "ad.csv")
    (inbox / "bad").mkdir()
    for i, (prefix, body, tail) in enumerate(files):
        (inbox / "bad" / f"f{i}.csv").write_bytes(prefix + body + tail)
    before = {p: p.read_bytes() for p in inbox.rglob("*") if p.is_file()}
    r = CliRunner().invoke(cli, ["nightly", "--inbox", str(inbox), "--lake", str(root / "lake"),
                                 "--reports", str(root / "reports"), "--as-of", "2026-11-28",
                                 "--no-email"])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code in (0, 3), r.stdout + r.stderr
    assert r.stdout.startswith("nightly 2026-11-28 00:00Z: ")
    assert {p: p.read_bytes() for p in inbox.rglob("*") if p.is_file()} == before
    good = pl.read_parquet(Path(root / "lake" / "messages"), hive_partitioning=True).filter(
        pl.col("tenant") == "good")
    assert good.height > 0
