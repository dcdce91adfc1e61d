"""Ingest: the files the inbox gives (pipeline.inbox), each recognised, hashed and parsed,
its canonical rows handed to the lake (message rows through pipeline.lake_writer's
scheduler, the other tables a file each), and the manifest recorded (pipeline.manifest).

One bad file never stops the others: it is copied to `rejected/` with its reason and the run
goes on. A file whose bytes were ingested before (same tenant, same SHA-256) is skipped.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from pipeline import formats, rollups, schema
from pipeline.errors import InputFormatError
from pipeline.formats.common import Context, Parsed
from pipeline.inbox import InputFile, check_apart, check_slug, discover
from pipeline.lake import STAGING, Lake
from pipeline.lake_writer import PartitionWriter, with_sha
from pipeline.manifest import FileResult, IngestReport, file_sha256, manifest_rows, stored_note
from pipeline.settings import Settings
from pipeline.tenant_domains import own_domains

log = logging.getLogger("relaywatch")


def _with_source(df: pl.DataFrame, parsed: Parsed, item: InputFile) -> pl.DataFrame:
    return df.with_columns(
        pl.lit(item.tenant).alias("tenant"),
        pl.lit(parsed.format, dtype=schema.CATEGORY).alias("source_format"),
        pl.lit(item.display, dtype=schema.CATEGORY).alias("source_file"),
    )


class Ingestor:
    """One ingestion batch over a lake (the caller holds the lake lock)."""

    def __init__(self, lake: Lake, settings: Settings,
                 progress: Callable[[int], None] | None = None,
                 record: Callable[[list[FileResult]], None] | None = None) -> None:
        """`record` takes the finished files' results instead of the manifest (a Spark task
        hands them to the driver, which records them once every task has written)."""
        self.lake = lake
        self.record = record or (lambda done: self.lake.record(manifest_rows(done)))
        self.settings = settings
        self.progress = progress or (lambda n: None)
        self.report = IngestReport()
        # partitions are written by one thread while the next parts are parsed
        self.writer = PartitionWriter(lake, settings.flush_rows, self._seen, self._record)
        self._unrecorded: list[FileResult] = []
        self._own: dict[str, set[str]] = {}

    def run(self, items: list[InputFile], rehash: bool = False,
            clear_staging: bool = True) -> IngestReport:
        done = self.lake.already_ingested(rehash)
        # unchanged files (same path, size and mtime as when hashed) are not read again, so
        # a night with one new file reads one file, not the whole inbox
        known = {} if rehash else self.lake.known_files()
        self._done = done
        if clear_staging:  # a killed run's parts (a Spark driver clears them for its tasks)
            shutil.rmtree(self.lake.root / STAGING, ignore_errors=True)
        queue: list[tuple[InputFile, formats.Sniffed, FileResult]] = []
        # new files are hashed in the background, beside their parsing; whether one was
        # ingested before is decided before any of its rows is written
        hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relaywatch-hash")
        for item in items:
            res = FileResult(item.display, item.tenant)
            if item.problem:
                self._reject(item, res, item.problem)
                continue
            try:
                st = item.path.stat()
            except OSError as exc:
                self._reject(item, res, f"cannot read the file ({exc.strerror})")
                continue
            res.mtime_ns, res.size = st.st_mtime_ns, st.st_size
            cached = known.get((item.tenant, item.display, st.st_size, st.st_mtime_ns))
            if cached:
                res.sha256 = cached
            elif st.st_size >= formats.STREAM_BYTES:  # big: hashed while its parts parse
                res.hashing = hasher.submit(file_sha256, item.path)
            else:
                try:
                    res.sha256 = file_sha256(item.path)[0]
                except OSError as exc:
                    self._reject(item, res, f"cannot read the file ({exc.strerror})")
                    continue
            if res.sha256 and self._came_before(item, res):
                self._skip(res, duplicate=not cached and self._another_name(item, res))
                continue
            try:
                sniffed = formats.sniff(item.path, item.display, self.settings.headerless_msgtrk)
            except InputFormatError as exc:
                self._reject(item, res, str(exc))
                continue
            except OSError as exc:
                self._reject(item, res, f"cannot read the file ({exc.strerror})")
                continue
            except Exception as exc:  # a sniffing bug must not stop the other files
                log.debug("sniff failure", exc_info=True)
                self._reject(item, res, f"could not be recognised ({type(exc).__name__})")
                continue
            res.format = sniffed.format
            queue.append((item, sniffed, res))
        queue.sort(key=lambda q: formats.TABLE_ORDER.index(q[1].table))
        self._own = own_domains(self.lake, {item.tenant for item, _, _ in queue})
        try:
            for item, sniffed, res in queue:
                self._ingest_one(item, sniffed, res)
            self.writer.flush()
        finally:
            self.writer.shutdown()
            hasher.shutdown(wait=True, cancel_futures=True)
        self._record()
        return self.report

    def _record(self) -> None:
        """The manifest rows of the files finished so far (all of their rows written)."""
        if self._unrecorded:
            self.record(self._unrecorded)
        self._unrecorded = []

    def _ingest_one(self, item: InputFile, sniffed: formats.Sniffed, res: FileResult) -> None:
        """Parse one file (a part at a time if large) into the lake; `res` holds its hash,
        size and mtime from the scan."""
        started = time.monotonic()
        own = self._own[item.tenant]
        mtime = datetime.fromtimestamp((res.mtime_ns or 0) / 1e9, tz=timezone.utc)
        ctx = Context(item.display, item.tenant, mtime, self.settings.date_order,
                      tuple(sorted(own)), self.settings.headerless_msgtrk)
        rejects: list[pl.DataFrame] = []
        parts = formats.read_parts(item.path, sniffed, ctx)
        try:
            for parsed in parts:
                # message rows need not wait for a big file's hash: the writer adds it to
                # them (and drops them if the file came before); other tables wait here
                if ((parsed.table != "messages" or res.sha_known())
                        and self._came_before(item, res)):
                    parts.close()
                    self._skip(res, duplicate=self._another_name(item, res))
                    return
                own |= set(parsed.own_domains)
                res.format = parsed.format.split(":")[0]  # a file of several tables: its own
                rows = _with_source(parsed.rows, parsed, item)
                rejects.append(_with_source(parsed.rejects, parsed, item))
                if parsed.table != "onprem_hops":  # a tracking log's rows are its messages
                    res.rows += rows.height
                res.tables[parsed.table] = res.tables.get(parsed.table, 0) + rows.height
                res.rejected_rows += rejects[-1].height
                time_col = "received_utc" if "received_utc" in rows.columns else (
                    "creation_utc" if "creation_utc" in rows.columns else None)
                if time_col and rows.height:
                    first: datetime | None = rows[time_col].min()  # type: ignore[assignment]
                    last: datetime | None = rows[time_col].max()  # type: ignore[assignment]
                    res.first_event = min(filter(None, (res.first_event, first)))
                    res.last_event = max(filter(None, (res.last_event, last)))
                if parsed.table == "messages":
                    self.writer.add(item.tenant, rows, res.sha_source())
                else:
                    self.lake.write_file_table(parsed.table, item.tenant, res.sha256,
                                               with_sha(rows, res.sha256))
        except InputFormatError as exc:
            self._reject(item, res, str(exc) + stored_note(res))
            return
        except OSError as exc:
            self._reject(item, res, f"cannot read the file ({exc.strerror})"
                         + stored_note(res))
            return
        except Exception as exc:  # a parser bug must not stop the other files
            log.debug("parser failure", exc_info=True)
            self._reject(item, res, f"could not be parsed ({type(exc).__name__}: {exc})"
                         + stored_note(res))
            return
        if res.hashing is not None:  # a hash that ended after the last part (or no rows at all)
            try:
                if self._came_before(item, res):
                    self._skip(res, duplicate=self._another_name(item, res))
                    return
            except OSError as exc:
                self._reject(item, res, f"cannot read the file ({exc.strerror})")
                return
        self.lake.write_file_table("rejects", item.tenant, res.sha256, with_sha(
            pl.concat(rejects, how="vertical_relaxed"), res.sha256))
        res.seconds = time.monotonic() - started
        self._finish(res)
        self.progress(res.size)

    def _came_before(self, item: InputFile, res: FileResult) -> bool:
        """Whether the same bytes were ingested for this tenant (waits for the hash)."""
        return self._seen(item.tenant, res.resolve_sha())

    def _seen(self, tenant: str, sha: str) -> bool:
        return (tenant, sha) in self._done  # read-only while the batch runs: any thread

    def _another_name(self, item: InputFile, res: FileResult) -> bool:
        """Whether those bytes were ingested under other names only (a copy, not the same
        file with a new modification time)."""
        return item.display not in self._done.get((item.tenant, res.sha256), ())

    def _skip(self, res: FileResult, duplicate: bool) -> None:
        """Nothing to do: the same bytes were ingested before. A `duplicate` (a copy under
        another name, seen for the first time) is recorded, so later runs know its path,
        size and time and do not read it again."""
        res.status, res.duplicate = "skipped", duplicate
        self._finish(res)
        self.progress(res.size)

    def _reject(self, item: InputFile, res: FileResult, reason: str) -> None:
        res.status, res.reason = "rejected", reason
        try:
            if res.hashing is not None:
                res.resolve_sha()
            elif not res.sha256 and item.path.is_file() and not item.path.is_symlink():
                res.sha256, res.size = file_sha256(item.path)
        except OSError:
            res.sha256 = ""
        kept = self.lake.keep_rejected(item.path, item.tenant, res.sha256 or "0" * 12, reason,
                                       item.display)
        log.debug("kept rejected file as %s", kept)
        self._finish(res)
        self.progress(res.size)

    def _finish(self, res: FileResult) -> None:
        self.report.files.append(res)
        if res.status != "skipped" or res.duplicate:
            self._unrecorded.append(res)


def inputs(paths: Iterable[Path], settings: Settings, tenant: str | None) -> list[InputFile]:
    """The input files of an ingest, once the tenant, the lake's place and the inputs'
    (apart from the lake) are checked."""
    if tenant:
        check_slug(tenant)
    paths = list(paths)
    Lake(settings.lake).check_place()
    check_apart([("lake", settings.lake), *(("input", p) for p in paths if Path(p).is_dir())])
    return discover(paths, tenant)


def ingest(paths: Iterable[Path], settings: Settings, tenant: str | None = None,
           progress: Callable[[int], None] | None = None, rehash: bool = False) -> IngestReport:
    """Ingest files and inbox folders into the lake named by the settings."""
    items = inputs(paths, settings, tenant)
    lake = Lake(settings.lake)
    with lake.locked():
        report = Ingestor(lake, settings, progress).run(items, rehash)
        if report.count("ingested"):  # the detections read rollups: keep them current
            rollups.build(settings.lake)
        return report
