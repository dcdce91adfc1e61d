"""CISA ScubaGear's ProviderSettingsExport.json: one file, many tables. The Exchange Online
provider's `accepted_domains`, `inbound_connectors` and `outbound_connectors` (each the
cmdlet's output through Windows PowerShell 5.1 ConvertTo-Json: `/Date(ms)/` times, `[null]`
for an empty result) are read with the same parsers as the cmdlets' own exports, each into
its own table; `transport_rule`, `transport_config`, `remote_domains` and `conn_filter` are
kept whole in exo_settings. A section missing from the file (the provider did not run) is no
evidence. Each section stands alone: one that cannot be read is a reject naming it, and the
file's other tables still land."""

from __future__ import annotations

import json
from functools import partial
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl

from pipeline.errors import InputFormatError
from pipeline.formats.common import REJECT_SCHEMA, Context, Parsed, TabularFormat
from pipeline.formats.config import created_changed
from pipeline.formats.source import records_frame

NAME = "scubagear_provider_settings"
# the keys every ProviderSettingsExport.json starts with (header_key form)
MARKERS = {"baselineversion", "moduleversion", "timestampzulu"}
# the sections kept whole in exo_settings, for the findings and ad hoc SQL
KEPT = ("transport_rule", "transport_config", "remote_domains", "conn_filter")
# a real export is a few MB (a large tenant's Entra sections included)
MAX_BYTES = 512 * 2**20


def is_export(keys: set[str]) -> bool:
    return MARKERS <= keys


def parts(path: Path, ctx: Context, formats: dict[str, TabularFormat]) -> Iterator[Parsed]:
    """A Parsed per Exchange Online table the export holds (formats: table → format)."""
    if path.stat().st_size > MAX_BYTES:
        raise InputFormatError(ctx.file, None, f"a ScubaGear export over {MAX_BYTES // 2**20} "
                               "MB", "this is not a ProviderSettingsExport.json; check the file")
    try:
        with open(path, "rb") as fh:
            doc = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InputFormatError(ctx.file, getattr(exc, "lineno", None),
                               f"ScubaGear export that is not complete JSON ({exc})",
                               "run ScubaGear again; the file was cut or edited") from None
    if not isinstance(doc, dict):
        raise InputFormatError(ctx.file, 1, "ScubaGear export that is not a JSON object",
                               "give the ProviderSettingsExport.json ScubaGear wrote")
    for table, fmt in formats.items():
        section = doc.get(table)
        if section is not None:
            yield _section(table, section, ctx, partial(_tabular, fmt, ctx))
    kept = [_section("exo_settings", doc[name], ctx, partial(_kept, name, ctx))
            for name in KEPT if doc.get(name) is not None]
    if kept:  # one table, one file: the sections together
        yield Parsed(f"{NAME}:exo_settings", "exo_settings",
                     pl.concat([p.rows for p in kept if p.rows.width] or [pl.DataFrame()],
                               how="diagonal_relaxed"),
                     pl.concat([p.rejects for p in kept]))


def _section(table: str, section: object, ctx: Context,
             parse: Callable[[list[tuple[int, dict]]], Parsed]) -> Parsed:
    """One section's table, or, when it cannot be read, a reject that names it."""
    objs = section if isinstance(section, list) else [section]
    records = [(i, o) for i, o in enumerate(objs, 1) if isinstance(o, dict)]
    try:
        parsed = parse(records)
    except InputFormatError as exc:
        reason = f"section {table}: {exc.problem}" + (f"; {exc.fix}" if exc.fix else "")
        parsed = Parsed("", table, pl.DataFrame(), pl.DataFrame(
            {"source_line": [exc.line], "reason": [reason], "raw": [None]},
            schema=REJECT_SCHEMA))
    parsed.format = f"{NAME}:{table}"
    return parsed


def _tabular(fmt: TabularFormat, ctx: Context, records: list[tuple[int, dict]]) -> Parsed:
    return fmt.parse(records_frame(records), ctx)


def _kept(section: str, ctx: Context, records: list[tuple[int, dict]]) -> Parsed:
    df = records_frame(records)
    created, changed = created_changed(df, ctx)
    name = pl.coalesce([pl.col(c) for c in ("name", "identity") if c in df.columns]
                       or [pl.lit(None, dtype=pl.String)])
    rows = df.select(
        pl.lit(ctx.snapshot_utc).cast(pl.Datetime("us", "UTC")).alias("snapshot_utc"),
        pl.lit(section).alias("section"), name.alias("name"),
        (df["state"] if "state" in df.columns else pl.lit(None, dtype=pl.String)).alias("state"),
        created.alias("when_created_utc"), changed.alias("when_changed_utc"),
        pl.Series([json.dumps(o, ensure_ascii=False) for _, o in records],
                   dtype=pl.String).alias("properties"),
        df["_line"].alias("source_line"))
    return Parsed("", "exo_settings", rows)
