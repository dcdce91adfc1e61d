"""Rollups (issue 19): the detections read the lake's rollups, and give over them exactly what
they give over the raw rows (rolled up in the session, `stored=False`): on the sample, on
lakes of the report card's drawn tenants, and on random small lakes drawn by hypothesis
(same-second messages, rows without ids, NDRs, tenants with and without accepted domains,
an as-of anywhere in an hour). The rollups follow the lake: a rewritten partition, accepted
domains that arrive or change later, retention and a killed build.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipeline import detect, rollups, schema
from pipeline.ingest import ingest
from pipeline.settings import DetectSettings, Settings
from tests.accuracy import report_card as rc
from tests.conftest import LakeBuilder

AS_OF = datetime(2026, 11, 28, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[1]


def both(lake: Path, as_of: datetime = AS_OF) -> tuple[detect.Result, detect.Result]:
    run = detect.Run(as_of, None, DetectSettings())
    return detect.evaluate(lake, run), detect.evaluate(lake, run, stored=False)


def assert_same(stored: detect.Result, raw: detect.Result) -> None:
    mine, theirs = (
        {**r.rows, **r.for_report, "findings": r.findings, "verdicts": r.verdicts}
        for r in (stored, raw))
    for name, frame in mine.items():
        try:
            assert_frame_equal(frame, theirs[name], check_dtypes=False)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def rollup_files(lake: Path) -> dict[str, bytes]:
    return {str(p.relative_to(lake)): p.read_bytes()
            for p in sorted((lake / rollups.FOLDER).rglob("data.parquet"))}


@pytest.mark.parametrize("as_of", [AS_OF, datetime(2026, 11, 27, 13, 37, 11, tzinfo=timezone.utc)])
def test_sample_detections_over_rollups_equal_those_over_raw_rows(sample_lake: Path,
                                                                  tmp_path: Path,
                                                                  as_of: datetime) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(sample_lake, lake)
    stored, raw = both(lake, as_of)
    assert_same(stored, raw)
    assert stored.rows["unprovisioned_senders"].height > 50  # the sample's relaying shows
    assert stored.rows["onprem_injection"].height >= 1
    raw_rows = pl.scan_parquet(lake / "messages", hive_partitioning=True).select(
        pl.len()).collect().item()
    rolled = pl.scan_parquet(lake / rollups.FOLDER / "mail", hive_partitioning=True).select(
        pl.col("recipients").sum(), pl.len()).collect()
    assert rolled["recipients"].item() == raw_rows  # every row, once
    assert rolled["len"].item() < raw_rows


def test_card_tenants_detections_over_rollups_equal_raw(tmp_path: Path) -> None:
    """Drawn tenants of every kind (no accepted-domain export among them), in drawn export
    formats, ingested as a user's would be."""
    sim = rc.Sim(11)
    rng = random.Random(11)
    kinds = [*rc.LEGIT, *rc.ATTACKS]
    for i, kind in enumerate(kinds):
        t = rc.Tenant(f"t{i:03d}", kind, kind in rc.ATTACKS)
        t.domains = [f"org{i}x{rng.randrange(999)}.example"]
        sim.shape(t)
        rc.write(t, tmp_path / "inbox", rng)
    ingest([tmp_path / "inbox"], Settings(lake=tmp_path / "lake"))
    for as_of in (rc.END, rc.END - timedelta(hours=30, minutes=17)):
        stored, raw = both(tmp_path / "lake", as_of)
        assert_same(stored, raw)
        assert stored.verdicts.height == len(kinds)
        assert (stored.verdicts["recommendation"] == "block").sum() >= 1


DOMAINS = ["own.example", "sub.own.example", "gone.example", "x.test", "gmail.com"]
CODES = [None, None, None, "5.7.750", "5.1.8", "5.1.1", "5.7.708"]
STATUS = ["delivered", "failed", "filtered_as_spam", "quarantined"]


@st.composite
def small_lakes(draw: st.DrawFn) -> list[dict]:
    """Messages of two tenants: a time (often the same second as another), a sender, a
    connector and client IP, recipients each with a status, NDR code and domain."""
    out = []
    for n in range(draw(st.integers(1, 25))):
        minute = draw(st.integers(0, 60 * 24 * 34))
        out.append({
            "tenant": draw(st.sampled_from(["a", "b"])),
            "when": AS_OF - timedelta(minutes=minute, seconds=draw(st.sampled_from([0, 0, 30]))),
            "sender": f"u{draw(st.integers(0, 2))}@{draw(st.sampled_from(DOMAINS))}",
            "connector": draw(st.sampled_from([None, "Partner", "Relay"])),
            "ip": draw(st.sampled_from([None, "203.0.113.9", "2001:db8::5"])),
            "direction": draw(st.sampled_from(["outbound", "outbound", "unknown", "inbound"])),
            "idless": draw(st.booleans()) and n % 3 == 0,
            "to": [(draw(st.sampled_from(DOMAINS)), draw(st.sampled_from(STATUS)),
                    draw(st.sampled_from(CODES)), draw(st.booleans()))
                   for _ in range(draw(st.integers(1, 6)))],
        })
    return out


