"""Property tests of the normalisers: addresses, domains, timestamps, header keys."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
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


def _ip_reference(col: pl.Expr) -> pl.Expr:
    """ip() as one chain of passes over every value (what the fast path must equal)."""
    s = col.str.strip_chars(" \t")
    s = s.str.replace(r"^\[(.*)\]:\d+$", "${1}").str.replace(r"^([0-9.]+):\d+$", "${1}")
    s = s.str.replace(r"%.*$", "").str.to_lowercase()
    return pl.when(s == "").then(None).otherwise(s)


ip_text = st.one_of(
    st.ip_addresses().map(str),
    st.text(st.sampled_from("0123456789.:[]%abcdefABCDEFİǅ \t"), max_size=24),
    st.text(max_size=12),
)


@settings(max_examples=300)
@given(st.lists(st.one_of(st.none(), ip_text), min_size=1, max_size=12))
def test_ip_fast_path_equals_every_pass_over_every_value(values: list[str | None]) -> None:
    df = pl.DataFrame({"a": values}, schema={"a": pl.String})
    got = df.select(nz.ip(pl.col("a"))).to_series().to_list()
    assert got == df.select(_ip_reference(pl.col("a"))).to_series().to_list()


def test_ip_takes_off_ports_brackets_and_scopes() -> None:
    raw = [" [2001:DB8::1]:443", "40.107.12.27:25", "FE80::1%eth0", "10.0.0.5", " ", None]
    got = pl.DataFrame({"a": raw}).select(nz.ip(pl.col("a"))).to_series().to_list()
    assert got == ["2001:db8::1", "40.107.12.27", "fe80::1", "10.0.0.5", None, None]


def _null_if_empty(e: pl.Expr) -> pl.Expr:
    return pl.when(e == "").then(None).otherwise(e)


address_text = st.one_of(
    st.builds(lambda a, d: f"{a}@{d}", local, domains),
    st.builds(lambda a, d, f: f(f"{a}@{d}"), local, domains, st.sampled_from([
        str.upper, str.title, lambda x: x + ".", lambda x: x + "-", lambda x: " " + x,
        lambda x: x.replace("@", "@."), lambda x: x.replace("@", "@@"),
        lambda x: "." + x])),
    st.text(st.sampled_from("aZ09._+-=@<> \t:.\"#İ"), max_size=24),
    st.sampled_from(["SMTP:A@B.COM", "mailto:x@y.z", "Name <a@b.c>", "a@b.", "a@.b", "@b",
                     "a@b@c", "a@", ""]),
    st.text(max_size=12),
)
REFERENCES = {  # each normaliser as its chain of passes over every value
    "address": (nz.address, lambda c: _null_if_empty(nz._address_chain(c))),
    "domain": (nz.domain, lambda c: _null_if_empty(nz._domain_chain(c)).map_batches(
        nz.a_labels, return_dtype=pl.String)),  # IDNs in their xn-- form, as every domain
    "blank_to_null": (nz.blank_to_null,
                      lambda c: _null_if_empty(c.str.strip_chars(" \t\r\n\x00"))),
}


@settings(max_examples=300)
@given(st.lists(st.one_of(st.none(), address_text), min_size=1, max_size=30),
       st.sampled_from(sorted(REFERENCES)))
def test_fast_paths_equal_every_pass_over_every_value(values: list[str | None],
                                                      name: str) -> None:
    fast, reference = REFERENCES[name]
    df = pl.DataFrame({"a": values * 2}, schema={"a": pl.String})  # repeats: distinct path
    assert (df.select(fast(pl.col("a"))).to_series().to_list()
            == df.select(reference(pl.col("a"))).to_series().to_list())


@given(st.lists(st.one_of(st.none(), st.integers(-10**12, 10**12).map(str),
                          st.integers(0, 10**9).map(lambda n: f"{n:,}"),
                          st.text(st.sampled_from("0123456789, -x"), max_size=8)),
                min_size=1, max_size=20))
def test_as_int_reads_plain_and_grouped_numbers(values: list[str | None]) -> None:
    from pipeline.formats.common import as_int

    df = pl.DataFrame({"a": values}, schema={"a": pl.String})
    reference = pl.col("a").str.replace_all(r"[,\s]", "").cast(pl.Int64, strict=False)
    assert (df.select(as_int(pl.col("a"))).to_series().to_list()
            == df.select(reference).to_series().to_list())


@settings(max_examples=100)
@given(st.lists(st.tuples(st.one_of(st.none(), address_text),
                          st.sampled_from([None, "Incoming", "originating", " 2 ", "x"])),
                min_size=1, max_size=30),
       st.integers(1, 40))
def test_with_distinct_equals_with_columns(pairs: list[tuple[str | None, str | None]],
                                           repeat: int) -> None:
    """The distinct-value path (taken for large frames; forced here) gives what evaluating
    every row gives: one-column keys with two outputs, a three-column key, nulls."""
    from unittest import mock

    df = pl.DataFrame({"a": [a for a, _ in pairs] * repeat, "h": [h for _, h in pairs] * repeat},
                      schema={"a": pl.String, "h": pl.String})
    df = df.with_columns(d=nz.domain(nz.address(pl.col("a"))))
    exprs = {
        "addr": nz.address(pl.col("a")), "dom": nz.domain(nz.address(pl.col("a"))),
        "direction": nz.direction(pl.col("d"), pl.col("d"), ["b.com", "*.c.org"], pl.col("h")),
        "status": nz.event_outcome(pl.col("h")),
        "filled": pl.col("a").fill_null("none"),  # a null key maps to a value too
    }
    with mock.patch.object(nz, "_SMALL", 0):
        distinct = nz.with_distinct(df, **exprs)
    assert distinct.equals(df.with_columns(**exprs))


@given(st.lists(st.one_of(st.none(), st.text(st.sampled_from(
    "aZ09-{} \t\r\n\x00İǅß"), max_size=12), st.text(max_size=12)), min_size=1, max_size=20))
def test_network_message_id_is_trimmed_then_lower_cased(values: list[str | None]) -> None:
    """Lower-casing before trimming gives what trimming first gives, on any text."""
    import polars as pl

    s = pl.Series(values, dtype=pl.String)
    want = s.str.strip_chars(" \t\r\n\x00").str.to_lowercase()
    want = want.set(want.str.len_bytes() == 0, None)  # type: ignore[arg-type]
    got = pl.select(nz.network_message_id(pl.lit(s))).to_series()
    assert got.to_list() == want.to_list()


@given(st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=40),
       st.sampled_from([pl.String, pl.Categorical]))
def test_distinct_places_point_back_at_every_value(values: list[str | None], dtype) -> None:
    """Each value's place holds that value (null included), and each distinct value is
    there once, whatever the column's type."""
    s = pl.Series("v", values, dtype=pl.String).cast(dtype)
    distinct, places = nz.distinct_places(s)
    assert distinct.dtype == s.dtype and distinct.n_unique() == distinct.len()
    assert distinct.gather(places).to_list() == s.to_list()


