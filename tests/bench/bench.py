"""relaywatch benchmark: measured figures, side by side with the bare engines, and targets.

Run with `make bench` (not part of `make test`). Every timing is the median of --runs runs
of a whole command (a fresh process, as cron would run it); peak memory is the process's
maximum resident set size. Data comes from `relaywatch generate`. --scale shrinks every
size (0.1 for a quick look); the targets are meant for --scale 1.

Prints a table, then one line per target:
    target NAME: measured X (goal Y) ok|MISS
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench import spark_part  # noqa: E402
from tests.bench.shapes import Shapes  # noqa: E402
PY = sys.executable
RW = [PY, "-m", "pipeline"]
END = date(2026, 11, 27)

BARE_SINK = """
import sys, polars as pl
pl.scan_csv(sys.argv[1], infer_schema=False).sink_parquet(sys.argv[2])
"""
BARE_SCAN = """
import sys, duckdb
duckdb.sql("SET TimeZone = 'UTC'")
duckdb.sql(f"SELECT tenant, date_trunc('hour', received_utc) AS h, count(*) FROM read_parquet("
           f"'{sys.argv[1]}/messages/*/*/*.parquet', hive_partitioning = true) GROUP BY ALL"
           ).fetchall()
"""


@dataclass
class Measure:
    seconds: float
    peak_mb: float


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
        ok: tuple[int, ...] = (0, 3)) -> Measure:
    """One whole process: wall time and peak RSS (from wait4, this child only)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                 **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in ok:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise SystemExit(f"bench: {' '.join(cmd)} exited {code}:\n{err[-3000:]}")
    return Measure(elapsed, usage.ru_maxrss / 1024)


def median_of(runs: int, make: callable) -> Measure:  # type: ignore[valid-type]
    results = [make() for _ in range(runs)]
    return Measure(statistics.median(r.seconds for r in results),
                   max(r.peak_mb for r in results))


def rows_in(lake: Path) -> int:
    import duckdb

    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{lake}/messages/*/*/*.parquet')"
                      ).fetchall()[0][0]


def csv_rows(path: Path) -> int:
    """Records of a generated CSV (one per line, after the header)."""
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 24), b"")) - 1


