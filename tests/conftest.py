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
    """A real export sample from ../shared/fixtures/real: in CI (CI=true) it must be there;
    elsewhere a checkout without ../shared skips these tests and says why."""
    import os

    path = REAL / name
    if not path.exists():
        message = (f"{path} missing: the shared fixtures must sit in ../shared beside the "
                   "checkout")
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


AS_OF = datetime(2026, 11, 28, tzinfo=timezone.utc)


def at(day: int, hour: int = 10, minute: int = 0, month: int = 11) -> datetime:
    """A UTC moment in November 2026 (tests' hand-built lakes live there)."""
    return datetime(2026, month, day, hour, minute, tzinfo=timezone.utc)


class LakeBuilder:
    """Builds a tiny lake through the real writer, row by row, for hand-computed tests."""

    def __init__(self, root: Path) -> None:
        from pipeline.lake import Lake

        self.lake = Lake(root)
        self.lake.claim()  # as a locked run would: a lake relaywatch made
        self.root = root
        self._n = 0
        self._held: list[dict] | None = None

    def __enter__(self) -> LakeBuilder:
        """`with build:` holds the sent rows and writes them once at the end (fast)."""
        self._held = []
        return self

    def __exit__(self, *exc: object) -> None:
        import polars as pl

        held, self._held = self._held, None
        if held:
            self.lake.write_messages(pl.DataFrame(held, infer_schema_length=None))

    def send(self, tenant: str, when: datetime, sender: str, recipients: int | list[str] = 1,
             direction: str = "outbound", envelope: str | None = None, **extra: object) -> str:
        """One message to `recipients` (a count or addresses); returns its id."""
        import polars as pl

        self._n += 1
        nid = f"00000000-0000-4000-8000-{self._n:012d}"
        rcpts = (recipients if isinstance(recipients, list)
                 else [f"r{self._n}-{i}@ext.example" for i in range(recipients)])
        rows = [{"tenant": tenant, "date": when.date(), "received_utc": when,
                 "direction": direction, "sender_address": sender.lower(),
                 "sender_domain": sender.split("@")[1].lower(),
                 "envelope_sender": envelope, "envelope_domain": envelope.split("@")[1]
                 if envelope else None, "recipient_address": r,
                 "recipient_domain": r.split("@")[1], "status": "delivered",
                 "network_message_id": nid, "message_id": f"<{nid}@test>",
                 "source_format": "message_trace", "source_file": f"{tenant}/test.csv",
                 "source_line": self._n, **extra} for r in rcpts]
        if self._held is not None:
            self._held += rows
            return nid
        self.lake.write_messages(pl.DataFrame(rows))
        return nid

    def table(self, name: str, tenant: str, rows: list[dict], key: str = "") -> None:
        import polars as pl

        from pipeline import schema

        frame = pl.DataFrame([{"tenant": tenant, **r} for r in rows],
                             schema_overrides={c.name: c.dtype for c in schema.TABLES[name].columns
                                               if any(c.name in r for r in rows)})
        self.lake.write_file_table(name, tenant, f"{name}{tenant}{key}".ljust(32, "0"), frame)

    def rolled(self) -> Path:
        """The lake with its rollups brought up to date (ingest and detect do it; these
        tests write the partitions themselves), for queries run straight on a session."""
        from pipeline import rollups

        rollups.build(self.root)
        return self.root

    def domains(self, tenant: str, *names: str, created: datetime | None = None,
                subdomains: tuple[str, ...] = ()) -> None:
        self.table("accepted_domains", tenant, [
            {"domain_name": n, "match_subdomains": n in subdomains, "snapshot_utc": SNAPSHOT,
             "when_created_utc": created or datetime(2024, 1, 1, tzinfo=timezone.utc)}
            for n in names], key=str(created or ""))


@pytest.fixture
def build(tmp_path: Path) -> LakeBuilder:
    return LakeBuilder(tmp_path / "lake")


@pytest.fixture(scope="session")
def sample_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample_logs/ ingested once per test session; tests must not write to it."""
    from pipeline.ingest import ingest
    from pipeline.settings import Settings

    lake = tmp_path_factory.mktemp("sample") / "lake"
    ingest([ROOT / "sample_logs" / "inbox"], Settings(lake=lake))
    return lake
