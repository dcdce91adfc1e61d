"""The lake: hive-partitioned Parquet, and the only module that writes it.

Every write goes to a hidden temporary file beside its target and is renamed into place, so
a reader (or a run killed half-way) sees the old file or the new one, never half of one.
Message partitions (tenant × day) are merged with what they already hold and de-duplicated
on (message, recipient); other tables get one file per input file, named by its hash, so
writing the same input again replaces rather than adds. One process writes at a time
(an advisory lock, released by the kernel if the holder dies).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path

import polars as pl

from pipeline import faults, schema
from pipeline.errors import ConfigError, LakeError, LockError

log = logging.getLogger("relaywatch")
MANIFEST = "ingest_log/manifest.parquet"
# zstd level 1: files as small as the default level's here, at two thirds of the CPU. Null
# counts but no min/max: rows are in time order within a day's file, so the min/max of an
# address, id or subject column spans nearly all values and prunes nothing, and a day's
# file holds one or two row groups, so those of its times prune little more; working them
# out cost 10% of the writing.
PARQUET: dict = dict(compression="zstd", compression_level=1, statistics={
    "min": False, "max": False, "null_count": True, "distinct_count": False})
# Parts of a day too big to buffer, until the day is complete (cleared at every ingest)
STAGING = ".staging"
# Damaged files of the lake, moved aside (never deleted) with a .reason each
QUARANTINE = "quarantine"
# Columns that identify one row of `messages`; rows sharing them are the same recipient of
# the same message seen in several exports.
_MSG_KEY = ("_msg", "recipient_address")


# Every temporary file relaywatch writes starts with this; only those are ever swept.
TMP_PREFIX = ".tmp-relaywatch-"
# A lake's root holds this file: relaywatch writes only into folders that have it, or
# into new or empty ones (where it puts it first).
MARKER = ".relaywatch-lake"
_MARKER_TEXT = "relaywatch lake: written by relaywatch; see docs/data-dictionary.md\n"


# Lakes this process holds the lock of (and how deeply), so nested stages of one run
# (nightly → ingest → detect) share the lock instead of refusing themselves.
_HELD: dict[Path, int] = {}


def write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """`write` fills a hidden temporary file beside `target`; it is synced and renamed into
    place, so readers (and a rerun after a kill) see the old file or the new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{TMP_PREFIX}{os.getpid()}-{target.name}"
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        faults.write_point()
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LakeError(f"{target}: cannot write ({exc.strerror})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_root(root: Path) -> Path:
    """A lake path DuckDB can read: its views name the lake's files by glob patterns, where
    `[`, `]`, `*`, `?` and `{` are pattern characters, not a folder's name."""
    bad = sorted({ch for ch in str(root) if ch in "[]*?{}"})
    if bad:
        raise ConfigError(f"{root}: a lake path cannot hold {' '.join(bad)} (DuckDB reads the "
                          "lake through glob patterns); rename the folder or use another")
    return Path(root)


class Lake:
    def __init__(self, root: Path) -> None:
        self.root = check_root(Path(root))

    def must_exist(self) -> Lake:
        """This lake, or a usage error when the folder holds no lake (a typo in --lake)."""
        if not (self.root / "messages").is_dir() and not (self.root / "ingest_log").is_dir():
            raise ConfigError(f"{self.root}: no lake here; run `relaywatch ingest` first or "
                              "point --lake at one")
        return self

    def tenants(self) -> set[str]:
        """The tenants any table of the lake holds rows or files for."""
        return {p.name.split("=", 1)[1] for p in self.root.glob("*/tenant=*") if p.is_dir()}

    # ------------------------------------------------------------ locking

    def check_place(self) -> None:
        """Refuse, before anything is written, a lake root that is the file system's root or
        a home folder, or a file (claim, under the lock, checks the rest)."""
        self.claim(write=False)

    def claim(self, write: bool = True) -> None:
        """Make sure this folder is one relaywatch may write: a lake it made (the marker, or
        a manifest from before the marker), or a new or empty folder, which it marks.
        Never the file system's root or a home folder, never another tool's folder."""
        where = self.root.expanduser()
        refuse_system_folder(where, "lake")
        if where.exists() and not where.is_dir():
            raise ConfigError(f"{self.root}: not a folder; --lake (or [paths] lake, "
                              "$RELAYWATCH_LAKE) must name a folder")
        if (where / MARKER).is_file() or not write:
            return
        if where.is_dir():
            try:
                others = [n for n in os.listdir(where) if n not in (".lock", MARKER)]
            except OSError as exc:
                raise LakeError(f"{self.root}: cannot read the lake folder ({exc.strerror})"
                                ) from None
            if others and not (where / MANIFEST).is_file():
                raise ConfigError(
                    f"{self.root}: this folder is not empty and is not a relaywatch lake (no "
                    f"{MARKER} file); give a new or empty folder, or the lake's own")
        try:
            where.mkdir(parents=True, exist_ok=True)
            tmp = where / f"{TMP_PREFIX}{os.getpid()}-{MARKER}"
            tmp.write_text(_MARKER_TEXT)
            os.replace(tmp, where / MARKER)
        except OSError as exc:
            raise LakeError(f"{self.root}: cannot create the lake ({exc.strerror})") from None

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.claim()
        key = self.root.resolve()
        if _HELD.get(key):
            _HELD[key] += 1
            try:
                yield
            finally:
                _HELD[key] -= 1
            return
        try:
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LakeError(f"{self.root / '.lock'}: cannot open the lake's lock file "
                            f"({exc.strerror}); the lake must be writable by the user running "
                            "relaywatch") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise LockError(
                    f"{self.root}: the lake is in use by {holder}; wait for it to finish "
                    "(the lock is released automatically when that process ends)"
                ) from None
            # the lock file names its holder while held and is emptied on a clean release:
            # a name left in it means the last holder was killed, so sweep its temporaries
            if os.pread(fd, 64, 0).strip():
                self.sweep_temporaries()
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"relaywatch pid {os.getpid()}\n".encode(), 0)
            _HELD[key] = 1
            faults.locked_point()
            yield
            os.ftruncate(fd, 0)
        finally:
            _HELD.pop(key, None)
            os.close(fd)

    def sweep_temporaries(self) -> None:
        """Remove temporary files a killed run left behind (only ever under the lock), and
        only relaywatch's own (TMP_PREFIX): never a file another program put in the lake."""
        for folder, _, names in os.walk(self.root):  # os.walk: a fraction of rglob's cost
            for name in names:
                if name.startswith(TMP_PREFIX):
                    (Path(folder) / name).unlink(missing_ok=True)

    # ------------------------------------------------------------ writing

    def _write(self, df: pl.DataFrame, target: Path) -> None:
        write_atomically(target, lambda tmp: df.write_parquet(tmp, **PARQUET))

    def partition_path(self, tenant: str, day: date) -> Path:
        return (self.root / "messages" / f"tenant={tenant}" / f"date={day.isoformat()}"
                / "data.parquet")

    def write_messages(self, rows: pl.DataFrame) -> dict[tuple[str, date], int]:
        """Merge canonical message rows into their tenant × day partitions.

        Each touched partition is read, merged with the new rows, de-duplicated and written
        back once; partitions not touched are not read. Returns rows per partition.
        """
        return {(str(t), d): self.write_partition(str(t), d, part)  # type: ignore[arg-type]
                for (t, d), part in rows.partition_by("tenant", "date", as_dict=True).items()}

    def write_partition(self, tenant: str, day: date, rows: pl.DataFrame,
                        staged: list[Path] | None = None) -> int:
        """Merge one tenant × day's new rows (and parts staged for it) with what its
        partition holds; returns the rows kept."""
        table = schema.MESSAGES
        path = self.partition_path(tenant, day)
        part = table.conform(rows).select(table.file_columns())
        if staged:
            kept = self._append_staged(path, staged, part)
            if kept is not None:
                return kept
            part = pl.concat([pl.read_parquet(staged).select(table.file_exprs()), part])
        if path.exists():
            part = pl.concat([pl.read_parquet(path).select(table.file_exprs()), part])
        part = merge_duplicates(part)
        self._write(part, path)
        for p in staged or ():
            p.unlink(missing_ok=True)
        return part.height

    def stage(self, tenant: str, day: date, rows: pl.DataFrame, n: int) -> Path:
        """Put aside part `n` of a day too big to hold in memory until it is complete."""
        table = schema.MESSAGES
        target = self.root / STAGING / f"{tenant}-{day.isoformat()}-{n:05d}.parquet"
        self._write(table.conform(rows).select(table.file_columns()), target)
        return target

    def _append_staged(self, path: Path, staged: list[Path], tail: pl.DataFrame) -> int | None:
        """A big day's partition written by streaming its parts, so memory holds 16 bytes a
        row, not the rows: rows whose (message, recipient) key repeats are merged in memory
        and written after the others. Needs every row to have a network message id and the
        parts to be in time order; else None, and the caller merges in memory."""
        columns = schema.MESSAGES.file_exprs()
        frames = [*(pl.scan_parquet(p).select(columns)
                    for p in ([path] if path.exists() else []) + staged), tail.lazy()]
        key = pl.struct("network_message_id", "recipient_address").hash()
        keys = pl.concat([f.select(key.alias("k"), "received_utc",
                                   pl.col("network_message_id").is_null().alias("no_id"))
                          for f in frames]).collect()
        if keys.get_column("no_id").any() or not keys.get_column("received_utc").is_sorted():
            return None
        is_repeated = keys.get_column("k").is_duplicated()
        repeated = pl.lit(keys.get_column("k").filter(is_repeated).unique().implode())
        merged = merge_duplicates(pl.concat([f.filter(key.is_in(repeated))
                                             for f in frames]).collect())
        rows = [f.filter(~key.is_in(repeated)) for f in frames]
        write_atomically(path, lambda tmp: pl.concat([*rows, merged.lazy()]).sink_parquet(
            tmp, **PARQUET))
        for p in staged:
            p.unlink(missing_ok=True)
        return keys.height - int(is_repeated.sum()) + merged.height

    def write_file_table(self, name: str, tenant: str, sha: str, rows: pl.DataFrame) -> None:
        """One Parquet file per input file (config snapshots, audit events, rejects)."""
        table = schema.TABLES[name]
        target = self.root / name / f"tenant={tenant}" / f"{sha[:32]}.parquet"
        if rows.height == 0:
            target.unlink(missing_ok=True)
            return
        self._write(table.conform(rows).select(table.file_columns()), target)

    def replace_results(self, name: str, as_of: date, rows: pl.DataFrame,
                        tenants: list[str]) -> Path:
        """Store one as-of day's findings or verdicts: the tenants of this run replace their
        earlier rows for that day; other tenants' rows stay."""
        table = schema.TABLES[name]
        target = self.root / name / f"as_of={as_of.isoformat()}" / "data.parquet"
        rows = table.conform(rows).select(table.file_columns())
        if target.exists():
            kept = pl.read_parquet(target).select(table.file_columns()).filter(
                ~pl.col("tenant").is_in(tenants))
            rows = pl.concat([kept, rows], how="vertical_relaxed")
        self._write(rows.sort("tenant", maintain_order=True), target)
        return target

    def drop_partitions_before(self, cutoff: date) -> list[Path]:
        """Retention: remove the day partitions before `cutoff` of every dated table
        (messages by date; findings, verdicts and detect's other results by as-of day).
        Raw exports are not in the lake and are never touched. Files with rows before the
        cutoff become `expired` in the manifest: the next runs still skip them, and
        `--rehash` reads them again, so nothing retention drops is beyond a rerun's reach."""
        dropped = []
        parts = [*(self.root / "messages").glob("tenant=*/date=*"),
                 *(p for t in schema.TABLES.values() if t.layout.split("/")[1].startswith("as_of=")
                   for p in (self.root / t.name).glob("as_of=*"))]
        old = [p for p in sorted(parts) if date.fromisoformat(p.name.split("=", 1)[1]) < cutoff]
        messages = [p for p in old if p.parent.parent.name == "messages"]
        if messages:
            self._expire(cutoff, messages)
        for part in old:  # after the manifest: a kill in between leaves them re-ingestable
            shutil.rmtree(part)
            dropped.append(part)
        return dropped

    def _expire(self, cutoff: date, partitions: list[Path]) -> None:
        """Mark as `expired` the files with events before `cutoff`, and those whose rows
        these message partitions hold (a row merged from several files names the last)."""
        files = [f for p in partitions for f in p.glob("*.parquet")]
        shas = pl.scan_parquet(files).select(pl.col("source_sha256").cast(pl.String)).unique(
            ).collect().to_series().to_list() if files else []
        self._mark((pl.col("status") == "ingested") & (
            pl.col("source_sha256").is_in(shas) | (pl.col("first_event_utc").dt.date() < cutoff)),
            "expired")

    # ------------------------------------------------------------ manifest

    def manifest(self) -> pl.DataFrame:
        """The manifest; a damaged one is quarantined (every inbox file is then read again,
        which adds nothing twice) rather than stopping every run."""
        path = self.root / MANIFEST
        if not path.exists():
            return pl.DataFrame(schema=schema.INGEST_LOG.schema)
        try:
            return schema.INGEST_LOG.conform(pl.read_parquet(path))
        except (pl.exceptions.PolarsError, OSError) as exc:
            self.quarantine(path, f"unreadable ({str(exc).strip().splitlines()[0][:200]})")
            return pl.DataFrame(schema=schema.INGEST_LOG.schema)

    def restore(self, which: pl.Expr) -> int:
        """Mark the manifest's files matching `which` `restore`: the next ingest reads them
        again (after their rows were lost with a damaged partition)."""
        return self._mark(which & pl.col("status").is_in(["ingested", "duplicate", "expired"]),
                          "restore")

    def _mark(self, hit: pl.Expr, status: str) -> int:
        """Give the manifest rows matching `hit` this status; returns how many."""
        m = self.manifest()
        n = m.filter(hit).height
        if n:
            self._write(m.with_columns(pl.when(hit).then(pl.lit(status))
                                       .otherwise(pl.col("status")).alias("status")),
                        self.root / MANIFEST)
        return n

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move a damaged file of the lake into quarantine/ (named after its place in the
        lake) with a .reason beside it: never deleted, no longer read."""
        rel = path.relative_to(self.root)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = self.root / QUARANTINE / f"{stamp}-{'__'.join(rel.parts)}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        target.with_name(target.name + ".reason").write_text(f"{rel}: {reason}\n",
                                                             encoding="utf-8")
        log.warning("lake: %s: corrupt, %s; moved to %s", rel, reason,
                    target.relative_to(self.root))
        return target.relative_to(self.root)

    def record(self, entries: pl.DataFrame) -> None:
        """Add or replace manifest rows keyed on (tenant, sha256, file)."""
        if entries.height == 0:
            return
        new = schema.INGEST_LOG.conform(entries)
        merged = pl.concat([self.manifest(), new]).unique(
            ["tenant", "source_sha256", "source_file"], keep="last", maintain_order=True)
        self._write(merged, self.root / MANIFEST)

    def known_files(self) -> dict[tuple[str, str, int, int], str]:
        """(tenant, file, size, mtime_ns) → sha256 of files ingested before."""
        m = self.manifest().filter(pl.col("status").is_in(["ingested", "duplicate", "expired"])
                                   & pl.col("file_mtime_ns").is_not_null())
        return {(t, f, s, ns): sha for t, f, s, ns, sha in m.select(
            "tenant", "source_file", "size_bytes", "file_mtime_ns", "source_sha256").iter_rows()}

    def already_ingested(self, rehash: bool = False) -> dict[tuple[str, str], set[str]]:
        """(tenant, sha256) of every file ingested → the names it was ingested under; with
        `rehash`, files retention expired are left out, so they are read again."""
        out: dict[tuple[str, str], set[str]] = {}
        m = self.manifest().filter(pl.col("status").is_in(
            ["ingested"] if rehash else ["ingested", "expired"]))
        for tenant, sha, name in m.select("tenant", "source_sha256", "source_file").iter_rows():
            out.setdefault((tenant, sha), set()).add(name)
        return out

    # ------------------------------------------------------------ rejected files

    def keep_rejected(self, source: Path, tenant: str, sha: str, reason: str,
                      display: str = "") -> Path:
        """Copy a file that could not be read to rejected/<tenant>/ with a .reason beside it.

        The original stays where it was: ingestion never modifies or deletes raw exports.
        """
        # named after the file's place in the inbox, so equal files from two folders keep
        # their own reasons; only safe characters reach the path
        name = display.split("/", 1)[-1] if tenant else display or source.name
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)[:120]
        folder = self.root / "rejected" / (tenant or "_unassigned")
        target = folder / f"{sha[:12]}-{safe.lstrip('.') or 'file'}"
        folder.mkdir(parents=True, exist_ok=True)
        if source.is_file() and not source.is_symlink() and not target.exists():
            tmp = folder / f"{TMP_PREFIX}{os.getpid()}-{target.name}"
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        reason_tmp = folder / f"{TMP_PREFIX}{os.getpid()}-{target.name}.reason"
        reason_tmp.write_text(reason + "\n", encoding="utf-8")
        os.replace(reason_tmp, target.with_name(target.name + ".reason"))
        return target


def refuse_system_folder(folder: Path, what: str) -> None:
    """A lake or reports folder is a folder of its own: never `/` or a home folder, whose
    other files relaywatch must not sit among."""
    try:
        resolved = Path(folder).expanduser().resolve()
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"{folder}: cannot use this {what} folder ({exc})") from None
    if resolved == Path(resolved.anchor) or resolved in _homes():
        raise ConfigError(f"{folder}: refusing to use {resolved} as the {what}; give a folder "
                          f"of its own, e.g. --{what} /srv/relaywatch/{what}")


def _homes() -> set[Path]:
    homes = {Path.home().resolve()}
    if os.environ.get("HOME"):
        homes.add(Path(os.environ["HOME"]).resolve())
    return homes


def merge_duplicates(df: pl.DataFrame) -> pl.DataFrame:
    """One row per (message, recipient): later rows win, but never with a null, and a
    cloud export's row wins over an on-premises tracking log's.

    The same message often arrives in several exports (overlapping trace windows, a trace
    and its detail, a trace and a historical search, the on-premises hop of a hybrid
    tenant's mail); each contributes the columns it has.
    """
    df = _fold_message_events(df)
    msg = pl.col("network_message_id")
    if df.get_column("network_message_id").has_nulls():  # the fallback key costs a pass
        msg = pl.coalesce(msg, pl.col("message_id"), pl.concat_str(
            [pl.col("received_utc").cast(pl.String), pl.col("sender_address"),
             pl.col("subject")], separator="|", ignore_nulls=True))
    df = df.with_columns(msg.alias("_msg"))
    # rows whose key hash repeats are the only candidates (a hash collision merely sends a
    # unique row through the merge below, which leaves it as it was)
    dup = df.select(_MSG_KEY).hash_rows().is_duplicated()
    if not dup.any():
        return _by_time(df.drop("_msg"))
    others = [c for c in df.columns if c not in _MSG_KEY]
    # an on-premises tracking log's row is the message's first hop: what Exchange Online
    # made of it (status, spam verdict, connector) wins over it (the hop is in onprem_hops)
    onprem = pl.col("source_format").cast(pl.String) == "exchange_tracking_log"
    merged = df.filter(dup).sort(~onprem, maintain_order=True).group_by(
        *_MSG_KEY, maintain_order=True).agg(
        [pl.col(c).drop_nulls().last() for c in others if c != "received_utc"]
        + [pl.col("received_utc").min()]
    )
    return _in_place(df.drop("_msg"), dup, merged.select(df.columns).drop("_msg"))


def _fold_message_events(df: pl.DataFrame) -> pl.DataFrame:
    """Fold rows about a whole message (no recipient) into its recipient rows of the same
    Message-ID: their NDR code where a row has none, and their spam verdict. A message
    whose recipient rows are not in the partition (yet) keeps its row, folded when they
    come (every write merges the whole partition again)."""
    if df.get_column("recipient_address").null_count() == 0:  # metadata: the usual case
        return df
    about = (pl.col("recipient_address").is_null() & pl.col("message_id").is_not_null()
             & pl.col("source_format").cast(pl.String).str.starts_with(schema.WHOLE_MESSAGE_FORMAT)
             ).fill_null(False)
    mask = df.select(about).to_series()
    if not mask.any():
        return df
    notes = df.filter(mask)
    rows = df.filter(~mask)
    signals = notes.group_by("message_id").agg(
        pl.col("ndr_code").drop_nulls().last().alias("_ndr"),
        pl.col("spam_verdict").fill_null(False).any().alias("_spam"))
    rows = rows.join(signals, on="message_id", how="left", maintain_order="left")
    spam = pl.col("_spam").fill_null(False)
    status_type = df.schema["status"]
    rows = rows.with_columns(
        pl.coalesce("ndr_code", "_ndr").alias("ndr_code"),
        pl.when(spam).then(True).otherwise(pl.col("spam_verdict")).alias("spam_verdict"),
        pl.when(spam & pl.col("status").cast(pl.String).is_in(["delivered", "received"]))
        .then(pl.lit("filtered_as_spam")).otherwise(pl.col("status").cast(pl.String))
        .cast(status_type).alias("status"),
    ).drop("_ndr", "_spam")
    alone = notes.filter(~pl.col("message_id").is_in(rows["message_id"].drop_nulls().implode()))
    return _by_time(pl.concat([rows, alone]))


def _by_time(df: pl.DataFrame) -> pl.DataFrame:
    """Rows in time order (stable); most exports already are, and then nothing moves."""
    if df["received_utc"].is_sorted():
        return df
    return df.sort("received_utc", maintain_order=True)


# Up to this many repeated rows are cut out and merged rows slotted in by slices; with
# more, the rows are filtered and sorted.
_SLOT_ROWS = 256


def _in_place(df: pl.DataFrame, repeated: pl.Series, merged: pl.DataFrame) -> pl.DataFrame:
    """`df` without its `repeated` rows, with the `merged` rows in time order, as a stable
    sort would place them. A time-ordered part with a few repeats is cut into slices
    around them (no copy: filtering and sorting copy every column of every row, ~1 s for
    4M rows)."""
    skip = repeated.arg_true().to_list()
    if len(skip) > _SLOT_ROWS or not df["received_utc"].is_sorted():
        return _by_time(pl.concat([df.filter(~repeated), merged]))
    merged = merged.sort("received_utc", maintain_order=True)
    at = df["received_utc"].search_sorted(merged["received_utc"], side="right").to_list()
    # at one position, a merged row goes before the row there (which may be cut out)
    cuts = sorted([(p, 0, i) for i, p in enumerate(at)] + [(p, 1, -1) for p in skip])
    pieces, start = [], 0
    for p, cut_out, i in cuts:
        pieces.append(df.slice(start, p - start))
        if cut_out:
            start = p + 1
        else:
            pieces.append(merged.slice(i, 1))
            start = p
    pieces.append(df.slice(start))
    return pl.concat([p for p in pieces if p.height], rechunk=False)
