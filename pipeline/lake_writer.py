"""The writer scheduler beside the lake writer: message rows buffered per (tenant, day) as
files are parsed, handed a partition at a time to one writer thread (at most one flush in
flight, so memory holds two buffers at most), and a day bigger than the buffer put aside a
part at a time, then written once."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any, cast

import polars as pl

from pipeline import schema
from pipeline.lake import Lake

# a part of a file's message rows, and that file's SHA-256 or the hash computing it
PendingPart = tuple["Future[tuple[str, int]] | str", pl.DataFrame]
Key = tuple[str, date]


def with_sha(df: pl.DataFrame, sha: str) -> pl.DataFrame:
    return df.with_columns(pl.lit(sha, dtype=schema.CATEGORY).alias("source_sha256"))


def _by_day(rows: pl.DataFrame, days: pl.Series) -> Iterable[tuple[date, pl.DataFrame]]:
    """A part's rows per UTC day: slices (no copy) when in time order, as exports are."""
    if days.is_sorted():
        start = 0
        for n, day in days.rle().struct.unnest().iter_rows():  # one run per day
            yield day, rows.slice(start, n)
            start += n
        return
    for (day,), part in rows.with_columns(days.alias("date")).partition_by(
            "date", as_dict=True, include_key=False).items():
        yield day, part  # type: ignore[misc]


class PartitionWriter:
    """Buffers message rows and writes each touched partition once (the caller holds the
    lake lock). `seen(tenant, sha)` says a file's bytes were ingested before (its rows are
    dropped); `on_idle()` runs whenever nothing is left pending (the manifest is recorded
    then: a file is in it only when all its rows are in the lake)."""

    def __init__(self, lake: Lake, flush_rows: int, seen: Callable[[str, str], bool],
                 on_idle: Callable[[], None]) -> None:
        self.lake = lake
        self.flush_rows = flush_rows
        self.seen = seen
        self.on_idle = on_idle
        # message rows not yet written, by (tenant, day), each part with its file's SHA-256
        # (or the hash still computing it): a day is written when the file has moved past
        # it, so a time-ordered export writes each partition once
        self._pending: dict[Key, list[PendingPart]] = {}
        self._pending_rows = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relaywatch-write")
        self._writing: list[Future[Any]] = []
        self._staged: dict[Key, list[Future[Path | None]]] = {}

    def add(self, tenant: str, rows: pl.DataFrame, sha: Future[tuple[str, int]] | str) -> None:
        days = rows.get_column("received_utc").dt.date()
        for day, part in _by_day(rows, days):
            self._pending.setdefault((tenant, day), []).append((sha, part))
        self._pending_rows += rows.height
        if self._pending_rows >= self.flush_rows:
            latest = (tenant, cast(date, days.max()))
            # keep the day still being filled (its rows go on in the next part); when the
            # buffer holds nothing else, put that day's rows so far aside
            older = [k for k in {**self._pending, **self._staged} if k != latest]
            if older:
                self.flush(older)
            else:
                self._stage(latest)

    def flush(self, keys: list[Key] | None = None) -> None:
        """Write pending message rows (of `keys`, else all); once nothing is pending, call
        on_idle."""
        batch = []
        for key in keys if keys is not None else list({**self._pending, **self._staged}):
            parts = self._pending.pop(key, [])
            self._pending_rows -= sum(p.height for _, p in parts)
            batch.append((key, parts, self._staged.pop(key, [])))
        self._wait_for_writes()
        self._writing = [self._writer.submit(self._write_partition, key, parts, staged)
                         for key, parts, staged in batch]
        if not self._pending and not self._staged:
            self._wait_for_writes()
            self.on_idle()

    def shutdown(self) -> None:
        self._writer.shutdown(wait=True)

    def _stage(self, key: Key) -> None:
        parts = self._pending.pop(key)
        self._pending_rows -= sum(p.height for _, p in parts)
        staged = self._staged.setdefault(key, [])
        staged.append(self._writer.submit(self._stage_part, key, parts, len(staged)))

    def _sourced(self, tenant: str, parts: list[PendingPart]) -> pl.DataFrame:
        """Pending parts as one frame, each with its file's SHA-256 (in the writer thread,
        which waits for a hash still running; the parsing goes on meanwhile). Parts of a
        file whose bytes came before, or that could not be hashed, are dropped: the main
        thread skips or rejects that file when it learns the same."""
        frames = []
        for source, part in parts:
            try:
                sha = source if isinstance(source, str) else source.result()[0]
            except OSError:
                continue
            if not self.seen(tenant, sha):
                frames.append(with_sha(part, sha))
        return (pl.concat(frames, how="diagonal_relaxed") if frames
                else pl.DataFrame(schema=schema.MESSAGES.schema))

    def _stage_part(self, key: Key, parts: list[PendingPart], n: int) -> Path | None:
        rows = self._sourced(key[0], parts)
        return self.lake.stage(*key, rows, n) if rows.height else None

    def _write_partition(self, key: Key, parts: list[PendingPart],
                         staged: list[Future[Path | None]]) -> None:
        """(In the writer thread.) A partition is rewritten only when rows are added to it:
        all of a part's rows may be dropped (see _sourced)."""
        rows = self._sourced(key[0], parts)
        paths = [p for f in staged if (p := f.result()) is not None]
        if rows.height or paths:
            self.lake.write_partition(*key, rows, paths)

    def _wait_for_writes(self) -> None:
        """Block until the partitions handed to the writer are written (errors raise here)."""
        writing, self._writing = self._writing, []
        for future in writing:
            future.result()
