"""The rendered report: golden files for a small fixed lake, escaping, the verdicts contract."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from click.testing import CliRunner

from pipeline import detect, render, report
from pipeline.cli import cli
from pipeline.settings import DetectSettings, Settings
from tests.conftest import AS_OF, ROOT, SNAPSHOT, LakeBuilder, at

GOLDEN = ROOT / "tests" / "golden" / "report"
HOSTILE_CONNECTOR = "Relay <script>alert(1)</script>"
HOSTILE_SUBJECT = '" onmouseover="alert(1)'


def fixed_lake(build: LakeBuilder) -> None:
    """acme: an attacker's connector with a hostile name relays spam and gets blocked;
    calm: ordinary mail only."""
    for tenant in ("acme", "calm"):
        build.domains(tenant, f"{tenant}.com")
        for day in range(1, 28):
            build.send(tenant, at(day, 9), f"user@{tenant}.com", 3, subject="Weekly status")
    build.table("inbound_connectors", "acme", [
        {"snapshot_utc": SNAPSHOT, "name": HOSTILE_CONNECTOR, "connector_type": "OnPremises",
         "sender_ip_addresses": ["198.51.100.0/24"], "sender_domains": ["*"],
         "when_created_utc": at(25, 20)}])
    build.table("inbound_connectors", "calm", [
        {"snapshot_utc": SNAPSHOT, "name": "Calm Hybrid", "connector_type": "OnPremises",
         "sender_ip_addresses": ["192.0.2.5"], "sender_domains": ["calm.com"],
         "when_created_utc": at(1, month=1)}])
    for day in (26, 27):
        for hour in range(0, 24, 3):
            blocked = day == 27 and hour >= 12
            build.send("acme", at(day, hour), "billing@evil-deals.biz", 60,
                       subject=HOSTILE_SUBJECT, connector=HOSTILE_CONNECTOR,
                       client_ip="198.51.100.9", status="failed" if blocked else "delivered",
                       ndr_code="5.7.750" if blocked else None)


def fixed_report(root: Path) -> Path:
    """The fixed lake under root/lake, detected and rendered into root/reports/<date>."""
    build = LakeBuilder(root / "lake")
    fixed_lake(build)
    detect.detect(Settings(lake=build.root), AS_OF)
    return render.write(report.build(build.root, AS_OF.date(), DetectSettings()),
                        root / "reports")


@pytest.fixture
def rendered(build: LakeBuilder, tmp_path: Path) -> Path:
    return fixed_report(build.root.parent)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), \
        f"{name} changed; if on purpose: UPDATE_GOLDEN=1 make test, then review the diff"


def test_report_files_match_the_golden_files(rendered: Path) -> None:
    assert rendered.name == "2026-11-28"
    for name in ("report.html", "report.txt", "verdicts.json", "tenants/acme.html",
                 "tenants/calm.txt"):
        _golden(name.replace("/", "_"), (rendered / name).read_text(encoding="utf-8"))


def test_verdicts_json_holds_the_contract(rendered: Path) -> None:
    verdicts = {v["tenant"]: v for v in json.loads((rendered / "verdicts.json").read_text())}
    acme = verdicts["acme"]
    assert (acme["recommendation"], acme["blocked_now"], acme["as_of"]) == ("block", True,
                                                                           "2026-11-28")
    assert [s["step"] for s in acme["checklist"]] == [1, 2, 3, 4]
    assert all(set(s) == {"step", "title", "ok", "evidence"} for s in acme["checklist"])
    assert not any(s["ok"] for s in acme["checklist"])
    # 11-27 at 12, 15, 18 and 21 h: 4 messages x 60 recipients
    assert acme["reasons"][0].startswith("blocked now: 240 NDRs 5.7.750")
    assert verdicts["calm"]["recommendation"] == "unblock"
    assert all(isinstance(v["score"], float) for v in verdicts.values())


def tags(html: str) -> set[str]:
    """Every element name in the document, as a browser's tokenizer sees it."""
    from html.parser import HTMLParser

    found: set[str] = set()

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list) -> None:
            found.add(tag)
            for name, _ in attrs:
                found.add("@" + name)

    Collect().feed(html)
    return found


def test_hostile_text_is_escaped_everywhere(rendered: Path) -> None:
    for page in ("report.html", "tenants/acme.html"):
        html = (rendered / page).read_text()
        assert "script" not in tags(html) and "@onmouseover" not in tags(html)
        assert "<script" not in html.lower()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert 'onmouseover="alert' not in html
        assert "<style" not in html.lower()           # inlined by css-inline
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", html)
        assert "javascript:" not in html.lower()
    # the PowerShell shown for the connector quotes its name as a literal
    assert "Set-InboundConnector -Identity 'Relay &lt;script&gt;alert(1)&lt;/script&gt;' " \
           "-Enabled $false" in (rendered / "report.html").read_text()


def test_hostile_tenant_name_is_escaped_and_refused_as_a_file_name(build: LakeBuilder,
                                                                   tmp_path: Path) -> None:
    fixed_lake(build)
    detect.detect(Settings(lake=build.root), AS_OF)
    built = report.build(build.root, AS_OF.date(), DetectSettings())
    evil = replace(built, tenants=tuple(replace(t, tenant="<b>x</b>\"'") for t in built.tenants))
    html = render.render(evil).html
    assert "b" not in tags(html) and "&lt;b&gt;x&lt;/b&gt;" in html
    with pytest.raises(Exception, match="not a valid slug"):
        render.write(evil, tmp_path / "out")


