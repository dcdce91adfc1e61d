"""Historical-search reports (enhanced summary, extended) and on-premises MSGTRK*.LOG files.

The extended report is the tracking-log field list with `_` for `-`, so both share one
event parser; only how the header is found differs (a CSV header vs the `#Fields:` line).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline import normalize as nz
from pipeline import schema
from pipeline.errors import InputFormatError
from pipeline.formats import events
from pipeline.formats.common import (
    Context, Parsed, TabularFormat, any_of, as_int, col, parse_times,
)
from pipeline.formats.messagetrace import finish_messages
from pipeline.formats.source import Head, read_csv_frame

MSGTRK_2013 = (
    "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,"
    "source,event-id,internal-message-id,message-id,network-message-id,recipient-address,"
    "recipient-status,total-bytes,recipient-count,related-recipient-address,reference,"
    "message-subject,sender-address,return-path,message-info,directionality,tenant-id,"
    "original-client-ip,original-server-ip,custom-data,transport-traffic-type,log-id,"
    "schema-version"
).split(",")
_DROP_2010 = {"network-message-id", "transport-traffic-type", "log-id", "schema-version"}
MSGTRK_2010 = [f for f in MSGTRK_2013 if f not in _DROP_2010]
SPAM = r"SFV=(SPM|SKS)"


def parse_events(df: pl.DataFrame, ctx: Context, fmt: str) -> Parsed:
    """Extended historical search or tracking-log events → canonical rows."""
    times = parse_times(df, ctx, ["datetimeutc", "datetime"])
    # no time column at all: a header-only log (a quiet hour) read as no columns
    time = pl.coalesce(list(times.values())) if times else pl.lit(None, pl.Datetime("us", "UTC"))
    rcpts = col(df, "recipientaddress").str.split(";")
    statuses = col(df, "recipientstatus").str.split(";")
    df = df.with_columns(
        time.alias("received_utc"),
        col(df, "datetimeutc", "datetime").alias("_raw_time"),
        rcpts.alias("_rcpts"), statuses.alias("_statuses"),
        rcpts.list.len().alias("_n"),
        pl.int_ranges(0, rcpts.list.len().fill_null(0)).alias("_ri"),
    )
    exploded = df.with_columns(
        pl.when(pl.col("_rcpts").list.len().fill_null(0) == 0)
        .then(pl.lit([None], dtype=pl.List(pl.String)))
        .otherwise(pl.col("_rcpts")).alias("_rcpts"),
        pl.when(pl.col("_ri").list.len() == 0).then(pl.lit([0], dtype=pl.List(pl.Int64)))
        .otherwise(pl.col("_ri")).alias("_ri"),
    ).explode("_rcpts", "_ri")
    # recipient-status is aligned with recipient-address; when the counts differ, use the first
    status = pl.when(pl.col("_statuses").list.len() == pl.col("_n")).then(
        pl.col("_statuses").list.get(pl.col("_ri"), null_on_oob=True)
    ).otherwise(pl.col("_statuses").list.first())
    connector = nz.after_backslash(col(df, "connectorid"))
    ev = exploded.select(
        pl.col("_line"), pl.col("received_utc"), pl.col("_raw_time"),
        col(df, "eventid").alias("event"),
        nz.address(col(df, "senderaddress")).alias("sender_address"),
        nz.address(col(df, "returnpath")).alias("envelope_sender"),
        nz.address(pl.col("_rcpts")).alias("recipient_address"),
        nz.blank_to_null(col(df, "messagesubject")).alias("subject"),
        as_int(col(df, "totalbytes")).alias("size_bytes"),
        nz.blank_to_null(col(df, "messageid")).alias("message_id"),
        nz.network_message_id(col(df, "networkmessageid"))
        .alias("network_message_id"),
        nz.blank_to_null(connector).alias("connector"),
        nz.ip(pl.coalesce(nz.blank_to_null(col(df, "clientip")),
                          nz.blank_to_null(col(df, "originalclientip")))).alias("client_ip"),
        nz.ndr_code(status).alias("ndr_code"),
        col(df, "customdata").str.contains(SPAM).fill_null(False).alias("spam_verdict"),
        nz.blank_to_null(col(df, "directionality")).alias("direction_hint"),
        (nz.event_key(col(df, "eventid")).is_in(["receive", "hareceive"])
         & (nz.event_key(col(df, "source")) != "storedriver")).alias("is_receive"),
        pl.coalesce(nz.blank_to_null(col(df, "serverhostname")),
                    nz.blank_to_null(col(df, "connectorid")).str.extract(r"^([^\\]+)\\", 1))
        .alias("_server"),
        nz.blank_to_null(col(df, "clienthostname")).alias("_client_host"),
    )
    bad_time = ev.filter(pl.col("received_utc").is_null() & pl.col("_raw_time").is_not_null())
    collapsed = events.collapse(ev.filter(pl.col("received_utc").is_not_null()))
    hint = pl.col("direction_hint")
    parsed = finish_messages(collapsed.with_columns(pl.lit(None, dtype=pl.String)
                                                    .alias("_raw_time")),
                             ctx, fmt, ctx.own_domains, hint)
    parsed.rows = parsed.rows.drop("direction_hint")
    parsed.rejects = pl.concat([
        bad_time.select(pl.col("_line").alias("source_line"),
                        pl.lit("unparseable or missing timestamp").alias("reason"),
                        pl.col("_raw_time").str.slice(0, 1000).alias("raw")).unique(),
        parsed.rejects,
    ])
    if fmt == "exchange_tracking_log":
        parsed.also = (hops(ev, fmt),)
    return parsed


def hops(ev: pl.DataFrame, fmt: str) -> Parsed:
    """Where each message entered an on-premises server: its SMTP RECEIVE events, one row
    per (message, server, receive connector, client). Kept apart from `messages`, whose
    rows merge a message's on-premises and cloud hops into one per recipient."""
    key = pl.coalesce(pl.col("network_message_id"), pl.col("message_id"))
    rows = (ev.filter(pl.col("is_receive") & pl.col("received_utc").is_not_null()
                      & key.is_not_null())
            .group_by(key.alias("_k"), "_server", "connector", "client_ip", maintain_order=True)
            .agg(pl.col("_line").min().alias("source_line"), pl.col("received_utc").min(),
                 pl.col("network_message_id").drop_nulls().first(),
                 pl.col("message_id").drop_nulls().first(),
                 pl.col("_client_host").drop_nulls().first().alias("client_hostname"),
                 pl.col("sender_address").drop_nulls().first(),
                 pl.col("recipient_address").n_unique().alias("recipients"))
            .rename({"_server": "server"}).drop("_k"))
    return Parsed(fmt, "onprem_hops", rows)


