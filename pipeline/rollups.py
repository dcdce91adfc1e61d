"""The lake's rollups: what the detections read instead of the raw message rows.

`rollups/mail/` and `rollups/ndr/` (schema.ROLLUPS; their SQL is queries/rollups/*.sql) hold,
per tenant and day, the message rows summed by message-level keys, with the message ids
kept, so every detection gives over them what it gives over the raw rows (tests prove it).
A night then reads the lookback's rollups, not its raw rows, and the raw rows stay for
drill-down queries.

A rollup partition depends on its message partition and on the tenant's accepted domains
(direction and registration are judged with them), so `build` makes it again when either
changed since it was made: `rollups/_built.parquet` records, per partition, the message
file's size and modification time and a hash of the tenant's accepted-domain spans it was
judged with. Each partition is written atomically and the record after it, so a run killed
half-way leaves rollups that the next build completes; deleting `rollups/` costs one
slower build. A tenant without accepted domains is judged at detect time from its mail
(its own domains are inferred from the whole lookback, which no single day shows): its
rollups are stored unjudged.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema, sql
from pipeline.lake import PARQUET, Lake, write_atomically

log = logging.getLogger(__name__)

FOLDER = "rollups"
STATE = "_built.parquet"
# what a partition's judgement depends on: each accepted domain's spans as the tenant's own
# (snapshots and audit events; a daily snapshot of the same domains changes nothing)
DOMAINS_STATE = ("SELECT tenant, bit_xor(hash(domain_name, match_subdomains, covered_since, "
                 "covered_until))::VARCHAR AS domains FROM known_domains WHERE NOT inferred "
                 "GROUP BY tenant")
_STATE_SCHEMA = {"tenant": pl.String, "date": pl.Date, "size": pl.Int64,
                 "mtime_ns": pl.Int64, "domains": pl.String}
# Message rows rolled up per step: a first build over a large lake, or ingest's build after
# a large file, takes about the memory ingest itself takes (DuckDB holds a step's rows)
BATCH_ROWS = 50_000

Key = tuple[str, date]
BATCH = "temp.main._rollup_batch"  # the message rows being rolled up
OWN = "temp.main._own_domains"  # known_domains without inferred ones, for the whole build
STREAM_ROWS = 65_536  # rows of rollup fetched from DuckDB at a time


@dataclass
class Built:
    partitions: int = 0  # rolled up (again)
    removed: int = 0  # rollups of message partitions that are gone
    rows_in: int = 0
    rows_out: int = 0


def rollup_path(lake: Path, table: schema.Table, tenant: str, day: date) -> Path:
    return (lake / FOLDER / table.layout.split("/")[1] / f"tenant={tenant}"
            / f"date={day.isoformat()}" / "data.parquet")


def message_partitions(lake: Path) -> dict[Key, tuple[int, int]]:
    """(tenant, day) → (size, mtime_ns) of the message partitions (os.scandir: this runs
    every night over thousands of folders)."""
    out: dict[Key, tuple[int, int]] = {}
    root = lake / "messages"
    if not root.is_dir():
        return out
    for t in os.scandir(root):
        if not t.name.startswith("tenant=") or not t.is_dir(follow_symlinks=False):
            continue
        for d in os.scandir(t.path):
            if not d.name.startswith("date=") or not d.is_dir(follow_symlinks=False):
                continue
            try:
                day = date.fromisoformat(d.name[5:])
                st = os.stat(os.path.join(d.path, "data.parquet"), follow_symlinks=False)
            except (ValueError, OSError):
                continue
            out[(t.name[7:], day)] = (st.st_size, st.st_mtime_ns)
    return out


# runs steps of stale partitions somewhere else (a Spark cluster), each with roll_alone,
# and returns each step's (rows in, rows out) once all are written
Elsewhere = Callable[[Path, list[list[Key]]], list[tuple[int, int]]]


def build(lake: Path, session: sql.Session | None = None,
          elsewhere: Elsewhere | None = None) -> Built:
    """Bring the rollups up to the lake's message partitions and accepted domains (the
    caller holds the lake lock). Returns what was done."""
    lake = Path(lake)
    done = Built()
    state = _read_state(lake)
    parts = message_partitions(lake)
    owned = session is None
    s = session or _session(lake)
    try:
        domains = _judge_with(s)
        stale = sorted(k for k, ident in parts.items()
                       if state.get(k) != (*ident, domains.get(k[0]))
                       or not rollup_path(lake, schema.MAIL_ROLLUP, *k).is_file())
        gone = sorted(set(state) - set(parts))
        for key in gone:
            for table in schema.ROLLUPS:
                shutil.rmtree(rollup_path(lake, table, *key).parent, ignore_errors=True)
            del state[key]
            done.removed += 1
        if gone:
            _write_state(lake, state)
        batches = list(_batches(lake, stale))
        if elsewhere is not None and batches:  # recorded once every step is written
            counts = elsewhere(lake, batches)
            _record(lake, state, stale, parts, domains)
        else:
            counts = []
            for batch in batches:  # recorded step by step
                counts.append(_roll(s, lake, batch))
                _record(lake, state, batch, parts, domains)
                log.info("rollups: %d of %d partitions", sum(map(len, batches[:len(counts)])),
                         len(stale))
        done.partitions = len(stale)
        done.rows_in = sum(c[0] for c in counts)
        done.rows_out = sum(c[1] for c in counts)
        _unjudge(s)
        if not owned:  # the caller's session reads what was written
            s.refresh(*(t.name for t in schema.ROLLUPS))
    finally:
        if owned:
            s.close()
    return done


def roll_alone(lake: Path, batch: list[Key]) -> tuple[int, int]:
    """Roll up one step of partitions in a session of its own (a Spark task)."""
    with _session(lake) as s:
        _judge_with(s)
        return _roll(s, lake, batch)


def _session(lake: Path) -> sql.Session:
    return sql.Session(lake, placeholders=("messages", *(t.name for t in schema.ROLLUPS)))


def _judge_with(s: sql.Session) -> dict[str, str]:
    """Let this session judge direction and registration with the accepted domains only
    (worked out once: inferring a tenant's own domains needs its whole lookback, so one
    without is judged at detect time); returns each tenant's hash of them."""
    s.con.execute("CREATE OR REPLACE TEMP VIEW messages AS "
                  f"SELECT * FROM {sql.BASE}.messages WHERE false")
    s.con.execute(f"CREATE OR REPLACE TEMP TABLE {OWN} AS "
                  f"SELECT * FROM {sql.BASE}.known_domains WHERE NOT inferred")
    s.con.execute(f"CREATE OR REPLACE TEMP VIEW known_domains AS SELECT * FROM {OWN}")
    return dict(s.con.execute(DOMAINS_STATE).fetchall())


