"""What every format module shares: the parse context, the result, column lookup, rejects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from pipeline import normalize as nz
from pipeline.errors import InputFormatError

REJECT_SCHEMA = {"source_line": pl.Int64, "reason": pl.String, "raw": pl.String}


@dataclass(frozen=True)
class Context:
    """What a parser knows besides the file's content."""

    file: str  # shown in messages: "<tenant>/<file name>"
    tenant: str
    snapshot_utc: datetime
    date_order: str = "auto"
    own_domains: tuple[str, ...] = ()
    headerless_msgtrk: str = "none"
    # what the first part of a file decided (the day/month order), kept for its other parts
    decided: dict[str, str] = field(default_factory=dict, compare=False)
    # for a file read in parts: a column's deciding values over the whole file, asked for
    # when its first part cannot decide the day/month order
    whole_column: Callable[[str], list[str | None]] | None = field(default=None, compare=False)


@dataclass
class Parsed:
    format: str
    table: str
    rows: pl.DataFrame
    rejects: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REJECT_SCHEMA))
    own_domains: tuple[str, ...] = ()  # domains this file proves the tenant owns
    also: tuple[Parsed, ...] = ()  # other tables the same file feeds (tracking logs' hops)


@dataclass(frozen=True)
class TabularFormat:
    """A format recognised by its column names, read from CSV or JSON alike."""

    name: str
    table: str
    required: tuple[frozenset[str], ...]  # each set: one of these keys must be present
    parse: Callable[[pl.DataFrame, Context], Parsed]
    forbidden: frozenset[str] = frozenset()

    def matches(self, keys: set[str]) -> bool:
        return all(keys & alts for alts in self.required) and not keys & self.forbidden


def any_of(*keys: str) -> frozenset[str]:
    return frozenset(keys)


def col(df: pl.DataFrame, *aliases: str) -> pl.Expr:
    """The first of `aliases` the frame has, else a null string column."""
    for a in aliases:
        if a in df.columns:
            return pl.col(a)
    return pl.lit(None, dtype=pl.String)


