"""`relaywatch compare LAKE OTHER`: whether two lakes hold the same data, file by file — what
an operator runs to check a Spark cluster's lake against a local run over the same inbox.

Every Parquet file is compared by its bytes (relaywatch writes the same rows as the same
bytes, whichever engine ran it), except two whose content is the same but whose bytes say
when: the manifest (its rows are compared without when and how long a file took) and the
rollups' build record (it holds the message files' modification times)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline import rollups
from pipeline.lake import MANIFEST, TMP_PREFIX

TIMING = ["ingested_utc", "seconds", "file_mtime_ns"]  # the manifest's when, not what
SKIPPED = {MANIFEST, f"{rollups.FOLDER}/{rollups.STATE}"}


@dataclass
class Difference:
    only_here: list[str] = field(default_factory=list)
    only_there: list[str] = field(default_factory=list)
    differ: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (self.only_here or self.only_there or self.differ)


def compare(lake: Path, other: Path) -> Difference:
    mine, theirs = _digests(lake), _digests(other)
    out = Difference(sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine)),
                     sorted(f for f in set(mine) & set(theirs) if mine[f] != theirs[f]))
    here, there = _manifest(lake), _manifest(other)
    if not (here is None and there is None) and (
            here is None or there is None or not here.equals(there)):
        out.differ.append(f"{MANIFEST} (its rows, without when each file was read)")
    return out


def _digests(lake: Path) -> dict[str, str]:
    out = {}
    for path in sorted(lake.rglob("*.parquet")):
        rel = path.relative_to(lake).as_posix()
        if rel in SKIPPED or path.name.startswith(TMP_PREFIX) or rel.startswith("quarantine/"):
            continue
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _manifest(lake: Path) -> pl.DataFrame | None:
    path = lake / MANIFEST
    if not path.is_file():
        return None
    m = pl.read_parquet(path)
    return m.drop([c for c in TIMING if c in m.columns]).sort(
        "tenant", "source_file", "source_sha256")
