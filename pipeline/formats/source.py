"""Reading an input file's bytes: encoding sniffing, streaming transcoding, CSV and JSON tables.

Every container reader returns a `Frame`: all values as strings, columns renamed to their
normalised header key (see `normalize.header_key`), and a `_line` column pointing back into
the file. Formats then map those keys to canonical columns.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import InputFormatError
from pipeline.normalize import deciding_dates, header_key

HEAD_BYTES = 64 * 1024
UTF8 = ("utf-8", "utf-8-sig")  # encodings read as they are; others are transcoded
_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Head:
    """The first bytes of a file, decoded: enough to recognise its format."""

    encoding: str  # a Python codec name; "utf-8" means the file can be read as is
    text: str
    lines: list[str]
    # line breaks other than LF and CRLF (old Mac exports, hand-edited files): the CSV
    # reader sees only LF, so such a file is read through a copy with LF line breaks
    bare_cr: bool = False

    @property
    def as_is(self) -> bool:
        """Whether the file's own bytes can go to the CSV reader."""
        return self.encoding in UTF8 and not self.bare_cr


def sniff_encoding(raw: bytes, file: str) -> str:
    if raw.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if raw.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le-bom"
    if raw.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be-bom"
    if raw.startswith(b"PK\x03\x04"):
        raise InputFormatError(
            file, None, "this is a ZIP/Excel workbook, not a text export",
            "save it as CSV (UTF-8 or UTF-16) or export with Export-Csv / ConvertTo-Json",
        )
    sample = raw[:4096]
    if sample:
        odd_nuls = sample[1::2].count(0) / max(1, len(sample[1::2]))
        even_nuls = sample[0::2].count(0) / max(1, len(sample[0::2]))
        if odd_nuls > 0.3 and even_nuls < 0.05:
            return "utf-16-le"
        if even_nuls > 0.3 and odd_nuls < 0.05:
            return "utf-16-be"
        if sample.count(0) > len(sample) // 10 or sample.startswith((b"\x1f\x8b", b"%PDF")):
            raise InputFormatError(
                file, None, "binary content, not a text export",
                "give relaywatch the CSV, JSON or MSGTRK*.LOG file itself (unzip it first)",
            )
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(raw) - 3:  # a character cut by the head's end: still UTF-8
            return "utf-8"
        return "cp1252"


def read_head(path: Path, file: str) -> Head:
    with open(path, "rb") as fh:
        raw = fh.read(HEAD_BYTES)
    enc = sniff_encoding(raw, file)
    codec = enc.replace("-bom", "")
    if codec.startswith("utf-16") and len(raw) % 2:
        raw = raw[:-1]
    text = codecs.getincrementaldecoder(codec)(errors="replace").decode(raw, final=False)
    text = text.lstrip("\ufeff").replace("\x00", "")
    bare_cr = re.search(r"\r(?!\n)", text.rstrip("\r")) is not None
    return Head(enc, text, text.splitlines(), bare_cr)


@contextmanager
def utf8_path(path: Path, head: Head, file: str) -> Iterator[Path]:
    """A UTF-8 view of the file with LF line breaks: the file itself, or a temporary
    transcoded copy (streamed; CR and CRLF line breaks become LF)."""
    if head.as_is:
        yield path
        return
    codec = head.encoding.replace("-bom", "")
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    fd, tmp = tempfile.mkstemp(prefix="relaywatch-", suffix=".csv")
    try:
        with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            offset, first, held = 0, True, ""
            while chunk := src.read(_CHUNK):
                try:
                    text = held + decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise _invalid_bytes(file, codec, offset + exc.start) from None
                if first:
                    text = text.lstrip("\ufeff")
                    first = False
                if head.bare_cr:  # a CR at the chunk's end may be half of a CRLF
                    text, held = (text[:-1], "\r") if text.endswith("\r") else (text, "")
                    text = text.replace("\r\n", "\n").replace("\r", "\n")
                dst.write(text.replace("\x00", "").encode("utf-8"))
                offset += len(chunk)
            dst.write(b"\n" if held else b"")
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise _cut_character(file, codec) from None
        yield Path(tmp)
    finally:
        os.unlink(tmp)


def _rename(df: pl.DataFrame) -> pl.DataFrame:
    seen: dict[str, int] = {}
    names = []
    for c in df.columns:
        k = c if c == "_row" else (header_key(c) or "column")
        seen[k] = seen.get(k, 0) + 1
        names.append(k if seen[k] == 1 else f"{k}{seen[k]}")
    return df.rename(dict(zip(df.columns, names, strict=False)))


