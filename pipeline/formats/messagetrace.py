"""Get-MessageTrace / Get-MessageTraceV2 (CSV or JSON), Graph exchangeMessageTrace, and
Get-MessageTraceDetail(V2). One row per recipient; detail events are collapsed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl

from pipeline import normalize as nz
from pipeline import schema
from pipeline.formats import events
from pipeline.formats.common import (
    Context, Parsed, TabularFormat, any_of, as_int, col, parse_times, reject_rows,
)


# Message times before this are placeholders (Windows' 1601-01-01 epoch, 1900-01-01), not
# mail: Exchange Online's traces go back 90 days, on-premises logs a few years.
EARLIEST = datetime(1990, 1, 1, tzinfo=timezone.utc)
GRAPH_DETAIL = schema.WHOLE_MESSAGE_FORMAT  # Graph's exchangeMessageTraceDetail


def _latest() -> datetime:
    """Times past this are not real yet (a day of clock skew and time zones allowed)."""
    return datetime.now(timezone.utc) + timedelta(days=1)


def finish_messages(df: pl.DataFrame, ctx: Context, fmt: str, own: tuple[str, ...],
                    hint: pl.Expr | None = None, addressless: bool = False) -> Parsed:
    """Domains, direction and row checks shared by every message format (a parser that
    already has a domain column, worked out with its address, keeps it)."""
    df = nz.with_distinct(df, **{
        f"{kind}_domain": nz.domain(pl.col(address)).cast(schema.CATEGORY)
        for kind, address in (
            ("sender", "sender_address"), ("recipient", "recipient_address"),
            ("envelope", "envelope_sender")) if f"{kind}_domain" not in df.columns})
    df = nz.with_distinct(df, direction=nz.direction(
        pl.col("sender_domain"), pl.col("recipient_domain"), list(own), hint)
        .cast(schema.CATEGORY))
    checks = [
        (pl.col("received_utc").is_null(), "unparseable or missing timestamp",
         pl.col("_raw_time")),
        (pl.col("received_utc") < EARLIEST, f"received_utc before {EARLIEST.year}: not a "
         "message time (an unset date, e.g. 1601-01-01)", pl.col("_raw_time")),
        (pl.col("received_utc") > pl.lit(_latest()), "received_utc after tomorrow: not a "
         "message time (e.g. 9999-12-31)", pl.col("_raw_time")),
        (pl.col("sender_address").is_null() & pl.col("recipient_address").is_null()
         & (not addressless), "neither a sender nor a recipient address", pl.col("_raw_time")),
        # an address without a domain (no @): null bitmaps, not a scan of every address
        (pl.col("sender_address").is_not_null() & pl.col("sender_domain").is_null(),
         "sender_address without @ (not an address; its domain cannot be judged)",
         pl.col("sender_address")),
        (pl.col("size_bytes") < 0, "size_bytes negative", pl.col("size_bytes")),
    ]
    if "_raw_size" in df.columns and (df.get_column("size_bytes").null_count()
                                      > df.get_column("_raw_size").null_count()):
        # some size did not read as a number: the costly check only then
        checks.append((pl.col("size_bytes").is_null()
                       & (pl.col("_raw_size").str.strip_chars().str.len_bytes() > 0),
                       "size_bytes not a number", pl.col("_raw_size")))
    good, rejects = reject_rows(df, checks)
    good = good.rename({"_line": "source_line"}).drop("_raw_time", "_raw_size", strict=False)
    return Parsed(fmt, "messages", good, rejects, own)


def organizations(df: pl.DataFrame) -> tuple[str, ...]:
    if "organization" not in df.columns:
        return ()
    orgs = df.select(nz.domain_name(pl.col("organization")).drop_nulls().unique())
    return tuple(sorted(o for o in orgs.to_series().to_list() if "." in o))


def parse_trace(df: pl.DataFrame, ctx: Context) -> Parsed:
    times = parse_times(df, ctx, ["received", "receiveddatetime"])
    own = tuple(sorted(set(ctx.own_domains) | set(organizations(df))))
    df = nz.with_distinct(
        df,
        _sender=nz.address(col(df, "senderaddress")),
        _recipient=nz.address(col(df, "recipientaddress")),
        _status=nz.trace_status(col(df, "status")).cast(schema.CATEGORY),
        _from_ip=nz.ip(col(df, "fromip")),
        _to_ip=nz.ip(col(df, "toip")),
    )
    out = df.select(
        pl.col("_line"),
        pl.coalesce(list(times.values())).alias("received_utc"),
        col(df, "received", "receiveddatetime").alias("_raw_time"),
        pl.col("_sender").alias("sender_address"),
        pl.lit(None, dtype=pl.String).alias("envelope_sender"),
        pl.col("_recipient").alias("recipient_address"),
        pl.col("_status").alias("status"),
        nz.blank_to_null(col(df, "subject")).alias("subject"),
        as_int(col(df, "size")).alias("size_bytes"),
        col(df, "size").alias("_raw_size"),
        nz.blank_to_null(col(df, "messageid")).alias("message_id"),
        nz.network_message_id(col(df, "messagetraceid", "id"))
        .alias("network_message_id"),
        pl.col("_from_ip").alias("client_ip"),
        pl.col("_to_ip").alias("to_ip"),
        (pl.col("_status") == "filtered_as_spam").alias("spam_verdict"),
    )
    fmt = "graph_message_trace_json" if "receiveddatetime" in df.columns else "message_trace"
    return finish_messages(out, ctx, fmt, own)


def parse_detail(df: pl.DataFrame, ctx: Context, fmt: str = "message_trace_detail") -> Parsed:
    """Get-MessageTraceDetail(V2) events → one row per recipient, or (Graph's
    exchangeMessageTraceDetail, which names no recipient) one row per message: the lake
    folds it into the message's recipient rows by Message-ID (lake.merge_duplicates)."""
    addressless = fmt == GRAPH_DETAIL
    times = parse_times(df, ctx, ["date"])
    own = tuple(sorted(set(ctx.own_domains) | set(organizations(df))))
    detail = pl.concat_str([col(df, "detail"), col(df, "data")], separator=" ",
                           ignore_nulls=True)
    ev = df.select(
        pl.col("_line"),
        times["date"].alias("received_utc"),
        col(df, "event").alias("event"),
        nz.address(col(df, "senderaddress")).alias("sender_address"),
        pl.lit(None, dtype=pl.String).alias("envelope_sender"),
        nz.address(col(df, "recipientaddress")).alias("recipient_address"),
        pl.lit(None, dtype=pl.String).alias("subject"),
        pl.lit(None, dtype=pl.Int64).alias("size_bytes"),
        nz.blank_to_null(col(df, "messageid")).alias("message_id"),
        nz.network_message_id(col(df, "messagetraceid"))
        .alias("network_message_id"),
        pl.lit(None, dtype=pl.String).alias("connector"),
        pl.lit(None, dtype=pl.String).alias("client_ip"),
        nz.ndr_code(detail).alias("ndr_code"),
        detail.str.contains(r"SFV=(SPM|SKS)").fill_null(False).alias("spam_verdict"),
        pl.lit(None, dtype=pl.String).alias("direction_hint"),
        (nz.event_key(col(df, "event")) == "receive").alias("is_receive"),
        col(df, "date").alias("_raw_time"),
    )
    bad_time = ev.filter(pl.col("received_utc").is_null())
    collapsed = events.collapse(ev.filter(pl.col("received_utc").is_not_null()), addressless)
    collapsed = collapsed.with_columns(pl.lit(None, dtype=pl.String).alias("_raw_time"))
    parsed = finish_messages(collapsed.drop("direction_hint"), ctx, fmt, own,
                             addressless=addressless)
    parsed.rejects = pl.concat([
        bad_time.select(pl.col("_line").alias("source_line"),
                        pl.lit("unparseable or missing timestamp").alias("reason"),
                        pl.col("_raw_time").str.slice(0, 1000).alias("raw")),
        parsed.rejects,
    ])
    return parsed


def parse_graph_detail(df: pl.DataFrame, ctx: Context) -> Parsed:
    return parse_detail(df.rename({"datetime": "date", "description": "detail"}, strict=False),
                        ctx, GRAPH_DETAIL)


FORMATS = [
    TabularFormat(GRAPH_DETAIL, "messages",
                  (any_of("datetime"), any_of("event"), any_of("messageid"),
                   any_of("description", "action", "data")), parse_graph_detail,
                  forbidden=frozenset({"recipientaddress", "receiveddatetime", "date"})),
    TabularFormat("message_trace_detail", "messages",
                  (any_of("date"), any_of("event"), any_of("messagetraceid", "messageid"),
                   any_of("detail", "action")), parse_detail, forbidden=frozenset({"received"})),
    TabularFormat("message_trace", "messages",
                  (any_of("received", "receiveddatetime"), any_of("senderaddress"),
                   any_of("recipientaddress"), any_of("status")), parse_trace),
]
