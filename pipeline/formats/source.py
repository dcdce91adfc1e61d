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
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.errors import InputFormatError
from pipeline.normalize import header_key

HEAD_BYTES = 64 * 1024
UTF8 = ("utf-8", "utf-8-sig")  # encodings read as they are; others are transcoded
_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Head:
    """The first bytes of a file, decoded: enough to recognise its format."""

    encoding: str  # a Python codec name; "utf-8" means the file can be read as is
    text: str
    lines: list[str]


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
    return Head(enc, text, text.splitlines())


@contextmanager
def utf8_path(path: Path, encoding: str, file: str) -> Iterator[Path]:
    """A UTF-8 view of the file: the file itself, or a temporary transcoded copy (streamed)."""
    if encoding in UTF8:
        yield path
        return
    codec = encoding.replace("-bom", "")
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    fd, tmp = tempfile.mkstemp(prefix="relaywatch-", suffix=".csv")
    try:
        with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            offset = 0
            first = True
            while chunk := src.read(_CHUNK):
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise _invalid_bytes(file, codec, offset + exc.start) from None
                if first:
                    text = text.lstrip("\ufeff")
                    first = False
                dst.write(text.replace("\x00", "").encode("utf-8"))
                offset += len(chunk)
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
    return df.rename(dict(zip(df.columns, names)))


def read_csv_frame(path: Path, head: Head, file: str, skip_lines: int = 0,
                   columns: list[str] | None = None) -> pl.DataFrame:
    """Read a CSV with every value as a string; `_line` is the 1-based line of each record.

    `columns` gives the header for files whose header is not a CSV line (MSGTRK `#Fields`).
    """
    with utf8_path(path, head.encoding, file) as src:
        try:
            df = pl.read_csv(
                src, has_header=columns is None, new_columns=columns, skip_lines=skip_lines,
                infer_schema=False, comment_prefix="#" if columns else None,
                truncate_ragged_lines=True, row_index_name="_row", raise_if_empty=False,
                encoding="utf8",
            )
        except pl.exceptions.ComputeError as exc:
            if "invalid utf-8" in str(exc).lower() and head.encoding == "utf-8":
                return read_csv_frame(path, Head("cp1252", head.text, head.lines), file,
                                      skip_lines, columns)
            raise InputFormatError(file, None, f"not readable as CSV ({_first_line(exc)})",
                                   "check that the file is a complete CSV export") from None
        except pl.exceptions.NoDataError:
            raise InputFormatError(file, 1, "the file has no header line",
                                   "export again with headers") from None
    if columns is None:
        df = _rename(df)
    first = skip_lines + (1 if columns is None else _comment_lines(head))
    return df.with_columns((pl.col("_row").cast(pl.Int64) + first + 1).alias("_line")).drop("_row")


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
    return _rename(df.rename(dict(zip(df.columns, names))))


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


def read_json_records(path: Path, head: Head, file: str) -> tuple[list[tuple[int, dict]], list[tuple[int, str, str]]]:
    """JSON array, `{"value": [...]}` (Graph / Reporting web service) or NDJSON.

    Returns (line, record) pairs and (line, reason, raw) for NDJSON lines that are not JSON.
    For arrays the number is the record's position (1-based), not a line.
    """
    codec = head.encoding.replace("-bom", "")
    try:
        text = path.read_bytes().decode(codec).lstrip("\ufeff").replace("\x00", "")
    except UnicodeDecodeError as exc:
        raise _invalid_bytes(file, codec, exc.start) from None
    stripped = text.lstrip()
    records: list[tuple[int, dict]] = []
    bad: list[tuple[int, str, str]] = []
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputFormatError(file, exc.lineno, f"invalid JSON ({exc.msg})",
                                   "the file is truncated or not JSON; export it again") from None
        return [(i + 1, r) for i, r in enumerate(data) if isinstance(r, dict)], bad
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == 1 and line.strip().startswith("{") and not line.rstrip().endswith("}"):
                # one pretty-printed object spread over many lines
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError:
                    raise InputFormatError(file, exc.lineno, f"invalid JSON ({exc.msg})",
                                           "the file is truncated or not JSON") from None
                return _unwrap(obj), bad
            bad.append((n, f"invalid JSON ({exc.msg})", line[:1000]))
            continue
        if isinstance(obj, dict) and isinstance(obj.get("value"), list):
            records += [(n, r) for r in obj["value"] if isinstance(r, dict)]
        elif isinstance(obj, dict):
            records.append((n, obj))
        else:
            bad.append((n, "a JSON value that is not an object", line[:1000]))
    return records, bad


def _unwrap(obj: object) -> list[tuple[int, dict]]:
    if isinstance(obj, dict) and isinstance(obj.get("value"), list):
        return [(i + 1, r) for i, r in enumerate(obj["value"]) if isinstance(r, dict)]
    return [(1, obj)] if isinstance(obj, dict) else []


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
