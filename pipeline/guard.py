"""Analysts' queries under limits: a statement timeout, a cap on result rows, a clean Ctrl-C,
and every DuckDB type turned into something the output formats can print.

A query runs in a worker thread while the calling thread waits: on the timeout or on Ctrl-C
the connection is interrupted (DuckDB stops at its next check) and the caller is told which
limit stopped it. Rows are fetched a batch at a time, so a result past the cap stops there
instead of filling memory. DuckDB's own memory limit is set when the session opens.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor, TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from pipeline.errors import ConfigError, RelaywatchError

# Types the output formats cannot print as they are (Polars cannot import them, or CSV
# and JSON cannot hold them): shown as DuckDB's own text for them.
_AS_TEXT = re.compile(r"INTERVAL|UNION|\bBIT\b|BLOB|TIME WITH TIME ZONE|BIGNUM|VARINT")


class QueryLimit(RelaywatchError):
    """A query stopped by one of its limits."""


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float = 60.0
    max_rows: int = 1_000_000


def printable(con: duckdb.DuckDBPyConnection, text: str) -> str:
    """`text` with the columns of types no output format can print cast to VARCHAR."""
    body = text.strip().rstrip(";")
    try:
        columns = con.execute(f"DESCRIBE {body}").fetchall()
    except duckdb.Error:
        return text  # not a plain query (SHOW, EXPLAIN ...): its own types are simple
    if not any(_AS_TEXT.search(str(c[1])) for c in columns):
        return text
    select = ", ".join(
        f'CAST({_ident(c[0])} AS VARCHAR) AS {_ident(c[0])}' if _AS_TEXT.search(str(c[1]))
        else _ident(c[0]) for c in columns)
    return f"SELECT {select} FROM (\n{body}\n) AS q"


def _ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def run(con: duckdb.DuckDBPyConnection, text: str, params: dict[str, Any] | None,
        limits: Limits) -> pl.DataFrame:
    """The query's result, or QueryLimit naming the limit that stopped it."""
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relaywatch-sql")
    future: Future[pl.DataFrame] = pool.submit(_fetch, con, text, params, limits, stop)
    try:
        return future.result(timeout=limits.timeout_seconds)
    except FutureTimeout:
        stop.set()
        con.interrupt()
        _drain(future)
        raise QueryLimit(f"the query ran past the {limits.timeout_seconds:g} s statement "
                         "timeout and was stopped; narrow it (a WHERE on date, a LIMIT) or "
                         "raise --timeout ([sql] timeout_seconds)") from None
    except KeyboardInterrupt:
        stop.set()
        con.interrupt()
        _drain(future)
        raise
    finally:
        pool.shutdown(wait=False)


def _drain(future: Future[pl.DataFrame]) -> None:
    try:
        future.result(timeout=30)
    except BaseException:  # the interrupted query's own error: the caller says why
        pass


def _fetch(con: duckdb.DuckDBPyConnection, text: str, params: dict[str, Any] | None,
           limits: Limits, stop: threading.Event) -> pl.DataFrame:
    reader = con.sql(text, params=params or None).to_arrow_reader(65_536)
    batches: list[pa.RecordBatch] = []
    rows = 0
    for batch in reader:
        if stop.is_set():
            break
        batches.append(batch)
        rows += batch.num_rows
        if rows > limits.max_rows:
            raise QueryLimit(f"the result has more than {limits.max_rows:,} rows; add a "
                             "LIMIT or an aggregate, or raise --max-rows ([sql] max_rows)")
    table = pa.Table.from_batches(batches, schema=reader.schema)
    out = pl.from_arrow(table)
    if not isinstance(out, pl.DataFrame):
        raise ConfigError("the query returned no table")
    return out
