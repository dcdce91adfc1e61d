"""Ingest: find input files, recognise each, parse it, and hand canonical rows to the lake.

One bad file never stops the others: it is copied to `rejected/` with its reason and the run
goes on. A file whose bytes were ingested before (same tenant, same SHA-256) is skipped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, cast

import polars as pl

from pipeline import formats, schema
from pipeline.errors import ConfigError, InputFormatError
from pipeline.formats.common import Context, Parsed
from pipeline.formats.config import own_domain_patterns
from pipeline.lake import STAGING, Lake
from pipeline.settings import Settings
from pipeline.visible import visible

log = logging.getLogger("relaywatch")
SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
# a part of a file's message rows, and that file's SHA-256 or the hash computing it
PendingPart = tuple["Future[tuple[str, int]] | str", pl.DataFrame]


def check_slug(name: str) -> str:
    if not SLUG.match(name):
        raise ConfigError(
            f"{name!r} is not a valid tenant slug: use 1–63 characters of a-z, 0-9, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


@dataclass
class InputFile:
    path: Path
    tenant: str
    display: str
    problem: str | None = None  # refused before reading (bad folder name, symlink, ...)


@dataclass
class FileResult:
    display: str
    tenant: str
    sha256: str = ""
    size: int = 0
    format: str = ""
    status: str = "ingested"  # ingested | skipped | rejected
    rows: int = 0
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


# ---------------------------------------------------------------- discovery

NOT_REGULAR = ("not a regular file (a pipe, device, socket or broken link); give the "
               "export file itself")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop: a file entry, refused as such below
        return False


def _loops(path: Path) -> bool:
    try:
        path.resolve(strict=True)
        return False
    except RuntimeError:
        return True
    except OSError as exc:
        return exc.errno == 40  # ELOOP


def _walk(folder: Path, root: Path, tenant: str, prefix: str) -> Iterable[InputFile]:
    """Files under `folder`, by name, folder by folder (os.scandir: an inbox of a month's
    exports holds tens of thousands of files, and most of them are only skipped)."""
    def scan(path: str, rel: str) -> Iterable[InputFile]:
        try:
            with os.scandir(path) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")),
                                 key=lambda e: e.name)
        except OSError as exc:
            yield InputFile(Path(path), tenant, f"{prefix}{rel}" or prefix,
                            f"cannot read the folder ({exc.strerror})")
            return
        folders = [e for e in entries if _is_dir(e)]
        for e in folders:
            if e.is_symlink():
                yield InputFile(Path(e.path), tenant, f"{prefix}{rel}/{e.name}",
                                "a symlinked folder; copy the files into the inbox instead")
        for e in entries:
            if _is_dir(e):
                continue
            p, shown = Path(e.path), f"{prefix}{rel}/{e.name}"
            if e.is_symlink() and _loops(p):
                yield InputFile(p, tenant, shown, "a symlink loop (it leads back to itself)")
            elif e.is_symlink() and not _inside(p, root):
                yield InputFile(p, tenant, shown, "a symlink pointing outside the inbox")
            elif not e.is_file():
                yield InputFile(p, tenant, shown, NOT_REGULAR)
            else:
                yield InputFile(p, tenant, shown)
        for e in folders:
            if not e.is_symlink():
                yield from scan(e.path, f"{rel}/{e.name}")

    return scan(str(folder), "")


def discover(paths: Iterable[Path], tenant: str | None) -> list[InputFile]:
    """Files to ingest: loose files and tenant folders (with --tenant) or inbox folders."""
    found: list[InputFile] = []
    for path in paths:
        if not path.exists() and not path.is_symlink():
            raise ConfigError(f"{path}: no such file or folder")
        if tenant:
            if path.is_dir():
                found += _walk(path, path, tenant, tenant)
            else:
                found.append(InputFile(path, tenant, f"{tenant}/{path.name}",
                                       None if path.is_file() else NOT_REGULAR))
            continue
        if not path.is_dir():
            raise ConfigError(f"{path}: a single file needs --tenant SLUG (or put it in "
                              "<inbox>/<tenant>/ and ingest the inbox)")
        for child in sorted(path.iterdir()):
            if child.name.startswith(".") and not child.is_dir():
                continue  # .DS_Store and friends; a hidden *folder* is refused below
            if child.is_symlink() and child.is_dir():
                found.append(InputFile(child, "", child.name,
                                       "a symlinked folder: a tenant folder must be a real "
                                       "folder (a link to the inbox or another tenant would "
                                       "read their files again); copy or move the files"))
            elif child.is_symlink() and not _inside(child, path):
                found.append(InputFile(child, "", child.name,
                                       "a symlink pointing outside the inbox"))
            elif child.is_dir():
                if SLUG.match(child.name):
                    found += _walk(child, path, child.name, child.name)
                else:
                    found += [InputFile(f.path, "", f.display,
                                        f"folder name {child.name!r} is not a valid tenant slug "
                                        "(a-z, 0-9, '.', '_', '-'; rename the folder)")
                              for f in _walk(child, path, "", child.name)]
            else:
                found.append(InputFile(child, "", child.name,
                                       "not inside a tenant folder; move it to "
                                       "<inbox>/<tenant>/"))
    return found


# ---------------------------------------------------------------- ingestion

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


def _own_domains(lake: Lake, tenants: set[str]) -> dict[str, set[str]]:
    """Every accepted domain the lake holds for these tenants, read in one scan (a file per
    snapshot: one read per tenant costs a second for 200 tenants with 30 snapshots)."""
    files = {str(f): t for t in sorted(tenants)
             for f in (lake.root / "accepted_domains" / f"tenant={t}").glob("*.parquet")}
    own: dict[str, set[str]] = {t: set() for t in tenants}
    if files:
        found = pl.scan_parquet(list(files), include_file_paths="_file").select(
            pl.col("_file").replace_strict(files, return_dtype=pl.String).alias("_tenant"),
            "domain_name", "match_subdomains").unique().collect()
        for (tenant,), domains in found.group_by("_tenant"):
            own[str(tenant)] = own_domain_patterns(domains)
    return own


def _with_source(df: pl.DataFrame, parsed: Parsed, item: InputFile) -> pl.DataFrame:
    return df.with_columns(
        pl.lit(item.tenant).alias("tenant"),
        pl.lit(parsed.format, dtype=schema.CATEGORY).alias("source_format"),
        pl.lit(item.display, dtype=schema.CATEGORY).alias("source_file"),
    )


def _with_sha(df: pl.DataFrame, sha: str) -> pl.DataFrame:
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


class Ingestor:
    """One ingestion batch over a lake (the caller holds the lake lock)."""

    def __init__(self, lake: Lake, settings: Settings,
                 progress: Callable[[int], None] | None = None) -> None:
        self.lake = lake
        self.settings = settings
        self.progress = progress or (lambda n: None)
        self.report = IngestReport()
        # message rows not yet written, by (tenant, day), each part with its file's SHA-256
        # (or the hash still computing it): a day is written when the file has moved past
        # it, so a time-ordered export writes each partition once
        self._pending: dict[tuple[str, date], list[PendingPart]] = {}
        self._pending_rows = 0
        # partitions are written by one thread while the next parts are parsed; at most one
        # flush is in flight, so memory holds two buffers at most
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relaywatch-write")
        self._writing: list[Future[Any]] = []
        # a day bigger than the buffer is put aside a part at a time, then written once
        self._staged: dict[tuple[str, date], list[Future[Path | None]]] = {}
        self._unrecorded: list[FileResult] = []
        self._own: dict[str, set[str]] = {}

    def run(self, items: list[InputFile], rehash: bool = False) -> IngestReport:
        done = self.lake.already_ingested(rehash)
        # unchanged files (same path, size and mtime as when hashed) are not read again, so
        # a night with one new file reads one file, not the whole inbox
        known = {} if rehash else self.lake.known_files()
        self._done = done
        shutil.rmtree(self.lake.root / STAGING, ignore_errors=True)  # a killed run's parts
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
        self._own = _own_domains(self.lake, {item.tenant for item, _, _ in queue})
        try:
            for item, sniffed, res in queue:
                self._ingest_one(item, sniffed, res)
            self._flush()
        finally:
            self._writer.shutdown(wait=True)
            hasher.shutdown(wait=True, cancel_futures=True)
        self.lake.record(self._manifest_rows(self._unrecorded))
        return self.report

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
                res.rejected_rows += rejects[-1].height
                time_col = "received_utc" if "received_utc" in rows.columns else (
                    "creation_utc" if "creation_utc" in rows.columns else None)
                if time_col and rows.height:
                    first: datetime | None = rows[time_col].min()  # type: ignore[assignment]
                    last: datetime | None = rows[time_col].max()  # type: ignore[assignment]
                    res.first_event = min(filter(None, (res.first_event, first)))
                    res.last_event = max(filter(None, (res.last_event, last)))
                if parsed.table == "messages":
                    self._add_pending(item.tenant, rows, res.sha_source())
                else:
                    self.lake.write_file_table(parsed.table, item.tenant, res.sha256,
                                               _with_sha(rows, res.sha256))
        except InputFormatError as exc:
            self._reject(item, res, str(exc) + _stored_note(res))
            return
        except OSError as exc:
            self._reject(item, res, f"cannot read the file ({exc.strerror})"
                         + _stored_note(res))
            return
        except Exception as exc:  # a parser bug must not stop the other files
            log.debug("parser failure", exc_info=True)
            self._reject(item, res, f"could not be parsed ({type(exc).__name__}: {exc})"
                         + _stored_note(res))
            return
        if res.hashing is not None:  # a hash that ended after the last part (or no rows at all)
            try:
                if self._came_before(item, res):
                    self._skip(res, duplicate=self._another_name(item, res))
                    return
            except OSError as exc:
                self._reject(item, res, f"cannot read the file ({exc.strerror})")
                return
        self.lake.write_file_table("rejects", item.tenant, res.sha256, _with_sha(
            pl.concat(rejects, how="vertical_relaxed"), res.sha256))
        res.seconds = time.monotonic() - started
        self._finish(res)
        self.progress(res.size)

    def _came_before(self, item: InputFile, res: FileResult) -> bool:
        """Whether the same bytes were ingested for this tenant (waits for the hash)."""
        return self._seen(item.tenant, res.resolve_sha())

    def _seen(self, tenant: str, sha: str) -> bool:
        return (tenant, sha) in self._done  # read-only while the batch runs: any thread

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
            if not self._seen(tenant, sha):
                frames.append(_with_sha(part, sha))
        return (pl.concat(frames, how="diagonal_relaxed") if frames
                else pl.DataFrame(schema=schema.MESSAGES.schema))

    def _another_name(self, item: InputFile, res: FileResult) -> bool:
        """Whether those bytes were ingested under other names only (a copy, not the same
        file with a new modification time)."""
        return item.display not in self._done.get((item.tenant, res.sha256), ())

    def _add_pending(self, tenant: str, rows: pl.DataFrame,
                     sha: Future[tuple[str, int]] | str) -> None:
        days = rows.get_column("received_utc").dt.date()
        for day, part in _by_day(rows, days):
            self._pending.setdefault((tenant, day), []).append((sha, part))
        self._pending_rows += rows.height
        if self._pending_rows >= self.settings.flush_rows:
            latest = (tenant, cast(date, days.max()))
            # keep the day still being filled (its rows go on in the next part); when the
            # buffer holds nothing else, put that day's rows so far aside
            older = [k for k in {**self._pending, **self._staged} if k != latest]
            if older:
                self._flush(older)
            else:
                self._stage(latest)

    def _stage(self, key: tuple[str, date]) -> None:
        parts = self._pending.pop(key)
        self._pending_rows -= sum(p.height for _, p in parts)
        staged = self._staged.setdefault(key, [])
        staged.append(self._writer.submit(self._stage_part, key, parts, len(staged)))

    def _flush(self, keys: list[tuple[str, date]] | None = None) -> None:
        """Write pending message rows (of `keys`, else all); once nothing is pending, record
        the files they came from (a file is in the manifest only when all its rows are)."""
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
            self.lake.record(self._manifest_rows(self._unrecorded))
            self._unrecorded = []

    def _stage_part(self, key: tuple[str, date], parts: list[PendingPart],
                    n: int) -> Path | None:
        rows = self._sourced(key[0], parts)
        return self.lake.stage(*key, rows, n) if rows.height else None

    def _write_partition(self, key: tuple[str, date], parts: list[PendingPart],
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

    @staticmethod
    def _manifest_rows(results: list[FileResult]) -> pl.DataFrame:
        now = datetime.now(timezone.utc)
        return pl.DataFrame([{
            "tenant": r.tenant, "source_sha256": r.sha256 or f"unread:{r.display}",
            "source_file": r.display,
            "size_bytes": r.size, "source_format": r.format,
            "status": "duplicate" if r.duplicate else r.status,
            "rows": r.rows, "rejected_rows": r.rejected_rows, "reason": r.reason or None,
            "first_event_utc": r.first_event, "last_event_utc": r.last_event,
            "ingested_utc": now, "seconds": r.seconds, "file_mtime_ns": r.mtime_ns,
        } for r in results], schema=schema.INGEST_LOG.schema)


def _stored_note(res: FileResult) -> str:
    """For a large file that failed part-way: its earlier parts are already in the lake
    (merged and de-duplicated, so ingesting the fixed file again adds nothing twice)."""
    try:
        stored = res.rows > 0 and bool(res.resolve_sha())
    except OSError:
        stored = False  # rows of a file that could not be hashed are not written
    return (f" (after {res.rows:,} rows of its first parts were stored; re-ingest the fixed "
            "file)") if stored else ""


def check_apart(folders: list[tuple[str, Path]]) -> None:
    """Inputs, lake and reports must not overlap: a lake inside the inbox would be read as
    tenants, a reports folder inside it would feed its rejects back every night."""
    where = []
    for name, folder in folders:
        try:
            where.append((name, folder, Path(folder).expanduser().resolve()))
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"{folder}: cannot resolve the {name} path ({exc})") from None
    for i, (a, fa, pa) in enumerate(where):
        for b, fb, pb in where[i + 1:]:
            if pa.is_relative_to(pb) or pb.is_relative_to(pa):
                raise ConfigError(f"the {a} ({fa}) and the {b} ({fb}) overlap; give each its "
                                  "own folder, neither inside the other")


def ingest(paths: Iterable[Path], settings: Settings, tenant: str | None = None,
           progress: Callable[[int], None] | None = None, rehash: bool = False) -> IngestReport:
    """Ingest files and inbox folders into the lake named by the settings."""
    if tenant:
        check_slug(tenant)
    paths = list(paths)
    Lake(settings.lake).check_place()
    check_apart([("lake", settings.lake), *(("input", p) for p in paths if Path(p).is_dir())])
    items = discover(paths, tenant)
    lake = Lake(settings.lake)
    with lake.locked():
        return Ingestor(lake, settings, progress).run(items, rehash)


def total_bytes(paths: Iterable[Path]) -> int:
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()
                         and not f.is_symlink())
    return total