def ps_single_quoted(command: str, start: int) -> tuple[str, int]:
    """PowerShell's tokenizer for a single-quoted string at `start`: its value and where the
    token ends. Any of the five single-quote characters ends it; two in a row are one."""
    quotes = report.PS_SINGLE_QUOTES
    assert command[start] in quotes
    value, i = [], start + 1
    while i < len(command):
        ch = command[i]
        if ch in quotes:
            if i + 1 < len(command) and command[i + 1] in quotes:
                value.append(ch)
                i += 2
                continue
            return "".join(value), i + 1
        value.append(ch)
        i += 1
    raise AssertionError("unterminated string")


def test_powershell_quoting() -> None:
    assert report.ps_quote("it's") == "'it''s'"
    assert report.ps_quote("$(calc)") == "'$(calc)'"
    evil = "x\u2019; Set-Mailbox admin -ForwardingSmtpAddress evil@x.example; #"
    assert report.ps_quote(evil) == "'x\u2019\u2019; Set-Mailbox admin " \
                                    "-ForwardingSmtpAddress evil@x.example; #'"
    for bad in ("a\nRemove-Mailbox x", "a\rb", "\x1b[2Jx", "a\u202ebc", "a\u2028b", "", "a\x00"):
        assert report.ps_quote(bad) is None


@settings(max_examples=500)
@given(st.text(alphabet=st.one_of(st.sampled_from("'\u2018\u2019\u201a\u201b\"$`;#\n\r "),
                                  st.characters())))
def test_powershell_quoting_is_one_literal_holding_the_value(name: str) -> None:
    quoted = report.ps_quote(name)
    if quoted is None:  # refused: only for values that hold what cannot be shown as is
        assert not name or not name.isprintable()
        return
    command = f"Set-InboundConnector -Identity {quoted} -Enabled $false"
    start = command.index(quoted)
    value, end = ps_single_quoted(command, start)
    assert value == name and command[end:] == " -Enabled $false"


def test_unquotable_connector_names_get_no_command(build: LakeBuilder) -> None:
    fixed_lake(build)
    detect.detect(Settings(lake=build.root), AS_OF)
    built = report.build(build.root, AS_OF.date(), DetectSettings())
    t = next(t for t in built.tenants if any(c["suspicious"] for c in t.connectors))
    evil = replace(t, connectors=tuple({**c, "connector": "Relay\nRemove-Mailbox -Identity x"}
                                       for c in t.connectors))
    steps = report.next_steps(evil, AS_OF, AS_OF, DetectSettings())
    assert not any("Remove-Mailbox" in s.command for s in steps)
    assert any(s.command == "Get-InboundConnector | Format-List Name,Guid,WhenCreatedUTC"
               and "Relay\\nRemove-Mailbox" in s.purpose for s in steps)


def test_chart_geometry_is_computed_not_templated() -> None:
    import polars as pl

    hourly = pl.DataFrame({"hour": [at(27, 10)], "registered": [30], "unprovisioned": [10]},
                          schema_overrides={"hour": pl.Datetime("us", "UTC")})
    baseline = pl.DataFrame({"hour_of_day": [10], "weekend": [False], "baseline": [20.0]})
    c = report.chart(hourly, baseline, {at(27, 10)}, at(27, 9), at(27, 12))
    assert len(c.bars) == 3 and c.peak == 40 and (c.registered, c.unprovisioned) == (30, 10)
    bar = c.bars[1]
    assert bar.spike and sum(h for h, _ in bar.segments) == report.CHART_HEIGHT
    # peak 40 recipients = 80 px. Top-down: unregistered 10 -> 20 px, then registered 30 ->
    # 60 px, inside which the 2 px baseline mark sits 20/40 x 80 = 40 px from the bottom
    assert bar.segments == ((20, "#d64545"), (18, "#8a97a8"), (2, "#1f6feb"), (40, "#8a97a8"))
    assert c.bars[0].segments == ((80, ""),) and not c.bars[0].spike
    assert c.days == (("Fri 27", 3),)


def test_report_command(rendered: Path, build: LakeBuilder, tmp_path: Path) -> None:
    out = tmp_path / "again"
    r = CliRunner().invoke(cli, ["report", "--lake", str(build.root), "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{out / '2026-11-28' / 'report.html'}\n"
    assert (out / "2026-11-28" / "report.html").read_text() == \
        (rendered / "report.html").read_text()
    r = CliRunner().invoke(cli, ["report", "--lake", str(build.root), "--out", str(out),
                                 "--as-of", "2026-11-20"])
    assert r.exit_code == 2 and "no verdicts for 2026-11-20" in r.stderr


def test_control_and_bidi_characters_are_shown_escaped_in_every_report_file(
        build: LakeBuilder) -> None:
    fixed_lake(build)
    detect.detect(Settings(lake=build.root), AS_OF)
    built = report.build(build.root, AS_OF.date(), DetectSettings())
    name = "Relay\x1b[2J\u202eexe.pdf"
    evil = replace(built, tenants=tuple(
        replace(t, connectors=tuple({**c, "connector": name} for c in t.connectors))
        for t in built.tenants))
    out = render.render(evil)
    assert any(t.connectors for t in evil.tenants)
    for text in (out.text, out.html):
        assert "\x1b" not in text and "\u202e" not in text
        assert "Relay\\x1b[2J\\u202eexe.pdf" in text
