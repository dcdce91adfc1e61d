"""The generator is deterministic, and the committed sample is exactly its output."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from pipeline import generate
from pipeline.ingest import ingest
from pipeline.settings import Settings
from tests.conftest import ROOT


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    spec = generate.Spec(days=5, per_day=10, extra_tenants=1, extra_per_day=5)
    generate.write_inbox(tmp_path / "a", spec)
    generate.write_inbox(tmp_path / "b", spec)
    generate.write_inbox(tmp_path / "c", generate.Spec(days=5, per_day=10, extra_tenants=1,
                                                       extra_per_day=5, seed=8))
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_unchanged_accepted_domains_are_the_same_file_every_night(tmp_path: Path) -> None:
    """A night's snapshot of unchanged domains repeats the last one byte for byte (as real
    Get-AcceptedDomain output does), so the lake keeps one snapshot, not one per night."""
    days = [generate.Spec.end - timedelta(days=n) for n in (0, 1, 30)]
    for n, end in enumerate(days):
        generate.write_inbox(tmp_path / str(n), generate.Spec(
            end=end, days=1, per_day=5, extra_tenants=2, extra_per_day=5, seed=n + 1))
    tenants = ("t000", "t001", "fabrikam")
    snaps = {(n, t): (tmp_path / str(n) / t / "accepted_domains.json").read_bytes()
             for n in range(len(days)) for t in tenants}
    for t in tenants:
        assert snaps[0, t] == snaps[1, t] == snaps[2, t]
    assert b"tenant000.example" in snaps[0, "t000"] and snaps[0, "t000"] != snaps[0, "t001"]
    # data long before the default end still has domains created before it
    early = generate.Spec(end=date(2023, 3, 1), days=3, per_day=5, extra_tenants=1)
    generate.write_inbox(tmp_path / "early", early)
    ingested = ingest([tmp_path / "early"], Settings(lake=tmp_path / "lake"))
    assert ingested.count("rejected") == 0
    created = pl.read_parquet(tmp_path / "lake" / "accepted_domains" / "tenant=t000" /
                              "*.parquet")["when_created_utc"]
    assert created.max().date() < date(2023, 2, 1)


def test_committed_sample_is_the_generator_output(tmp_path: Path) -> None:
    generate.write_inbox(tmp_path / "inbox", generate.Spec.preset("sample"))
    assert digest(tmp_path / "inbox") == digest(ROOT / "sample_logs" / "inbox")


def test_sample_tells_its_stories(tmp_path: Path) -> None:
    report = ingest([ROOT / "sample_logs" / "inbox"], Settings(lake=tmp_path / "lake"))
    assert report.count("rejected") == 0 and report.rejected_rows == 0
    formats = {f.format for f in report.files}
    assert {"message_trace_ps51", "message_trace_json", "message_trace",
            "historical_search_summary", "message_trace_detail", "exchange_tracking_log",
            "accepted_domains", "inbound_connectors", "audit_log_csv"} <= formats
    m = pl.read_parquet(tmp_path / "lake" / "messages", hive_partitioning=True)
    assert m["date"].n_unique() == 21
    ndr = m.filter(pl.col("ndr_code") == "5.7.750").group_by("tenant").len()
    assert dict(ndr.iter_rows()) == {"contoso": 300}
    contoso = m.filter(tenant="contoso", direction="outbound",
                       connector="Inbound Relay Partner")
    assert contoso.height > 1000
    assert set(contoso["sender_domain"]) == set(generate.SPAM_DOMAINS)
    hours = m.filter(tenant="t000").group_by(pl.col("received_utc").dt.hour()).len()
    by_hour = dict(hours.iter_rows())
    assert by_hour.get(10, 0) > 5 * by_hour.get(3, 0)  # daily rhythm
    adatum_last = m.filter(tenant="adatum")["date"].max()
    assert (m["date"].max() - adatum_last).days == 6  # stale tenant