def reject_rows(df: pl.DataFrame, checks: list[tuple[pl.Expr, str, pl.Expr]]
                ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split rows failing any check (bad_condition, reason, raw value) into rejects."""
    failing = df.select(pl.any_horizontal([bad for bad, _, _ in checks]).fill_null(False))
    if not failing.to_series().any():  # the usual case: one cheap pass
        return df, pl.DataFrame(schema=REJECT_SCHEMA)
    reasons = pl.concat_str(
        [pl.when(bad).then(pl.lit(reason)) for bad, reason, _ in checks], separator="; ",
        ignore_nulls=True,
    )
    raw = pl.coalesce([pl.when(bad).then(value.cast(pl.String)) for bad, _, value in checks])
    df = df.with_columns(reasons.alias("_reason"), raw.str.slice(0, 1000).alias("_raw"))
    bad_rows = df.filter(pl.col("_reason").str.len_chars() > 0)
    rejects = bad_rows.select(
        pl.col("_line").alias("source_line"), pl.col("_reason").alias("reason"),
        pl.col("_raw").alias("raw"),
    )
    good = df.filter(pl.col("_reason").str.len_chars() == 0).drop("_reason", "_raw")
    return good, rejects


def parse_times(df: pl.DataFrame, ctx: Context, columns: list[str]) -> dict[str, pl.Expr]:
    """Timestamp expressions for `columns`, with one day/month order decided for the file."""
    present = [c for c in columns if c in df.columns]
    order = ctx.decided.get("date_order")
    if not order:  # the first part of a file decides; the others follow it
        values: list[str | None] = []
        for c in present:
            values += nz.deciding_dates(df.get_column(c))
        try:
            order = nz.infer_date_order(values, ctx.file, ctx.date_order)
        except InputFormatError:
            if ctx.whole_column is None:
                raise
            # the part cannot tell: the rest of the file may (newest rows come first)
            for c in present:
                values += ctx.whole_column(c)
            order = nz.infer_date_order(values, ctx.file, ctx.date_order)
    if present:
        ctx.decided["date_order"] = order
    return {c: pl.lit(parse_time_column(df.get_column(c), order)) for c in present}


def parse_time_column(values: pl.Series, order: str) -> pl.Series:
    """Parse a timestamp column: the common ISO form first (cheap passes), then the full
    parser (every form relaywatch knows) only for the values that one did not read."""
    text = values.cast(pl.String)
    fast = iso_utc(text)

    def full(rest: pl.Series) -> pl.Series:
        rest = rest.str.strip_chars(" \t\r\n\x00\"")
        return pl.select(nz.timestamp(pl.lit(rest), order)).to_series()

    return nz.fix_where(text, fast.is_null() & text.is_not_null(), full, base=fast
                        ).alias(values.name)


def iso_utc(text: pl.Series) -> pl.Series:
    """`YYYY-MM-DDTHH:MM:SS[.f]Z` (Exchange Online's own form) in fixed-width slices, which
    Polars parses several times faster than one pattern with a fraction; microseconds are
    the fraction's first six digits. Other text gives null."""
    # no cache: timestamps are nearly all distinct, so caching only costs a hash per value
    seconds = text.str.slice(0, 19).str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False,
                                                    time_unit="us", cache=False)
    tail = text.str.slice(19)
    valid = tail.str.contains(r"^(\.\d{1,9})?Z$")
    if valid.all() and (tail.str.len_bytes() == 9).all():  # Exchange Online's 7 digits
        micros = text.str.slice(20, 6).cast(pl.Int64).cast(pl.Duration("us"))
        return (seconds + micros).dt.replace_time_zone("UTC").alias(text.name)
    micros = tail.str.slice(1, 6).str.strip_chars_end("Z").str.pad_end(6, "0")
    return pl.select(
        pl.when(pl.lit(valid))
        .then(pl.lit(seconds) + pl.duration(microseconds=pl.lit(micros)
                                            .cast(pl.Int64, strict=False).fill_null(0)))
        .dt.replace_time_zone("UTC")
    ).to_series().alias(text.name)


def as_bool(e: pl.Expr) -> pl.Expr:
    s = e.cast(pl.String).str.strip_chars().str.to_lowercase().str.strip_prefix("$")
    return (pl.when(s.is_in(["true", "1", "yes"])).then(True)
            .when(s.is_in(["false", "0", "no"])).then(False).otherwise(None))


def as_int(e: pl.Expr) -> pl.Expr:
    """Whole numbers, also written with thousands separators or spaces (`1,234`)."""
    return nz.per_series(e, _as_int, pl.Int64)


def _as_int(s: pl.Series) -> pl.Series:
    n = s.cast(pl.Int64, strict=False)
    return nz.fix_where(s, n.is_null() & s.is_not_null(), lambda v: v.str.replace_all(
        r"[,\s]", "").cast(pl.Int64, strict=False), base=n)


TYPE_NAME = (r"^(System\.(Collections\.[A-Za-z.`0-9]+|String\[\]|Object\[\]|[A-Za-z.]+\[\])"
             r"|Microsoft\.Exchange\.Data\.MultiValuedProperty.*"
             r"|Deserialized\.Microsoft\.Exchange\..*)$")


def check_type_names(df: pl.DataFrame, ctx: Context) -> None:
    """PowerShell's Export-Csv writes a type name for multi-valued properties: refuse them."""
    for c in df.columns:
        if c == "_line" or df.schema[c] != pl.String:
            continue
        hit = df.filter(pl.col(c).str.contains(TYPE_NAME))
        if hit.height:
            raise InputFormatError(
                ctx.file, int(hit["_line"][0]),
                f"column {c!r} holds the PowerShell type name {hit[c][0]!r} instead of values",
                "export multi-valued properties with "
                "@{n='" + c + "';e={$_." + c + " -join ';'}} in Select-Object, or use "
                "ConvertTo-Json -Depth 5 instead of Export-Csv",
            )