def parse_extended(df: pl.DataFrame, ctx: Context) -> Parsed:
    return parse_events(df, ctx, "historical_search_extended")


def parse_enhanced(df: pl.DataFrame, ctx: Context) -> Parsed:
    """One row per message; `recipient_status` lists `addr##Event, Event;addr##...`.

    Message columns are normalised before the rows are split per recipient, so that work
    is done once per message, not once per recipient."""
    times = parse_times(df, ctx, ["origintimestamputc", "origintimestamp"])
    sender = nz.address(col(df, "senderaddress"))
    df = nz.with_distinct(df, sender_address=sender,
                          sender_domain=nz.domain(sender).cast(schema.CATEGORY)).with_columns(
        connector=nz.blank_to_null(nz.after_backslash(col(df, "connectorid"))),
        client_ip=nz.ip(col(df, "originalclientip")),
    )
    messages = df.select(
        pl.col("_line"),
        pl.coalesce(list(times.values())).alias("received_utc"),
        col(df, "origintimestamputc", "origintimestamp").alias("_raw_time"),
        pl.col("sender_address"), pl.col("sender_domain"),
        pl.lit(None, dtype=pl.String).alias("envelope_sender"),
        pl.lit(None, dtype=schema.CATEGORY).alias("envelope_domain"),
        nz.blank_to_null(col(df, "messagesubject")).alias("subject"),
        as_int(col(df, "totalbytes")).alias("size_bytes"),
        col(df, "totalbytes").alias("_raw_size"),
        nz.blank_to_null(col(df, "messageid")).alias("message_id"),
        nz.network_message_id(col(df, "networkmessageid"))
        .alias("network_message_id"),
        pl.col("connector"), pl.col("client_ip"),
        pl.lit(None, dtype=pl.Boolean).alias("spam_verdict"),
        col(df, "directionality").cast(schema.CATEGORY).alias("_hint"),  # few values
        col(df, "recipientstatus").str.split(";").alias("_r"),
    )
    rows = messages.explode("_r")
    kept = rows.select(pl.col("_r").is_null()
                       | (pl.col("_r").str.strip_chars().str.len_bytes() > 0)).to_series()
    if not kept.all():  # empty entries (`a##Deliver;;b##...`) are rare: no copy without
        rows = rows.filter(kept)
    # split on the last "##": the address part may itself hold quotes or '#'
    recipient = nz.address(pl.col("_r").str.replace(r"##[^#]*$", ""))
    rows = nz.with_distinct(
        rows,
        recipient_address=recipient,
        recipient_domain=nz.domain(recipient).cast(schema.CATEGORY),
        status=nz.event_outcome(pl.col("_r").str.extract(r"([^,#]*)$", 1).str.strip_chars())
        .cast(schema.CATEGORY),
    ).drop("_r")
    parsed = finish_messages(rows, ctx, "historical_search_summary", ctx.own_domains,
                             pl.col("_hint"))
    parsed.rows = parsed.rows.drop("_hint")
    return parsed


