"""Ingest on every shape of export (issue 20), each side by side with the bare engine
reading the same bytes: `make bench BENCH_ARGS="--only shapes"`.

Shapes (sizes at --scale 1):
  1 summary_1rcpt   enhanced summary, one recipient a row, unique ids (2 M rows)
  2 summary_mass    enhanced summary, 20-50 recipients a row, a mass mailing (150 k rows)
  3 trace_ps51      Get-MessageTrace | Export-Csv, PowerShell 5.1 (#TYPE, every field
                    quoted, en-US dates), one row a recipient (1 M rows)
  4 trace_ndjson    ConvertTo-Json -Compress per row (PowerShell 7), and trace_json: the
                    same rows as one JSON array (1 M rows)
  5 extended_utf16  extended report, UTF-16LE, event rows (1 M events)
  6 msgtrk          on-premises MSGTRK logs, RECEIVE + SEND per message, hourly files
                    (1 M events)
  7 msp_night       2,000 tenant folders x 4 small files (trace, accepted domains,
                    connectors, audit), ~100 rows each
  8 msp_night_31    the 31st such night against the first (the lake holds 30)
Bare baselines: Polars scan_csv(infer_schema=False) / scan_ndjson -> (split and explode
the recipient list) -> sink_parquet; UTF-16 after a plain transcode; MSGTRK with '#' lines
skipped; (7) one DuckDB read_csv over every file (union_by_name, all_varchar) -> Parquet.
Targets: ingest <= 1.6x the bare engine on 1-7, night 31 <= 1.3x night 1, peak <= 2 GiB.
"""

from __future__ import annotations

import random
import shutil
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pipeline import exports

START = datetime(2026, 11, 1, tzinfo=timezone.utc)

BARE_CSV = """
import sys, polars as pl
src, out, explode, sep = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
lf = pl.scan_csv(src, infer_schema=False, comment_prefix=sep or None, has_header=not sep)
if explode:
    lf = lf.with_columns(pl.col(explode).str.split(";")).explode(explode)
lf.sink_parquet(out)
"""
BARE_UTF16 = """
import sys, polars as pl
src, out, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
with open(src, encoding="utf-16-le") as f, open(tmp, "w", encoding="utf-8") as g:
    while block := f.read(1 << 24):
        g.write(block)
pl.scan_csv(tmp, infer_schema=False).sink_parquet(out)
"""
BARE_NDJSON = """
import sys, polars as pl
pl.scan_ndjson(sys.argv[1], infer_schema_length=None).sink_parquet(sys.argv[2])
"""
BARE_JSON = """
import sys, polars as pl
pl.read_json(sys.argv[1], infer_schema_length=None).write_parquet(sys.argv[2])
"""
BARE_DUCKDB = """
import sys, glob, duckdb
files = sorted(glob.glob(sys.argv[1] + "/*/*.csv"))
duckdb.sql(f"COPY (SELECT * FROM read_csv({files!r}, union_by_name = true, all_varchar = true, "
           f"comment = '#', header = true)) TO '{sys.argv[2]}' (FORMAT parquet)")
"""


def rows(n: int, rng: random.Random, recipients: Callable[[], int], days: int = 5,
         domain: str = "bigco.com") -> Iterator[dict[str, Any]]:
    """n messages' recipient rows over `days`, in time order, unique network message ids."""
    step = days * 86400 / max(1, n)
    for i in range(n):
        nid = f"{i:08x}-{rng.randrange(16**4):04x}-4000-8000-{rng.randrange(16**12):012x}"
        when = START + timedelta(seconds=i * step)
        sender = f"u{rng.randrange(500)}@{domain}"
        for k in range(recipients()):
            yield {"received_utc": when, "sender_address": sender,
                   "recipient_address": f"c{rng.randrange(10**6)}@d{rng.randrange(5000)}.example",
                   "status": "delivered", "network_message_id": nid,
                   "message_id": f"<{nid}@{domain}>", "subject": f"Subject {i % 977}",
                   "size_bytes": 2000 + k, "client_ip": "203.0.113.5", "direction": "outbound"}


def chunks(it: Iterator[dict[str, Any]], size: int = 100_000) -> Iterator[list[dict[str, Any]]]:
    """Rows in lists of about `size`, cut between messages (a message's recipients stay in
    one list: the summary report writes a message a line)."""
    chunk: list[dict[str, Any]] = []
    for r in it:
        if len(chunk) >= size and r["network_message_id"] != chunk[-1]["network_message_id"]:
            yield chunk
            chunk = []
        chunk.append(r)
    if chunk:
        yield chunk


