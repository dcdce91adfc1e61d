"""relaywatch doctor: damaged lake files are found, quarantined (never deleted) and rebuilt."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
from click.testing import CliRunner

from pipeline.cli import cli
from tests.conftest import ROOT
from tests.test_ingest import lake_digest


def test_doctor_finds_quarantines_and_the_next_ingest_rebuilds(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    shutil.copytree(ROOT / "sample_logs" / "inbox" / "t000", inbox / "t000")
    shutil.copytree(ROOT / "sample_logs" / "inbox" / "t001", inbox / "t001")
    lake = tmp_path / "lake"
    run = CliRunner().invoke
    assert run(cli, ["ingest", str(inbox), "--lake", str(lake)]).exit_code == 0
    before = lake_digest(lake)
    part = lake / "messages" / "tenant=t000" / "date=2026-11-20" / "data.parquet"
    (lake / "accepted_domains" / "tenant=t001").mkdir(parents=True, exist_ok=True)
    snapshot = next((lake / "accepted_domains" / "tenant=t001").glob("*.parquet"))
    good = part.read_bytes()
    part.write_bytes(good[: len(good) // 2])          # a copy cut short
    snapshot.write_bytes(b"garbage")
    r = run(cli, ["doctor", "--lake", str(lake)])
    assert r.exit_code == 1
    lines = sorted(r.stdout.splitlines())
    assert lines[0].startswith(f"accepted_domains/tenant=t001/{snapshot.name}\tunreadable: ")
    assert lines[1].startswith("messages/tenant=t000/date=2026-11-20/data.parquet\tunreadable: ")
    assert part.exists()                              # nothing changed without --repair
    r = run(cli, ["doctor", "--lake", str(lake), "--repair"])
    assert r.exit_code == 0, r.stderr
    assert not part.exists() and not snapshot.exists()
    kept = sorted(p.name for p in (lake / "quarantine").iterdir())
    assert len(kept) == 4 and sum(n.endswith(".reason") for n in kept) == 2
    assert any(p.read_bytes() == good[: len(good) // 2]
               for p in (lake / "quarantine").glob("*data.parquet"))  # moved, not deleted
    m = pl.read_parquet(lake / "ingest_log" / "manifest.parquet")
    assert m.filter(pl.col("status") == "restore").height >= 2
    r = run(cli, ["ingest", str(inbox), "--lake", str(lake)])
    assert r.exit_code == 0, r.stderr
    assert lake_digest(lake) == before
    assert run(cli, ["doctor", "--lake", str(lake)]).exit_code == 0
