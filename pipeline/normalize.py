"""Normalisers shared by every format: header names, addresses, domains, timestamps, statuses.

Each is a Polars expression (so large files stay vectorised); the scalar helpers wrap the same
expression so tests and small callers use exactly the same logic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import idna
import polars as pl
from polars._typing import PolarsDataType

from pipeline.errors import InputFormatError

_HEADER_JUNK = re.compile(r"[\x00-\x1f\ufeff\"' ]")
_HEADER_SEP = re.compile(r"[-_ ]+")


def header_key(name: str) -> str:
    """`"Sender-Address "` → `senderaddress`: BOM, NUL, quotes, spaces, case and -_ ignored."""
    cleaned = _HEADER_JUNK.sub("", name.strip().strip("\ufeff\x00\"' "))
    return _HEADER_SEP.sub("", cleaned).lower()


# ---------------------------------------------------------------- evaluation per distinct value

def with_distinct(df: pl.DataFrame, **exprs: pl.Expr) -> pl.DataFrame:
    """`df.with_columns(**exprs)`, but each expression runs once per distinct combination of
    the columns it reads and is joined back.

    Exports repeat the same few senders, recipients, statuses, connectors and IPs millions of
    times, and the normalisers above are chains of string passes: on a real report this
    makes them cost per distinct value, not per row. Where most values are distinct
    (spam to random addresses), the expressions simply run per row. As in with_columns,
    no expression may read a column another of them writes.
    """
    if df.height < _SMALL:  # a few thousand rows: one pass costs less than the bookkeeping
        return df.with_columns(**exprs)
    order = df.columns + [name for name in exprs if name not in df.columns]
    groups: dict[tuple[str, ...], dict[str, pl.Expr]] = {}
    for name, expr in exprs.items():
        groups.setdefault(tuple(sorted(set(expr.meta.root_names()))), {})[name] = expr
    for roots, group in groups.items():
        if not roots:
            df = _evaluate(df, group)
            continue
        keys = df.select(roots)
        at = None  # one-column keys: each row's place among the distinct values
        if len(roots) == 1:
            values, at = distinct_places(keys.to_series())
            distinct = values.to_frame()
        else:
            distinct = keys.unique()
        if distinct.height * 2 > keys.height:
            df = _evaluate(df, group)
            continue
        tmp = {f"__distinct{i}": name for i, name in enumerate(group)}
        mapped = _evaluate(distinct, {t: group[n] for t, n in tmp.items()})
        if at is not None:
            df = df.with_columns(mapped.get_column(t).gather(at).alias(n)
                                 for t, n in tmp.items())
            continue
        joined = keys.join(mapped, on=list(roots), how="left", nulls_equal=True,
                           maintain_order="left")
        df = df.with_columns(joined.select(pl.col(t).alias(n) for t, n in tmp.items()))
    return df.select(order)  # columns where with_columns would have put them


_SMALL = 20_000  # rows


def distinct_places(values: pl.Series) -> tuple[pl.Series, pl.Series]:
    """The distinct values (null last, when there is one) and each value's place among them.
    Text takes one hash pass: a throwaway category mapping numbers values in order of
    appearance (unique() and then a lookup of every value cost twice as much)."""
    if values.dtype != pl.String:
        distinct = values.unique()
        return distinct, values.replace_strict(
            distinct, pl.int_range(distinct.len(), dtype=pl.UInt32, eager=True), default=None)
    mapping = pl.Categories.random()
    coded = values.cast(pl.Categorical(mapping))  # the mapping lives as long as a column uses it
    distinct = mapping.to_series().cast(pl.String).alias(values.name)
    places = coded.to_physical()
    if places.has_nulls():
        places = places.fill_null(distinct.len())
        distinct = distinct.extend_constant(None, 1)
    return distinct, places


def _evaluate(df: pl.DataFrame, exprs: dict[str, pl.Expr]) -> pl.DataFrame:
    """with_columns; for many rows through the lazy engine, whose common-subexpression
    elimination works out a shared part once (an address and its domain: the address
    chain once) but costs ~0.7 ms a call in planning."""
    if df.height < _SMALL:
        return df.with_columns(**exprs)
    return df.lazy().with_columns(**exprs).collect()


# ---------------------------------------------------------------- fast paths

# Most values of an export are already in normal form. A normaliser below first asks, in
# one cheap pass, which values are not, and runs its chain of string passes on those only.


def per_series(col: pl.Expr, fn: Callable[[pl.Series], pl.Series],
               dtype: PolarsDataType = pl.String) -> pl.Expr:
    """An expression that runs `fn` on the column's values (elementwise: literals
    broadcast, and any part of a column gives the same values)."""
    return col.cast(pl.String).map_batches(fn, return_dtype=dtype, is_elementwise=True)


def fix_where(s: pl.Series, needs: pl.Series, fix: Callable[[pl.Series], pl.Series],
              base: pl.Series | None = None) -> pl.Series:
    """`base` (else `s`), with `fix` of `s` where `needs` is true. Many values to fix are
    fixed once per distinct value."""
    out = s if base is None else base
    if not needs.any():
        return out
    at = needs.arg_true()
    part = s.gather(at)
    distinct, places = distinct_places(part)
    if distinct.len() * 2 < part.len():
        fixed = fix(distinct).gather(places)
    else:
        fixed = fix(part)
    return fixed if at.len() == s.len() else out.scatter(at, fixed)


def _chain(chain: Callable[[pl.Expr], pl.Expr]) -> Callable[[pl.Series], pl.Series]:
    """A chain of expression passes as a function of a Series."""
    return lambda s: s.to_frame("v").select(chain(pl.col("v")).alias(s.name)).to_series()


def _blank(s: pl.Series) -> pl.Series:
    """'' → null."""
    empty = s.str.len_bytes() == 0
    return s.set(empty, None) if empty.any() else s  # type: ignore[arg-type]


# ---------------------------------------------------------------- addresses and domains

# An address in normal form: lower case, one @, nothing to trim; its domain is what
# follows the @.
_PLAIN_ADDRESS = r"^[a-z0-9_+=-][a-z0-9._+=-]*@[a-z0-9-](?:[a-z0-9.-]*[a-z0-9-])?$"


def _address_chain(s: pl.Expr) -> pl.Expr:
    s = s.str.strip_chars(" \t\r\n\x00")
    inside = s.str.extract(r"<([^<>]*@[^<>]*)>\s*$", 1)
    s = pl.coalesce(inside, s)
    s = s.str.replace(r"^(?i:smtp:|mailto:)", "").str.strip_chars(" <>").str.to_lowercase()
    return s.str.strip_chars_end(".")


def address(col: pl.Expr) -> pl.Expr:
    """Trim, take the part inside <...>, drop mailto:/smtp: prefixes, lower-case; '' → null."""
    return per_series(col, _address)


def _address(s: pl.Series) -> pl.Series:
    return _blank(fix_where(s, ~s.str.contains(_PLAIN_ADDRESS), _chain(_address_chain)))


def _domain_chain(addr: pl.Expr) -> pl.Expr:
    return addr.str.extract(r"@([^@]*)$", 1).str.strip_chars(" .>\"").str.to_lowercase()


def domain(addr: pl.Expr) -> pl.Expr:
    """Domain of an (already normalised) address: text after the last @, no trailing dot."""
    return per_series(addr, _domain)


def _domain(s: pl.Series) -> pl.Series:
    after_at = _chain(lambda v: v.str.slice(v.str.find("@", literal=True) + 1))(s)
    return a_labels(_blank(fix_where(s, ~s.str.contains(_PLAIN_ADDRESS), _chain(_domain_chain),
                                     base=after_at)))


def _a_label(name: str) -> str:
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return name  # not a valid IDN: kept as written (compared as text)


def a_labels(s: pl.Series) -> pl.Series:
    """Internationalised domain names in their ASCII (`xn--`) form, IDNA 2008 with UTS #46
    mapping, so `bücher.example` in one export and `xn--bcher-kva.example` in another are
    one domain. ASCII names pass untouched (one cheap pass finds the others)."""
    return fix_where(s, s.str.contains(r"[^\x00-\x7f]").fill_null(False),
                     lambda v: v.map_elements(_a_label, return_dtype=pl.String))


def domain_name(col: pl.Expr) -> pl.Expr:
    """A bare domain name (accepted domains, connector domains): lower-case, no `*.`, no dot,
    in ASCII (`xn--`) form."""
    d = col.cast(pl.String).str.strip_chars(" \t.").str.to_lowercase().str.replace(r"^\*\.", "")
    return per_series(pl.when(d == "").then(None).otherwise(d), a_labels)


def ip(col: pl.Expr) -> pl.Expr:
    """Client IP without port (`ip:port`, `[v6]:port`) and without IPv6 `%scope`."""
    return per_series(col, _ip)


def _ip_chain(s: pl.Expr) -> pl.Expr:
    s = s.str.replace(r"^\[(.*)\]:\d+$", "${1}").str.replace(r"^([0-9.]+):\d+$", "${1}")
    return s.str.replace(r"%.*$", "").str.to_lowercase()


def _ip(s: pl.Series) -> pl.Series:
    # a plain IPv4 address has nothing to take off: values with anything but digits and
    # dots take the chain
    s = s.str.strip_chars(" \t")
    return _blank(fix_where(s, s.str.contains(r"[^0-9.]"), _chain(_ip_chain)))


def blank_to_null(col: pl.Expr) -> pl.Expr:
    """Trimmed; '' → null."""
    return per_series(col, lambda s: _blank(s.str.strip_chars(" \t\r\n\x00")))


def network_message_id(col: pl.Expr) -> pl.Expr:
    """Exchange's message id (a GUID): lower-case, trimmed, '' → null. Lower-cased before
    trimming (the same values): 0.034 CPU-s per 1M ids against 0.060 the other way round."""
    return blank_to_null(col.cast(pl.String).str.to_lowercase())


def after_backslash(col: pl.Expr) -> pl.Expr:
    """`DOMAIN\\Name` → `Name` (connector ids of on-premises servers carry the server)."""
    return per_series(col, lambda s: fix_where(s, s.str.contains("\\", literal=True),
                                               _chain(lambda v: v.str.replace(r"^.*\\", ""))))


# ---------------------------------------------------------------- timestamps

_ISO = re.compile(r"^\s*\d{4}-\d{2}-\d{2}")
_CULTURE = re.compile(r"^\s*(\d{1,2})([./-])(\d{1,2})[./-](\d{2,4})\b")


def deciding_dates(values: pl.Series) -> list[str | None]:
    """One value of each kind the day/month order depends on (first number over 12, second
    over 12, separator), found over the whole column: Get-MessageTrace writes newest first,
    so the one row that decides may be the last."""
    text = values.cast(pl.String).drop_nulls()
    parts = text.str.extract_groups(_CULTURE.pattern)
    kinds = pl.DataFrame({
        "v": text,
        "a": parts.struct.field("1").cast(pl.Int32, strict=False) > 12,
        "sep": parts.struct.field("2"),
        "b": parts.struct.field("3").cast(pl.Int32, strict=False) > 12,
    })
    return kinds.unique(["a", "sep", "b"], keep="first", maintain_order=True)["v"].to_list()


def infer_date_order(values: Iterable[str | None], file: str, option: str = "auto") -> str:
    """Decide the day/month order of culture-formatted dates from a file's own values.

    Returns 'mdy' or 'dmy' ('ymd' when every value is ISO). A value whose first number is over
    12 proves day-first, a second number over 12 proves month-first; dotted dates
    (`05.09.2022`) are day-first in every culture that writes them. When nothing decides,
    raise rather than guess.
    """
    if option != "auto":
        return option
    day_first = month_first = dotted = culture = False
    first_ambiguous: str | None = None
    for v in values:
        if not v or _ISO.match(v):
            continue
        m = _CULTURE.match(v)
        if not m:
            continue
        culture = True
        a, sep, b = int(m.group(1)), m.group(2), int(m.group(3))
        dotted |= sep == "."
        day_first |= a > 12
        month_first |= b > 12
        if first_ambiguous is None and a <= 12 and b <= 12:
            first_ambiguous = v
    if not culture:
        return "ymd"
    if day_first and month_first:
        raise InputFormatError(
            file, None, "dates mix day-first and month-first orders",
            "export again with one culture, or pass --date-order mdy|dmy",
        )
    if day_first or (dotted and not month_first):
        return "dmy"
    if month_first:
        return "mdy"
    raise InputFormatError(
        file, None,
        f"dates like {first_ambiguous!r} are ambiguous (day/month order cannot be told from "
        "this file)",
        "pass --date-order mdy (e.g. en-US) or --date-order dmy (e.g. en-GB) for this file",
    )


def _culture_formats(order: str) -> list[str]:
    dm = {"mdy": "%m{s}%d{s}%Y", "dmy": "%d{s}%m{s}%Y"}[order]
    fmts = []
    for sep in "/.-":
        d = dm.format(s=sep)
        fmts += [f"{d} %I:%M:%S %p", f"{d} %I:%M %p", f"{d} %H:%M:%S%.f", f"{d} %H:%M:%S",
                 f"{d} %H:%M"]
    return fmts


def timestamp(col: pl.Expr, date_order: str = "ymd") -> pl.Expr:
    """Parse every timestamp form the exports use into UTC (naive values are UTC).

    ISO 8601 with 0–7 fractional digits, with or without `Z` or an offset;
    PowerShell 5.1 `/Date(ms)/`; culture forms in the given day/month order.
    Unparseable values become null (the caller turns them into rejects).
    """
    s = col.cast(pl.String).str.strip_chars(" \t\r\n\x00\"")
    ms = s.str.extract(r"^\\?/Date\((-?\d+)(?:[+-]\d{4})?\)\\?/$", 1).cast(pl.Int64, strict=False)
    from_ms = pl.from_epoch(ms, time_unit="ms").dt.replace_time_zone("UTC")
    iso = s.str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T")
    has_offset = iso.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$")
    naive = iso.str.replace(r"Z$", "")
    candidates = [
        pl.when(has_offset & ~iso.str.ends_with("Z")).then(
            iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="us",
                                time_zone="UTC")),
        naive.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us")
        .dt.replace_time_zone("UTC"),
        naive.str.to_datetime("%Y-%m-%dT%H:%M", strict=False, time_unit="us")
        .dt.replace_time_zone("UTC"),
        from_ms.cast(pl.Datetime("us", "UTC")),
    ]
    if date_order in ("mdy", "dmy"):
        upper = s.str.to_uppercase()
        candidates += [
            upper.str.to_datetime(f, strict=False, time_unit="us").dt.replace_time_zone("UTC")
            for f in _culture_formats(date_order)
        ]
    return pl.coalesce(candidates)


# ---------------------------------------------------------------- statuses and codes

NDR_PATTERN = r"\b([45]\.\d{1,3}\.\d{1,3})\b"

_TRACE_STATUS = {
    "delivered": "delivered", "expanded": "expanded", "failed": "failed",
    "filteredasspam": "filtered_as_spam", "gettingstatus": "pending", "none": "none",
    "pending": "pending", "quarantined": "quarantined", "resolved": "resolved",
}

# Event names (message trace detail, historical search, tracking logs) → outcome.
# Terminal events decide a recipient's status; the others only say the message was seen.
TERMINAL_EVENTS = {
    "deliver": "delivered", "send": "delivered", "sendexternal": "delivered",
    "duplicatedeliver": "delivered", "fail": "failed", "drop": "failed", "badmail": "failed",
    "poisonmessage": "failed", "quarantine": "quarantined", "quarantined": "quarantined",
}
PROGRESS_EVENTS = {
    "defer": "pending", "expand": "expanded", "resolve": "resolved", "resolved": "resolved",
    "receive": "received", "submit": "received", "transfer": "received",
    "harecieve": "received", "hareceive": "received",
}


def trace_status(col: pl.Expr) -> pl.Expr:
    """Message-trace Status (PascalCase or Graph camelCase) → canonical lower-case status."""
    key = col.cast(pl.String).str.strip_chars().str.to_lowercase().str.replace_all(r"[\s_]", "")
    return key.replace_strict(_TRACE_STATUS, default=key, return_dtype=pl.String)


def event_key(col: pl.Expr) -> pl.Expr:
    return col.cast(pl.String).str.strip_chars().str.to_lowercase().str.replace_all(r"[\s_]", "")


def terminal_outcome(event: pl.Expr) -> pl.Expr:
    return event_key(event).replace_strict(TERMINAL_EVENTS, default=None, return_dtype=pl.String)


def progress_outcome(event: pl.Expr) -> pl.Expr:
    return event_key(event).replace_strict(PROGRESS_EVENTS, default=None, return_dtype=pl.String)


_OUTCOMES = {**PROGRESS_EVENTS, **TERMINAL_EVENTS}


def event_outcome(event: pl.Expr) -> pl.Expr:
    """An event's outcome, terminal or not, from one lookup (terminal names win)."""
    return event_key(event).replace_strict(_OUTCOMES, default=None, return_dtype=pl.String)


