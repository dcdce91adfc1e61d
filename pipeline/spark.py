"""`--engine spark`: ingest and the rollups on an Apache Spark cluster; detection, verdicts and
the report then run locally in DuckDB over the rollups (pyspark from the `[spark]` extra).

What runs where:
- the driver (this process) finds the inbox files, holds the lake lock, clears the staging
  folder, and, once every task has ended, records the manifest: a file is in it only when
  all of its rows are in the lake, as in a local run;
- one Spark task per tenant runs relaywatch's own ingest (pipeline.ingest.Ingestor) over
  that tenant's files in the local order: the same parsers, the same own-domain context,
  the same partition writer and merge, so the partitions are the bytes a local run writes
  (tests compare them). Tenants' partitions are disjoint, so tasks never share a file;
- the rollups' stale partitions are built by Spark tasks too, a step each
  (pipeline.rollups.roll_alone), and the driver records them after the last.

A task that dies (an executor lost) is run again by Spark: ingestion is idempotent (rows
already in a partition are merged, not added twice; per-file tables are keyed by their
bytes' hash). A driver that dies leaves no manifest rows for its files, so the next run
reads them again and completes the lake. Importing this module does not import pyspark.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from pipeline import faults, rollups
from pipeline.errors import ConfigError
from pipeline.inbox import InputFile
from pipeline.ingest import Ingestor, inputs
from pipeline.lake import STAGING, Lake
from pipeline.manifest import FileResult, IngestReport, manifest_rows
from pipeline.settings import Settings

log = logging.getLogger("relaywatch")

@contextmanager
def session(settings: Settings) -> Iterator[Any]:
    """A SparkSession for `settings` (spark_master, else what spark-submit gave, else
    local[*]); stopped at the end unless it was there before (a notebook's, spark-submit's
    application keeps its own)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("--engine spark needs pyspark: pip install 'relaywatch[spark]' "
                          "(and Java 17)") from None
    existing = SparkSession.getActiveSession()
    builder = SparkSession.builder.appName("relaywatch")
    if settings.spark_master:
        builder = builder.master(settings.spark_master)
    elif existing is None and "PYSPARK_GATEWAY_PORT" not in os.environ:  # not spark-submit
        builder = builder.master("local[*]")
    # the executors run this Python (the same relaywatch) unless told otherwise: pyspark
    # reads PYSPARK_PYTHON when it makes the context, spark-submit the configuration
    python = os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (builder.config("spark.pyspark.python", python)
               .config("spark.executor.memory", settings.spark_executor_memory)
               .config("spark.ui.showConsoleProgress", "false"))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        if existing is None:
            spark.stop()


def ingest(paths: Iterable[Path], settings: Settings, tenant: str | None = None,
           rehash: bool = False) -> IngestReport:
    """`relaywatch ingest --engine spark`: the local ingest's checks and results, its work
    done by Spark tasks, one per tenant."""
    items = inputs(paths, settings, tenant)
    lake = Lake(settings.lake)
    groups: dict[str, list[InputFile]] = {}
    for item in items:
        groups.setdefault(item.tenant, []).append(item)
    # the largest tenants first: the last task to end is a small one
    tasks = sorted(groups.items(), key=lambda g: -sum(_size(i) for i in g[1]))
    with lake.locked(), session(settings) as spark:
        shutil.rmtree(lake.root / STAGING, ignore_errors=True)  # a killed run's parts
        sc = spark.sparkContext
        log.info("ingest: %d files of %d tenants as Spark tasks on %s", len(items),
                 len(tasks), sc.master)
        got = (sc.parallelize(tasks, numSlices=max(1, len(tasks)))
               .map(partial(_tenant_task, settings, rehash)).collect()) if tasks else []
        # no task runs now: a temporary file is one an executor that died was writing
        lake.sweep_temporaries()
        report = IngestReport()
        finished: list[FileResult] = []
        for files, done in got:
            report.files += files
            finished += done
        lake.record(manifest_rows(finished))  # after every partition is written
        if report.count("ingested"):
            rollups.build(settings.lake, elsewhere=partial(_roll_on, sc))
            lake.sweep_temporaries()
    return report


def _tenant_task(settings: Settings, rehash: bool, group: tuple[str, list[InputFile]]
                 ) -> tuple[list[FileResult], list[FileResult]]:
    """A Spark task: one tenant's files ingested as a local run would, its manifest rows
    returned to the driver instead of recorded."""
    _, items = group
    faults.task_point()
    finished: list[FileResult] = []
    ingestor = Ingestor(Lake(settings.lake), settings, record=finished.extend)
    report = ingestor.run(items, rehash, clear_staging=False)
    return [_sent(f) for f in report.files], [_sent(f) for f in finished]


def _sent(res: FileResult) -> FileResult:
    res.resolve_sha()  # a hash still running cannot cross to the driver
    return replace(res, hashing=None)


def _roll_on(sc: Any, lake: Path, batches: list[list[rollups.Key]]) -> list[tuple[int, int]]:
    return sc.parallelize(batches, numSlices=len(batches)).map(
        partial(rollups.roll_alone, lake)).collect()


def _size(item: InputFile) -> int:
    try:
        return item.path.stat().st_size
    except OSError:
        return 0