class Bench:
    def __init__(self, work: Path, scale: float, runs: int) -> None:
        self.work, self.scale, self.runs = work, scale, runs
        self.rows: list[tuple[str, str]] = []
        self.targets: list[tuple[str, float, float, str, bool]] = []

    def n(self, full: int) -> int:
        return max(1000, int(full * self.scale))

    def note(self, name: str, value: str) -> None:
        self.rows.append((name, value))
        print(f"  {name:58s} {value}", file=sys.stderr, flush=True)

    def target(self, name: str, measured: float, goal: float, unit: str) -> None:
        self.targets.append((name, measured, goal, unit, measured <= goal))

    # ---------------------------------------------------------------- data

    def generate_single(self, rows: int, encoding: str) -> Path:
        out = self.work / f"single-{encoding}-{rows}-lines"  # --rows: CSV rows
        path = out / "inbox" / "bigco" / f"historical_search_{encoding}.csv"
        if not path.exists():
            run([*RW, "-q", "generate", "--out", str(out), "--single-file", encoding,
                 "--rows", str(rows)])
        return path

    def daily_inbox(self, days: int, tenants: int, rows_per_day: int) -> list[Path]:
        """One folder per night, each holding that day's exports for every tenant."""
        nights = []
        for i in range(days):
            day = END - timedelta(days=days - 1 - i)
            folder = self.work / "nights" / day.isoformat()
            if not folder.exists():
                run([*RW, "-q", "generate", "--out", str(folder), "--days", "1", "--end",
                     day.isoformat(), "--tenants", str(tenants), "--rows", str(rows_per_day),
                     "--seed", str(i + 1)])
            nights.append(folder / "inbox")
        return nights

    # ---------------------------------------------------------------- targets

    def ingest(self) -> None:
        rows = self.n(5_000_000)
        utf8 = self.generate_single(rows, "utf-8")
        utf16 = self.generate_single(rows, "utf-16-le")
        size = utf8.stat().st_size

        def ours(path: Path) -> Measure:
            lake = self.work / "ingest-lake"
            shutil.rmtree(lake, ignore_errors=True)
            return run([*RW, "-q", "ingest", str(path), "--tenant", "bigco", "--lake", str(lake)])

        def bare() -> Measure:
            out = self.work / "bare.parquet"
            out.unlink(missing_ok=True)
            return run([PY, "-c", BARE_SINK, str(utf8), str(out)])

        b, u8, u16 = (median_of(self.runs, bare), median_of(self.runs, lambda: ours(utf8)),
                      median_of(self.runs, lambda: ours(utf16)))
        got = rows_in(self.work / "ingest-lake")
        self.note(f"single enhanced-summary file: {csv_rows(utf8):,} CSV rows, {size / 1e6:,.0f} "
                  f"MB UTF-8, {got:,} rows in the lake", "")
        self.note("bare Polars scan_csv -> sink_parquet (UTF-8)",
                  f"{b.seconds:7.2f} s  {got / b.seconds / 1e6:5.2f} M rows/s  {b.peak_mb:6.0f} MB")
        self.note("relaywatch ingest (UTF-8)",
                  f"{u8.seconds:7.2f} s  {got / u8.seconds / 1e6:5.2f} M rows/s  {u8.peak_mb:6.0f} MB")
        self.note("relaywatch ingest (UTF-16LE)",
                  f"{u16.seconds:7.2f} s  {got / u16.seconds / 1e6:5.2f} M rows/s  {u16.peak_mb:6.0f} MB")
        self.target("ingest_vs_bare_sink", u8.seconds / b.seconds, 1.6, "x")
        self.target("utf16_ingest_vs_bare_utf8_sink", u16.seconds / b.seconds, 2.0, "x")

    def memory_ingest(self) -> None:
        path = self.generate_single(self.n(10_000_000), "utf-8")
        lake = self.work / "mem-lake"
        shutil.rmtree(lake, ignore_errors=True)
        m = run([*RW, "-q", "ingest", str(path), "--tenant", "bigco", "--lake", str(lake)])
        self.note(f"relaywatch ingest, {csv_rows(path):,}-row file ({rows_in(lake):,} in lake)",
                  f"{m.seconds:7.2f} s  peak {m.peak_mb:,.0f} MB")
        self.target("ingest_10m_rows_peak_rss", m.peak_mb / 1024, 2.0, "GiB")

    def nightly_and_detect(self) -> None:
        days, tenants = 31, max(10, int(200 * min(1.0, self.scale * 2)))
        nights = self.daily_inbox(days, tenants, self.n(10_000_000) // 28)
        lake, reports = self.work / "nightly-lake", self.work / "nightly-reports"
        inbox = self.work / "nightly-inbox"
        state = [lake, inbox, reports]

        def arrive(i: int) -> None:  # night i's exports land in the inbox
            night = nights[i]
            for f in night.rglob("*"):
                if f.is_file():
                    target = inbox / f.parent.name / f"{night.parent.name}-{f.name}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, target)

        def nightly(i: int) -> Measure:
            as_of = (END - timedelta(days=days - 2 - i)).isoformat()
            return run([*RW, "-q", "nightly", "--inbox", str(inbox), "--lake", str(lake),
                        "--reports", str(reports), "--as-of", as_of, "--no-email"])

        def restore(saved: Path | None) -> None:  # copy2 keeps mtimes, as a real lake has
            for where in state:
                shutil.rmtree(where, ignore_errors=True)
                if saved is not None:
                    shutil.copytree(saved / where.name, where, copy_function=shutil.copy2)

        def first() -> Measure:  # the first night, on an empty lake every run
            restore(None)
            arrive(0)
            os.sync()  # the setup's copies are written out before the clock starts
            return nightly(0)

        first_night = median_of(self.runs, first)
        for i in range(1, days - 1):
            arrive(i)
            m = nightly(i)
            print(f"    night {i + 1:2d}: {m.seconds:6.2f} s", file=sys.stderr, flush=True)
        saved = self.work / "nightly-30"
        shutil.rmtree(saved, ignore_errors=True)
        for where in state:
            shutil.copytree(where, saved / where.name, copy_function=shutil.copy2)

        def last() -> Measure:  # the 31st night, from the same 30 nights every run
            restore(saved)
            arrive(days - 1)
            # else the night's own fsyncs wait for the restored lake's copy to be written
            # out: replays took 8.6-11.5 s (2.5-5.2 s system time) without this, 7.9-8.2 s
            # (2.0-2.4 s) with it; no real night starts right after a copy of its lake
            os.sync()
            return nightly(days - 1)

        last_night = median_of(self.runs, last)
        self.note(f"nightly, first night ({tenants} tenants, one day)",
                  f"{first_night.seconds:7.2f} s  peak {first_night.peak_mb:,.0f} MB")
        self.note("nightly, 31st night (30 nights of history, one new day)",
                  f"{last_night.seconds:7.2f} s  peak {last_night.peak_mb:,.0f} MB")
        self.target("nightly_31st_vs_first", last_night.seconds / first_night.seconds, 1.3, "x")
        self.detect(lake, tenants)

    def detect(self, lake: Path, tenants: int) -> None:
        total = rows_in(lake)
        as_of = (END + timedelta(days=1)).isoformat()
        bare = median_of(self.runs, lambda: run([PY, "-c", BARE_SCAN, str(lake)]))
        ours = median_of(self.runs, lambda: run([*RW, "-q", "detect", "--lake", str(lake),
                                                 "--as-of", as_of]))
        self.note(f"lake: {total:,} rows, {tenants} tenants, 31 days", "")
        self.note("bare DuckDB grouped scan (tenant, hour)", f"{bare.seconds:7.2f} s")
        self.note("relaywatch detect", f"{ours.seconds:7.2f} s  peak {ours.peak_mb:,.0f} MB")
        self.target("detect_vs_bare_scan", ours.seconds / bare.seconds, 10.0, "x")
        big = self.work / "lake-x5"
        shutil.rmtree(big, ignore_errors=True)
        shutil.copytree(lake, big)
        for copy in range(1, 5):  # the same days under other tenant names: 5x the rows
            for part in (lake / "messages").glob("tenant=*"):
                shutil.copytree(part, big / "messages" / f"{part.name}-c{copy}")
        m = run([*RW, "-q", "detect", "--lake", str(big), "--as-of", as_of])
        self.note(f"relaywatch detect over {rows_in(big):,} rows",
                  f"{m.seconds:7.2f} s  peak {m.peak_mb:,.0f} MB")
        self.target("detect_5x_lake_peak_rss", m.peak_mb / 1024, 2.0, "GiB")
        self.report(lake, as_of)

    def report(self, lake: Path, as_of: str) -> None:
        wide = self.work / "lake-500"
        shutil.rmtree(wide, ignore_errors=True)
        shutil.copytree(lake, wide)
        parts = sorted((lake / "messages").glob("tenant=*"))
        copy = 0
        while len(list((wide / "messages").glob("tenant=*"))) < 500:
            copy += 1
            for part in parts:
                if len(list((wide / "messages").glob("tenant=*"))) >= 500:
                    break
                shutil.copytree(part, wide / "messages" / f"{part.name}-r{copy}")
        run([*RW, "-q", "detect", "--lake", str(wide), "--as-of", as_of])
        out = self.work / "report-out"
        m = median_of(self.runs, lambda: run([*RW, "-q", "report", "--lake", str(wide),
                                              "--out", str(out), "--as-of", as_of]))
        pages = list((out / as_of / "tenants").glob("*.html"))
        biggest = max(p.stat().st_size for p in pages)
        self.note(f"relaywatch report, {len(pages)} tenants", f"{m.seconds:7.2f} s")
        self.note("largest tenant page", f"{biggest / 1024:7.0f} KB")
        self.target("report_500_tenants_seconds", m.seconds, 5.0, "s")
        self.target("tenant_html_kb", biggest / 1024, 300.0, "KB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", 1)))
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 3)))
    ap.add_argument("--work", type=Path, help="Keep data here between runs (default: temp)")
    ap.add_argument("--only", default="ingest,memory,nightly,shapes,spark",
                    help="Comma-separated parts to run: ingest, memory, nightly (nightly also "
                         "times detect and report on the lake it builds), shapes (every "
                         "export shape against its bare engine: tests/bench/shapes.py), spark "
                         "(the MSP night on a local Spark cluster: tests/bench/spark_part.py)")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    if unknown := parts - {"ingest", "memory", "nightly", "shapes", "spark"}:
        ap.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}")
    work = args.work or Path(tempfile.mkdtemp(prefix="relaywatch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(work, args.scale, args.runs)
    print(f"relaywatch bench: scale {args.scale}, median of {args.runs} runs, data in {work}",
          file=sys.stderr)
    started = time.perf_counter()
    shapes = Shapes(bench, run, median_of, RW, PY)
    for part, measure in (("ingest", bench.ingest), ("memory", bench.memory_ingest),
                          ("nightly", bench.nightly_and_detect), ("shapes", shapes.all),
                          ("spark", lambda: spark_part.measure(shapes))):
        if part in parts:
            measure()
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}, scale {args.scale}, median of {args.runs}; "
          f"{time.perf_counter() - started:,.0f} s in all")
    print(f"{'measure':60s} value")
    for name, value in bench.rows:
        print(f"{name:60s} {value}")
    print()
    for name, measured, goal, unit, ok in bench.targets:
        print(f"target {name}: measured {measured:.2f} {unit} (goal {goal:g} {unit}) "
              f"{'ok' if ok else 'MISS'}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
