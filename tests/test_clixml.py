"""CLIXML (Export-Clixml, issue 18): the real samples read with their exact values, a
round trip of drawn objects through a CLIXML writer (back-references, nulls, lists,
escapes), and hostile XML refused with a reason, fast and in flat memory."""

from __future__ import annotations

import resource
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InputFormatError
from pipeline import exports
from pipeline.formats import clixml
from tests.conftest import parse, real

NS = 'xmlns="http://schemas.microsoft.com/powershell/2004/04"'


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)


def test_the_real_accepted_domains_clixml_reads_with_its_values() -> None:
    p = parse(real("accepteddomain_clixml_exchange2019_cssexchange.xml"))
    assert (p.format, p.table, p.rejects.height) == ("accepted_domains", "accepted_domains", 0)
    got = p.rows.select("domain_name", "domain_type", "is_default", "match_subdomains",
                        "when_created_utc").rows()
    assert got == [("solo.com", "Authoritative", True, False, utc(2021, 10, 6, 19, 24, 5)),
                   ("contoso.local", "Authoritative", False, True, utc(2021, 12, 3, 17, 15, 47)),
                   ("com", "InternalRelay", False, True, utc(2021, 12, 3, 17, 17, 21))]


def test_the_real_send_connector_clixml_is_an_on_premises_send_connector() -> None:
    p = parse(real("sendconnector_clixml_exchange_to_o365_cssexchange.xml"))
    assert (p.format, p.table) == ("send_connectors", "send_connectors")
    (r,) = p.rows.to_dicts()
    assert r["name"] == "Mail to O365" and r["enabled"] is True
    assert r["address_spaces"] == ["*"]
    assert r["smart_hosts"] == ["microsoft-com.mail.protection.outlook.com"]
    assert r["source_transport_servers"] == ["WIN-CTD3L0RGEN4"]
    assert r["require_tls"] is False and r["tls_certificate_name"] == "<I>CN=localhost<S>CN=localhost"
    assert r["when_created_utc"] == utc(2022, 3, 23, 16, 51, 11)


names = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="_\x00"),
                max_size=30)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), texts)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=12)
records = st.dictionaries(names, values, min_size=1, max_size=8)


def _plain(v: object) -> object:  # what the reader gives back: numbers as their text
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    return [_plain(x) for x in v]  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None)
@given(st.lists(records, min_size=1, max_size=5), st.data())
def test_drawn_objects_round_trip_through_clixml(tmp_path_factory, objs, data) -> None:  # type: ignore[no-untyped-def]
    shared = data.draw(st.lists(texts, min_size=1, max_size=3))
    for o in objs:  # the same list object in several records: written once, then <Ref>
        if data.draw(st.booleans()):
            o["Shared"] = shared
    path = tmp_path_factory.mktemp("x") / "objs.xml"
    path.write_text(exports.Clixml().document(objs), encoding="utf-8-sig")
    got = [(n, rec) for n, rec, _ in clixml.records(path, "objs.xml")]
    assert got == [(i, {k: _plain(v) for k, v in o.items()}) for i, o in enumerate(objs, 1)]


def test_escapes_enums_and_rich_types_read_as_powershell_writes_them(tmp_path: Path) -> None:
    path = tmp_path / "o.xml"
    path.write_text(
        f'<Objs Version="1.1.0.1" {NS}><Obj RefId="0"><TN RefId="0"><T>X</T></TN><Props>'
        '<S N="Subject">a_x000D__x000A_b</S>'
        '<Obj N="DomainType" RefId="1"><TN RefId="1"><T>System.Enum</T></TN>'
        "<ToString>InternalRelay</ToString><I32>2</I32></Obj>"
        '<DT N="WhenCreatedUTC">2021-12-03T17:17:21Z</DT>'
        '<Obj N="Tags" RefId="2"><DCT><En><S N="Key">k</S><I32 N="Value">5</I32></En></DCT></Obj>'
        '</Props><MS><S N="Extra">x</S></MS></Obj></Objs>', encoding="utf-8")
    ((_, rec, _),) = list(clixml.records(path, "o.xml"))
    assert rec == {"Subject": "a\r\nb", "DomainType": "InternalRelay",
                   "WhenCreatedUTC": "2021-12-03T17:17:21Z", "Tags": {"k": "5"}, "Extra": "x"}


BOMB = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(f'<!ENTITY lol{i} "{"&lol" + (str(i - 1) if i > 1 else "") + ";" * 1}'
                  f'{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 9}">' for i in range(1, 10))
        + f']><Objs {NS}><Obj RefId="0"><Props><S N="DomainName">&lol9;</S>'
          '<S N="DomainType">x</S></Props></Obj></Objs>')
XXE = (f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
       f'<Objs {NS}><Obj RefId="0"><Props><S N="DomainName">&e;</S><S N="DomainType">a</S>'
       '</Props></Obj></Objs>')


@pytest.mark.parametrize("text", [BOMB, XXE], ids=["billion_laughs", "external_entity"])
def test_hostile_xml_is_refused_with_a_reason_fast_and_flat(tmp_path: Path, text: str) -> None:
    path = tmp_path / "hostile.xml"
    path.write_text(text)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(InputFormatError) as err:
        parse(path)
    assert time.monotonic() - started < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 50_000  # KB
    assert "DTD" in str(err.value) and "hostile.xml" in str(err.value)


def test_xml_that_is_not_clixml_and_broken_clixml_name_file_and_fix(tmp_path: Path) -> None:
    other = tmp_path / "rss.xml"
    other.write_text('<?xml version="1.0"?><rss><channel/></rss>')
    with pytest.raises(InputFormatError, match="not PowerShell CLIXML"):
        parse(other)
    cut = tmp_path / "cut.xml"
    cut.write_text(f'<Objs {NS}><Obj RefId="0"><Props><S N="DomainName">a.com</S>'
                   '<S N="DomainType">Authoritative</S></Props></Obj><Obj RefId="1"><Props>')
    with pytest.raises(InputFormatError, match="broken XML") as err:
        parse(cut)
    assert "cut.xml" in str(err.value)
