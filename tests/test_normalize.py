"""Property tests of the normalisers: addresses, domains, timestamps, header keys."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, settings, strategies as st

from pipeline import normalize as nz
from pipeline.exports import fmt_time

local = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}", fullmatch=True)
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
domains = st.lists(label, min_size=2, max_size=4).map(".".join)
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31),
                     timezones=st.just(timezone.utc))


@given(local, domains, st.sampled_from(["{a}", "<{a}>", "Name <{a}>", " {a} ", "SMTP:{a}"]),
       st.booleans())
def test_address_forms_normalise_to_one_lower_case_address(loc: str, dom: str, form: str,
                                                           upper: bool) -> None:
    addr = f"{loc}@{dom}"
    raw = form.format(a=addr.upper() if upper else addr)
    assert nz.normalize_address(raw) == addr
    assert nz.domain_of(raw) == dom


@given(st.text(max_size=40))
def test_domain_is_lower_case_and_never_empty(text: str) -> None:
    d = nz.domain_of(text)
    assert d is None or (d == d.lower() and d != "")


@settings(max_examples=200)
@given(times, st.sampled_from(["iso", "iso7", "ms", "msdate", "us", "gb", "de"]))
def test_every_export_time_form_parses_back(ts: datetime, style: str) -> None:
    order = {"us": "mdy", "gb": "dmy", "de": "dmy"}.get(style, "ymd")
    parsed = nz.parse_timestamp(fmt_time(ts, style), order)
    precision = {"us": 1_000_000, "gb": 1_000_000, "de": 1_000_000, "ms": 1000,
                 "msdate": 1000}.get(style, 1)
    expected = ts.replace(microsecond=ts.microsecond - ts.microsecond % precision)
    assert parsed == expected


@given(times)
def test_naive_iso_is_utc_and_offsets_are_applied(ts: datetime) -> None:
    naive = ts.strftime("%Y-%m-%dT%H:%M:%S")
    assert nz.parse_timestamp(naive) == ts.replace(microsecond=0)
    assert nz.parse_timestamp(naive + "+02:00") == ts.replace(microsecond=0) - (
        datetime(2000, 1, 1, 2) - datetime(2000, 1, 1))


@given(st.lists(times, min_size=1, max_size=30))
def test_date_order_inference_never_contradicts_the_values(values: list[datetime]) -> None:
    us = [fmt_time(v, "us") for v in values]
    try:
        order = nz.infer_date_order(us, "f")
    except Exception as exc:  # undecidable: every value must really be ambiguous
        assert all(v.day <= 12 for v in values), exc
    else:
        assert order == "mdy"
        assert any(v.day > 12 for v in values)


@given(st.sampled_from(["SenderAddress", "sender_address", "Sender-Address", " \ufeff\"sender address\" ",
                        "SENDER\x00ADDRESS"]))
def test_header_keys_ignore_case_quotes_bom_and_separators(name: str) -> None:
    assert nz.header_key(name) == "senderaddress"


messy = st.one_of(st.none(), st.sampled_from(
    ["A@X.com", "<a@x.com>", "Name <b@Y.org>", " smtp:c@z.net ", "", "d@x.com.", "no-at",
     "[::1]:25", "10.0.0.5:443", "fe80::1%eth0", "Incoming", "originating", "x.com"]))


@settings(max_examples=150)
@given(st.lists(messy, min_size=1, max_size=60), st.lists(messy, min_size=1, max_size=60),
       st.integers(1, 8))
def test_normalising_per_distinct_value_equals_normalising_every_row(
        a: list[str | None], b: list[str | None], repeat: int) -> None:
    import polars as pl

    n = max(len(a), len(b))
    df = pl.DataFrame({"a": (a * n)[:n] * repeat, "b": (b * n)[:n] * repeat},
                      schema={"a": pl.String, "b": pl.String})
    exprs = {
        "addr": nz.address(pl.col("a")),
        "dom": nz.domain(nz.address(pl.col("b"))),
        "ip": nz.ip(pl.col("a")),
        "dir": nz.direction(nz.domain(pl.col("a")), nz.domain(pl.col("b")),
                            ["x.com", "*.z.net"], pl.col("b")),
        "const": pl.lit("k"),
    }
    # repeated values take the distinct path (the property holds on either path)
    assert nz.with_distinct(df, **exprs).equals(df.with_columns(**exprs))


@settings(max_examples=300)
@given(st.lists(st.tuples(times, st.integers(0, 9), st.sampled_from(
    ["Z", "", "+02:00", " Z", "z", "ZZ", ".Z", "Zx"]), st.booleans()), min_size=1, max_size=30))
def test_iso_fast_path_equals_the_full_timestamp_parser(values: list) -> None:
    """The fixed-width fast path of ingest reads exactly what the full parser reads."""
    import polars as pl

    from pipeline.formats.common import parse_time_column

    texts = []
    for t, digits, tail, pad in values:
        frac = f"{t.microsecond:06d}987"[:digits]
        texts.append((" " if pad else "") + t.strftime("%Y-%m-%dT%H:%M:%S")
                     + (f".{frac}" if digits else "") + tail)
    raw = pl.Series("t", texts + [None, "", "2026-13-01T00:00:00Z", "2026-1-5T01:02:03Z"])
    full = pl.select(nz.timestamp(pl.lit(raw.str.strip_chars(" \t\r\n\x00\"")), "mdy")
                     ).to_series()
    assert parse_time_column(raw, "mdy").to_list() == full.to_list()
    # and the common form is the one read without the full parser
    expect = [t.replace(microsecond=int(f"{t.microsecond:06d}"[:d].ljust(6, "0")) if d else 0)
              for t, d, tail, pad in values if tail == "Z" and not pad]
    from pipeline.formats.common import iso_utc

    fast = iso_utc(pl.Series(texts)).drop_nulls().to_list()
    assert fast == expect
