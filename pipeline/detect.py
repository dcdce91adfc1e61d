"""Run the detection queries over the lake and turn their rows into findings and verdicts.

The detections themselves are SQL in queries/ (one file each); this module binds their
parameters, condenses each query's rows into findings (one per domain, connector, spiking
key, NDR code or restricted sender), asks pipeline.verdict for one verdict per tenant, and
has the lake store both for the as-of day.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import faults, rollups, schema, verdict
from pipeline.errors import ConfigError
from pipeline.lake import Lake
from pipeline.settings import DetectSettings, Settings
from pipeline.sql import Session

DETECTIONS = ("tenant_activity", "unprovisioned_senders", "volume_spikes",
              "suspicious_connectors", "block_ndrs", "restricted_senders",
              "onprem_relay_settings", "onprem_injection", "config_changes")


def parse_as_of(text: str | None, now: datetime | None = None) -> datetime:
    """`2026-11-28` means midnight UTC at the start of that day (what a nightly run that
    day sees); a full timestamp is taken as given (UTC unless it names a zone)."""
    if not text:
        return (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--as-of {text!r}: use a date (2026-11-28) or an ISO time "
                          "(2026-11-28T02:00Z)") from None
    value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(
        timezone.utc)
    if not 2000 <= value.year <= 2199:  # the lookback before it must be a date too
        raise ConfigError(f"--as-of {text!r} is out of range: give a date from 2000-01-01 on "
                          "(usually today's, or the day after the data's last day)")
    return value


@dataclass(frozen=True)
class Run:
    as_of: datetime
    tenant: str | None
    settings: DetectSettings

    def params(self) -> dict[str, Any]:
        since = self.as_of - timedelta(days=self.settings.window_days)
        return {"as_of": self.as_of, "tenant": self.tenant, "since": since,
                "until": self.as_of, **asdict(self.settings)}


# What the report draws, computed here from the rows detection has loaded anyway, so the
# report reads small tables instead of the raw messages: lake table → query.
FOR_REPORT = {"baselines": "baseline_by_hour", "chart_hours": "hourly_outbound",
              "ndr_days": "ndr_daily"}


@dataclass(frozen=True)
class Result:
    findings: pl.DataFrame
    verdicts: pl.DataFrame
    rows: dict[str, pl.DataFrame]
    for_report: dict[str, pl.DataFrame]


def evaluate(lake: Path, run: Run, session: Session | None = None,
             stored: bool = True) -> Result:
    """Run every detection query and build findings and verdicts (nothing is written to
    the lake's tables). The detections read the rollups: `stored`, the lake's, brought up
    to date first (under the lake lock); else rolled up now from the raw rows, which gives
    the same results (tests compare the two). A caller's session (nightly's) is used as it
    is, and left open."""
    lookback = timedelta(days=run.settings.window_days + run.settings.baseline_days)
    with nullcontext(session) if session else Session(lake) as s:
        if stored:
            with Lake(lake).locked():
                rollups.build(lake, s)
        s.set_thresholds(run.settings)
        s.pin_lookback((run.as_of - lookback).date(), stored)
        rows = {name: s.run(name, run.params()) for name in DETECTIONS}
        drawn = {table: s.run(query, run.params()) for table, query in FOR_REPORT.items()}
    unprovisioned = rows["unprovisioned_senders"]
    relays = {a["tenant"]: verdict.relaying(a, unprovisioned.filter(pl.col("tenant") ==
                                                                     a["tenant"]), run.settings)
              for a in rows["tenant_activity"].iter_rows(named=True)}
    findings = [f for name, build in _BUILDERS.items() for f in build(rows[name], relays, run)]
    by_tenant: dict[str, list[dict[str, Any]]] = {t: [] for t in relays}
    for f in findings:
        by_tenant[f["tenant"]].append(f)
    verdicts = [verdict.judge(t, rows, by_tenant[t], relay, run.as_of, run.settings)
                for t, relay in relays.items()]
    stamp = {"as_of": run.as_of.date(), "as_of_utc": run.as_of}
    return Result(
        schema.FINDINGS.conform(pl.DataFrame([{**stamp, **f} for f in findings],
                                             schema_overrides=schema.FINDINGS.schema,
                                             infer_schema_length=None)),
        schema.VERDICTS.conform(pl.DataFrame([{**stamp, **v} for v in verdicts],
                                             schema_overrides=schema.VERDICTS.schema,
                                             infer_schema_length=None)),
        rows, {t: schema.TABLES[t].conform(df.with_columns(**{k: pl.lit(v) for k, v
                                                               in stamp.items()}))
               for t, df in drawn.items()})


def detect(settings: Settings, as_of: datetime, tenant: str | None = None,
           session: Session | None = None) -> Result:
    """Evaluate and store findings and verdicts for the as-of day, under the lake lock."""
    lake = Lake(settings.lake).must_exist()
    if tenant is not None:
        known = lake.tenants()
        if tenant not in known:
            shown = ", ".join(sorted(known)[:20]) + (" ..." if len(known) > 20 else "")
            raise ConfigError(f"--tenant {tenant!r}: no such tenant in {settings.lake} "
                              f"(it holds: {shown or 'none'})")
    with lake.locked(), faults.stage("detect"):
        result = evaluate(settings.lake, Run(as_of, tenant, settings.detect), session)
        tenants = result.verdicts["tenant"].to_list()
        lake.replace_results("findings", as_of.date(), result.findings, tenants)
        lake.replace_results("verdicts", as_of.date(), result.verdicts, tenants)
        for table, frame in result.for_report.items():
            lake.replace_results(table, as_of.date(), frame, tenants)
    if session:
        session.refresh("findings", "verdicts", *FOR_REPORT)
    return result


Relays = dict[str, verdict.Relaying]
Findings = list[dict[str, Any]]


def _evidence(row: dict[str, Any]) -> str:
    return json.dumps(row, default=str, ensure_ascii=False, sort_keys=True)


def _finding(tenant: str, detection: str, severity: str, subject: str, first: Any, last: Any,
             messages: int | None, recipients: int | None, score: float, reasons: list[str],
             evidence: Any) -> dict[str, Any]:
    return {"tenant": tenant, "detection": detection, "severity": severity, "subject": subject,
            "first_seen_utc": first, "last_seen_utc": last, "messages": messages,
            "recipients": recipients, "score": float(score), "reasons": reasons,
            "evidence": _evidence(evidence)}


def _unprovisioned(rows: pl.DataFrame, relays: Relays, run: Run) -> Findings:
    out = []
    by_domain = rows.group_by("tenant", "domain", maintain_order=True).agg(
        pl.col("messages").sum(), pl.col("recipients").sum(), pl.col("spam_recipients").sum(),
        pl.col("first_seen_utc").min(), pl.col("last_seen_utc").max(),
        pl.col("connector").drop_nulls().unique().sort().alias("connectors"),
        pl.col("client_ip").drop_nulls().unique().sort().alias("client_ips"),
        pl.col("day").unique().sort().alias("days"), pl.col("new_domain").first(),
        pl.col("baseline_recipients").first(), pl.col("domain_source").unique().sort())
    for r in by_domain.iter_rows(named=True):
        via = f" via {', '.join(repr(c) for c in r['connectors'])}" if r["connectors"] else ""
        source = "/".join(r["domain_source"])
        reasons = [f"{r['recipients']:,} recipients from {r['domain']} ({source}"
                   f" sender) on {len(r['days'])} day(s){via}"]
        if r["new_domain"]:
            reasons.append("not seen sending before the window")
        if r["spam_recipients"]:
            reasons.append(f"{r['spam_recipients']:,} of them filtered as spam or refused")
        relay = relays[r["tenant"]]
        bad = relay.relaying and r["domain"] in relay.flagged_domains
        if bad:
            reasons.append("part of relaying: " + "; ".join(relay.why))
        else:
            reasons.append("tolerated: " + relay.summary)
        out.append(_finding(r["tenant"], "unprovisioned_domain", "compromise" if bad else "info",
                            r["domain"], r["first_seen_utc"], r["last_seen_utc"], r["messages"],
                            r["recipients"], 0, reasons, r))
    return out


def _spikes(rows: pl.DataFrame, relays: Relays, run: Run) -> Findings:
    out = []
    grouped = rows.group_by("tenant", "scope", "key", maintain_order=True).agg(
        pl.col("bucket").min().alias("first"), pl.col("bucket").max().alias("last"),
        pl.len().alias("buckets"), pl.col("recipients").max().alias("peak"),
        pl.col("ratio").max(), pl.col("spam_recipients").max().alias("peak_spam"),
        pl.col("grain").unique().sort().alias("grains"),
        pl.col("messages").max().alias("peak_messages"),
        pl.col("over_mailbox_limit").any(),
        pl.col("bucket").filter(pl.col("grain") == "hour").alias("hours"),
        (pl.col("spam_share") >= run.settings.spam_share).any().alias("spammy"),
        ((pl.col("bounce_share") >= run.settings.bounce_share)
         & (pl.col("bounce_recipients") >= run.settings.unprovisioned_min_messages))
        .any().alias("bouncing"),
        (lambda hot: hot.max() - hot.min())(pl.col("bucket").filter(
            (pl.col("grain") == "hour") & (pl.col("ratio") >= run.settings.flood_ratio)))
        .alias("flood_span"),
        pl.col("history_days").max(), pl.col("window_domains").max())
    for r in grouped.iter_rows(named=True):
        reasons = [f"{r['buckets']} spiking {'/'.join(r['grains'])} bucket(s), peak "
                   f"{r['peak']:,} recipients ({r['ratio']:g}x the baseline median)"]
        if r["spammy"]:
            reasons.append(f"spam share at or above {run.settings.spam_share:.0%} in a spike")
        # a registered domain abused: the sender's or connector's own history decides
        own = r["scope"] in ("sender", "connector")
        bouncing = own and r["bouncing"]
        flood = own and _flood(r, run.settings)
        span = r["flood_span"]
        if bouncing:
            reasons.append(f"{run.settings.bounce_share:.0%} or more of a spike's recipients "
                           "bounced as unknown addresses (a bought list)")
        if flood:
            days = span >= timedelta(days=run.settings.flood_days - 1)
            reasons.append(f"hours at {run.settings.flood_ratio:g}x or more its own baseline "
                           + (f"for {span.total_seconds() / 86400:.1f} days" if days else
                              f"over {_span(span)} to {r['window_domains']:,} recipient "
                              f"domains, against a habit of {r['history_days']} days before "
                              "the window")
                           + " (a flood, not a campaign)")
        bad = r["spammy"] or bouncing or flood
        if r["over_mailbox_limit"]:
            reasons.append("above the 10,000 recipients/day mailbox limit")
        last = r["last"] + (timedelta(hours=1) if "hour" in r["grains"] else timedelta(days=1))
        out.append(_finding(r["tenant"], "volume_spike", "compromise" if bad else "info",
                            f"{r['scope']}:{r['key']}", r["first"],
                            last - timedelta(microseconds=1),
                            r["peak_messages"], r["peak"], 20 if bad else 5, reasons, r))
    return out


def _flood(r: dict[str, Any], s: DetectSettings) -> bool:
    """A registered sender or connector flooding: hours at flood_ratio x its own baseline
    spread over flood_days, or, when it had a habit to break, over flood_hours to
    flood_min_domains recipient domains (see the settings' reasons)."""
    span = r["flood_span"]
    if span is None:
        return False
    if span >= timedelta(days=s.flood_days - 1):
        return True
    return (r["history_days"] >= s.established_days and r["window_domains"] >= s.flood_min_domains
            and span >= timedelta(hours=s.flood_hours - 1))


def _span(span: timedelta) -> str:
    """From the first hot hour to the end of the last."""
    return f"{span.total_seconds() / 3600 + 1:.0f} hours"


def _connectors(rows: pl.DataFrame, relays: Relays, run: Run) -> Findings:
    out = []
    for r in rows.filter(pl.col("score") > 0).iter_rows(named=True):
        carrying = r["window_recipients"] > 0
        severity = ("compromise" if r["suspicious"] and carrying
                    else "warning" if r["suspicious"] else "info")
        out.append(_finding(r["tenant"], "suspicious_connector", severity, r["connector"],
                            r["first_traffic_utc"] or r["created_utc"],
                            r["last_traffic_utc"] or r["changed_utc"] or r["created_utc"], None,
                            r["window_recipients"],
                            30 if severity == "compromise" else 10 if severity == "warning" else 0,
                            [f"score {r['score']}", *r["reasons"]], r))
    return out


def _ndrs(rows: pl.DataFrame, relays: Relays, run: Run) -> Findings:
    return [_finding(r["tenant"], "block_ndr",
                     "warning" if r["kind"] in ("tenant_block", "connector_block") else "info",
                     r["ndr_code"], r["first_seen_utc"], r["last_seen_utc"], r["messages"],
                     r["recipients"], 0,
                     [f"{r['recipients']:,} recipients refused with {r['ndr_code']} "
                      f"({r['meaning']}) from {r['senders']} sender(s)"], r)
            for r in rows.iter_rows(named=True)]


def _restricted(rows: pl.DataFrame, relays: Relays, run: Run) -> Findings:
    out = []
    for r in rows.iter_rows(named=True):
        active = r["recipients_after"] >= run.settings.restricted_min_recipients
        out.append(_finding(r["tenant"], "restricted_sender", "compromise" if active else "info",
                            r["sender_address"], r["first_restricted_utc"], r["last_seen_utc"],
                            None, r["recipients_after"], 20 if active else 0,
                            [f"restricted (5.1.8) since {r['first_restricted_utc']:%Y-%m-%d %H:%M} "
                             f"UTC and still sent to {r['recipients_after']:,} recipients"], r))
    return out


def _onprem(rows: pl.DataFrame, relays: Relays, run: Run) -> Findings:
    """An open-relay setting on premises: a compromise sign while the tenant relays, a
    warning otherwise (nothing has used it yet, but step 3 cannot pass with it)."""
    out = []
    for r in rows.iter_rows(named=True):
        relaying = relays.get(r["tenant"]) is not None and relays[r["tenant"]].relaying
        out.append(_finding(r["tenant"], "onprem_relay_setting",
                            "compromise" if relaying else "warning",
                            f"{r['kind']}:{r['object']}", r["snapshot_utc"], r["snapshot_utc"],
                            None, None, 30 if relaying else 10, [r["setting"]], r))
    return out


def _injection(rows: pl.DataFrame, relays: Relays, run: Run) -> Findings:
    """Where unregistered-domain or spam mail entered on premises: the server(s), receive
    connector and client IP of its on-premises hop, and the setting that let it in."""
    out = []
    for r in rows.iter_rows(named=True):
        client = " ".join(filter(None, (r["client_ip"], f"({r['client_hostname']})"
                                        if r["client_hostname"] else None))) or "an unknown client"
        reason = (f"{r['recipients']:,} recipients ({r['unprovisioned_recipients']:,} from "
                  f"unregistered domains, {r['spam_recipients']:,} spam-signalled) entered on "
                  f"premises through receive connector {r['connector']!r} on "
                  f"{r['server'] or 'an unnamed server'} from {client}")
        out.append(_finding(r["tenant"], "onprem_injection", "compromise",
                            f"{r['server']}\\{r['connector']} from {r['client_ip']}",
                            r["first_seen_utc"],
                            r["last_seen_utc"], r["messages"], r["recipients"], 20,
                            [reason, *(r["relay_settings"] or [])], r))
    return out


def _changes(rows: pl.DataFrame, relays: Relays, run: Run) -> Findings:
    """Which change started it: a configuration change followed within change_follow_hours
    by more unregistered-domain or spam mail than preceded it. Evidence next to the traffic
    (info: the traffic itself is what the verdict weighs)."""
    out = []
    for r in rows.iter_rows(named=True):
        who = " ".join(filter(None, (f"by {r['changed_by']}" if r["changed_by"] else None,
                                     f"from {r['from_ip']}" if r["from_ip"] else None)))
        scope = "it" if r["traffic_scope"] == "connector" else "the tenant"
        reason = (f"{r['change']} {r['object']!r} {who + ' ' if who else ''}at "
                  f"{verdict.when(r['changed_utc'])} ({r['source']}); {r['minutes_after']:,} "
                  f"minutes later {scope} carried mail from {r['unregistered_domains']:,} "
                  f"unregistered domain(s): {r['recipients_after']:,} unregistered or spam "
                  f"recipients in the {run.settings.change_follow_hours} h after, "
                  f"{r['recipients_before']:,} in the {run.settings.change_follow_hours} h before")
        out.append(_finding(r["tenant"], "config_change", "info", f"{r['change']}:{r['object']}",
                            r["changed_utc"], r["first_after_utc"], None, r["recipients_after"],
                            0, [reason], r))
    return out


_BUILDERS = {"unprovisioned_senders": _unprovisioned, "volume_spikes": _spikes,
             "suspicious_connectors": _connectors, "block_ndrs": _ndrs,
             "restricted_senders": _restricted, "onprem_relay_settings": _onprem,
             "onprem_injection": _injection, "config_changes": _changes}

