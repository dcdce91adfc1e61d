"""Collapse event rows (trace detail, extended report, tracking logs) to one row per recipient.

A recipient's status is its latest terminal event (deliver, send, fail, drop, ...); without
one, its latest progress event (defer, expand, receive). Spam verdicts in the events turn a
delivery into `filtered_as_spam`. The receiving connector and client IP come from the first
RECEIVE event, as that is where the message entered.
"""

from __future__ import annotations

import polars as pl

from pipeline import normalize as nz

EVENT_COLUMNS = (
    "_line", "received_utc", "event", "sender_address", "envelope_sender", "recipient_address",
    "subject", "size_bytes", "message_id", "network_message_id", "connector", "client_ip",
    "ndr_code", "spam_verdict", "direction_hint", "is_receive",
)


def collapse(ev: pl.DataFrame, per_message: bool = False) -> pl.DataFrame:
    """Event rows (EVENT_COLUMNS) → one row per (message, recipient), or per message for
    events that name no recipient (`per_message`: Graph's exchangeMessageTraceDetail)."""
    key = pl.coalesce(pl.col("network_message_id"), pl.col("message_id"))
    ev = (
        ev.filter((pl.col("recipient_address").is_not_null() | per_message) & key.is_not_null())
        .with_columns(
            key.alias("_key"),
            nz.terminal_outcome(pl.col("event")).alias("_terminal"),
            nz.progress_outcome(pl.col("event")).alias("_progress"),
        )
        .sort("received_utc", "_line")
    )
    receive = pl.col("is_receive")
    out = ev.group_by("_key", "recipient_address", maintain_order=True).agg(
        pl.col("_line").min(),
        pl.col("received_utc").min(),
        pl.coalesce(pl.col("_terminal").drop_nulls().last(),
                    pl.col("_progress").drop_nulls().last(),
                    pl.lit("received")).alias("status"),
        pl.col("ndr_code").drop_nulls().last(),
        *[pl.col(c).drop_nulls().first() for c in
          ("sender_address", "envelope_sender", "subject", "message_id", "network_message_id",
           "direction_hint")],
        pl.col("size_bytes").max(),
        pl.coalesce(pl.col("connector").filter(receive).drop_nulls().first(),
                    pl.col("connector").drop_nulls().first()).alias("connector"),
        pl.coalesce(pl.col("client_ip").filter(receive).drop_nulls().first(),
                    pl.col("client_ip").drop_nulls().first()).alias("client_ip"),
        pl.col("spam_verdict").any().alias("spam_verdict"),
    )
    spam_status = (
        pl.when(pl.col("spam_verdict") & pl.col("status").is_in(["delivered", "received"]))
        .then(pl.lit("filtered_as_spam")).otherwise(pl.col("status"))
    )
    return out.with_columns(spam_status.alias("status")).drop("_key")
