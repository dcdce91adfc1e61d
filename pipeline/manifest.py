"""What an ingest run records per file: its result (hash, format, rows, status), the
manifest rows (`ingest_log`) made of them, and the file hash they are keyed by."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from pipeline import schema
from pipeline.visible import visible

# Hashing reads this much at a time: the hash thread takes the interpreter lock once per
# block, and the UTF-16 decoding holds it for tens of ms at a time (UTF-16 ingest 1.4%
# faster than with 256 KB blocks).
HASH_BLOCK = 8 * 2**20


def file_sha256(path: Path) -> tuple[str, int]:
    """SHA-256 and size of the file's bytes (read into one reused buffer)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(min(HASH_BLOCK, os.fstat(fh.fileno()).st_size + 1))
        view = memoryview(buf)
        while n := fh.readinto(buf):
            digest.update(view[:n])  # without the interpreter lock
            size += n
    return digest.hexdigest(), size


@dataclass
class FileResult:
    display: str
    tenant: str
    sha256: str = ""
    size: int = 0
    format: str = ""
    status: str = "ingested"  # ingested | skipped | rejected
    rows: int = 0
    tables: dict[str, int] = field(default_factory=dict)  # rows written per lake table
    rejected_rows: int = 0
    reason: str = ""
    seconds: float = 0.0
    first_event: datetime | None = None
    last_event: datetime | None = None
    mtime_ns: int | None = None
    duplicate: bool = False  # skipped: the same bytes as a file ingested under another name
    hashing: Future[tuple[str, int]] | None = field(default=None, repr=False, compare=False)

    def resolve_sha(self) -> str:
        """The file's SHA-256, waiting for the background hash if one is still running."""
        if self.hashing is not None:
            hashing, self.hashing = self.hashing, None
            self.sha256, self.size = hashing.result()
        return self.sha256

    def sha_known(self) -> bool:
        return self.hashing is None or self.hashing.done()

    def sha_source(self) -> Future[tuple[str, int]] | str:
        """The SHA-256, or the background hash that will give it (for the writer thread)."""
        return self.hashing or self.sha256

    def summary(self) -> str:
        """One log line (a file name's control characters shown escaped: a newline in a
        name must not forge a second line)."""
        if self.status == "skipped":
            text = f"{self.display}: skipped, already ingested (sha256 {self.sha256[:12]})"
        elif self.status == "rejected":
            text = f"{self.display}: REJECTED: {self.reason}"
        else:
            text = (f"{self.display}: {self.format}, {self.rows:,} rows, "
                    f"{self.rejected_rows:,} rejected rows, {self.seconds:.2f}s")
        return visible(text)


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def rejected_rows(self) -> int:
        return sum(f.rejected_rows for f in self.files)


def manifest_rows(results: list[FileResult]) -> pl.DataFrame:
    now = datetime.now(timezone.utc)
    return pl.DataFrame([{
        "tenant": r.tenant, "source_sha256": r.sha256 or f"unread:{r.display}",
        "source_file": r.display,
        "size_bytes": r.size, "source_format": r.format,
        "status": "duplicate" if r.duplicate else r.status,
        "rows": r.rows, "rejected_rows": r.rejected_rows, "reason": r.reason or None,
        "table_rows": ", ".join(f"{t}:{n}" for t, n in sorted(r.tables.items()))
        if len(r.tables) > 1 else None,
        "first_event_utc": r.first_event, "last_event_utc": r.last_event,
        "ingested_utc": now, "seconds": r.seconds, "file_mtime_ns": r.mtime_ns,
    } for r in results], schema=schema.INGEST_LOG.schema)


def stored_note(res: FileResult) -> str:
    """For a large file that failed part-way: its earlier parts are already in the lake
    (merged and de-duplicated, so ingesting the fixed file again adds nothing twice)."""
    try:
        stored = res.rows > 0 and bool(res.resolve_sha())
    except OSError:
        stored = False  # rows of a file that could not be hashed are not written
    return (f" (after {res.rows:,} rows of its first parts were stored; re-ingest the fixed "
            "file)") if stored else ""
