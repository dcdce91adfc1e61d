"""merge_duplicates: one row per (message, recipient), in time order, whatever the repeats."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
from hypothesis import given, settings, strategies as st

from pipeline import lake, schema

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)

row = st.fixed_dictionaries({
    "received_utc": st.integers(0, 40).map(lambda s: T0 + timedelta(seconds=s)),
    "network_message_id": st.sampled_from(["m1", "m2", "m3", "m4", "m5", "m6"]),
    "recipient_address": st.sampled_from(["a@x.com", "b@y.org"]),
    "subject": st.one_of(st.none(), st.sampled_from(["s1", "s2", "s3"])),
    "size_bytes": st.one_of(st.none(), st.integers(1, 9)),
})


def reference(df: pl.DataFrame) -> pl.DataFrame:
    """The plain statement: repeated keys merged (the last non-null value in row order wins;
    the earliest time), appended to the other rows, then a stable sort by time."""
    key = ["network_message_id", "recipient_address"]
    repeated = df.select(pl.struct(key).is_duplicated()).to_series()
    others = [c for c in df.columns if c not in key and c != "received_utc"]
    merged = df.filter(repeated).group_by(key, maintain_order=True).agg(
        [pl.col(c).drop_nulls().last() for c in others] + [pl.col("received_utc").min()])
    out = pl.concat([df.filter(~repeated), merged.select(df.columns)])
    return out.sort("received_utc", maintain_order=True)


def frame(rows: list[dict], ordered: bool) -> pl.DataFrame:
    if ordered:
        rows = sorted(rows, key=lambda r: r["received_utc"])
    df = pl.DataFrame(rows, schema={"received_utc": schema.UTC_TS,
                                    "network_message_id": pl.String,
                                    "recipient_address": pl.String, "subject": pl.String,
                                    "size_bytes": pl.Int64})
    return schema.MESSAGES.conform(df).select(schema.MESSAGES.file_columns())


@settings(max_examples=300, deadline=None)
@given(st.lists(row, min_size=1, max_size=40), st.booleans())
def test_merge_equals_filter_and_stable_sort(rows: list[dict], ordered: bool) -> None:
    df = frame(rows, ordered)
    got = lake.merge_duplicates(df)
    assert got.equals(reference(df))
    assert got.select(pl.struct("network_message_id", "recipient_address").is_unique().all()
                      ).item()


def test_many_repeats_take_the_sorting_path_with_the_same_result(monkeypatch) -> None:
    rows = [{"received_utc": T0 + timedelta(seconds=i % 50), "network_message_id": f"m{i % 30}",
             "recipient_address": "a@x.com", "subject": f"s{i}", "size_bytes": i}
            for i in range(400)]
    df = frame(rows, ordered=True)
    slotted = lake.merge_duplicates(df)
    monkeypatch.setattr(lake, "_SLOT_ROWS", 0)
    sorted_ = lake.merge_duplicates(df)
    assert slotted.height == sorted_.height == 30
    assert slotted.equals(sorted_) and slotted.equals(reference(df))
    subjects = dict(zip(slotted["network_message_id"], slotted["subject"], strict=False))
    assert (subjects["m0"], subjects["m9"], subjects["m29"]) == ("s390", "s399", "s299")
    assert slotted["received_utc"].is_sorted() and slotted["received_utc"][0] == T0


def test_the_cloud_row_wins_over_the_on_premises_hop_whatever_the_order() -> None:
    """A hybrid tenant's message is in its tracking log (first hop) and in the cloud export:
    what Exchange Online made of it (status, spam verdict, connector) is kept, whichever
    file came later; the earliest time is the message's."""
    t0 = datetime(2026, 11, 20, 9, tzinfo=timezone.utc)
    base = {"tenant": "t", "network_message_id": "n1", "recipient_address": "r@x.example",
            "sender_address": "s@deal.top"}
    onprem = {**base, "received_utc": t0, "status": "delivered", "spam_verdict": False,
              "connector": "Relay", "source_format": "exchange_tracking_log"}
    cloud = {**base, "received_utc": t0 + timedelta(seconds=3), "status": "filtered_as_spam",
             "spam_verdict": True, "connector": "Inbound from hyb",
             "source_format": "historical_search_extended"}
    for rows in ([onprem, cloud], [cloud, onprem]):
        df = schema.MESSAGES.conform(pl.DataFrame(rows))
        (got,) = lake.merge_duplicates(df).to_dicts()
        assert (got["status"], got["spam_verdict"], got["connector"], got["received_utc"]) == (
            "filtered_as_spam", True, "Inbound from hyb", t0)
