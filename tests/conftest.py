"""Shared fixtures: real samples from ../shared, tiny files in tests/data, an isolated env."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline import formats
from pipeline.formats.common import Context, Parsed

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
REAL = ROOT.parent / "shared" / "fixtures" / "real"
SNAPSHOT = datetime(2026, 11, 28, 1, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's relaywatch.toml or RELAYWATCH_* variables."""
    import os

    for var in list(os.environ):
        if var.startswith("RELAYWATCH_"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)


def parse(path: Path, tenant: str = "t", date_order: str = "auto",
          headerless: str = "none", own: tuple[str, ...] = ()) -> Parsed:
    sniffed = formats.sniff(path, path.name, headerless)
    ctx = Context(path.name, tenant, SNAPSHOT, date_order, own, headerless)
    return formats.read(path, sniffed, ctx)


def real(name: str) -> Path:
    path = REAL / name
    if not path.exists():
        pytest.fail(f"{path} missing: the shared fixtures must sit in ../shared beside the checkout")
    return path