def _unjudge(s: sql.Session) -> None:
    for view in ("messages", "known_domains"):
        s.con.execute(f"DROP VIEW IF EXISTS temp.main.{view}")
    s.con.execute(f"DROP TABLE IF EXISTS {OWN}")


def _record(lake: Path, state: dict[Key, tuple[int, int, str | None]], batch: list[Key],
            parts: dict[Key, tuple[int, int]], domains: dict[str, str]) -> None:
    for key in batch:
        state[key] = (*parts[key], domains.get(key[0]))
    _write_state(lake, state)


def _roll(s: sql.Session, lake: Path, batch: list[Key]) -> tuple[int, int]:
    """Roll up these message partitions and write their rollups."""
    files = [str(Lake(lake).partition_path(*key)) for key in batch]
    source = sql.source(schema.MESSAGES, str(lake), files)
    present = sql.present_columns(s.con, source)
    s.con.execute(f"CREATE OR REPLACE TEMP TABLE {BATCH} AS SELECT "
                  f"{sql.pinned_select(sql.PINNED_COLUMNS)} FROM (SELECT "
                  f"{sql.columns_sql(schema.MESSAGES, present)} FROM {source})")
    s.con.execute(f"CREATE OR REPLACE TEMP VIEW messages AS SELECT * FROM {BATCH}")
    rows_in = s.con.execute("SELECT count(*) FROM messages").fetchall()[0][0]
    rows_out = 0
    for table in schema.ROLLUPS:
        written = set()
        for (tenant, day), part in _partitions(s, table):
            write_atomically(rollup_path(lake, table, tenant, day), partial(_write, part))
            written.add((tenant, day))
            rows_out += part.num_rows if table is schema.MAIL_ROLLUP else 0
        for tenant, day in batch:
            if (tenant, day) in written:
                continue
            path = rollup_path(lake, table, tenant, day)
            if table is schema.MAIL_ROLLUP:  # an empty message partition: an empty rollup
                empty = s.con.sql(
                    f"SELECT {_columns(table)} FROM ({sql.rollup_sql(table)}) LIMIT 0")
                write_atomically(path, partial(_write, empty.to_arrow_table()))
            else:
                shutil.rmtree(path.parent, ignore_errors=True)
    s.con.execute(f"DROP TABLE IF EXISTS {BATCH}")
    return rows_in, rows_out