def read_csv_frame(path: Path, head: Head, file: str, skip_lines: int = 0,
                   columns: list[str] | None = None) -> pl.DataFrame:
    """Read a CSV with every value as a string; `_line` is the 1-based line of each record.

    `columns` gives the header for files whose header is not a CSV line (MSGTRK `#Fields`).
    """
    with utf8_path(path, head, file) as src:
        try:
            df = pl.read_csv(
                src, has_header=columns is None, new_columns=columns, skip_lines=skip_lines,
                infer_schema=False, comment_prefix="#" if columns else None,
                truncate_ragged_lines=True, row_index_name="_row", raise_if_empty=False,
                encoding="utf8",
            )
        except pl.exceptions.ComputeError as exc:
            if "invalid utf-8" in str(exc).lower() and head.encoding == "utf-8":
                return read_csv_frame(path, Head("cp1252", head.text, head.lines,
                                                 head.bare_cr), file, skip_lines, columns)
            raise InputFormatError(file, None, f"not readable as CSV ({_first_line(exc)})",
                                   "check that the file is a complete CSV export") from None
        except pl.exceptions.NoDataError:
            raise InputFormatError(file, 1, "the file has no header line",
                                   "export again with headers") from None
        _account(src, df.height, skip_lines + (1 if columns is None else 0), columns is not None,
                 file)
    if columns is None:
        df = _rename(df)
    first = skip_lines + (1 if columns is None else _comment_lines(head))
    return df.with_columns((pl.col("_row").cast(pl.Int64) + first + 1).alias("_line")).drop("_row")


def _account(src: Path, rows: int, header_lines: int, comments: bool, file: str) -> None:
    """Every record of the file must be a row read: count the records (line breaks outside
    quoted fields) independently of the CSV reader, so that no line-break or quoting quirk
    can drop rows silently."""
    data = src.read_bytes().removeprefix(codecs.BOM_UTF8)
    ends = 0 if data.endswith(b"\n") or not data else 1  # a last line without a break
    lines = data.count(b"\n") + ends
    if comments:
        lines -= data.count(b"\n#") + data.startswith(b"#")
    if lines - header_lines == rows:  # one record a line: the usual case, counted in C
        return
    records, inside = 0, False  # else line breaks inside quoted fields must explain it
    for line in data.split(b"\n"):
        if inside:
            inside = line.count(b'"') % 2 == 0
        elif not (comments and line.startswith(b"#")):
            records += 1
            inside = line.count(b'"') % 2 == 1
    records -= 1 - ends  # the text after the last line break is not a record
    expected = max(0, records - header_lines)
    if expected != rows:
        raise InputFormatError(file, None, f"the CSV reader read {rows:,} records, but the file "
                               f"holds {expected:,}", "check the file's line breaks and quoting, "
                               "or export it again; nothing of it was stored")


def deciding_column(path: Path, head: Head, file: str, skip_lines: int, key: str
                    ) -> list[str | None]:
    """The values of a file's column (by its header key) that decide a day/month order, over
    the whole file: read for that column alone, only when a first part cannot decide."""
    with utf8_path(path, head, file) as src:
        lf = pl.scan_csv(src, infer_schema=False, skip_lines=skip_lines, encoding="utf8",
                         truncate_ragged_lines=True, raise_if_empty=False)
        names = [n for n in lf.collect_schema().names() if header_key(n) == key][:1]
        if not names:
            return []
        values = lf.select(pl.col(names[0]).unique()).collect().to_series()
    return deciding_dates(values)


@dataclass
class Pending:
    """A transcoded chunk of whole records not yet read into a frame. Reading it can be
    left to any thread (the decoding itself holds the interpreter lock, the CSV reading
    does not): its line numbers go on from the chunk before, once that one is read."""

    text: bytes
    names: list[str]
    file: str
    start: Future[int]  # this chunk's first line
    end: Future[int] = field(default_factory=Future)  # the next chunk's first line

    def frame(self) -> pl.DataFrame:
        try:
            df = _csv_text_frame(self.text, self.names, self.file)
            first = self.start.result()
        except BaseException as exc:
            self.end.set_exception(exc)  # the chunks after this one fail the same way
            raise
        self.end.set_result(first + df.height)
        return df.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + first).alias("_line"))


