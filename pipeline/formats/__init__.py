"""Recognise an export by its content and read it into canonical rows.

`sniff` looks at the first bytes only (encoding, container, header keys); `read` parses the
whole file. Formats are tried from the most specific to the least, by their column names.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import TypeVar

import polars as pl

from pipeline.errors import InputFormatError
from pipeline.formats import audit, clixml, config, messagetrace, onprem, scubagear, tracking
from pipeline.formats.common import Context, Parsed, TabularFormat, reject_rows
from pipeline.formats.source import (
    UTF8, Head, Pending, deciding_column, json_records, read_csv_batches, read_csv_frame,
    read_head, records_frame,
)
from pipeline.normalize import header_key

T = TypeVar("T")
R = TypeVar("R")

TABULAR: list[TabularFormat] = [
    *onprem.FORMATS, *config.FORMATS, *audit.FORMATS, *tracking.FORMATS, *messagetrace.FORMATS,
]
# Which table a file feeds decides ingest order: configuration first, so that message
# directions can use the tenant's accepted domains from the same batch.
TABLE_ORDER = ["accepted_domains", "inbound_connectors", "outbound_connectors",
               "receive_connectors", "send_connectors", "ad_permissions", "audit_events",
               "messages", "onprem_hops"]
_MSGTRK_ROW = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z,"


@dataclass(frozen=True)
class Sniffed:
    container: str  # csv | json | clixml | msgtrk | scubagear
    format: str
    table: str
    head: Head
    skip_lines: int = 0
    empty: bool = False  # an empty export read as "none" (see _empty_export)


def _identify(keys: set[str], file: str, line: int, shown: list[str]) -> TabularFormat:
    for fmt in TABULAR:
        if fmt.matches(keys):
            return fmt
    raise InputFormatError(
        file, line,
        "unknown columns " + ", ".join(shown[:12]) + (" ..." if len(shown) > 12 else ""),
        "expected a message trace, trace detail, historical search report, tracking log, "
        "accepted domain, connector or audit log export (see docs/formats.md)",
    )


# PowerShell's display formats: `Name : value` (or `Name = value`) lines (Format-List,
# the default for wide objects) and a header underlined with dashes (Format-Table). They
# cut long values short, so they are no export: say so, rather than "unknown columns".
_LIST_LINE = re.compile(r"^[A-Za-z_][\w@.-]*\s*[:=](\s|$)")
_TABLE_RULE = re.compile(r"^-+( +-+)*\s*$")


def _display_text(lines: list[str]) -> bool:
    shown = [ln for ln in lines[:40] if ln.strip()]
    listed = sum(1 for ln in shown if _LIST_LINE.match(ln))
    return listed >= 2 and listed * 2 >= len(shown) or any(
        _TABLE_RULE.match(ln) for ln in shown[1:3])


# What PowerShell writes for a tenant without connectors: nothing at all (an empty pipeline
# through ConvertTo-Json), `[]` (-AsArray, -InputObject @()), or `[null]` / `null`. No
# content to recognise, so there, and only there, the file's name decides what it is.
_NOTHING = {"", "[]", "[null]", "null", '{"value":[]}'}
_EMPTY_EXPORTS = {"inbound_connectors": re.compile(r"inbound.?connector", re.I),
                  "outbound_connectors": re.compile(r"outbound.?connector", re.I)}


def _empty_export(head: Head, file: str) -> Sniffed | None:
    """An empty connector export, recognised by its name: the evidence 'none'."""
    if "".join(head.text.split()) not in _NOTHING or len(head.text) > 64:
        return None
    name = file.rsplit("/", 1)[-1]
    for table, pattern in _EMPTY_EXPORTS.items():
        if pattern.search(name):
            return Sniffed("json", table, table, head, empty=True)
    return None


def sniff(path: Path, file: str, headerless_msgtrk: str = "none") -> Sniffed:
    head = read_head(path, file)
    empty = _empty_export(head, file)
    if empty is not None:
        return empty
    if not head.text.strip():
        raise InputFormatError(file, None, "the file is empty", "export it again")
    lead = next(i for i, ln in enumerate(head.lines) if ln.strip())  # blank lines skipped
    lines = head.lines[lead:]
    first = lines[0].strip()
    if _display_text(lines):
        raise InputFormatError(
            file, lead + 1, "PowerShell display text (Format-List or Format-Table output), "
            "not an export: it cuts values short", "export with Export-Csv -NoTypeInformation "
            "or ConvertTo-Json -Depth 5 instead of Format-List, Format-Table or the console")
    if first.startswith("#Software: Microsoft Exchange") or any(
            ln.startswith("#Fields:") for ln in lines[:10] if ln.startswith("#")):
        return Sniffed("msgtrk", "exchange_tracking_log", "messages", head)
    if re.match(_MSGTRK_ROW, first):
        if headerless_msgtrk == "none":
            tracking.msgtrk_fields(head, file, headerless_msgtrk)  # raises with the fix
        return Sniffed("msgtrk", "exchange_tracking_log", "messages", head)
    if first.startswith("<"):
        if "<Objs" not in head.text[:4096]:
            raise InputFormatError(file, lead + 1, "XML that is not PowerShell CLIXML (no "
                                   "<Objs> root)", "export with Export-Clixml, Export-Csv "
                                   "or ConvertTo-Json")
        keys = [header_key(k) for k in clixml.first_keys(path, file)]
        fmt = _identify(set(keys), file, 1, keys)
        return Sniffed("clixml", fmt.name, fmt.table, head)
    if first.startswith(("[", "{")):
        keys = _json_keys(head.text, file)
        if scubagear.is_export(set(keys)):
            return Sniffed("scubagear", scubagear.NAME, "accepted_domains", head)
        fmt = _identify(set(keys), file, 1, keys)
        return Sniffed("json", fmt.name, fmt.table, head)
    skip = 1 if first.startswith("#TYPE") else 0
    if skip and len(lines) < 2:
        raise InputFormatError(file, 1, "only a '#TYPE' line, no header or rows",
                               "export again; the export was cut short")
    header = lines[skip]
    if len(header) > MAX_HEADER_CHARS or header.count(",") >= MAX_COLUMNS:
        raise InputFormatError(file, lead + skip + 1, f"a header of {header.count(',') + 1:,}+ "
                               f"columns (exports have at most {MAX_COLUMNS})",
                               "this is not an Exchange export; check the file")
    names = _split_header(header)
    keys = [header_key(n) for n in names]
    fmt = _identify(set(keys), file, lead + skip + 1, [n.strip() for n in names])
    return Sniffed("csv", fmt.name, fmt.table, head, lead + skip)


# The widest export relaywatch reads has ~60 columns (message trace detail with every
# property); a header far past that is not an export, and reading it would take gigabytes.
MAX_COLUMNS = 1000
MAX_HEADER_CHARS = 64 * 1024


def _format(sniffed: Sniffed) -> TabularFormat:
    """The tabular format a file was recognised as."""
    return next(f for f in TABULAR if f.name == sniffed.format)


def _too_deep(file: str) -> InputFormatError:
    return InputFormatError(file, None, "JSON nested too deeply to be an export",
                            "export records with ConvertTo-Json -Depth 5")


def _split_header(line: str) -> list[str]:
    return next(csv.reader([line]), [])


def _json_keys(text: str, file: str) -> list[str]:
    """Keys of the first JSON object in the head (the head may cut the file mid-way)."""
    decoder = json.JSONDecoder()
    s = text.lstrip()
    if s.startswith("["):
        s = s[1:].lstrip()
    try:
        obj, _ = decoder.raw_decode(s)
    except RecursionError:
        raise _too_deep(file) from None
    except json.JSONDecodeError:
        # a huge first record or pretty-printed JSON: fall back to the keys we can see
        keys = re.findall(r'"([A-Za-z_@.][\w@.]*)"\s*:', text[:65536])
        if not keys:
            raise InputFormatError(file, 1, "starts like JSON but no object could be read",
                                   "check the file is complete JSON") from None
        return list(dict.fromkeys(header_key(k) for k in keys))
    if isinstance(obj, dict) and isinstance(obj.get("value"), list) and obj["value"]:
        obj = obj["value"][0]
    if not isinstance(obj, dict):
        raise InputFormatError(file, 1, "JSON that holds no objects",
                               "export records with ConvertTo-Json -Depth 5")
    return [header_key(k) for k in obj]


def read(path: Path, sniffed: Sniffed, ctx: Context) -> Parsed:
    """Parse the whole file into canonical rows and row rejects."""
    return without_oversized_fields(_read(path, sniffed, ctx))


# Files bigger than this, in a format whose rows stand alone, are parsed a part at a time.
STREAM_BYTES = 64 * 2**20
STREAM_ROWS = 150_000
# Parts parsed ahead of the caller, per core: a UTF-8 part's parsing is spread over the
# cores by Polars, and Polars' reader reads ahead by itself; a transcoded chunk is also
# read into a frame by the thread that parses it. Measured on 2 cores: UTF-8 5M/10M-row
# files with 150k-row parts and one ahead took 2%/9% less time than 100k-row parts and two
# ahead, at the same peak memory; UTF-16 with one ahead took 4% more than with two.
PARTS_AHEAD_PER_CORE = {"utf-8": 0.5, "transcoded": 1.0}
STREAMABLE = {"historical_search_summary", "message_trace"}
SCUBAGEAR_TABLES = ("accepted_domains", "inbound_connectors", "outbound_connectors")


def read_parts(path: Path, sniffed: Sniffed, ctx: Context) -> Generator[Parsed, None, None]:
    """Parsed parts of a file: the whole file at once, or, for a large CSV whose rows stand
    alone (one per message or recipient), STREAM_ROWS records at a time, so memory stays
    flat whatever the file's size. Line numbers and the day/month order carry across."""
    if sniffed.container == "scubagear":
        tables = {f.table: f for f in TABULAR if f.table in SCUBAGEAR_TABLES}
        for parsed in scubagear.parts(path, ctx, tables):
            yield without_oversized_fields(parsed)
        return
    if sniffed.container in ("json", "clixml") and not sniffed.empty:
        for parsed in _json_parts(path, sniffed, ctx, parts=True):
            yield without_oversized_fields(parsed)
        return
    if (sniffed.container != "csv" or sniffed.format not in STREAMABLE
            or path.stat().st_size < STREAM_BYTES):
        parsed = read(path, sniffed, ctx)
        yield parsed
        yield from parsed.also
        return

    ctx = replace(ctx, whole_column=lambda key: deciding_column(
        path, sniffed.head, ctx.file, sniffed.skip_lines, key))

    def parse(df: pl.DataFrame | Pending) -> Parsed:
        if isinstance(df, Pending):  # a transcoded chunk, read here (beside the decoding)
            df = df.frame()
        return without_oversized_fields(_parse_csv(df, sniffed, ctx))

    batches = read_csv_batches(path, sniffed.head, ctx.file, sniffed.skip_lines, STREAM_ROWS,
                               pending=True)
    first = next(batches, None)
    if first is None:
        return
    first_part = parse(first)  # decides what the other parts share (the day/month order)
    # Polars releases the GIL, so the next parts parse side by side on every core, in order,
    # a few parts ahead of the caller (which meanwhile checks the hash and writes)
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                              thread_name_prefix="relaywatch-parse")
    try:
        per_core = PARTS_AHEAD_PER_CORE[
            "utf-8" if sniffed.head.encoding in UTF8 else "transcoded"]
        ahead = max(1, int(per_core * (os.cpu_count() or 1)))
        rest = ordered_map(pool, parse, batches, ahead=ahead)
        yield first_part
        yield from rest
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def ordered_map(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterator[T],
                ahead: int) -> Iterator[R]:
    """fn over items in the pool, results in input order, at most `ahead` in flight. The
    first `ahead` items are submitted now, before the results are asked for."""
    pending: deque[Future[R]] = deque(pool.submit(fn, item) for item in islice(items, ahead))

    def results() -> Iterator[R]:
        while pending:
            yield pending.popleft().result()
            pending.extend(pool.submit(fn, item) for item in islice(items, 1))

    return results()