def _partitions(s: sql.Session, table: schema.Table) -> Iterator[tuple[Key, pa.Table]]:
    """The rolled-up rows, one (tenant, day) at a time, each sorted by its keys (the same
    rows give the same bytes), the partition keys left to the path: streamed from DuckDB,
    so memory holds one partition's rollup, not the batch's."""
    reader = s.con.sql(
        f"SELECT tenant, date, {_columns(table)} FROM ({sql.rollup_sql(table)}) "
        f"ORDER BY tenant, date, {_keys(table)}").to_arrow_reader(STREAM_ROWS)
    held: list[pa.RecordBatch] = []
    key: Key | None = None
    for chunk in reader:
        runs = pa.Table.from_batches([chunk]).select(["tenant", "date"]).to_pylist()
        start = 0
        for i in range(1, chunk.num_rows + 1):  # runs of one (tenant, day)
            if i < chunk.num_rows and runs[i] == runs[start]:
                continue
            here = (runs[start]["tenant"], runs[start]["date"])
            if key is not None and here != key:
                yield key, _partition(held)
                held = []
            key = here
            held.append(chunk.slice(start, i - start))
            start = i
    if key is not None:
        yield key, _partition(held)


def _partition(held: list[pa.RecordBatch]) -> pa.Table:
    """One partition's rows in one chunk (the file's layout must not depend on how the
    stream happened to be cut), its partition keys left to the path."""
    return pa.Table.from_batches(held).drop_columns(["tenant", "date"]).combine_chunks()


def _write(rows: pa.Table, path: Path) -> None:
    pq.write_table(rows, path, compression="zstd", compression_level=1)


def _columns(table: schema.Table) -> str:
    return ", ".join(f'CAST("{c.name}" AS {sql.duck_type(c.dtype)}) AS "{c.name}"'
                     for c in table.columns if c.name in table.file_columns())


def _keys(table: schema.Table) -> str:
    """A rollup's key columns within a partition (those before its measures)."""
    cols = table.file_columns()
    return ", ".join(f'"{c}"' for c in cols[:cols.index("recipients")])


def _read_state(lake: Path) -> dict[Key, tuple[int, int, str | None]]:
    path = lake / FOLDER / STATE
    try:
        df = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError):  # none yet, or damaged: build again
        return {}
    return {(r["tenant"], r["date"]): (r["size"], r["mtime_ns"], r["domains"])
            for r in df.iter_rows(named=True)}


def _write_state(lake: Path, state: dict[Key, tuple[int, int, str | None]]) -> None:
    df = pl.DataFrame([{"tenant": t, "date": d, "size": s, "mtime_ns": m, "domains": h}
                       for (t, d), (s, m, h) in sorted(state.items())], schema=_STATE_SCHEMA)
    write_atomically(lake / FOLDER / STATE, lambda tmp: df.write_parquet(tmp, **PARQUET))


def _batches(lake: Path, keys: list[Key]) -> Iterator[list[Key]]:
    """The stale partitions in steps of about BATCH_ROWS rows (a larger partition alone)."""
    batch: list[Key] = []
    total = 0
    for key in keys:
        try:
            rows = pq.read_metadata(Lake(lake).partition_path(*key)).num_rows
        except (OSError, pa.ArrowException):
            rows = BATCH_ROWS  # unreadable: alone, and DuckDB says why
        if batch and total + rows > BATCH_ROWS:
            yield batch
            batch, total = [], 0
        batch.append(key)
        total += rows
    if batch:
        yield batch
