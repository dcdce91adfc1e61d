"""One verdict per tenant: block or unblock, and Microsoft's four-step unblock checklist.

Reads the rows of the detection queries and the findings built from them; computes nothing
from the lake itself. The rules, in order: stale data is never clean (block); a tenant whose
steps 1-3 pass is unblock (a blocked one is then ready to ask support, step 4); otherwise
active-compromise evidence in the window or a current block means block; else unblock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from pipeline.settings import DetectSettings

BLOCK_KINDS = ("tenant_block", "connector_block")


@dataclass(frozen=True)
class Relaying:
    """A tenant's unregistered-domain sending in the window, and whether it is relaying."""

    recipients: int
    share: float
    domains: tuple[str, ...]
    flagged_domains: tuple[str, ...]
    relaying: bool
    last_utc: datetime | None
    why: tuple[str, ...]
    summary: str


def _removed(activity: dict) -> str:
    """The accepted domains the tenant removed, which its mail is judged without since."""
    gone = activity.get("removed_domains") or []
    return ("; no longer accepted domains (mail from them since counts as unregistered): "
            + ", ".join(f"{d['domain']} since {when(d['removed_utc'])}" for d in gone)
            if gone else "")


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def relaying(activity: dict[str, Any], rows: pl.DataFrame, s: DetectSettings) -> Relaying:
    """Relaying is judged by proportion and change, not by presence: a share above the
    tolerated one, or a rise against the tenant's own baseline (from nothing, or by
    unprovisioned_rise_ratio), of at least unprovisioned_min_messages recipients. Forwarding
    under the tolerated share is not relaying, however many domains make it (forwarded mail
    comes from whoever writes, a long tail that changes every week); new domains and
    connectors are evidence shown with a verdict, not a verdict of their own."""
    recipients = activity["window_unprovisioned"]
    share = recipients / activity["window_outbound"] if activity["window_outbound"] else 0.0
    history = activity["baseline_days_with_data"] >= 3
    per = rows.group_by("domain").agg(pl.col("recipients").sum(), pl.col("new_domain").first(),
                                      pl.col("last_seen_utc").max()).sort(
        ["recipients", "domain"], descending=[True, False])
    domains = tuple(per["domain"].to_list())
    new = per.filter(pl.col("new_domain")) if history else per.clear()
    via = rows.filter(pl.col("connector").is_not_null())
    via_total = int(via["recipients"].sum())
    rate_w = recipients / max(activity["window_days_with_data"], 1)
    rate_b = activity["baseline_unprovisioned"] / max(activity["baseline_days_with_data"], 1)
    base_share = (activity["baseline_unprovisioned"] / activity["baseline_outbound"]
                  if activity["baseline_outbound"] else 0.0)
    # a share as high in the baseline is a habit's wobble, up to steady_share_cap
    steady = history and base_share * s.unprovisioned_rise_ratio >= share
    over_share = share > s.unprovisioned_max_share and (
        share > s.steady_share_cap or not steady)
    rising = history and rate_w >= s.unprovisioned_rise_ratio * rate_b and (
        rate_b > 0 or rate_w * activity["window_days_with_data"] >= s.unprovisioned_min_messages)
    is_relaying = recipients >= s.unprovisioned_min_messages and (over_share or rising)
    why = []
    if via_total >= s.unprovisioned_min_messages:
        names = ", ".join(repr(c) for c in sorted(set(via["connector"].to_list())))
        why.append(f"{via_total:,} recipients through inbound connector {names}")
    if int(new["recipients"].sum()) >= s.unprovisioned_min_messages:
        why.append(f"{_n(new.height, 'domain')} not seen before the window: "
                   + ", ".join(new["domain"].head(5).to_list()))
    if over_share:
        why.append(f"{share:.0%} of outbound recipients (tolerated: "
                   f"{s.unprovisioned_max_share:.0%})")
    if rising:
        why.append(f"{rate_w:,.0f} recipients/day against {rate_b:,.1f}/day before the window")
    broad = share > s.unprovisioned_max_share or rising
    flagged = domains if broad else tuple(
        sorted(set(new["domain"].to_list()) | set(via["domain"].to_list())))
    summary = (f"{recipients:,} recipients ({share:.1%} of outbound) from "
               f"{_n(len(domains), 'unregistered domain')}"
               + (f" ({', '.join(domains[:5])})" if domains else ""))
    last = per["last_seen_utc"].max() if per.height else None
    return Relaying(recipients, share, domains, flagged if is_relaying else (), is_relaying,
                    last, tuple(why), summary)  # type: ignore[arg-type]


def _rows(frame: pl.DataFrame, tenant: str) -> list[dict[str, Any]]:
    return frame.filter(pl.col("tenant") == tenant).to_dicts()


def when(ts: datetime | None) -> str:
    """A moment as the report and the evidence write it."""
    return f"{ts:%Y-%m-%d %H:%M} UTC" if ts else "never"