def msgtrk_fields(head: Head, file: str, headerless: str) -> list[str]:
    """The `#Fields:` line of a tracking log (each file's own), or the configured field set."""
    for line in head.lines:
        if line.startswith("#Fields:"):
            return [f.strip() for f in line[len("#Fields:"):].split(",")]
        if not line.startswith("#"):
            break
    if headerless == "exchange2013":
        return MSGTRK_2013
    if headerless == "exchange2010":
        return MSGTRK_2010
    raise InputFormatError(
        file, 1, "message tracking rows without a '#Fields:' header line",
        "copy the header lines from a MSGTRK*.LOG file of the same server, or pass "
        "--headerless-msgtrk exchange2013 (30 fields) or exchange2010 (26 fields)",
    )


def read_msgtrk(path: Path, head: Head, ctx: Context) -> Parsed:
    fields = msgtrk_fields(head, ctx.file, ctx.headerless_msgtrk)
    df = read_csv_frame(path, head, ctx.file, columns=[nz.header_key(f) for f in fields])
    return parse_events(df, ctx, "exchange_tracking_log")


def parse_log_rows(df: pl.DataFrame, ctx: Context) -> Parsed:
    """Tracking-log rows exported as a plain CSV whose header is the log's own field names
    (`date-time,client-ip,...`, no `#Fields:` line): an on-premises log, not a cloud report."""
    return parse_events(df, ctx, "exchange_tracking_log")


# Get-MessageTrackingLog's property names → the log's own field names
_CMDLET_NAMES = {"timestamp": "datetime", "sender": "senderaddress",
                 "recipients": "recipientaddress"}
_ZONED = r"(Z|[+-]\d{2}:?\d{2})$|Date\(\d+"  # an offset, or PowerShell 5.1's /Date(ms)/


def parse_cmdlet(df: pl.DataFrame, ctx: Context) -> Parsed:
    """Get-MessageTrackingLog objects (Export-Clixml, ConvertTo-Json, Export-Csv with
    Recipients joined by ';'). Timestamp is the server's local time: with its offset
    (CLIXML, JSON, `.ToString('o')`) it is read; without one it cannot be placed in UTC and
    the file is refused with the export that keeps it."""
    stamps = col(df, "timestamp").str.strip_chars()
    known = df.select(stamps.is_not_null().sum().alias("n"),
                      stamps.str.contains(_ZONED).fill_null(False).sum().alias("zoned")).row(0)
    if known[0] and not known[1]:
        raise InputFormatError(
            ctx.file, None, "Timestamp is the server's local time without its UTC offset",
            "export with Export-Clixml, or add @{n='Timestamp';e={$_.Timestamp."
            "ToUniversalTime().ToString('o')}} to Select-Object before Export-Csv")
    renamed = df.rename({k: v for k, v in _CMDLET_NAMES.items()
                         if k in df.columns and v not in df.columns})
    return parse_events(renamed, ctx, "exchange_tracking_log")


FORMATS = [
    TabularFormat("message_tracking_cmdlet", "messages",
                  (any_of("timestamp"), any_of("eventid"), any_of("recipients"),
                   any_of("sender", "senderaddress")), parse_cmdlet),
    # the log's own `date-time` (the extended report says `date_time_utc`)
    TabularFormat("exchange_tracking_log", "messages",
                  (any_of("datetime"), any_of("eventid"), any_of("recipientaddress"),
                   any_of("messageid"), any_of("serverhostname", "connectorid")),
                  parse_log_rows, forbidden=frozenset({"datetimeutc"})),
    TabularFormat("historical_search_summary", "messages",
                  (any_of("origintimestamputc", "origintimestamp"), any_of("recipientstatus"),
                   any_of("senderaddress")), parse_enhanced),
    TabularFormat("historical_search_extended", "messages",
                  (any_of("datetimeutc", "datetime"), any_of("eventid"),
                   any_of("recipientaddress"), any_of("messageid")), parse_extended),
]
