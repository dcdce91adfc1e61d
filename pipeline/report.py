"""The report's content: a typed context built from named queries over the lake.

Everything the templates show is computed here (numbers, chart geometry, the PowerShell to
run); templates only format it. Reads the `verdicts` and `findings` that `relaywatch detect`
stored for one as-of day, plus a few named queries for charts and data quality.
"""

from __future__ import annotations

import json
import re
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import polars as pl

from pipeline.errors import ConfigError
from pipeline.schema import CHECKLIST
from pipeline.settings import DetectSettings
from pipeline.sql import Session
from pipeline.verdict import when

STEP_TITLES = ("Every sending domain is registered", "No unusual inbound connectors",
               "On-premises side no longer relays spam", "Ready to ask support for an unblock")
CHART_HEIGHT = 80
COLOURS = {"registered": "#8a97a8", "unprovisioned": "#d64545", "baseline": "#1f6feb"}


@dataclass(frozen=True)
class Step:
    number: int
    title: str
    ok: bool
    evidence: str


@dataclass(frozen=True)
class Bar:
    segments: tuple[tuple[int, str], ...]  # (height px, colour) from the top; "" = empty
    spike: bool
    title: str


@dataclass(frozen=True)
class Chart:
    bars: tuple[Bar, ...]
    days: tuple[tuple[str, int], ...]  # label, number of bars
    peak: int
    registered: int
    unprovisioned: int


@dataclass(frozen=True)
class Command:
    purpose: str
    command: str


@dataclass(frozen=True)
class TenantReport:
    tenant: str
    recommendation: str
    blocked_now: bool
    ready_to_unblock: bool
    score: float
    data_state: str
    last_event_utc: datetime | None
    reasons: tuple[str, ...]
    steps: tuple[Step, ...]
    chart: Chart
    domains: tuple[dict[str, Any], ...]
    connectors: tuple[dict[str, Any], ...]
    spikes: tuple[dict[str, Any], ...]
    ndrs: tuple[dict[str, Any], ...]
    next_steps: tuple[Command, ...]
    support_text: str
    onprem: tuple[dict[str, Any], ...] = ()  # open-relay settings on premises

    @property
    def anchor(self) -> str:
        """An id for links within the report: the slug, with anything else replaced."""
        return "t-" + re.sub(r"[^a-z0-9_.-]", "-", self.tenant.lower())

    @property
    def last_event(self) -> str:
        return when(self.last_event_utc)

    @property
    def needs_attention(self) -> bool:
        return self.recommendation == "block" or self.blocked_now or self.ready_to_unblock


@dataclass(frozen=True)
class Report:
    as_of: date
    as_of_utc: datetime
    window_days: int
    tenants: tuple[TenantReport, ...]
    quality: tuple[dict[str, Any], ...]
    rejected_files: tuple[dict[str, Any], ...]
    rejected_rows: tuple[dict[str, Any], ...] = ()

    @property
    def to_block(self) -> int:
        return sum(t.recommendation == "block" for t in self.tenants)

    @property
    def blocked_now(self) -> int:
        return sum(t.blocked_now for t in self.tenants)

    @property
    def ready(self) -> int:
        return sum(t.ready_to_unblock for t in self.tenants)

    @property
    def headline(self) -> str:
        n = self.to_block
        text = f"{n} tenant{'s' if n != 1 else ''} to block"
        if self.blocked_now:
            text += f" ({self.blocked_now} blocked now)"
        return f"{text}, {self.ready} ready to unblock"

    @property
    def attention(self) -> tuple[TenantReport, ...]:
        return tuple(t for t in self.tenants if t.needs_attention)


# PowerShell ends a single-quoted string at any of these, and reads two in a row as one
# (CharExtensions.IsSingleQuote): each is doubled, not only the ASCII one.
PS_SINGLE_QUOTES = "\u0027\u2018\u2019\u201a\u201b"


def ps_quote(text: str) -> str | None:
    """A PowerShell single-quoted literal (nothing inside is interpreted), or None when the
    value holds control, invisible or bidi characters: a newline would end the command, and
    dropping them would name another object. Callers then print no command with it."""
    if not text or not text.isprintable():
        return None
    return "'" + "".join(ch * 2 if ch in PS_SINGLE_QUOTES else ch for ch in text) + "'"


# the tables the report's queries read: it draws what detect stored, never raw messages
REPORT_TABLES = ("verdicts", "findings", "chart_hours", "baselines", "ndr_days", "ingest_log",
                 "rejects")


def latest_as_of(lake: Path) -> date:
    with Session(lake, tables=("verdicts",)) as session:
        found = session.frame("SELECT max(as_of) AS d FROM verdicts")["d"][0]
    if found is None:
        raise ConfigError(f"{lake}: no verdicts yet; run `relaywatch detect` first")
    return found


