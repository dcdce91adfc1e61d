"""IP addresses and ranges compared by the standard library's `ipaddress`, IPv4 and IPv6
alike, as DuckDB functions of a relaywatch session (no hand-written bit maths); and the
Public Suffix List (publicsuffixlist's bundled copy) as a table, `public_suffixes`, that the
macro is_public_suffix() reads, so the views that use it also open in plain DuckDB (the
catalog).

A range is written as Exchange writes them: one address, a CIDR (`203.0.113.0/24`,
`2001:db8::/48`) or a span (`192.168.0.10-192.168.0.20`). An IPv4-mapped IPv6 address
(`::ffff:203.0.113.5`, how a dual-stack socket reports IPv4 clients) is its IPv4 address.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from importlib import resources

import duckdb
import pyarrow as pa

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str, unmap: bool = False) -> Address | None:
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    return (getattr(ip, "ipv4_mapped", None) if unmap else None) or ip


@lru_cache(maxsize=4096)
def _bounds(text: str) -> tuple[int, int, int] | None:
    """(IP version, first, last address as integers) of a range, or None when it is not one."""
    text = text.strip()
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            return net.version, int(net.network_address), int(net.broadcast_address)
        if "-" in text:
            lo, hi = (_address(p) for p in text.split("-", 1))
            if lo and hi and lo.version == hi.version and lo <= hi:  # type: ignore[operator]
                return lo.version, int(lo), int(hi)
            return None
    except ValueError:
        return None
    one = _address(text)
    return (one.version, int(one), int(one)) if one else None


def ip_in_range(ip: str, rng: str) -> bool | None:
    """Whether the address lies in the range (NULL when either is not an address or range;
    an IPv4 address is never in an IPv6 range, nor the other way)."""
    bounds = _bounds(rng)
    addr = _address(ip, unmap=bounds is not None and bounds[0] == 4)
    if addr is None or bounds is None:
        return None
    return bounds[0] == addr.version and bounds[1] <= int(addr) <= bounds[2]


def range_prefix(rng: str) -> int | None:
    """How wide a range is, as the prefix length of an IPv4 network of as many addresses
    (a /24 is 256 addresses, in either family: IPv6 /120 is 24), rounded to the wider."""
    bounds = _bounds(rng)
    if bounds is None:
        return None
    return 32 - (bounds[2] - bounds[1]).bit_length()


@lru_cache(maxsize=1)
def public_suffixes() -> pa.Table:
    """The Public Suffix List's rules as rows (suffix, kind), names in their ASCII (`xn--`)
    form as the lake keeps domains: kind `exact` (`co.uk`), `wildcard` (`*.ck`: the names
    one label under it) or `exception` (`!www.ck`: not public after all)."""
    text = (resources.files("publicsuffixlist") / "public_suffix_list.dat").read_text(
        encoding="utf-8")
    suffixes, kinds = [], []
    for line in text.splitlines():
        rule = line.strip().split(" ")[0]
        if not rule or rule.startswith("//"):
            continue
        kind = "wildcard" if rule.startswith("*.") else "exception" if rule[0] == "!" else "exact"
        name = rule[{"wildcard": 2, "exception": 1, "exact": 0}[kind]:]
        if not name.isascii():
            try:
                name = name.encode("idna").decode("ascii")
            except UnicodeError:
                continue
        suffixes.append(name.lower())
        kinds.append(kind)
    return pa.table({"suffix": pa.array(suffixes, pa.string()),
                     "kind": pa.array(kinds, pa.string())})


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Make ip_in_range(ip, range) and range_prefix(range) callable in this connection
    (DuckDB calls them per distinct value; NULL in, NULL out)."""
    con.create_function("ip_in_range", ip_in_range, ["VARCHAR", "VARCHAR"], "BOOLEAN")
    con.create_function("range_prefix", range_prefix, ["VARCHAR"], "INTEGER")
    con.register("_psl", public_suffixes())
    con.execute("CREATE OR REPLACE TABLE public_suffixes AS SELECT * FROM _psl")
    con.unregister("_psl")
