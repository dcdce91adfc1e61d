"""Query results out: an aligned table for people, CSV / JSON / Parquet for programs.

CSV and JSON are written clean (no banner, no colours) so `> out.csv` works. CSV text cells
that a spreadsheet would run as a formula (starting with = + - @, tab or carriage return)
are prefixed with a single quote: subjects and addresses are attacker-controlled. Files are
written aside and renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

import polars as pl

from pipeline.errors import ConfigError
from pipeline.lake import TMP_PREFIX
from pipeline.visible import visible

FORMATS = ("table", "csv", "json", "parquet")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str | None) -> str | None:
    if value is not None and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _flat(df: pl.DataFrame) -> pl.DataFrame:
    """Lists and structs as JSON text, so CSV and table cells hold one value each."""
    exprs = []
    for name, dtype in df.schema.items():
        if dtype.is_nested():
            exprs.append(pl.col(name).map_elements(
                lambda v: json.dumps(v.to_list() if isinstance(v, pl.Series) else v,
                                     default=str, ensure_ascii=False),
                return_dtype=pl.String, skip_nulls=True).alias(name))
        else:
            exprs.append(pl.col(name))
    return df.select(exprs)


def to_csv(df: pl.DataFrame) -> str:
    flat = _flat(df)
    safe = flat.with_columns(
        pl.col(n).map_elements(neutralise, return_dtype=pl.String, skip_nulls=True)
        for n, t in flat.schema.items() if t == pl.String)
    # ISO times, with the offset where the column has a zone (a naive one has none to print)
    safe = safe.with_columns(
        pl.col(n).dt.to_string("%Y-%m-%dT%H:%M:%S%.f" + ("%:z" if t.time_zone else ""))
        for n, t in safe.schema.items() if isinstance(t, pl.Datetime))
    return safe.write_csv()


def to_json(df: pl.DataFrame) -> str:
    rows = df.to_dicts()
    return json.dumps(rows, default=_json_value, ensure_ascii=False, indent=1) + "\n"


def _json_value(value: object) -> str:
    iso = getattr(value, "isoformat", None)
    return iso() if callable(iso) else str(value)


def to_table(df: pl.DataFrame, max_rows: int = 100) -> str:
    """For a terminal: control and bidi characters in text cells are shown escaped."""
    flat = _flat(df)
    flat = flat.with_columns(pl.col(n).map_elements(visible, return_dtype=pl.String,
                                                    skip_nulls=True)
                             for n, t in flat.schema.items() if t == pl.String)
    with pl.Config(tbl_rows=max_rows, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200,
                   tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=False):
        text = str(flat)
    shown = min(df.height, max_rows)
    note = f"{df.height:,} row{'s' if df.height != 1 else ''}"
    if shown < df.height:
        note += " (first and last of them shown; use --format csv for all)"
    return f"{text}\n{note}\n"


def write(df: pl.DataFrame, fmt: str, output: Path | None, stdout: IO[str]) -> None:
    if fmt == "parquet" and output is None:
        raise ConfigError("--format parquet needs --output FILE (Parquet is binary)")
    if output is None:
        stdout.write({"table": to_table, "csv": to_csv, "json": to_json}[fmt](df))
        return
    output = Path(output)
    tmp = output.with_name(f"{TMP_PREFIX}{os.getpid()}-{output.name}")
    try:
        if fmt == "parquet":
            df.write_parquet(tmp, compression="zstd")
        else:
            text = {"table": to_table, "csv": to_csv, "json": to_json}[fmt](df)
            tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{output}: cannot write ({exc.strerror})") from None