# No field of a real export comes near this (subjects are cut at 255 characters in traces,
# audit parameters at a few KB); a row that holds more is broken or hostile.
MAX_FIELD = 65_536


def without_oversized_fields(parsed: Parsed) -> Parsed:
    """Move rows with a text field over MAX_FIELD characters to the rejects."""
    text = [c for c, t in parsed.rows.schema.items() if t == pl.String]
    if not text or "source_line" not in parsed.rows.columns:
        return parsed
    checks = [(pl.col(c).str.len_bytes() > MAX_FIELD,
               f"field {c} is longer than {MAX_FIELD:,} bytes (a broken or hostile export)",
               pl.col(c)) for c in text]
    rows = parsed.rows.rename({"source_line": "_line"})
    good, rejects = reject_rows(rows, checks)
    if rejects.height == 0:
        return parsed
    parsed.rows = good.rename({"_line": "source_line"})
    parsed.rejects = pl.concat([parsed.rejects, rejects.select(parsed.rejects.columns)],
                               how="vertical_relaxed")
    return parsed


def _read(path: Path, sniffed: Sniffed, ctx: Context) -> Parsed:
    if sniffed.container == "scubagear":  # several tables: read_parts gives each
        raise InputFormatError(ctx.file, None, "a ScubaGear export holds several tables",
                               "ingest it (relaywatch ingest), which reads each")
    if sniffed.empty:
        fmt = _format(sniffed)
        return fmt.parse(records_frame([]), ctx)
    if sniffed.container == "msgtrk":
        return tracking.read_msgtrk(path, sniffed.head, ctx)
    if sniffed.container in ("json", "clixml"):
        parts = list(_json_parts(path, sniffed, ctx, parts=False))
        parsed = parts[0]
        parsed.rows = pl.concat([p.rows for p in parts], how="diagonal_relaxed")
        parsed.rejects = pl.concat([p.rejects for p in parts], how="vertical_relaxed")
        return parsed
    return _parse_csv(read_csv_frame(path, sniffed.head, ctx.file, skip_lines=sniffed.skip_lines),
                      sniffed, ctx)