ORG = "bigco.onmicrosoft.com"


def _trace(n: int, seed: int) -> list[dict[str, Any]]:
    return list(rows(n, random.Random(seed), lambda: 1))


def _msgtrk(folder: Path, n: int, seed: int) -> None:
    events = exports.tracking_events(_trace(n, seed), "EXCH01")
    by_hour: dict[datetime, list[dict[str, Any]]] = {}
    for e in events:
        by_hour.setdefault(e["time"].replace(minute=0, second=0, microsecond=0), []).append(e)
    for hour, evs in by_hour.items():
        exports.tracking_log(folder / f"MSGTRK{hour:%Y%m%d%H}-1.LOG", evs)


def _mass(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    exports.historical_summary_stream(path, chunks(rows(n, rng, lambda: rng.randint(20, 50))),
                                      "utf-8")


# name -> writer(path, n, seed): run in a child process (`python -m tests.bench.shapes`),
# so that the bench's own memory never counts in a measured command's peak (a forked
# child's maximum resident set starts from its parent's)
WRITERS: dict[str, Callable[[Path, int, int], None]] = {
    "summary_1rcpt": lambda p, n, seed: exports.historical_summary_stream(
        p, chunks(rows(n, random.Random(seed), lambda: 1)), "utf-8"),
    "summary_mass": _mass,
    "trace_ps51": lambda p, n, seed: exports.message_trace_csv(p, _trace(n, seed), ORG,
                                                               "ps51", "us"),
    "trace_ndjson": lambda p, n, seed: exports.message_trace_json(p, _trace(n, seed), ORG,
                                                                  "ndjson"),
    "trace_json": lambda p, n, seed: exports.message_trace_json(p, _trace(n, seed), ORG, "ps7"),
    "extended_utf16": lambda p, n, seed: exports.historical_extended(p, _trace(n, seed),
                                                                     "utf-16-le"),
    "msgtrk": _msgtrk,
    "msp_night": lambda p, n, seed: night(p, n, seed),
}


def night(inbox: Path, tenants: int, day: int) -> None:
    """One MSP night (day `day`): every tenant's trace, accepted domains, connectors and
    audit events, ~100 rows each."""
    rng = random.Random(day)
    when = START + timedelta(days=day)
    for t in range(tenants):
        slug = f"t{t:04d}"
        d = inbox / slug
        own = f"{slug}.example"
        trace = [{**r, "received_utc": when + (r["received_utc"] - START)}
                 for r in rows(100, rng, lambda: 1, days=1, domain=own)]
        exports.message_trace_csv(d / "trace.csv", trace, f"{slug}.onmicrosoft.com", "ps7",
                                  "iso")
        exports.accepted_domains_csv(d / "accepted_domains.csv", [
            {"domain_name": own, "when_created_utc": START - timedelta(days=400)}])
        exports.inbound_connectors_csv(d / "inbound_connectors.csv", [
            {"name": f"Hybrid {slug}", "connector_type": "OnPremises", "sender_domains": ["*"],
             "sender_ip_addresses": ["203.0.113.5"],
             "when_created_utc": START - timedelta(days=300),
             "when_changed_utc": START - timedelta(days=300)}])
        exports.purview_audit_csv(d / "audit.csv", [
            {"record_id": f"{slug}-{day}-{k}", "creation_utc": when + timedelta(minutes=k),
             "operation": "Set-Mailbox", "user_id": f"admin@{own}", "client_ip": "198.51.100.7",
             "object_id": f"u{k}", "parameters": {"Identity": f"u{k}"}} for k in range(100)],
            f"{slug}.onmicrosoft.com")


class Shapes:
    def __init__(self, bench: Any, run: Callable[..., Any], median_of: Callable[..., Any],
                 rw: list[str], py: str) -> None:
        self.b, self.run, self.median_of, self.rw, self.py = bench, run, median_of, rw, py
        self.dir = bench.work / "shapes"

    def n(self, full: int) -> int:
        return max(200, int(full * self.b.scale))

    def input(self, name: str, target: str, n: int, seed: int = 20) -> Path:
        """The input of a shape, written once (by a child process) and kept in --work."""
        path = self.dir / "inputs" / target
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            shutil.rmtree(tmp, ignore_errors=True)
            self.run([self.py, "-m", "tests.bench.shapes", name, str(tmp), str(n), str(seed)])
            tmp.rename(path)
        return path

    def compare(self, name: str, target: Path, bare: list[str], rows_desc: str,
                tenant: str | None = "bigco") -> None:
        """relaywatch ingest of `target` against the bare command, medians of --runs."""
        lake, out = self.dir / f"{name}-lake", self.dir / f"{name}-bare.parquet"

        def ours() -> Any:
            shutil.rmtree(lake, ignore_errors=True)
            return self.run([*self.rw, "-q", "ingest", str(target), "--lake", str(lake),
                             *(["--tenant", tenant] if tenant else [])])

        def theirs() -> Any:
            out.unlink(missing_ok=True)
            return self.run([self.py, "-c", *bare])

        b, o = self.median_of(self.b.runs, theirs), self.median_of(self.b.runs, ours)
        self.b.note(f"shape {name}: {rows_desc}",
                    f"ours {o.seconds:6.2f} s {o.peak_mb:5.0f} MB | bare {b.seconds:6.2f} s "
                    f"{b.peak_mb:5.0f} MB | {o.seconds / b.seconds:4.2f}x")
        self.b.target(f"shape_{name}_vs_bare", o.seconds / b.seconds, 1.6, "x")
        self.b.target(f"shape_{name}_peak_rss", o.peak_mb / 1024, 2.0, "GiB")

    def all(self) -> None:
        out = str(self.dir / "out.parquet")
        for name, target, full, bare, desc in (
                ("summary_1rcpt", "summary_1rcpt.csv", 2_000_000,
                 [BARE_CSV, "{p}", out, "recipient_status", ""], "{n:,} rows"),
                ("summary_mass", "summary_mass.csv", 150_000,
                 [BARE_CSV, "{p}", out, "recipient_status", ""], "{n:,} rows x 20-50 recipients"),
                ("trace_ps51", "trace_ps51.csv", 1_000_000, [BARE_CSV, "{p}", out, "", "#"],
                 "{n:,} rows"),
                ("trace_ndjson", "trace.ndjson", 1_000_000, [BARE_NDJSON, "{p}", out],
                 "{n:,} rows"),
                ("trace_json", "trace.json", 1_000_000, [BARE_JSON, "{p}", out], "{n:,} rows"),
                ("extended_utf16", "extended_utf16.csv", 500_000,
                 [BARE_UTF16, "{p}", out, str(self.dir / "transcoded.csv")],
                 "{n:,} messages, 2 events each"),
                ("msgtrk", "msgtrk", 500_000, [BARE_CSV, "{p}/*.LOG", out, "", "#"],
                 "{n:,} messages, 2 events each, hourly files")):
            n = self.n(full)
            p = self.input(name, target, n)
            self.compare(name, p, [a.replace("{p}", str(p)) for a in bare], desc.format(n=n))
        self.msp()

    def msp(self) -> None:
        tenants = max(20, int(2000 * self.b.scale))
        first = self.input("msp_night", f"msp-night-{tenants}-00", tenants, 0)
        self.compare("msp_night", first, [BARE_DUCKDB, str(first), str(self.dir / "msp.parquet")],
                     f"{tenants:,} tenants x 4 files x ~100 rows", tenant=None)
        # the 31st night: a lake holding the first 30 (nights 2-30 ingested in one go:
        # the same partitions and manifest as night by night), then night 31, from a copy
        lake30 = self.dir / f"msp-lake-30-{tenants}"
        if not lake30.exists():
            nights = [self.input("msp_night", f"msp-night-{tenants}-{d:02d}", tenants, d)
                      for d in range(30)]
            self.run([*self.rw, "-q", "ingest", *map(str, nights), "--lake", str(lake30)])
        last = self.input("msp_night", f"msp-night-{tenants}-30", tenants, 30)
        lake = self.dir / "msp-lake-31"

        def night31() -> Any:
            shutil.rmtree(lake, ignore_errors=True)
            shutil.copytree(lake30, lake)
            return self.run([*self.rw, "-q", "ingest", str(last), "--lake", str(lake)])

        def night1() -> Any:
            shutil.rmtree(lake, ignore_errors=True)
            return self.run([*self.rw, "-q", "ingest", str(first), "--lake", str(lake)])

        one, late = self.median_of(self.b.runs, night1), self.median_of(self.b.runs, night31)
        self.b.note("shape msp_night_31: the 31st night against the first",
                    f"{late.seconds:6.2f} s vs {one.seconds:6.2f} s | "
                    f"{late.seconds / one.seconds:4.2f}x, peak {late.peak_mb:5.0f} MB")
        self.b.target("shape_msp_night_31st_vs_first", late.seconds / one.seconds, 1.3, "x")


if __name__ == "__main__":  # python -m tests.bench.shapes NAME PATH N SEED: write one input
    name, path, n, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    WRITERS[name](path, n, seed)