def _hours(delta: timedelta) -> str:
    h = delta.total_seconds() / 3600
    return f"{h:.0f} h" if h < 72 else f"{h / 24:.1f} days"


def _headline(f: dict[str, Any]) -> str:
    """A finding in one line: what, about what, and its first reasons with numbers."""
    label = f["detection"].replace("_", " ")
    return f"{label} {f['subject']}: {'; '.join(f['reasons'][:2])}"


def judge(tenant: str, rows: dict[str, pl.DataFrame], findings: list[dict[str, Any]],
          relay: Relaying, as_of: datetime, s: DetectSettings) -> dict[str, Any]:
    """The verdict of one tenant from the detection rows, its findings and its relaying."""
    activity = _rows(rows["tenant_activity"], tenant)[0]
    clean_since = as_of - timedelta(hours=s.clean_hours)
    lookback = s.window_days + s.baseline_days

    last_event = activity["last_event_utc"]
    if last_event is None:
        state, stale = "no_data", f"no message events in the last {lookback} days before as-of"
    elif as_of - last_event > timedelta(hours=s.stale_after_hours):
        state, stale = "stale", (f"data is stale: last event {when(last_event)}, "
                                 f"{_hours(as_of - last_event)} before as-of (limit "
                                 f"{s.stale_after_hours} h), so the tenant cannot be shown clean")
    else:
        state, stale = "fresh", ""

    blocks = [r for r in _rows(rows["block_ndrs"], tenant) if r["kind"] in BLOCK_KINDS]
    latest_block = max(blocks, key=lambda r: r["last_seen_utc"]) if blocks else None
    blocked_now = latest_block is not None and latest_block["last_seen_utc"] >= (
        as_of - timedelta(hours=s.blocked_now_hours))
    connectors = _rows(rows["suspicious_connectors"], tenant)
    unusual = [c for c in connectors if c["suspicious"] and (
        c["in_connector_list"] or (c["last_traffic_utc"] or as_of - timedelta(days=999))
        >= clean_since)]
    compromise = [f for f in findings if f["severity"] == "compromise"]

    # Step 1: every domain it sends from is registered (as it was when the mail was sent)
    inferred = activity.get("inferred_domains") or []
    if not activity["has_accepted_domains"]:
        judged = (f"its own domains were inferred from its mail ({', '.join(inferred[:8])}"
                  + (", ..." if len(inferred) > 8 else "") + ")" if inferred else
                  "its own domains could not be inferred from its mail either")
        step1 = (False, "No accepted-domains export in the lake, so registration cannot be "
                        f"vouched for; {judged}"
                 + (f": {relay.summary}" + ("; " + "; ".join(relay.why) if relay.why else "")
                    if inferred and relay.recipients else "")
                 + ". Run Get-AcceptedDomain | ConvertTo-Json -Depth 5 and put it in the "
                   "tenant's inbox folder.")
    elif relay.relaying and relay.last_utc and relay.last_utc >= clean_since:
        step1 = (False, f"Unregistered domains still sending in the last {s.clean_hours} h: "
                        f"{relay.summary}; " + "; ".join(relay.why) + _removed(activity) + ".")
    elif relay.recipients == 0:
        step1 = (True, f"All {activity['window_outbound']:,} outbound recipients in the last "
                       f"{s.window_days} days came from registered domains.")
    elif relay.relaying:
        step1 = (True, f"No unregistered-domain sending since {when(relay.last_utc)}; "
                       f"before that {relay.summary}.")
    else:
        step1 = (True, f"Only a tolerated share from unregistered domains: {relay.summary}, "
                       "all seen before the window and none through a connector (forwarding).")

    # Step 2: no unusual inbound connectors
    removed = [f"{c['connector']!r} removed {when(c['removed_utc'])}"
               + (f" by {c['removed_by']}" if c["removed_by"] else "")
               for c in connectors if c["removed_utc"]]
    listed = [c for c in connectors if c["in_connector_list"]]
    if unusual:
        step2 = (False, "Unusual inbound connector(s): " + "; ".join(
            f"{c['connector']!r} (score {c['score']}: {', '.join(c['reasons'])})" for c in unusual)
            + ".")
    elif not activity["has_connector_list"]:
        step2 = (False, "No inbound-connector export in the lake, so connectors cannot be "
                        "vouched for: run Get-InboundConnector | ConvertTo-Json -Depth 5.")
    elif activity.get("connector_list_empty"):
        step2 = (True, "No inbound connectors: the tenant's inbound-connector export was empty "
                       "(nothing, [] or [null]), read as 'none'"
                       + (f"; {'; '.join(removed)}" if removed else "") + ".")
    else:
        step2 = (True, f"{_n(len(listed), 'inbound connector')} listed, none unusual"
                       + (f"; {'; '.join(removed)}" if removed else "") + ".")

    # which change started it (config_changes): told next to the connectors and the verdict
    started = [f["reasons"][0] for f in findings if f["detection"] == "config_change"]
    if started:
        step2 = (step2[0], step2[1] + " Which change started it: " + "; ".join(started) + ".")

    # Step 3: the on-premises side no longer relays spam
    signs = [t for t in (relay.last_utc if relay.relaying else None,
                         *(f["last_seen_utc"] for f in compromise
                           if f["detection"] != "unprovisioned_domain"),
                         *(c["last_traffic_utc"] for c in unusual)) if t is not None]
    last_sign = max(signs) if signs else None
    open_relay = [f for f in findings if f["detection"] == "onprem_relay_setting"]
    # where the mail entered on premises (onprem_injection), told with either failing reason
    hops = [f["reasons"][0] for f in findings if f["detection"] == "onprem_injection"]
    entered = f" {'; '.join(hops)}." if hops else ""
    if state != "fresh":
        step3 = (False, stale[0].upper() + stale[1:] + ".")
    elif open_relay:
        step3 = (False, "The latest on-premises configuration still relays: "
                        + "; ".join(f["reasons"][0] for f in open_relay) + "." + entered)
    elif last_sign and last_sign >= clean_since:
        step3 = (False, f"Still relaying: last sign {when(last_sign)}, "
                        f"{_hours(as_of - last_sign)} before as-of; needs {s.clean_hours} h clean."
                 + entered)
    else:
        since = (f"since {when(last_sign)} ({_hours(as_of - last_sign)})" if last_sign
                 else f"in the last {lookback} days")
        step3 = (True, f"No relaying or spam signal {since}; data fresh "
                       f"(last event {when(last_event)}).")

    # Step 4: ready to ask support
    failing = [str(i) for i, st in enumerate((step1, step2, step3), 1) if not st[0]]
    if failing:
        step4 = (False, f"Not yet: step{'s' if len(failing) > 1 else ''} "
                        f"{', '.join(failing)} not ok.")
    elif latest_block:
        step4 = (True, f"Ask Microsoft support to lift {latest_block['ndr_code']} "
                       f"({latest_block['meaning']}; {latest_block['recipients']:,} NDRs from "
                       f"{when(latest_block['first_seen_utc'])} to "
                       f"{when(latest_block['last_seen_utc'])}). Evidence: {step1[1]} "
                       f"{step2[1]} {step3[1]}")
    else:
        step4 = (True, f"No block NDR in the last {lookback} days: nothing to request. "
                       "Steps 1-3 pass.")

    if state != "fresh":
        recommendation = "block"
    elif not failing:
        recommendation = "unblock"
    else:
        recommendation = "block" if compromise or blocked_now else "unblock"

    reasons = [stale] if stale else []
    if blocked_now and latest_block:
        reasons.append(f"blocked now: {latest_block['recipients']:,} NDRs "
                       f"{latest_block['ndr_code']} since {when(latest_block['first_seen_utc'])}, "
                       f"last {when(latest_block['last_seen_utc'])}")
    if relay.relaying:
        reasons.append(f"unregistered-domain relaying: {relay.summary}; " + "; ".join(relay.why)
                       + ("; judged against the domains inferred from its mail (no "
                          "accepted-domains export)" if inferred else ""))
    reasons += [_headline(f) for f in compromise if f["detection"] != "unprovisioned_domain"]
    if relay.relaying or compromise:
        reasons += [f"which change started it: {r}" for r in started]
    if recommendation == "unblock" and latest_block and not failing:
        reasons.append(f"was blocked ({latest_block['ndr_code']}), clean since then: "
                       "ready to request an unblock")
    reasons += [_headline(f) for f in findings if f["severity"] == "warning"]
    if not relay.relaying and not compromise and not stale:
        reasons.insert(0, f"no sign of relaying in the last {s.window_days} days")
        reasons += [_headline(f) + " (not a compromise sign on its own)" for f in findings
                    if f["severity"] == "info" and f["detection"] == "volume_spike"]
    score = min(100.0, sum(f["score"] for f in findings) + 40 * relay.relaying
                + 25 * (state != "fresh") + 10 * blocked_now)
    return {
        "tenant": tenant, "recommendation": recommendation, "blocked_now": blocked_now,
        "score": score, "reasons": reasons, "data_state": state, "last_event_utc": last_event,
        "block_code": latest_block["ndr_code"] if latest_block else None,
        "block_first_seen_utc": latest_block["first_seen_utc"] if latest_block else None,
        "block_last_seen_utc": latest_block["last_seen_utc"] if latest_block else None,
        "step1_ok": step1[0], "step1_evidence": step1[1], "step2_ok": step2[0],
        "step2_evidence": step2[1], "step3_ok": step3[0], "step3_evidence": step3[1],
        "step4_ok": step4[0], "step4_evidence": step4[1],
    }