def write_small(build: LakeBuilder, messages: list[dict]) -> None:
    with build:
        for i, m in enumerate(messages):
            nid = f"00000000-0000-4000-8000-{i:012d}"
            build._held = (build._held or []) + [{
                "tenant": m["tenant"], "date": m["when"].date(), "received_utc": m["when"],
                "direction": m["direction"], "sender_address": m["sender"],
                "sender_domain": m["sender"].split("@")[1],
                "recipient_address": f"r{i}-{j}@{dom}", "recipient_domain": dom,
                "status": status, "ndr_code": code, "spam_verdict": spam,
                "network_message_id": None if m["idless"] else nid,
                "message_id": None if m["idless"] else f"<{nid}@t>",
                "connector": m["connector"], "client_ip": m["ip"],
                "source_format": "message_trace", "source_file": f"{m['tenant']}/t.csv",
                "source_line": i + 1} for j, (dom, status, code, spam) in enumerate(m["to"])]


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(messages=small_lakes(), more=small_lakes(), minute=st.integers(0, 59),
       listed=st.booleans())
def test_random_small_lakes_detect_the_same_over_rollups_as_over_raw_rows(
        tmp_path_factory: pytest.TempPathFactory, messages: list[dict], more: list[dict],
        minute: int, listed: bool) -> None:
    build = LakeBuilder(tmp_path_factory.mktemp("lake") / "lake")
    if listed:  # tenant a has accepted domains; b's own domains are inferred from its mail
        build.domains("a", "own.example", "gone.example")
    write_small(build, messages)
    as_of = AS_OF - timedelta(hours=5, minutes=minute)
    assert_same(*both(build.root, as_of))
    # a night later: more mail, a removed domain, a new one; the rollups follow
    write_small(build, more)
    build.table("audit_events", "a", [{
        "creation_utc": AS_OF - timedelta(days=3), "operation": "Remove-AcceptedDomain",
        "result_status": "Success", "object_id": "gone.example",
        "parameters": '{"Identity": "gone.example"}'}])
    build.domains("a", "own.example", "x.test", created=AS_OF - timedelta(days=9))
    assert_same(*both(build.root, AS_OF))


def test_rollups_follow_the_lake(build: LakeBuilder) -> None:
    """Built once, then only what changed: a rewritten partition, a tenant whose accepted
    domains changed (its mail judged again), a dropped partition's rollup removed; a second
    build with nothing new changes no byte."""
    day = AS_OF - timedelta(days=2)
    with build:
        for h in range(5):
            build.send("a", day + timedelta(hours=h), "me@a.example", 3)
            build.send("b", day + timedelta(hours=h), "me@b.example", 2)
        build.send("a", AS_OF - timedelta(days=20), "old@a.example", 1)
    first = rollups.build(build.root)
    assert (first.partitions, first.rows_in) == (3, 26)
    before = rollup_files(build.root)
    assert rollups.build(build.root).partitions == 0 and rollup_files(build.root) == before

    build.domains("a", "a.example")  # a's mail was unjudged; now it is its own
    again = rollups.build(build.root)
    assert again.partitions == 2  # a's two days, not b's
    mail = pl.read_parquet(rollups.rollup_path(build.root, schema.MAIL_ROLLUP, "a", day.date()))
    assert mail["sender_unprovisioned"].to_list() == [False] * 5

    build.send("b", day + timedelta(hours=9), "spam@evil.example", 4)  # rewrites b's day
    assert rollups.build(build.root).partitions == 1
    b = pl.read_parquet(rollups.rollup_path(build.root, schema.MAIL_ROLLUP, "b", day.date()))
    assert b["recipients"].sum() == 14

    old = build.root / "messages" / "tenant=a" / f"date={(AS_OF - timedelta(days=20)).date()}"
    shutil.rmtree(old)  # as retention does
    assert rollups.build(build.root).removed == 1
    assert not rollups.rollup_path(build.root, schema.MAIL_ROLLUP, "a",
                                   (AS_OF - timedelta(days=20)).date()).exists()


def test_a_killed_build_leaves_rollups_the_next_one_completes(build: LakeBuilder) -> None:
    """SIGKILL between a rollup file's write and its rename, in a build of several steps:
    the next build makes what the killed one did not record, and the result is the bytes
    of an uninterrupted build."""
    with build:
        for d in range(6):
            for t in ("a", "b", "c"):
                build.send(t, AS_OF - timedelta(days=d + 1), f"me@{t}.example", d + 1)
    code = ("import sys; from pathlib import Path; from pipeline import rollups; "
            "rollups.BATCH_ROWS = 3; rollups.build(Path(sys.argv[1]))")
    killed = subprocess.run([sys.executable, "-c", code, str(build.root)], cwd=ROOT,
                            env={**os.environ, "RELAYWATCH_FAULT_AFTER_WRITES": "9"})
    assert killed.returncode == -signal.SIGKILL
    done = rollups.build(build.root)
    assert 0 < done.partitions < 18
    whole = rollup_files(build.root)
    shutil.rmtree(build.root / rollups.FOLDER)
    assert rollups.build(build.root).partitions == 18
    assert rollup_files(build.root) == whole  # the same bytes as one uninterrupted build
