"""Check every file of a lake, and put the ones that cannot be read aside.

A damaged Parquet file (a disk error, a copy cut short, a hand edit) would otherwise fail
every query that reads its table, for every tenant. Each one found is moved, never deleted,
to `<lake>/quarantine/` with a `.reason` beside it, and the raw exports that can rebuild it
are marked `restore` in the manifest, so the next ingest reads them again (ingestion is
idempotent: rows already there are not added twice). Results of detect (findings, verdicts)
are rebuilt by the next detect; the rollups by the next ingest or detect.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from pipeline import rollups
from pipeline.lake import MANIFEST, QUARANTINE, TMP_PREFIX, Lake

log = logging.getLogger("relaywatch")


@dataclass(frozen=True)
class Problem:
    path: Path  # relative to the lake
    reason: str
    kept: Path  # where it was moved (relative to the lake)
    remedy: str


def unreadable(path: Path) -> str | None:
    """Why a Parquet file cannot be read (its footer and schema), or None."""
    try:
        meta = pq.ParquetFile(path).metadata
        if meta.num_columns == 0:
            return "no columns"
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same: unreadable
        return str(exc).strip().splitlines()[0][:200] or type(exc).__name__
    return None


def _files(lake: Lake) -> list[Path]:
    out = []
    for folder, dirs, names in os.walk(lake.root):
        dirs[:] = sorted(d for d in dirs if d not in (QUARANTINE, ".cache")
                         and not d.startswith("."))
        out += [Path(folder) / n for n in sorted(names)
                if n.endswith(".parquet") and not n.startswith(TMP_PREFIX)]
    return out


def check(lake: Lake, repair: bool = True) -> list[Problem]:
    """Every Parquet file of the lake read back (the caller holds the lake lock when
    `repair`); with `repair`, each unreadable one is quarantined and its sources marked."""
    problems = []
    for path in _files(lake):
        why = unreadable(path)
        if why is None:
            continue
        rel = path.relative_to(lake.root)
        kept = lake.quarantine(path, f"unreadable Parquet ({why})") if repair else rel
        problems.append(Problem(rel, why, kept, _remedy(lake, rel, repair)))
    if repair and any(p.path.parts[0] in ("messages", rollups.FOLDER) for p in problems):
        # derived from the message partitions: the next ingest or detect builds them again
        (lake.root / rollups.FOLDER / rollups.STATE).unlink(missing_ok=True)
    if repair:
        shutil.rmtree(lake.root / ".cache", ignore_errors=True)  # an older version's cache
    return problems


def _remedy(lake: Lake, rel: Path, repair: bool) -> str:
    """What rebuilds the file, and (with `repair`) the manifest marked so that it happens."""
    table = rel.parts[0]
    if rel.as_posix() == MANIFEST:
        return "the manifest is rebuilt as every inbox file is read again by the next ingest"
    if table == rollups.FOLDER:
        return "derived from the message rows: built again by the next ingest or detect"
    key = dict(p.split("=", 1) for p in rel.parts[1:-1] if "=" in p)
    if table == "messages" and "tenant" in key and "date" in key:
        hit = ((pl.col("tenant") == key["tenant"])
               & (pl.col("first_event_utc").dt.date() <= date.fromisoformat(key["date"]))
               & (pl.col("last_event_utc").dt.date() >= date.fromisoformat(key["date"])))
    elif "tenant" in key:
        hit = (pl.col("tenant") == key["tenant"]) & pl.col("source_sha256").str.starts_with(
            rel.stem)
    else:
        return "rebuilt by the next detect run"
    n = lake.restore(hit) if repair else 0
    return (f"{n} raw export(s) that held its rows are read again by the next ingest"
            if repair else "run `relaywatch doctor --repair` to quarantine it and rebuild it")