def test_exchange_online_seven_digit_times_take_the_short_path_and_read_the_same() -> None:
    """A column wholly in Exchange Online's form (7 fraction digits and Z, the common case)
    is read with fewer passes, to the same values as the full parser; an impossible date
    in it stays null."""
    from pipeline.formats.common import iso_utc, parse_time_column

    raw = pl.Series("t", ["2026-10-31T00:00:05.6657079Z", "2026-02-28T23:59:59.0000001Z",
                          "2026-02-30T00:00:00.1234567Z", "2024-02-29T12:00:00.9999999Z"])
    full = pl.select(nz.timestamp(pl.lit(raw), "ymd")).to_series()
    assert iso_utc(raw).to_list() == full.to_list()
    assert parse_time_column(raw, "ymd").to_list() == full.to_list()
    assert full.null_count() == 1 and full[0].microsecond == 665707


@given(st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzäöüßéèçñøåæ-1"),
               min_size=1, max_size=20))
def test_unicode_and_xn_forms_of_a_domain_are_one_domain(label: str) -> None:
    import idna

    name = f"{label}.example"
    try:
        ascii_form = idna.encode(name, uts46=True).decode()
    except idna.IDNAError:
        return  # not a domain name at all (e.g. a leading hyphen): compared as written
    upper = name.upper() if name.upper().lower() == name else name  # ß → SS is another name
    for form in (name, upper, ascii_form):
        assert nz.domain_of(f"Someone <user@{form}>") == ascii_form
        assert pl.select(nz.domain_name(pl.lit(f"*.{form}."))).item() == ascii_form


def test_an_accepted_unicode_domain_covers_its_xn_sender(tmp_path: Path) -> None:
    from pipeline import detect, exports
    from pipeline.ingest import ingest
    from pipeline.settings import Settings
    from tests.conftest import AS_OF, at

    inbox = tmp_path / "inbox" / "books"
    inbox.mkdir(parents=True)
    (inbox / "ad.csv").write_text('"DomainName","DomainType","Default"\n'
                                  '"bücher.example","Authoritative","True"\n', encoding="utf-8")
    exports.message_trace_csv(inbox / "trace.csv", [
        {"received_utc": at(27, 9, i % 60), "sender_address": f"s{i}@xn--bcher-kva.example",
         "recipient_address": f"r{i}@out{i}.example", "status": "delivered",
         "network_message_id": f"m-{i}"} for i in range(200)], "booksx.onmicrosoft.com",
        "ps7", "iso")
    settings = Settings(lake=tmp_path / "lake")
    ingest([tmp_path / "inbox"], settings)
    result = detect.detect(settings, AS_OF)
    v = result.verdicts.row(0, named=True)
    assert v["tenant"] == "books" and v["recommendation"] == "unblock", v["reasons"]
    assert not any("unregistered" in r for r in v["reasons"] if "0 " not in r)
