"""IP comparisons (issue 17, case 7): IPv4 and IPv6 alike, checked against the standard
library's own answer over drawn networks and addresses, and inside DuckDB."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import addresses

v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
v6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


@st.composite
def networks(draw):  # type: ignore[no-untyped-def]
    ip = draw(st.one_of(v4, v6))
    return ipaddress.ip_network(f"{ip}/{draw(st.integers(0, ip.max_prefixlen))}", strict=False)


@given(networks(), st.one_of(v4, v6))
def test_an_address_is_in_a_cidr_exactly_when_ipaddress_says_so(net, ip) -> None:  # type: ignore[no-untyped-def]
    assert addresses.ip_in_range(str(ip), str(net)) is (ip in net)


@given(networks())
def test_a_span_is_the_same_range_as_its_cidr(net) -> None:  # type: ignore[no-untyped-def]
    span = f"{net.network_address}-{net.broadcast_address}"
    for ip in (net.network_address, net.broadcast_address):
        assert addresses.ip_in_range(str(ip), span)
    if int(net.broadcast_address) < (2**net.max_prefixlen - 1):
        assert not addresses.ip_in_range(str(net.broadcast_address + 1), span)
    # width as an IPv4 prefix of as many addresses: /n for IPv4, /n-96 for IPv6
    assert addresses.range_prefix(span) == addresses.range_prefix(str(net)) \
        == net.prefixlen - (96 if net.version == 6 else 0)


def test_mapped_ipv4_and_odd_input() -> None:
    assert addresses.ip_in_range("::ffff:203.0.113.9", "203.0.113.0/24")
    assert addresses.ip_in_range("203.0.113.9", "2001:db8::/32") is False
    assert addresses.ip_in_range("not an ip", "203.0.113.0/24") is None
    assert addresses.ip_in_range("203.0.113.9", "203.0.113.20-203.0.113.10") is None
    assert addresses.range_prefix("0.0.0.0-255.255.255.255") == 0
    assert addresses.range_prefix("192.0.2.10-192.0.2.20") == 28  # 11 addresses: a /28's room


def test_the_functions_work_in_duckdb_lambdas() -> None:
    con = duckdb.connect()
    addresses.register(con)
    got = con.sql("SELECT list_bool_or(list_transform(['10.0.0.0/8', '2001:db8::/32'], "
                  "lambda r: ip_in_range('2001:db8::1', r))), range_prefix('10.0.0.0/8')"
                  ).fetchall()[0]
    assert got == (True, 8)


_PSL = addresses.public_suffixes().to_pylist()


@lru_cache(maxsize=1)
def _session() -> duckdb.DuckDBPyConnection:
    from pipeline import sql

    con = duckdb.connect()
    addresses.register(con)
    con.execute(sql.MACROS.replace("{infer_min_counterparties}", "3"))
    return con


@settings(deadline=None)  # a DuckDB query each: its time is the machine's, not the rule's
@given(st.sampled_from(_PSL), st.sampled_from(["", "x.", "a.b.", "www.", "city."]),
       st.booleans())
def test_is_public_suffix_agrees_with_publicsuffixlist(rule, prefix, upper) -> None:  # type: ignore[no-untyped-def]
    """The SQL macro over the public_suffixes table (it opens in plain DuckDB, unlike a
    Python function) gives publicsuffixlist's own answer for names at, under and two labels
    under every kind of rule (exact, wildcard, exception)."""
    from publicsuffixlist import PublicSuffixList

    name = prefix + rule["suffix"]
    got = _session().execute("SELECT is_public_suffix($d)",
                      {"d": name.upper() if upper else name}).fetchone()
    assert got == (bool(PublicSuffixList().is_public(name)),), name
