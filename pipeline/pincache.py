"""Detection's copy of the lookback, kept between runs in <lake>/.cache/detect.duckdb.

A detect run reads the last window + baseline days of messages many times, and judges every
outbound row (was its domain registered when it was sent?). Reading thousands of partition
files and judging millions of rows again every night would make a night cost what the
history costs, not what the new data costs. So a DuckDB database inside the lake keeps:

- the lookback's message rows (the columns detection reads), each with the partition file it
  came from: a run loads only files that are new or were rewritten since the last run (same
  path, size and mtime means unchanged) and forgets files that were replaced, dropped by
  retention or fell out of the lookback;
- the accepted-domain snapshots, kept the same way;
- the judged outbound rows (queries/views/outbound_mail.sql, run on the cached rows), judged
  again only for new files and for tenants whose accepted domains changed;
- their hourly volumes (queries/views/outbound_volumes.sql), made with each judgement, so
  baselines read hours, not every row of the lookback.

Each refresh is one transaction. The cache is derived data: it is rebuilt from the lake when
missing, damaged or written by another version, and deleting `.cache/` costs one slower run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb

from pipeline import schema, sql

NAME = "rwcache"
FORMAT = "7"


class PinCache:
    def __init__(self, lake: Path) -> None:
        self.lake = lake
        self.path = lake / ".cache" / "detect.duckdb"

    # ------------------------------------------------------------ opening

    def attach(self, con: duckdb.DuckDBPyConnection, pinned_sql: str) -> None:
        """Attach the cache to `con` (before the session is sandboxed), emptied when it was
        made for other columns, other SQL or another DuckDB; rebuilt when it is damaged."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        version = self._version(pinned_sql)
        try:
            self._open(con, version, pinned_sql)
        except duckdb.Error:
            con.execute(f"DETACH DATABASE IF EXISTS {NAME}")
            for stale in (self.path, self.path.with_name(self.path.name + ".wal")):
                stale.unlink(missing_ok=True)
            self._open(con, version, pinned_sql)

    def _version(self, pinned_sql: str) -> str:
        parts = [FORMAT, duckdb.__version__, pinned_sql,
                 *((sql.QUERIES / "views" / f"{view}.sql").read_text(encoding="utf-8")
                   for view in ("known_domains", "outbound_mail", "outbound_volumes")),
                 *(f"{c.name}:{c.dtype}" for t in (schema.MESSAGES, schema.ACCEPTED_DOMAINS)
                   for c in t.columns)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def _open(self, con: duckdb.DuckDBPyConnection, version: str, pinned_sql: str) -> None:
        con.execute("ATTACH $path AS " + NAME, {"path": str(self.path)})
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = $db",
            {"db": NAME}).fetchall()}
        if "meta" in tables and con.execute(
                f"SELECT value FROM {NAME}.meta WHERE key = 'version'").fetchall() == [(version,)]:
            return
        for table in tables:
            con.execute(f'DROP TABLE {NAME}."{table}"')
        con.execute(f"CREATE TABLE {NAME}.meta (key VARCHAR, value VARCHAR)")
        con.execute(f"CREATE TABLE {NAME}.files (file VARCHAR, kind VARCHAR, size BIGINT, "
                    "mtime_ns BIGINT)")
        con.execute(f"CREATE TABLE {NAME}.ad_state (tenant VARCHAR, h UBIGINT)")
        con.execute(f"CREATE TABLE {NAME}.rejudge (tenant VARCHAR)")
        con.execute(f"CREATE TABLE {NAME}.messages AS SELECT {pinned_sql}, "
                    f"CAST(NULL AS VARCHAR) AS file FROM {sql.BASE}.messages LIMIT 0")
        con.execute(f"CREATE TABLE {NAME}.accepted_domains AS SELECT *, "
                    f"CAST(NULL AS VARCHAR) AS file FROM {sql.BASE}.accepted_domains LIMIT 0")
        self._point_views(con, None)
        con.execute(f"CREATE TABLE {NAME}.outbound AS SELECT * "
                    f"FROM {sql.BASE}.outbound_mail LIMIT 0")
        con.execute(f"CREATE TABLE {NAME}.volumes AS SELECT * "
                    f"FROM {sql.BASE}.outbound_volumes LIMIT 0")
        con.execute(f"INSERT INTO {NAME}.meta VALUES ('version', $v)", {"v": version})

    # ------------------------------------------------------------ refreshing

    def refresh(self, con: duckdb.DuckDBPyConnection, since: date, pinned_sql: str) -> int:
        """Bring the cache up to the lake for the lookback from `since`, then let
        `messages`, `accepted_domains` and `outbound_mail` in this session read it.
        Returns the message rows in the lookback.

        Work is committed in steps small enough for DuckDB's memory limit (a first run over
        a large lake loads it BATCH_BYTES of Parquet at a time); a run killed between steps
        leaves a consistent cache (every loaded file judged, tenants still to judge again
        listed in `rejudge`) that the next run completes."""
        messages = _files(self.lake, "messages", lambda part: part >= f"date={since}")
        domains = _files(self.lake, "accepted_domains")
        self._point_views(con, None)
        with _transaction(con):  # accepted domains first: new rows are judged with them
            self._load(con, "accepted_domains", self._sync(con, "accepted_domains", domains),
                       domains)
            self._mark_changed_tenants(con)
        new = self._sync(con, "messages", messages)
        for batch in _batches(new, messages):
            with _transaction(con):  # a batch is judged before it joins the cached rows
                con.execute(f"DELETE FROM {TODO}")
                self._load(con, "messages", batch, messages, pinned_sql, into=TODO)
                self._judge(con)
                con.execute(f"INSERT INTO {NAME}.messages SELECT * FROM {TODO}")
        while tenants := [t for (t,) in con.execute(
                f"SELECT tenant FROM {NAME}.rejudge ORDER BY tenant LIMIT 20").fetchall()]:
            with _transaction(con):
                self._judge(con, tenants)
        self._point_views(con, since)
        return con.execute("SELECT count(*) FROM messages").fetchall()[0][0]

    def _sync(self, con: duckdb.DuckDBPyConnection, kind: str,
              current: dict[str, tuple[int, int]]) -> list[str]:
        """Forget the rows of files gone or rewritten; return the files new or rewritten."""
        cached = {f: (s, m) for f, s, m in con.execute(
            f"SELECT file, size, mtime_ns FROM {NAME}.files WHERE kind = $k", {"k": kind}
        ).fetchall()}
        gone = [f for f, ident in cached.items() if current.get(f) != ident]
        new = sorted(f for f, ident in current.items() if cached.get(f) != ident)
        if gone:
            with _transaction(con, nested=kind != "messages"):
                if kind == "messages":  # volumes are per partition, a file per tenant and day
                    con.execute(f"DELETE FROM {NAME}.volumes WHERE (tenant, date) IN (SELECT "
                                f"DISTINCT tenant, date FROM {NAME}.messages WHERE file IN "
                                "(SELECT unnest($g)))", {"g": gone})
                for table in ("messages", "outbound") if kind == "messages" else (kind,):
                    con.execute(f"DELETE FROM {NAME}.{table} WHERE file IN "
                                "(SELECT unnest($g))", {"g": gone})
                con.execute(f"DELETE FROM {NAME}.files WHERE kind = $k AND file IN "
                            "(SELECT unnest($g))", {"k": kind, "g": gone})
        return new

    def _load(self, con: duckdb.DuckDBPyConnection, kind: str, files: list[str],
              current: dict[str, tuple[int, int]], columns: str = "*",
              into: str = "") -> None:
        """Load these files' rows (`columns` of the table's, then the file name) into the
        cached table, or `into` another table of its shape."""
        if not files:
            return
        root = str(self.lake)
        table = schema.TABLES[kind]
        source = sql.source(table, root, [str(self.lake / f) for f in files])
        present = sql.present_columns(con, source)
        select = "*" if columns == "*" else f"{columns}, file"
        con.execute(f"INSERT INTO {into or NAME + '.' + kind} SELECT {select} FROM (SELECT "
                    f"{sql.columns_sql(table, present)}, {_relative('filename', root)} AS file "
                    f"FROM {source})")
        self._remember(con, kind, files, current)

    @staticmethod
    def _remember(con: duckdb.DuckDBPyConnection, kind: str, files: list[str],
                  current: dict[str, tuple[int, int]]) -> None:
        con.execute(f"INSERT INTO {NAME}.files SELECT unnest($f), $k, unnest($s), unnest($m)",
                    {"f": files, "k": kind, "s": [current[f][0] for f in files],
                     "m": [current[f][1] for f in files]})

    def _mark_changed_tenants(self, con: duckdb.DuckDBPyConnection) -> None:
        """List the tenants whose accepted domains are not what their rows were judged with
        (refresh judges them again before any query reads the cache)."""
        # what a judgement depends on: each accepted domain's spans as the tenant's own
        # (snapshots and audit events; a daily snapshot of the same domains changes nothing)
        state = ("SELECT tenant, bit_xor(hash(domain_name, match_subdomains, covered_since, "
                 "covered_until)) AS h FROM known_domains WHERE NOT inferred GROUP BY tenant")
        con.execute(f"""
            INSERT INTO {NAME}.rejudge
            SELECT coalesce(n.tenant, o.tenant) FROM ({state}) AS n
            FULL JOIN {NAME}.ad_state AS o ON o.tenant = n.tenant
            WHERE n.h IS DISTINCT FROM o.h
              AND coalesce(n.tenant, o.tenant) IN (SELECT tenant FROM {NAME}.messages)""")
        con.execute(f"DELETE FROM {NAME}.ad_state")
        con.execute(f"INSERT INTO {NAME}.ad_state {state}")

    def _judge(self, con: duckdb.DuckDBPyConnection, tenants: Sequence[str] = ()) -> None:
        """Judge the outbound rows of the batch in TODO, or (tenants) all cached rows of
        these tenants again, and count their hourly volumes."""
        if tenants:
            con.execute(f"DELETE FROM {TODO}")
            con.execute(f"INSERT INTO {TODO} SELECT * FROM {NAME}.messages "
                        "WHERE tenant IN (SELECT unnest($t))", {"t": list(tenants)})
            for table in ("outbound", "volumes", "rejudge"):
                con.execute(f"DELETE FROM {NAME}.{table} WHERE tenant IN (SELECT unnest($t))",
                            {"t": list(tenants)})
        # `messages` reads TODO (see _point_views); outbound_volumes reads outbound_mail
        con.execute(f"CREATE OR REPLACE TEMP TABLE {JUDGED} AS "
                    f"SELECT * FROM {sql.BASE}.outbound_mail")
        con.execute(f"INSERT INTO {NAME}.outbound SELECT * FROM {JUDGED}")
        con.execute(f"CREATE OR REPLACE TEMP VIEW outbound_mail AS SELECT * EXCLUDE (file) "
                    f"FROM {JUDGED}")
        con.execute(f"INSERT INTO {NAME}.volumes SELECT * FROM {sql.BASE}.outbound_volumes")

    def _point_views(self, con: duckdb.DuckDBPyConnection, since: date | None) -> None:
        """Let `messages`, `accepted_domains` and `outbound_mail` read the cache: the
        lookback from `since`, or (None) the rows to judge, staged in TODO."""
        if since is None:
            con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {TODO} AS "
                        f"SELECT * FROM {NAME}.messages LIMIT 0")
            # only tenants with accepted domains are judged into the cache; the others are
            # judged each run over their whole lookback (below), never from one batch
            con.execute(f"CREATE OR REPLACE TEMP VIEW messages AS SELECT * FROM {TODO} "
                        f"WHERE tenant IN (SELECT tenant FROM {NAME}.accepted_domains)")
        else:
            where = f"WHERE date >= DATE '{since.isoformat()}'"
            listed = f"tenant IN (SELECT tenant FROM {NAME}.accepted_domains)"
            # tenants without accepted domains are judged now, over the whole lookback:
            # their own domains are inferred from all of their mail, not a batch's
            con.execute("CREATE OR REPLACE TEMP VIEW messages AS SELECT * EXCLUDE (file) "
                        f"FROM {NAME}.messages {where} AND NOT {listed}")
            for view, table in (("outbound_mail", LIVE_MAIL), ("outbound_volumes", LIVE_VOL)):
                con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS "
                            f"SELECT * FROM {sql.BASE}.{view}")
                con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {table}")
            con.execute("CREATE OR REPLACE TEMP VIEW messages AS SELECT * EXCLUDE (file) "
                        f"FROM {NAME}.messages {where}")
            for view, table, columns, live in (
                    ("outbound_mail", "outbound", "* EXCLUDE (file)", LIVE_MAIL),
                    ("outbound_volumes", "volumes", "*", LIVE_VOL)):
                con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {columns} "
                            f"FROM {NAME}.{table} {where} AND {listed} "
                            f"UNION ALL SELECT * FROM {live}")
        con.execute("CREATE OR REPLACE TEMP VIEW accepted_domains AS SELECT * EXCLUDE (file) "
                    f"FROM {NAME}.accepted_domains")


