"""A deterministic generator of realistic multi-tenant inboxes (`relaywatch generate`).

Story tenants, each in its own export formats:
  contoso    attacker-created inbound connector relaying unregistered-domain spam; blocked now
  fabrikam   the same attack two weeks ago, connector removed since: clean and ready to unblock
  northwind  a school forwarding a steady small share of external-sender mail back out
  tailspin   hybrid, sending from subdomains covered by MatchSubDomains (tracking logs)
  litware    one day of a legitimate newsletter campaign
  adatum     exports stopped six days ago (stale data)
plus any number of clean tenants (`tNNN`). Same seed and spec → byte-identical files.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from pipeline import exports, generate_onprem

HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 4, 8, 12, 13, 12, 11, 9, 11, 12, 12, 10, 8, 5, 3, 2, 2, 1, 1]
EXTERNAL = ["gmail.com", "outlook.com", "yahoo.com", "partner-logistics.com", "globex.example",
            "initech.example", "umbrella-corp.example", "hooli.example", "acme-supply.example"]
SPAM_DOMAINS = ["bestpharma-deals.biz", "secure-invoice-notice.top", "parcel-track-alert.xyz",
                "crypto-yield-now.click"]
SUBJECTS = ["Quarterly report", "Re: meeting notes", "Invoice {n}", "Lunch on Friday?",
            "Project Phoenix update", "Fw: contract draft", "Your order {n} has shipped",
            "Weekly status", "Holiday schedule", "Re: Re: budget"]
SPAM_SUBJECTS = ["URGENT: payment overdue {n}", "You have (1) pending parcel",
                 "Cheap meds, no prescription", "Claim your 500 USD bonus now"]
BLOCK_NDR = "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains"


@dataclass(frozen=True)
class Spec:
    end: date = date(2026, 11, 27)
    days: int = 21
    per_day: int = 45  # messages a story tenant sends/receives on an ordinary weekday
    extra_tenants: int = 2
    extra_per_day: int = 40
    seed: int = 7
    stories: bool = True

    @classmethod
    def preset(cls, name: str, days: int | None = None, tenants: int | None = None,
               rows: int | None = None, end: date | None = None, seed: int = 7) -> Spec:
        spec = cls(seed=seed)
        if name == "bench":
            spec = replace(spec, days=28, extra_tenants=200, per_day=400, stories=True)
        spec = replace(spec, days=days or spec.days, end=end or spec.end,
                       extra_tenants=spec.extra_tenants if tenants is None else tenants)
        if rows:  # ~1.6 rows per message (recipients); spread over all tenants and days
            n_tenants = spec.extra_tenants + (7 if spec.stories else 0)
            per_day = max(1, int(rows / 1.6 / max(1, n_tenants) / spec.days))
            spec = replace(spec, per_day=per_day, extra_per_day=per_day)
        return spec


class Tenant:
    def __init__(self, slug: str, domain: str, rng: random.Random, per_day: int) -> None:
        self.slug, self.domain, self.rng, self.per_day = slug, domain, rng, per_day
        self.org = f"{slug}.onmicrosoft.com"
        self.users = [f"user{i:03d}@{domain}" for i in range(40)]

    def ids(self) -> tuple[str, str]:
        nid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return nid, f"<{nid.replace('-', '')[:20].upper()}@{self.slug.upper()}.PROD.OUTLOOK.COM>"

    def message(self, when: datetime, sender: str, recipients: list[str], direction: str,
                status: str = "delivered", subject: str | None = None, connector: str | None = None,
                client_ip: str | None = None, ndr: str | None = None) -> list[dict]:
        nid, mid = self.ids()
        subj = subject or self.rng.choice(SUBJECTS).format(n=self.rng.randint(1000, 99999))
        size = int(self.rng.lognormvariate(10, 1.1)) + 800
        ip = client_ip or (f"40.107.{self.rng.randint(1, 250)}.{self.rng.randint(1, 250)}"
                           if direction == "inbound" else "10.0.0.5")
        to_ip = f"142.250.{self.rng.randint(1, 250)}.27" if direction == "outbound" else None
        return [{"received_utc": when, "sender_address": sender, "recipient_address": r,
                 "status": status, "subject": subj, "size_bytes": size, "message_id": mid,
                 "network_message_id": nid, "client_ip": ip, "to_ip": to_ip,
                 "connector": connector, "direction": direction, "ndr": ndr}
                for r in recipients]

    def ordinary_day(self, day: date, scale: float = 1.0, forward_share: float = 0.0) -> list[dict]:
        rng = self.rng
        factor = 0.25 if day.weekday() >= 5 else 1.0
        n = int(self.per_day * factor * scale * rng.uniform(0.85, 1.15))
        rows: list[dict] = []
        for _ in range(n):
            when = datetime(day.year, day.month, day.day, rng.choices(range(24), HOUR_WEIGHTS)[0],
                            rng.randrange(60), rng.randrange(60), rng.randrange(10**6),
                            tzinfo=timezone.utc)
            kind = rng.random()
            if kind < forward_share:  # mail forwarded back out, keeping the external sender
                rows += self.message(when, f"friend{rng.randrange(500)}@{rng.choice(EXTERNAL[:3])}",
                                     [f"student{rng.randrange(300)}@{rng.choice(EXTERNAL[:3])}"],
                                     "outbound")
            elif kind < 0.55:
                rcpts = [f"contact{rng.randrange(900)}@{rng.choice(EXTERNAL)}"
                         for _ in range(rng.choice([1, 1, 1, 2, 3]))]
                status = "failed" if rng.random() < 0.01 else "delivered"
                rows += self.message(when, rng.choice(self.users), rcpts, "outbound", status,
                                     ndr="550 5.1.1 RESOLVER.ADR.RecipNotFound"
                                     if status == "failed" else None)
            elif kind < 0.85:
                status = "filtered_as_spam" if rng.random() < 0.03 else "delivered"
                rows += self.message(when, f"news{rng.randrange(50)}@{rng.choice(EXTERNAL)}",
                                     [rng.choice(self.users)], "inbound", status)
            else:
                rows += self.message(when, rng.choice(self.users),
                                     rng.sample(self.users, rng.choice([1, 2])), "internal")
        return rows

    def relay_spam(self, start: datetime, end: datetime, per_hour: int, connector: str,
                   blocked_from: datetime | None) -> list[dict]:
        rows: list[dict] = []
        t = start
        while t < end:
            for _ in range(int(per_hour * self.rng.uniform(0.7, 1.3))):
                when = t + timedelta(seconds=self.rng.randrange(3600))
                blocked = blocked_from is not None and when >= blocked_from
                status = "failed" if blocked else self.rng.choice(
                    ["filtered_as_spam", "filtered_as_spam", "delivered"])
                dom = self.rng.choice(SPAM_DOMAINS)
                rows += self.message(
                    when, f"{self.rng.choice(['billing', 'support', 'no-reply', 'alert'])}@{dom}",
                    [f"victim{self.rng.randrange(10**6)}@{self.rng.choice(EXTERNAL)}"
                     for _ in range(self.rng.randint(2, 5))],
                    "outbound", status,
                    self.rng.choice(SPAM_SUBJECTS).format(n=self.rng.randrange(10**5)),
                    connector, f"198.51.100.{self.rng.randint(10, 40)}",
                    BLOCK_NDR if blocked else None)
            t += timedelta(hours=1)
        return sorted(rows, key=lambda r: r["received_utc"])


def _at(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc)


def _weeks(days: list[date]) -> Iterator[list[date]]:
    for i in range(0, len(days), 7):
        yield days[i:i + 7]


def _domains(t: Tenant, created: datetime, extra: list[dict] | None = None) -> list[dict]:
    return [{"domain_name": t.org, "when_created_utc": created},
            {"domain_name": t.domain, "is_default": True, "when_created_utc": created},
            *(extra or [])]


def write_historical(path: Path, rows: int, encoding: str = "utf-8", days: int = 28,
                     end: date = Spec.end, seed: int = 7) -> int:
    """One large tenant's historical-search summary report of about `rows` CSV rows, one
    per message (~1.4 recipients each), written a day at a time: the benchmark's single big
    file. Returns the CSV rows written."""
    t = Tenant("bigco", "bigco.com", random.Random(seed), 1)
    weekdays = sum(1 for i in range(days) if (end - timedelta(days=i)).weekday() < 5)
    t.per_day = max(1, round(rows / (weekdays + 0.25 * (days - weekdays))))
    span = [end - timedelta(days=days - 1 - i) for i in range(days)]
    written = exports.historical_summary_stream(
        path, (sorted(t.ordinary_day(d), key=lambda r: r["received_utc"]) for d in span),
        encoding)
    stamp = _at(end + timedelta(days=1), 1).timestamp()
    os.utime(path, (stamp, stamp))
    return written


def write_inbox(inbox: Path, spec: Spec) -> list[tuple[Path, int]]:
    rng = random.Random(spec.seed)
    days = [spec.end - timedelta(days=spec.days - 1 - i) for i in range(spec.days)]
    written: list[tuple[Path, int]] = []
    stamp = _at(spec.end + timedelta(days=1), 1).timestamp()

    def out(path: Path, n: int) -> None:
        os.utime(path, (stamp, stamp))  # snapshots are "taken" at the end of the window
        written.append((path, n))

    # one creation time whatever the end day, as real Get-AcceptedDomain snapshots keep it:
    # a daily snapshot of unchanged domains is then the same file, night after night
    created_day = Spec.end - timedelta(days=700)
    if created_day > days[0] - timedelta(days=30):
        created_day = days[0] - timedelta(days=700)
    created = _at(created_day, 9)

    def write_domains(t: Tenant, d: Path) -> None:
        p = d / "accepted_domains.json"
        exports.accepted_domains_json(p, _domains(t, created))
        out(p, 2)
    if spec.stories:
        # contoso: compromised three days ago, blocked since yesterday morning
        t = Tenant("contoso", "contoso.com", random.Random(rng.random()), spec.per_day)
        d = inbox / t.slug
        attack = _at(spec.end - timedelta(days=2), 21)
        blocked = _at(spec.end, 6)
        relay = t.relay_spam(attack, _at(spec.end + timedelta(days=1)), max(8, spec.per_day // 3),
                             "Inbound Relay Partner", blocked)
        for week in _weeks(days):
            rows = [r for day in week for r in t.ordinary_day(day)]
            rows += [r for r in relay if r["received_utc"].date() in week]
            rows.sort(key=lambda r: r["received_utc"])
            p = d / f"messagetrace_{week[0]:%Y%m%d}.csv"
            exports.message_trace_csv(p, rows, t.org, "ps51", "us")
            out(p, len(rows))
            if spec.end in week:
                p = d / "historical_search_report.csv"
                exports.historical_summary(p, rows, "utf-16-le")
                out(p, len(rows))
        failed = [r for r in relay if r["ndr"]][-300:]
        p = d / "messagetrace_detail_ndr.csv"
        exports.message_trace_detail_csv(p, exports.detail_events(failed), t.org)
        out(p, len(failed) * 2)
        write_domains(t, d)
        connectors = [
            {"name": "Contoso On-Premises", "connector_type": "OnPremises",
             "sender_ip_addresses": ["203.0.113.10", "203.0.113.11"],
             "sender_domains": ["*"], "tls_sender_certificate_name": "mail.contoso.com",
             "restrict_domains_to_certificate": True, "require_tls": True,
             "when_created_utc": created},
            {"name": "Inbound Relay Partner", "connector_type": "OnPremises",
             "sender_ip_addresses": ["198.51.100.0/24"], "sender_domains": ["*"],
             "when_created_utc": attack - timedelta(minutes=40)},
        ]
        p = d / "inbound_connectors.json"
        exports.inbound_connectors_json(p, connectors)
        out(p, 2)
        audit = [{"record_id": str(uuid.UUID(int=rng.getrandbits(128))),
                  "creation_utc": attack - timedelta(minutes=40),
                  "operation": "New-InboundConnector",
                  "user_id": "it-admin@contoso.onmicrosoft.com", "client_ip": "185.220.101.47",
                  "object_id": "Inbound Relay Partner",
                  "parameters": {"Name": "Inbound Relay Partner", "ConnectorType": "OnPremises",
                                 "SenderDomains": "smtp:*;1",
                                 "SenderIPAddresses": "198.51.100.0/24",
                                 "RequireTls": "False"}},
                 {"record_id": str(uuid.UUID(int=rng.getrandbits(128))),
                  "creation_utc": _at(spec.end - timedelta(days=9), 10), "operation": "Set-Mailbox",
                  "user_id": "helpdesk@contoso.com", "client_ip": "203.0.113.50",
                  "object_id": "user007", "parameters": {"Identity": "user007",
                                                         "ProhibitSendQuota": "49 GB"}}]
        p = d / "audit_log.csv"
        exports.purview_audit_csv(p, audit, t.org)
        out(p, len(audit))

        # fabrikam: same attack two weeks ago, remediated three days later
        t = Tenant("fabrikam", "fabrikam.com", random.Random(rng.random()), spec.per_day)
        d = inbox / t.slug
        attack = _at(spec.end - timedelta(days=14), 2)
        removed = _at(spec.end - timedelta(days=11), 15)
        relay = t.relay_spam(attack, removed, max(8, spec.per_day // 3), "Partner Inbound 2",
                             _at(spec.end - timedelta(days=13), 8))
        for week in _weeks(days):
            rows = [r for day in week for r in t.ordinary_day(day)]
            rows += [r for r in relay if r["received_utc"].date() in week]
            rows.sort(key=lambda r: r["received_utc"])
            p = d / f"trace_{week[0]:%Y-%m-%d}.json"
            exports.message_trace_json(p, rows, t.org, "ndjson")
            out(p, len(rows))
        write_domains(t, d)
        p = d / "inbound_connectors.csv"
        exports.inbound_connectors_csv(p, [
            {"name": "Fabrikam Hybrid", "sender_ip_addresses": ["192.0.2.25"],
             "sender_domains": ["fabrikam.com"], "tls_sender_certificate_name": "smtp.fabrikam.com",
             "restrict_domains_to_certificate": True, "when_created_utc": created}])
        out(p, 1)
        audit = [{"record_id": str(uuid.UUID(int=rng.getrandbits(128))), "creation_utc": attack
                  - timedelta(hours=1), "operation": "New-InboundConnector",
                  "user_id": "svc-sync@fabrikam.onmicrosoft.com", "client_ip": "45.155.205.9",
                  "object_id": "Partner Inbound 2",
                  "parameters": {"Name": "Partner Inbound 2", "ConnectorType": "OnPremises",
                                 "SenderDomains": "smtp:*;1"}},
                 {"record_id": str(uuid.UUID(int=rng.getrandbits(128))), "creation_utc": removed,
                  "operation": "Remove-InboundConnector",
                  "user_id": "admin@fabrikam.onmicrosoft.com", "client_ip": "192.0.2.80",
                  "object_id": "Partner Inbound 2",
                  "parameters": {"Identity": "Partner Inbound 2"}}]
        p = d / "audit_log.csv"
        exports.purview_audit_csv(p, audit, t.org)
        out(p, len(audit))

        # northwind: a school; ~4% of mail is forwarded back out with its external sender
        t = Tenant("northwind", "northwind.edu", random.Random(rng.random()), spec.per_day)
        d = inbox / t.slug
        for week in _weeks(days):
            rows = sorted((r for day in week for r in t.ordinary_day(day, forward_share=0.04)),
                          key=lambda r: r["received_utc"])
            p = d / f"trace_{week[0]:%Y%m%d}.csv"
            exports.message_trace_csv(p, rows, t.org, "ps7", "gb")
            out(p, len(rows))
        write_domains(t, d)

        # tailspin: hybrid, on-premises tracking logs, subdomains covered by MatchSubDomains
        t = Tenant("tailspin", "tailspin.com", random.Random(rng.random()), spec.per_day)
        t.users = [f"user{i:03d}@{sub}.tailspin.com" for i in range(20) for sub in ("mail", "eu")]
        d = inbox / t.slug
        for day in days:
            rows = t.ordinary_day(day)
            events = []
            for r in rows:
                f = {"client-ip": "10.1.0.20", "server-hostname": "EX01",
                     "connector-id": "EX01\\Default EX01", "source": "SMTP",
                     "message-id": r["message_id"], "network-message-id": r["network_message_id"],
                     "recipient-address": r["recipient_address"], "total-bytes": r["size_bytes"],
                     "recipient-count": 1, "message-subject": r["subject"],
                     "sender-address": r["sender_address"], "return-path": r["sender_address"],
                     "directionality": "Incoming" if r["direction"] == "inbound" else "Originating"}
                events.append({"time": r["received_utc"], "fields": {**f, "event-id": "RECEIVE"}})
                last = "FAIL" if r["status"] == "failed" else "SEND"
                events.append({"time": r["received_utc"] + timedelta(seconds=1), "fields": {
                    **f, "event-id": last, "connector-id": "Outbound to Office 365",
                    "recipient-status": r["ndr"] or "250 2.6.0 Queued mail for delivery"}})
            events.sort(key=lambda e: e["time"])
            p = d / f"MSGTRK{day:%Y%m%d}00-1.LOG"
            exports.tracking_log(p, events)
            out(p, len(events))
        p = d / "accepted_domains.json"
        exports.accepted_domains_json(p, [
            {"domain_name": t.org, "when_created_utc": created},
            {"domain_name": "tailspin.com", "domain_type": "InternalRelay", "is_default": True,
             "match_subdomains": True, "when_created_utc": created}])
        out(p, 2)
        generate_onprem.tailspin_config(d, out)

        # litware: one day of a legitimate newsletter four days ago
        t = Tenant("litware", "litware.com", random.Random(rng.random()), spec.per_day)
        d = inbox / t.slug
        campaign = spec.end - timedelta(days=4)
        for week in _weeks(days):
            rows = [r for day in week for r in t.ordinary_day(day)]
            if campaign in week:
                for i in range(spec.per_day * 12):
                    when = _at(campaign, 9) + timedelta(seconds=i * 3)
                    rows += t.message(when, "newsletter@litware.com",
                                      [f"subscriber{i}@{t.rng.choice(EXTERNAL)}"], "outbound",
                                      subject="Litware autumn news")
            rows.sort(key=lambda r: r["received_utc"])
            p = d / f"trace_{week[0]:%Y%m%d}.json"
            exports.message_trace_json(p, rows, t.org, "ps51")
            out(p, len(rows))
        write_domains(t, d)

        # adatum: exports stopped six days ago
        t = Tenant("adatum", "adatum.com", random.Random(rng.random()), spec.per_day)
        d = inbox / t.slug
        rows = [r for day in days if day <= spec.end - timedelta(days=6)
                for r in t.ordinary_day(day)]
        p = d / "historical_search_report.csv"
        exports.historical_summary(p, rows, "utf-16-le-bom")
        out(p, len(rows))
        write_domains(t, d)

    for i in range(spec.extra_tenants):
        t = Tenant(f"t{i:03d}", f"tenant{i:03d}.example", random.Random(rng.random()),
                   spec.extra_per_day)
        d = inbox / t.slug
        for week in _weeks(days):
            rows = sorted((r for day in week for r in t.ordinary_day(day)),
                          key=lambda r: r["received_utc"])
            p = d / f"trace_{week[0]:%Y%m%d}.csv"
            exports.message_trace_csv(p, rows, t.org, "ps7", "iso")
            out(p, len(rows))
        write_domains(t, d)
    if spec.stories:
        generate_onprem.wingtip(inbox, days, spec.end, created, out, Tenant, spec.per_day,
                                spec.seed + 0.5)
    return written