def read_csv_batches(path: Path, head: Head, file: str, skip_lines: int, rows: int,
                     pending: bool = False) -> Iterator[pl.DataFrame | Pending]:
    """The same frames as read_csv_frame, about `rows` records at a time, streamed: a file of
    any size is never held in memory whole. UTF-16 and other encodings are transcoded a
    chunk at a time in memory, cut at record boundaries (no temporary copy); with
    `pending`, those chunks come unread, for the caller's threads to read."""
    if head.bare_cr:  # through an LF copy (rare: old Mac exports, hand-edited files)
        with utf8_path(path, head, file) as copy:
            yield from read_csv_batches(copy, Head("utf-8", head.text, head.lines), file,
                                        skip_lines, rows, pending)
        return
    if head.encoding not in UTF8:
        for chunk in _transcoded_batches(path, head, file, skip_lines, rows):
            yield chunk if pending else chunk.frame()
        return
    lf = pl.scan_csv(path, infer_schema=False, skip_lines=skip_lines, row_index_name="_row",
                     truncate_ragged_lines=True, raise_if_empty=False, encoding="utf8")
    try:
        for df in lf.collect_batches(chunk_size=rows):
            # one chunk: a batch comes in a dozen, and every later pass over a column in
            # pieces costs more than this copy (parsing a part: 20% more)
            df = _rename(df.rechunk())
            yield df.with_columns((pl.col("_row").cast(pl.Int64) + skip_lines + 2)
                                  .alias("_line")).drop("_row")
    except pl.exceptions.ComputeError as exc:
        raise _not_csv(file, exc) from None


_AVERAGE_RECORD_BYTES = 300
MAX_RECORD_CHARS = 64 * 2**20


def _transcoded_batches(path: Path, head: Head, file: str, skip_lines: int,
                        rows: int) -> Iterator[Pending]:
    """A chunk of the file at a time, read into one reused buffer and cut after its last
    newline before it is decoded (no copy: the decoder reads a view of the buffer), so
    each chunk is whole records and the next read starts where this one was cut. A cut
    inside a quoted field (an odd count of quotes before it) moves back to the last
    newline outside quotes; a record longer than the buffer doubles it."""
    codec = head.encoding.replace("-bom", "")
    newline = "\n".encode(codec)  # b"\n\x00" in UTF-16LE: one code unit
    decode = codecs.getdecoder(codec)  # stateless: each piece is whole characters
    buf = bytearray(rows * _AVERAGE_RECORD_BYTES * len(newline))
    names: list[str] | None = None
    offset, line = 0, Future[int]()
    line.set_result(skip_lines + 2)
    with open(path, "rb") as src:
        while True:
            src.seek(offset)
            n = src.readinto(buf)
            at_end = n < len(buf)
            cut = n if at_end else _last_newline(buf, n, newline)
            text = _decoded(decode, memoryview(buf)[:cut], codec, file, offset)
            if names is None:
                lines = text.removeprefix(codecs.BOM_UTF8).split(b"\n", skip_lines + 1)
                if len(lines) > skip_lines + 1 or at_end:
                    header = lines[skip_lines].decode("utf-8").rstrip("\r").replace("\x00", "")
                    names = next(csv.reader([header]), [])
                    rest = lines[skip_lines + 1] if len(lines) > skip_lines + 1 else b""
                    offset += cut - _raw_length(rest, codec)  # the first record's start
                    continue
                text = b""  # the header runs on past the buffer
            if not at_end and text.count(b'"') % 2:  # the cut fell inside a quoted field
                end = _record_end(text)
                cut -= _raw_length(text[end:], codec)
                text = text[:end]
            if not text and not at_end:  # not one whole record (or header) in the buffer
                if len(buf) // len(newline) > MAX_RECORD_CHARS:
                    raise InputFormatError(
                        file, line.result(), f"a quoted field runs on for over "
                        f"{MAX_RECORD_CHARS:,} characters (a quote that never closes)",
                        "check that the file is a complete CSV export")
                buf = bytearray(len(buf) * 2)
                continue
            offset += cut
            if text and not text.isspace():
                assert names is not None  # the header is read before any record
                chunk = Pending(text, names, file, line)
                line = chunk.end
                yield chunk
            if at_end:
                return


