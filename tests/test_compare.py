"""`relaywatch compare`: two lakes of the same inbox are the same data even when read at other
times; a changed, missing or extra file is named, and the exit code says so."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.ingest import ingest
from pipeline.settings import Settings
from tests.conftest import DATA


def test_compare_names_what_differs(tmp_path: Path) -> None:
    for name in ("a", "b"):
        s = Settings(lake=tmp_path / name)
        ingest([DATA / "messagetrace_ps51.csv"], s, tenant="contoso")
        ingest([DATA / "accepted_domain_evotec.json"], s, tenant="contoso")
    a, b = tmp_path / "a", tmp_path / "b"
    same = CliRunner().invoke(cli, ["compare", str(a), str(b)])
    assert same.exit_code == 0 and same.stdout == ""  # the manifests differ only in when
    part = next((b / "messages").rglob("data.parquet"))
    rows = pl.read_parquet(part)
    rows.slice(1).write_parquet(part)  # a row lost
    shutil.copytree(a / "accepted_domains", b / "accepted_domains" / "extra")
    (a / "rollups" / "mail").rename(a / "rollups" / "gone")
    got = CliRunner().invoke(cli, ["compare", str(a), str(b)])
    assert got.exit_code == 1
    lines = got.stdout.splitlines()
    assert f"differs\t{part.relative_to(b).as_posix()}" in lines
    assert any(ln.startswith(f"only in {b}\taccepted_domains/extra/") for ln in lines)
    assert any(ln.startswith(f"only in {b}\trollups/mail/") for ln in lines)
    assert any(ln.startswith(f"only in {a}\trollups/gone/") for ln in lines)
