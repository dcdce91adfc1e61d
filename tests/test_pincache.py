"""Detection's cache of the lookback (<lake>/.cache): the same answers as reading the lake,
loading only what changed, and rebuilt when damaged."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import detect
from pipeline.pincache import PinCache
from pipeline.settings import DetectSettings
from pipeline.sql import PINNED_COLUMNS, Session
from tests.conftest import AS_OF, LakeBuilder, at

QUERIES = (*detect.DETECTIONS, *detect.FOR_REPORT.values())


def answers(lake: Path, cache: bool) -> dict[str, list[dict[str, Any]]]:
    run = detect.Run(AS_OF, None, DetectSettings())
    lookback = timedelta(days=run.settings.window_days + run.settings.baseline_days)
    with Session(lake, cache=cache) as s:
        s.pin_messages((AS_OF - lookback).date(), PINNED_COLUMNS)
        return {q: s.run(q, run.params()).to_dicts() for q in QUERIES}


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(kind, files loaded) of every cache refresh."""
    seen: list[tuple[str, int]] = []
    real = PinCache._sync

    def spy(self: PinCache, con: Any, kind: str, current: Any) -> list[str]:
        new = real(self, con, kind, current)
        seen.append((kind, len(new)))
        return new

    monkeypatch.setattr(PinCache, "_sync", spy)
    return seen


def test_cached_answers_equal_the_lake_and_a_second_run_loads_nothing(
        sample_lake: Path, tmp_path: Path, loads: list[tuple[str, int]]) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(sample_lake, lake, ignore=shutil.ignore_patterns(".cache"))
    direct = answers(lake, cache=False)
    assert sum(len(v) for v in direct.values()) > 100          # the sample has findings
    assert answers(lake, cache=True) == direct
    first = dict(loads)
    files = len(list((lake / "messages").glob("*/*/*.parquet")))
    assert first["messages"] == files and first["accepted_domains"] > 0
    loads.clear()
    assert answers(lake, cache=True) == direct
    assert dict(loads) == {"messages": 0, "accepted_domains": 0}


def test_new_days_domain_changes_and_dropped_days_follow_the_lake(
        build: LakeBuilder, loads: list[tuple[str, int]]) -> None:
    build.domains("acme", "acme.com")
    for day in range(18, 27):
        build.send("acme", at(day), "a@acme.com", 3)
        build.send("acme", at(day, 11), "x@evil.example", 20)
    build.send("other", at(26), "b@other.example", 2)
    lake = build.root

    def unprovisioned(ans: dict[str, list[dict[str, Any]]]) -> int:
        return sum(r["recipients"] for r in ans["unprovisioned_senders"])

    first = answers(lake, cache=True)
    # the window is the 7 days before 28 Nov: days 21-26 of the 18-26 sent
    assert first == answers(lake, cache=False) and unprovisioned(first) == 6 * 20
    build.send("acme", at(27), "x@evil.example", 5)               # one new partition file
    loads.clear()
    second = answers(lake, cache=True)
    assert dict(loads)["messages"] == 1 and unprovisioned(second) == 6 * 20 + 5
    assert second == answers(lake, cache=False)
    build.domains("acme", "acme.com", "evil.example", created=at(1, month=1))  # registered
    third = answers(lake, cache=True)
    assert third == answers(lake, cache=False) and unprovisioned(third) == 0
    shutil.rmtree(lake / "messages" / "tenant=acme" / "date=2026-11-27")    # retention
    fourth = answers(lake, cache=True)
    assert fourth == answers(lake, cache=False)
    hours = {r["hour"].day for r in fourth["hourly_outbound"] if r["tenant"] == "acme"}
    assert 26 in hours and 27 not in hours


def test_an_accepted_domain_removed_later_is_judged_again(build: LakeBuilder) -> None:
    """A Remove-AcceptedDomain audit event that arrives after the rows were cached changes
    what they are (mail after it is unregistered): the cache judges the tenant again."""
    import json

    build.table("accepted_domains", "acme", [  # a snapshot taken before the removal
        {"domain_name": d, "match_subdomains": False, "snapshot_utc": at(1),
         "when_created_utc": at(1, month=1)} for d in ("acme.com", "old.example")])
    for day in range(21, 27):
        build.send("acme", at(day), "app@old.example", 10)
    first = answers(build.root, cache=True)
    assert not first["unprovisioned_senders"]
    build.table("audit_events", "acme", [{
        "record_id": "r1", "creation_utc": at(24, 0), "operation": "Remove-AcceptedDomain",
        "object_id": "old.example", "result_status": "Success",
        "parameters": json.dumps({"Identity": "old.example"})}])
    second = answers(build.root, cache=True)
    assert second == answers(build.root, cache=False)
    assert sum(r["recipients"] for r in second["unprovisioned_senders"]) == 3 * 10


def test_a_damaged_cache_is_rebuilt(build: LakeBuilder) -> None:
    build.domains("acme", "acme.com")
    build.send("acme", at(26), "x@evil.example", 4)
    direct = answers(build.root, cache=False)
    answers(build.root, cache=True)
    cache = build.root / ".cache" / "detect.duckdb"
    cache.write_bytes(b"not a database" * 100)
    assert answers(build.root, cache=True) == direct
    assert cache.stat().st_size > 1400


def test_batches_a_moved_lake_and_a_run_stopped_half_way(
        sample_lake: Path, tmp_path: Path, loads: list[tuple[str, int]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A first run loads a few files per transaction; stopped after the first batch, the
    next run finishes the job; a lake moved elsewhere keeps its cache (paths are relative)."""
    from pipeline import pincache

    lake = tmp_path / "lake"
    shutil.copytree(sample_lake, lake, ignore=shutil.ignore_patterns(".cache"))
    direct = answers(lake, cache=False)
    monkeypatch.setattr(pincache, "BATCH_BYTES", 20_000)
    real_load = PinCache._load
    calls = []

    def stop_on_second(self: PinCache, con: Any, kind: str, *args: Any, **kw: Any) -> None:
        if kind == "messages":
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
        real_load(self, con, kind, *args, **kw)

    monkeypatch.setattr(PinCache, "_load", stop_on_second)
    with pytest.raises(KeyboardInterrupt):
        answers(lake, cache=True)
    monkeypatch.setattr(PinCache, "_load", real_load)
    assert answers(lake, cache=True) == direct and len(calls) == 2
    files = len(list((lake / "messages").glob("*/*/*.parquet")))
    assert 0 < dict(loads)["messages"] < files         # the first batch was kept
    moved = tmp_path / "moved"
    lake.rename(moved)
    loads.clear()
    assert answers(moved, cache=True) == direct
    assert dict(loads) == {"messages": 0, "accepted_domains": 0}