# Message records of a JSON file parsed at a time (memory holds these, not the file)
JSON_PART_RECORDS = 100_000


def _json_parts(path: Path, sniffed: Sniffed, ctx: Context, parts: bool) -> Iterator[Parsed]:
    """A JSON or CLIXML file's records through its format's parser, JSON_PART_RECORDS at a
    time when `parts` (message rows stand alone; a configuration snapshot is one part)."""
    fmt = _format(sniffed)
    size = JSON_PART_RECORDS if parts and fmt.table == "messages" else None
    records: list[tuple[int, dict]] = []
    bad: list[tuple[int, str, str]] = []

    def part() -> Parsed:
        parsed = fmt.parse(records_frame(records), ctx)
        if bad:
            parsed.rejects = pl.concat([
                parsed.rejects, pl.DataFrame(bad, schema=parsed.rejects.schema, orient="row")])
        suffix = "_" + sniffed.container
        if parsed.table == "messages" and not parsed.format.endswith(suffix):
            parsed.format += suffix
        records.clear()
        bad.clear()
        return parsed

    items = (clixml.records(path, ctx.file) if sniffed.container == "clixml"
             else json_records(path, sniffed.head, ctx.file))
    for line, record, problem in items:
        if record is not None:
            records.append((line, record))
        elif problem is not None:
            bad.append((line, *problem))
        if size and len(records) >= size:
            yield part()
    yield part()


def _parse_csv(df: pl.DataFrame, sniffed: Sniffed, ctx: Context) -> Parsed:
    """A CSV frame (whole file or part) through its format's parser."""
    fmt = _format(sniffed)
    parsed = fmt.parse(df, ctx)
    if sniffed.skip_lines and parsed.table == "messages":
        parsed.format += "_ps51"  # Windows PowerShell 5.1's #TYPE line
    return parsed


__all__ = ["Context", "Parsed", "Sniffed", "TABLE_ORDER", "read", "read_parts", "sniff"]
