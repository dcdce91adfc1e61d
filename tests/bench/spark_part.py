"""`make bench`'s spark part: the MSP night of tests/bench/shapes.py (tenant folders x 4 small
files) ingested with --engine spark on a standalone cluster on this machine (a master and a
worker of every core, tests/spark/cluster.py) beside --engine duckdb, on fresh lakes, median
of --runs. Prints rows per second per executor core, which is what sizes a cluster: an
operator divides a night's rows by it and by the hours the night may take. Needs the
[spark] extra and Java 17 (make test-spark installs the extra)."""

from __future__ import annotations

import os
import shutil
from typing import Any


def measure(shapes: Any) -> None:
    from tests.spark.cluster import standalone

    b = shapes.b
    tenants = max(20, int(2000 * b.scale))
    night = shapes.input("msp_night", f"msp-night-{tenants}-00", tenants, 0)
    cores = os.cpu_count() or 2
    lake = shapes.dir / "spark-lake"

    def ingest(*engine: str) -> Any:
        shutil.rmtree(lake, ignore_errors=True)
        return shapes.run([*shapes.rw, "-q", "ingest", str(night), "--lake", str(lake),
                           *engine])

    local = shapes.median_of(b.runs, lambda: ingest("--engine", "duckdb"))
    rows = _rows(lake)
    with standalone(shapes.dir / "spark-cluster", cores=cores, memory="4g") as cluster:
        spark = shapes.median_of(b.runs, lambda: ingest("--engine", "spark",
                                                         "--spark-master", cluster.url))
    assert _rows(lake) == rows
    b.note(f"spark msp_night: {tenants:,} tenants x 4 files, {rows:,} rows",
           f"duckdb {local.seconds:6.2f} s | spark ({cores} executor cores) "
           f"{spark.seconds:6.2f} s | {spark.seconds / local.seconds:4.2f}x")
    b.note("spark rows/s per executor core (the whole ingest, start-up included)",
           f"{rows / spark.seconds / cores:,.0f}")


def _rows(lake: Any) -> int:
    import duckdb

    return int(duckdb.sql(f"SELECT count(*) FROM read_parquet('{lake}/messages/*/*/*.parquet')"
                          ).fetchall()[0][0])