def _last_newline(buf: bytearray, n: int, newline: bytes) -> int:
    """Where the buffer's last whole line ends (0: no newline); in UTF-16 only a newline
    at a code unit's place counts."""
    at = buf.rfind(newline, 0, n)
    while at > 0 and at % len(newline):
        at = buf.rfind(newline, 0, at + 1)
    return at + len(newline) if at >= 0 else 0


def _raw_length(text: bytes, codec: str) -> int:
    """How many bytes of the file UTF-8 `text` was decoded from."""
    return len(text.decode("utf-8").encode(codec))


def _decoded(decode: Callable[..., tuple[str, int]], raw: memoryview, codec: str, file: str,
             offset: int) -> bytes:
    """The raw piece as UTF-8 bytes."""
    try:
        text, used = decode(raw, "strict")
    except UnicodeDecodeError as exc:
        raise _invalid_bytes(file, codec, offset + exc.start) from None
    if used < len(raw):  # only the file's last piece can end part-way through a character
        raise _cut_character(file, codec)
    return text.encode("utf-8")


def _invalid_bytes(file: str, codec: str, at: int) -> InputFormatError:
    return InputFormatError(file, None, f"invalid {codec} at byte {at}", "export the file "
                            "again; it is damaged or not in the encoding it claims")


def _cut_character(file: str, codec: str) -> InputFormatError:
    return InputFormatError(file, None, f"the file ends in the middle of a {codec} character "
                            "(truncated download)", "download or export the file again")


def _record_end(text: bytes) -> int:
    """Where the last complete record ends: after the last newline outside quotes (the text
    starts at a record boundary, so an even count of quotes before a newline means it
    ends a record)."""
    end = text.rfind(b"\n")
    while end >= 0 and text.count(b'"', 0, end) % 2:
        end = text.rfind(b"\n", 0, end)
    return end + 1


def _csv_text_frame(data: bytes, names: list[str], file: str) -> pl.DataFrame:
    try:
        df = pl.read_csv(data.replace(b"\x00", b"") if b"\x00" in data else data,
                         has_header=False,
                         new_columns=[f"column_{i}" for i in range(len(names))],
                         infer_schema=False, truncate_ragged_lines=True, raise_if_empty=False)
    except pl.exceptions.ComputeError as exc:
        raise _not_csv(file, exc) from None
    df = df.select(df.columns[:len(names)])
    return _rename(df.rename(dict(zip(df.columns, names, strict=False))))


def _not_csv(file: str, exc: Exception) -> InputFormatError:
    return InputFormatError(file, None, f"not readable as CSV ({_first_line(exc)})",
                            "check that the file is a complete UTF-8 or UTF-16 CSV export")


def _comment_lines(head: Head) -> int:
    n = 0
    for line in head.lines:
        if not line.startswith("#"):
            break
        n += 1
    return n


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300]


