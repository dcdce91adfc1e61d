"""Canonical rows → each export writer the generator uses → parser → the same rows."""

from __future__ import annotations

import tempfile
import uuid
from datetime import datetime, timezone
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline import exports
from tests.conftest import parse

label = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True)
address = st.builds(lambda a, b, c: f"{a}@{b}.{c}", label, label, st.sampled_from(["com", "org", "biz"]))
subject = st.text(st.characters(codec="ascii", categories=["L", "N", "P", "Zs"]), min_size=1,
                  max_size=40).map(str.strip).filter(bool)
unicode_subject = st.text(st.characters(categories=["L", "N", "P", "Zs", "So"]), min_size=1,
                          max_size=40).map(str.strip).filter(bool)
when = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2026, 11, 30),
                    timezones=st.just(timezone.utc)).map(lambda d: d.replace(microsecond=0))


def rows_strategy(subjects: st.SearchStrategy[str]) -> st.SearchStrategy[list[dict]]:
    row = st.fixed_dictionaries({
        "received_utc": when, "sender_address": address, "recipient_address": address,
        "subject": subjects, "status": st.sampled_from(["delivered", "failed", "pending"]),
        "size_bytes": st.integers(1, 10**8),
        "network_message_id": st.uuids().map(str),
        "client_ip": st.ip_addresses(v=4).map(str),
        "direction": st.just("outbound"),
    })
    return st.lists(row, min_size=1, max_size=8, unique_by=lambda r: r["network_message_id"])


KEYS = ["received_utc", "sender_address", "recipient_address", "subject", "status",
        "size_bytes", "network_message_id"]


def add_message_ids(rows: list[dict]) -> None:
    for r in rows:
        r["message_id"] = f"<{uuid.UUID(r['network_message_id']).hex}@x.example>"


def check(rows: list[dict], write: Callable[[Path], None], order: str = "auto") -> None:
    """Write the rows with `write`, parse the file back, and compare."""
    add_message_ids(rows)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "export"
        write(path)
        parsed = parse(path, date_order=order)
    got = sorted(parsed.rows.select(KEYS).to_dicts(), key=lambda r: r["network_message_id"])
    want = sorted(({k: r[k] for k in KEYS} for r in rows), key=lambda r: r["network_message_id"])
    assert got == want
    assert parsed.rejects.height == 0


SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(rows_strategy(subject), st.sampled_from(["ps51", "ps7"]), st.sampled_from(["us", "gb", "iso"]))
def test_message_trace_csv(rows: list[dict], dialect: str, style: str) -> None:
    check(rows, lambda p: exports.message_trace_csv(p, rows, "c.onmicrosoft.com", dialect, style),
          {"us": "mdy", "gb": "dmy"}.get(style, "auto"))


@SETTINGS
@given(rows_strategy(unicode_subject), st.sampled_from(["ps51", "ps7", "ndjson"]))
def test_message_trace_json(rows: list[dict], style: str) -> None:
    check(rows, lambda p: exports.message_trace_json(p, rows, "c.onmicrosoft.com", style))


@SETTINGS
@given(rows_strategy(unicode_subject))
def test_message_trace_clixml(rows: list[dict]) -> None:
    check(rows, lambda p: exports.message_trace_clixml(p, rows, "c.onmicrosoft.com"))


@SETTINGS
@given(rows_strategy(unicode_subject), st.sampled_from(["utf-16-le", "utf-16-le-bom", "utf-8"]))
def test_historical_summary(rows: list[dict], encoding: str) -> None:
    check(rows, lambda p: exports.historical_summary(p, rows, encoding))


@SETTINGS
@given(rows_strategy(unicode_subject), st.sampled_from(["15.01.2375.007", "14.03.0123.004"]))
def test_tracking_log(rows: list[dict], version: str) -> None:
    from datetime import timedelta

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "MSGTRK.LOG"
        events = []
        add_message_ids(rows)
        for r in rows:
            f = {"message-id": r["message_id"], "network-message-id": r["network_message_id"],
                 "recipient-address": r["recipient_address"], "total-bytes": r["size_bytes"],
                 "message-subject": r["subject"], "sender-address": r["sender_address"],
                 "source": "SMTP", "directionality": "Originating"}
            events.append({"time": r["received_utc"], "fields": {**f, "event-id": "RECEIVE"}})
            last = {"delivered": "SEND", "failed": "FAIL", "pending": "DEFER"}[r["status"]]
            events.append({"time": r["received_utc"] + timedelta(seconds=1),
                           "fields": {**f, "event-id": last}})
        if version.startswith("14."):  # Exchange 2010 logs have no network-message-id
            for r in rows:
                r["network_message_id"] = None
        exports.tracking_log(path, events, version)
        parsed = parse(path)
        got = sorted(parsed.rows.select(KEYS).to_dicts(), key=lambda r: r["recipient_address"] + r["received_utc"].isoformat())
        want = sorted(({k: r[k] for k in KEYS} for r in rows), key=lambda r: r["recipient_address"] + r["received_utc"].isoformat())
        assert got == want