# this session's rows to judge (a batch of new files, or the rows of tenants to judge
# again) and their judged outbound rows: temporary, in memory or spilled
TODO, JUDGED = "temp.main._todo", "temp.main._judged"
# the judged outbound rows and volumes of tenants without accepted domains, made each run
LIVE_MAIL, LIVE_VOL = "temp.main._live_outbound", "temp.main._live_volumes"


def _files(lake: Path, table: str, keep: Callable[[str], bool] | None = None
           ) -> dict[str, tuple[int, int]]:
    """Lake-relative path → (size, mtime_ns) of a table's Parquet files under
    tenant=*/[partition/], partitions chosen by name with `keep` (relative paths, so a lake
    moved or copied elsewhere keeps its cache; os.scandir, as this runs every night over
    thousands of files)."""
    out: dict[str, tuple[int, int]] = {}

    def scan(folder: str, rel: str) -> None:
        for entry in os.scandir(folder):
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                if keep is None or "=" not in entry.name or entry.name.startswith("tenant=") \
                        or keep(entry.name):
                    scan(entry.path, f"{rel}/{entry.name}")
            elif entry.name.endswith(".parquet"):
                st = entry.stat(follow_symlinks=False)
                out[f"{rel}/{entry.name}"] = (st.st_size, st.st_mtime_ns)

    if (lake / table).is_dir():
        scan(str(lake / table), table)
    return out


def _relative(column: str, root: str) -> str:
    """SQL for a file name column made relative to the lake root."""
    return f"substr({column}, {len(root) + 2})"


# Parquet bytes loaded per transaction: with DuckDB's memory limit, a first run over tens of
# millions of rows stays under its memory target.
BATCH_BYTES = 256 * 2**20


def _batches(files: list[str], sizes: dict[str, tuple[int, int]]) -> Iterator[list[str]]:
    batch: list[str] = []
    total = 0
    for f in files:
        batch.append(f)
        total += sizes[f][0]
        if total >= BATCH_BYTES:
            yield batch
            batch, total = [], 0
    if batch:
        yield batch


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection, nested: bool = False) -> Iterator[None]:
    """One transaction (or, nested, the caller's)."""
    if nested:
        yield
        return
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