def ndr_code(text: pl.Expr) -> pl.Expr:
    return text.cast(pl.String).str.extract(NDR_PATTERN, 1)


def direction(sender_domain: pl.Expr, recipient_domain: pl.Expr, own: list[str],
              hint: pl.Expr | None = None) -> pl.Expr:
    """Direction from the tenant's own domains (and the export's own hint when it has one).

    Mail to an outside recipient is outbound whatever its sender domain: a relay of
    unregistered-domain mail is exactly what must count as outbound.
    """
    sender_domain, recipient_domain = (d.cast(pl.String) for d in (sender_domain,
                                                                   recipient_domain))
    own_exact = [d for d in own if not d.startswith("*.")]
    own_sub = [d[2:] for d in own if d.startswith("*.")]

    def is_own(dom: pl.Expr) -> pl.Expr:
        e = dom.is_in(own_exact)
        for sub in own_sub:
            e = e | (dom == sub) | dom.str.ends_with("." + sub)
        return e.fill_null(False)

    rcpt_own, send_own = is_own(recipient_domain), is_own(sender_domain)
    from_domains = (
        pl.when(rcpt_own & send_own).then(pl.lit("internal"))
        .when(rcpt_own).then(pl.lit("inbound"))
        .when(recipient_domain.is_not_null()).then(pl.lit("outbound"))
        .otherwise(pl.lit("unknown"))
    )
    if not own:
        from_domains = pl.lit("unknown")
    if hint is None:
        return from_domains
    h = hint.cast(pl.String).str.strip_chars().str.to_lowercase()
    return (
        pl.when(h.is_in(["incoming", "1"])).then(
            pl.when(rcpt_own | (len(own) == 0)).then(pl.lit("inbound")).otherwise(from_domains))
        .when(h.is_in(["originating", "2"])).then(
            pl.when(rcpt_own).then(pl.lit("internal")).otherwise(pl.lit("outbound")))
        .otherwise(from_domains)
    )


# ---------------------------------------------------------------- scalar twins

def _one(expr_fn, value):  # type: ignore[no-untyped-def]
    return pl.select(expr_fn(pl.lit(value, dtype=pl.String))).item()


def normalize_address(value: str | None) -> str | None:
    return _one(address, value)


def domain_of(value: str | None) -> str | None:
    return pl.select(domain(address(pl.lit(value, dtype=pl.String)))).item()


def parse_timestamp(value: str | None, date_order: str = "ymd"):  # type: ignore[no-untyped-def]
    return pl.select(timestamp(pl.lit(value, dtype=pl.String), date_order)).item()