def build(lake: Path, as_of: date, settings: DetectSettings, tenant: str | None = None,
          shared: Session | None = None) -> Report:
    """The report of one as-of day; `shared` is a caller's open session (nightly's)."""
    with nullcontext(shared) if shared else Session(lake, tables=REPORT_TABLES) as session:
        verdicts = session.run("report_verdicts", {"as_of": as_of, "tenant": tenant})
        if verdicts.height == 0:
            raise ConfigError(f"{lake}: no verdicts for {as_of}"
                              + (f" and tenant {tenant!r}" if tenant else "")
                              + f"; run `relaywatch detect --as-of {as_of}` first")
        as_of_utc = cast(datetime, verdicts["as_of_utc"].max())
        since = as_of_utc - timedelta(days=settings.window_days)
        findings = session.run("report_findings", {"as_of": as_of, "tenant": tenant})
        hourly = session.run("report_hours", {"as_of": as_of, "tenant": tenant})
        baseline = session.run("report_baselines", {"as_of": as_of, "tenant": tenant})
        ndrs = session.run("report_ndr_days", {"as_of": as_of, "tenant": tenant})
        quality = session.run("data_quality", {"tenant": tenant})
        rejected = session.run("rejected_files", {"tenant": tenant})
        bad_rows = session.run("rejected_rows", {"tenant": tenant})
    parts = [_by_tenant(f) for f in (findings, hourly, baseline, ndrs)]
    def mine(v: dict[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame,
                                          pl.DataFrame]:
        f, h, b, n = (p.get(v["tenant"], frame.clear()) for p, frame in
                      zip(parts, (findings, hourly, baseline, ndrs), strict=True))
        return f, h, b, n

    tenants = tuple(_tenant(v, *mine(v), since, as_of_utc, settings)
                    for v in verdicts.iter_rows(named=True))
    states = {t.tenant: (t.data_state, t.last_event) for t in tenants}
    quality_rows = tuple({**q, "data_state": states.get(q["tenant"], ("no_data", ""))[0],
                          "last_event": states.get(q["tenant"], ("", "never"))[1]}
                         for q in quality.iter_rows(named=True))
    return Report(as_of, as_of_utc, settings.window_days, tenants, quality_rows,
                  tuple(rejected.iter_rows(named=True)), tuple(bad_rows.iter_rows(named=True)))


def _by_tenant(frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Split a frame by tenant once (filtering it per tenant costs tenants x rows)."""
    return {key[0]: part for key, part in frame.partition_by("tenant", as_dict=True).items()}


def chart(hourly: pl.DataFrame, baseline: pl.DataFrame, spikes: set[datetime],
          since: datetime, until: datetime) -> Chart:
    """Hourly bars over the window: registered below, unregistered stacked on top, the
    baseline as a 2-pixel mark, spiking hours flagged."""
    by_hour = {r["hour"]: r for r in hourly.iter_rows(named=True)}
    base = {(r["hour_of_day"], r["weekend"]): float(r["baseline"] or 0)
            for r in baseline.iter_rows(named=True)}
    start = since.replace(minute=0, second=0, microsecond=0)
    hours = [start + timedelta(hours=i) for i in range(int((until - start).total_seconds()
                                                          // 3600))]
    values = [(by_hour.get(h, {}).get("registered", 0), by_hour.get(h, {}).get("unprovisioned", 0),
               base.get((h.hour, h.isoweekday() >= 6), 0.0)) for h in hours]
    peak = max([r + u for r, u, _ in values] + [b for _, _, b in values] + [1])
    bars = []
    for h, (reg, unp, bl) in zip(hours, values, strict=False):
        top_reg = round(reg / peak * CHART_HEIGHT)
        top_all = round((reg + unp) / peak * CHART_HEIGHT)
        mark = min(CHART_HEIGHT - 2, round(bl / peak * CHART_HEIGHT)) if bl > 0 else -9

        def colour(y: float, mark: int = mark, top_reg: int = top_reg,
                   top_all: int = top_all) -> str:  # what shows at height y (0 = bottom)
            if mark <= y < mark + 2:
                return COLOURS["baseline"]
            if y < top_reg:
                return COLOURS["registered"]
            return COLOURS["unprovisioned"] if y < top_all else ""

        cuts = sorted({0, top_reg, top_all, CHART_HEIGHT, *((mark, mark + 2) if bl > 0 else ())})
        segments: list[tuple[int, str]] = []
        for lo, hi in reversed(list(zip(cuts, cuts[1:], strict=False))):  # top-down
            c = colour((lo + hi) / 2)
            if segments and segments[-1][1] == c:
                segments[-1] = (segments[-1][0] + hi - lo, c)
            else:
                segments.append((hi - lo, c))
        title = (f"{h:%a %d %b %H}:00 UTC: {reg:,} registered, {unp:,} unregistered, "
                 f"baseline {bl:g}")
        bars.append(Bar(tuple(segments), h in spikes, title))
    days: list[tuple[str, int]] = []
    for h in hours:
        label = f"{h:%a %d}"
        if days and days[-1][0] == label:
            days[-1] = (label, days[-1][1] + 1)
        else:
            days.append((label, 1))
    return Chart(tuple(bars), tuple(days), int(peak), sum(v[0] for v in values),
                 sum(v[1] for v in values))


def _evidence(rows: pl.DataFrame, detection: str) -> list[dict[str, Any]]:
    out = []
    for r in rows.filter(pl.col("detection") == detection).iter_rows(named=True):
        out.append({**json.loads(r["evidence"]), "severity": r["severity"],
                    "finding_reasons": r["reasons"], "first": when(r["first_seen_utc"]),
                    "last": when(r["last_seen_utc"])})
    return out


def _tenant(v: dict[str, Any], findings: pl.DataFrame, hourly: pl.DataFrame,
            baseline: pl.DataFrame, ndrs: pl.DataFrame, since: datetime, until: datetime,
            settings: DetectSettings) -> TenantReport:
    steps = tuple(Step(i, STEP_TITLES[i - 1], bool(v[f"step{i}_ok"]), v[f"step{i}_evidence"])
                  for i in range(1, len(CHECKLIST) + 1))
    spikes = _evidence(findings, "volume_spike")
    spike_hours = {datetime.fromisoformat(h) for s in spikes if s["scope"] == "tenant"
                   for h in s.get("hours") or ()}
    domains = _evidence(findings, "unprovisioned_domain")
    connectors = _evidence(findings, "suspicious_connector")
    ready = v["recommendation"] == "unblock" and bool(v["block_code"]) and bool(v["step4_ok"])
    report = TenantReport(
        v["tenant"], v["recommendation"], bool(v["blocked_now"]), ready, float(v["score"]),
        v["data_state"], v["last_event_utc"], tuple(v["reasons"]), steps,
        chart(hourly, baseline, spike_hours, since, until), tuple(domains), tuple(connectors),
        tuple(spikes), tuple(ndrs.iter_rows(named=True)), (), v["step4_evidence"]
        if ready else "", tuple(_evidence(findings, "onprem_relay_setting")))
    return replace(report, next_steps=next_steps(report, since, until, settings))


def next_steps(t: TenantReport, since: datetime, until: datetime,
               settings: DetectSettings) -> tuple[Command, ...]:
    """What to do, in order, as commands filled in with this tenant's values."""
    start, end = f"{since:%Y-%m-%d}", f"{until + timedelta(days=1):%Y-%m-%d}"
    out: list[Command] = []
    if t.data_state != "fresh":
        out.append(Command("Export fresh message trace data (the last export is too old "
                           "to vouch for the tenant), then rerun relaywatch",
                           f"Get-MessageTraceV2 -StartDate {start} -EndDate {end} -ResultSize "
                           "5000 | Export-Csv messagetrace.csv -NoTypeInformation"))
    out += onprem_steps(t.onprem)  # each justified by a setting the export shows
    if t.recommendation != "block" and not t.blocked_now:
        return tuple(out)
    out.append(Command("Connect to Exchange Online PowerShell", "Connect-ExchangeOnline"))
    out.append(Command("List inbound connectors, newest first, with their creation times",
                       "Get-InboundConnector | Sort-Object WhenCreatedUTC -Descending | "
                       "Format-Table Name,ConnectorType,Enabled,SenderIPAddresses,"
                       "SenderDomains,WhenCreatedUTC,WhenChangedUTC -AutoSize"))
    for c in t.connectors:
        if not c["suspicious"]:
            continue
        name = ps_quote(c["connector"])
        if name is None:
            out.append(Command(f"Disable the unusual connector {c['connector']!r} now: "
                               "its name holds control or invisible characters, so pick it by "
                               "its Guid from this list (-Identity <Guid>)",
                               "Get-InboundConnector | Format-List Name,Guid,WhenCreatedUTC"))
            continue
        out.append(Command(f"Disable the unusual connector {c['connector']!r} now "
                           "(keeps it for the investigation)",
                           f"Set-InboundConnector -Identity {name} -Enabled $false"))
        out.append(Command("Remove it once you have confirmed nobody in the organisation "
                           "created it", f"Remove-InboundConnector -Identity {name} "
                                         "-Confirm:$false"))
        user = ps_quote(c.get("created_by") or "")
        if user:
            out.append(Command(f"{c['created_by']} created it: reset that account's "
                               "password, revoke its sessions, and review what else it did",
                               f"Search-UnifiedAuditLog -StartDate {start} -EndDate {end} "
                               f"-UserIds {user} -ResultSize 5000 | "
                               "Export-Csv audit_admin.csv -NoTypeInformation"))
    relaying = [d for d in t.domains if d["severity"] == "compromise"]
    if relaying:
        out.append(Command("List the accepted domains; register only domains you own and "
                           "send from legitimately (New-AcceptedDomain -Name d -DomainName d "
                           "-DomainType Authoritative), never the spam domains below",
                           "Get-AcceptedDomain | Format-Table DomainName,DomainType,"
                           "MatchSubDomains -AutoSize"))
        for d in relaying[:3]:
            sender = ps_quote("*@" + d["domain"])
            if sender:
                out.append(Command(f"Trace mail sent from {d['domain']}",
                                   f"Get-MessageTraceV2 -SenderAddress {sender}"
                                   f" -StartDate {start} -EndDate {end}"))
        ips = sorted({ip for d in relaying for ip in d.get("client_ips") or ()})[:8]
        if ips:
            out.append(Command("On the on-premises Exchange servers, find which receive "
                               "connectors accept these IPs and close open relays: "
                               + ", ".join(ips),
                               "Get-ReceiveConnector | Format-List Name,Bindings,"
                               "RemoteIPRanges,PermissionGroups,AuthMechanism"))
    out.append(Command("Export who changed connectors in the window, and feed it to "
                       "relaywatch with the next exports",
                       f"Search-UnifiedAuditLog -StartDate {start} -EndDate {end} -Operations "
                       "New-InboundConnector,Set-InboundConnector,Remove-InboundConnector,"
                       "New-AcceptedDomain -ResultSize 5000 | Export-Csv audit_log.csv "
                       "-NoTypeInformation"))
    out.append(Command(f"When steps 1-3 are green for {settings.clean_hours} h, open a "
                       "support case to lift the block, quoting the evidence relaywatch "
                       "prints under step 4", "Get-AcceptedDomain; Get-InboundConnector"))
    return tuple(out)


_ONPREM_FIX = {
    "relay_domain_wildcard": (
        "On premises, remove the relay domain {o}: it makes the server relay for every "
        "domain under it",
        "Get-AcceptedDomain | Where-Object {{ $_.DomainName.ToString() -eq {q} }} | "
        "Remove-AcceptedDomain"),
    "anonymous_accept_any_recipient": (
        "On premises, take the relay right from anonymous senders on {o}",
        "Remove-ADPermission -Identity {q} -User 'NT AUTHORITY\\ANONYMOUS LOGON' "
        "-ExtendedRights 'ms-Exch-SMTP-Accept-Any-Recipient'"),
    "anonymous_wide_ranges": (
        "On premises, close {o} to anonymous senders from anywhere (then allow only the "
        "application servers that need it, one by one, with -RemoteIPRanges)",
        "Set-ReceiveConnector -Identity {q} -PermissionGroups ExchangeServers"),
    "send_connector_to_eop_for_all": (
        "On premises, review {o}: once the relays above are closed, route through Exchange "
        "Online only what must go there",
        "Get-SendConnector -Identity {q} | Format-List Name,AddressSpaces,"
        "SourceTransportServers,SmartHosts"),
}


def onprem_steps(settings_found: tuple[dict[str, Any], ...]) -> list[Command]:
    """The Exchange Management Shell command that undoes each open-relay setting found."""
    out = []
    for f in settings_found:
        text, command = _ONPREM_FIX[f["kind"]]
        quoted = ps_quote(f["object"])
        if quoted is None:
            out.append(Command(text.format(o=repr(f["object"])) + ": its name holds control "
                               "or invisible characters, so pick it from Get-ReceiveConnector "
                               "by hand", "Get-ReceiveConnector | Format-List Identity,Guid"))
            continue
        out.append(Command(text.format(o=repr(f["object"])), command.format(q=quoted)))
    return out


def verdicts_json(report: Report) -> list[dict[str, Any]]:
    """The verdicts.json contract: one object per tenant (design.md, "Verdicts")."""
    out = []
    for t in report.tenants:
        out.append({
            "tenant": t.tenant, "as_of": report.as_of.isoformat(),
            "recommendation": t.recommendation, "blocked_now": t.blocked_now,
            "score": t.score, "reasons": list(t.reasons), "data_state": t.data_state,
            "last_event_utc": t.last_event_utc.isoformat() if t.last_event_utc else None,
            "ready_to_unblock": t.ready_to_unblock,
            "checklist": [{"step": s.number, "title": s.title, "ok": s.ok,
                           "evidence": s.evidence} for s in t.steps],
        })
    return out

