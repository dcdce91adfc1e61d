"""Graph's exchangeMessageTraceDetail (issue 18): records that name a message by its
Message-ID only, joined to the message's trace rows like Get-MessageTraceDetail's, whether
the detail comes before, with or a night after the trace; alone, kept, never rejected."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from pipeline import exports
from pipeline.ingest import ingest
from pipeline.settings import Settings
from tests.conftest import AS_OF

ORG = "fabrikam.onmicrosoft.com"


def _trace(rng: random.Random) -> list[dict]:
    """A day of a tenant's outbound Graph trace rows, drawn: 1-4 recipients a message."""
    rows = []
    for n in range(rng.randint(20, 60)):
        nid = f"{rng.randrange(16**8):08x}-0000-4000-8000-{n:012d}"
        when = AS_OF - timedelta(hours=rng.uniform(2, 20))
        status = rng.choice(["delivered", "delivered", "failed", "filtered_as_spam"])
        for k in range(rng.randint(1, 4)):
            rows.append({"received_utc": when, "sender_address": "a@fabrikam.com",
                         "recipient_address": f"r{n}-{k}@ext{k}.example", "status": status,
                         "network_message_id": nid, "message_id": f"<{nid}@fabrikam.com>",
                         "subject": "s", "size_bytes": 1000, "client_ip": "203.0.113.5",
                         "ndr": "550 5.7.750 Service unavailable. Client blocked from sending "
                                "from unregistered domains" if status == "failed" else None})
    return sorted(rows, key=lambda r: r["received_utc"])


def _messages(lake: Path) -> list[tuple]:
    return duckdb.sql(
        f"SELECT recipient_address, ndr_code, spam_verdict, status::VARCHAR FROM read_parquet("
        f"'{lake}/messages/*/*/*.parquet') ORDER BY recipient_address NULLS FIRST").fetchall()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("order", ["together", "detail first", "trace first"])
def test_detail_records_join_their_trace_rows_in_any_order(tmp_path: Path, seed: int,
                                                           order: str) -> None:
    rng = random.Random(seed)
    rows = _trace(rng)
    first = {r["network_message_id"]: r for r in rows}.values()  # one recipient each
    trace_dir, detail_dir = tmp_path / "a" / "fabrikam", tmp_path / "b" / "fabrikam"
    exports.message_trace_json(trace_dir / "trace.json", rows, ORG, "graph")
    exports.graph_trace_detail_json(detail_dir / "details.json", exports.detail_events(first))
    s = Settings(lake=tmp_path / "lake")
    if order == "together":
        (trace_dir / "details.json").write_bytes((detail_dir / "details.json").read_bytes())
        ingest([trace_dir.parent], s)
    else:
        for folder in ([detail_dir, trace_dir] if order == "detail first"
                       else [trace_dir, detail_dir]):
            ingest([folder.parent], s)
    got = _messages(s.lake)
    # every recipient row once (the detail adds no row), each with its message's NDR code
    assert len(got) == len(rows)
    want_ndr = {r["recipient_address"]: "5.7.750" if r["status"] == "failed" else None
                for r in rows}
    assert {r: ndr for r, ndr, _, _ in got} == want_ndr
    spam = {r["recipient_address"] for r in rows if r["status"] == "filtered_as_spam"}
    assert {r for r, _, verdict, _ in got if verdict} == spam
    log = duckdb.sql(f"SELECT source_format, rows, rejected_rows FROM read_parquet("
                     f"'{s.lake}/ingest_log/*.parquet') WHERE source_format LIKE '%detail%'")
    assert log.fetchall() == [("graph_message_trace_detail_json", len(first), 0)]


def test_a_detail_without_its_trace_is_kept_per_message(tmp_path: Path) -> None:
    rows = _trace(random.Random(9))
    first = list({r["network_message_id"]: r for r in rows}.values())
    exports.graph_trace_detail_json(tmp_path / "in" / "fabrikam" / "details.json",
                                    exports.detail_events(first))
    s = Settings(lake=tmp_path / "lake")
    ingest([tmp_path / "in"], s)
    got = _messages(s.lake)
    assert len(got) == len(first) and all(r is None for r, _, _, _ in got)
    assert sorted(ndr or "" for _, ndr, _, _ in got) == sorted(
        "5.7.750" if r["status"] == "failed" else "" for r in first)