def flatten_value(value: object) -> str | None:
    """A JSON value as the string a CSV export would have held."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, dict):
        for key in ("Address", "Domain", "value", "DateTime"):
            if isinstance(value.get(key), (str, int)):
                return str(value[key])
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        if all(isinstance(v, dict) and "Name" in v for v in value) and value:
            return json.dumps(value, ensure_ascii=False)
        return ";".join(s for v in value if (s := flatten_value(v)) is not None)
    return str(value)


# JSON nested deeper than this is no export (ConvertTo-Json writes -Depth 2 by default,
# scripts ask for 5 or 10); a record with more keys than this is no export either.
MAX_JSON_DEPTH = 32
MAX_RECORD_KEYS = 1000
# (line or position, record) of a good record; (line, None, (reason, raw)) of a bad line
JsonItem = tuple[int, dict | None, tuple[str, str] | None]


def json_records(path: Path, head: Head, file: str) -> Iterator[JsonItem]:
    """The records of a JSON array, `{"value": [...]}` (Graph / Reporting web service),
    pretty-printed objects or NDJSON, one at a time: memory holds one record, never the
    file. NDJSON records carry their line; array elements their position (1-based)."""
    start = head.text.lstrip()
    ndjson = start.startswith("{") and head.lines and head.lines[0].rstrip().endswith("}")
    with _json_source(path, head) as raw:
        if ndjson:
            yield from _ndjson(raw, file)
        else:
            yield from _json_stream(raw, file)


@contextmanager
def _json_source(path: Path, head: Head) -> Iterator[Any]:
    """The file as UTF-8 bytes (transcoded as it is read, for UTF-16), BOM skipped."""
    codec = head.encoding.replace("-bom", "")
    with open(path, "rb") as fh:
        if codec in ("utf-8", "utf-8-sig"):
            if fh.read(3) != codecs.BOM_UTF8:
                fh.seek(0)
            yield fh
            return
        src = codecs.EncodedFile(fh, "utf-8", codec)  # type: ignore[arg-type]
        if head.encoding.endswith("-bom"):
            fh.read(2)
        yield src


def _ndjson(raw: Any, file: str) -> Iterator[JsonItem]:
    for n, line in enumerate(raw, start=1):
        text = line.decode("utf-8", errors="replace").strip().replace("\x00", "")
        if not text:
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield n, None, (f"invalid JSON ({exc.msg})", text[:1000])
            continue
        except RecursionError:
            yield n, None, ("JSON nested too deeply to be a record", text[:1000])
            continue
        if isinstance(obj, dict) and isinstance(obj.get("value"), list):
            for r in obj["value"]:
                if isinstance(r, dict):
                    yield n, _checked(r, file, n), None
        elif isinstance(obj, dict):
            yield n, _checked(obj, file, n), None
        else:
            yield n, None, ("a JSON value that is not an object", text[:1000])


def _checked(record: dict, file: str, at: int) -> dict:
    if len(record) > MAX_RECORD_KEYS:
        raise InputFormatError(file, at, f"a record with {len(record):,} keys (exports have at "
                               f"most {MAX_RECORD_KEYS})", "this is not an Exchange export")
    return record


def _json_stream(raw: Any, file: str) -> Iterator[JsonItem]:
    """Arrays and pretty-printed objects, from the parser's events (no prefixes, which cost
    memory by depth): records are built one at a time, and depth is bounded."""
    import ijson
    from ijson.common import ObjectBuilder

    depth, n = 0, 0
    builder: ObjectBuilder | None = None
    top: ObjectBuilder | None = None  # a top-level object (a record, or {"value": [...]})
    record_depth = 1  # records are the top-level array's elements, or objects at depth 0
    key = None
    wrapped = False
    try:
        for event, value in ijson.basic_parse(raw, multiple_values=True, use_float=True):
            if event in ("start_map", "start_array"):
                depth += 1
                if depth > MAX_JSON_DEPTH:
                    raise InputFormatError(file, None, f"JSON nested over {MAX_JSON_DEPTH} "
                                           "levels deep: no export is", "export records with "
                                           "ConvertTo-Json -Depth 5")
            if depth == 1 and event == "start_map" and builder is None:  # a top-level object
                top, wrapped, record_depth = ObjectBuilder(), False, 1
                top.event(event, value)
                continue
            if depth == 1 and event == "start_array" and top is None:
                record_depth = 2
                continue
            if top is not None and depth == 2 and builder is None and key == "value" \
                    and event == "start_array":
                wrapped, record_depth = True, 3
                continue
            if depth == record_depth and event == "start_map" and builder is None and (
                    top is None or wrapped):
                builder = ObjectBuilder()
            if builder is not None:
                builder.event(event, value)
                if event == "end_map" and depth == record_depth:
                    n += 1
                    yield n, _checked(builder.value, file, n), None
                    builder = None
            elif top is not None:
                if depth == 1 and event == "map_key":
                    key = value
                if not (wrapped and depth >= 2) and not (key == "value" and wrapped):
                    top.event(event, value)
                if depth == 1 and event == "end_map":
                    if not wrapped:
                        n += 1
                        yield n, _checked(top.value, file, n), None
                    top, key, wrapped = None, None, False
            if event in ("end_map", "end_array"):
                depth -= 1
    except ijson.JSONError as exc:
        raise InputFormatError(file, None, f"invalid JSON ({str(exc).strip()[:200]})",
                               "the file is truncated or not JSON; export it again") from None


def records_frame(records: list[tuple[int, dict]]) -> pl.DataFrame:
    """(line, record) pairs → a string frame with normalised header keys and `_line`."""
    rows: list[dict[str, str | None]] = []
    keys: dict[str, None] = {}
    for line, rec in records:
        row: dict[str, str | None] = {"_line": str(line)}
        for k, v in rec.items():
            key = header_key(str(k))
            row[key] = flatten_value(v)
            keys[key] = None
        rows.append(row)
    schema = {"_line": pl.String, **{k: pl.String for k in keys}}
    df = pl.from_dicts(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return df.with_columns(pl.col("_line").cast(pl.Int64))
