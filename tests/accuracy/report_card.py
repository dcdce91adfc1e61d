"""The verdict report card (`make accuracy`): a drawn population of tenants, judged night by
night, scored against what each tenant really is.

The simulator shares nothing with `relaywatch generate`'s story tenants: every volume,
share, domain count, time and intensity is drawn from the seed. Legitimate shapes: offices,
hybrid tenants (certificate- or IP-identified connectors, IPv4 or IPv6), forwarding at 0-9 %
from 1-300 domains, newsletters, subdomains under MatchSubDomains, missing or empty
configuration exports, quiet tenants with days of history only. Attacks: an attacker's
connector, an abused hybrid connector, an open on-premises relay (each from unregistered
domains), and a compromised mailbox of a registered domain, from barely visible to floods.
Each tenant's traffic is written in an export format drawn for it (message trace as
Export-Csv from PowerShell 5.1 or 7, ConvertTo-Json, NDJSON, Graph (with or without its
exchangeMessageTraceDetail), Export-Clixml; trace detail; historical-search summary and
extended reports; a hybrid tenant's on-premises tracking logs), its configuration in a drawn
form too (ConvertTo-Json, Export-Csv, Export-Clixml, or one ScubaGear
ProviderSettingsExport.json), and ingested as a user's would be; detect then runs as the
nightly job would at each of the last four midnights.

It prints, for each seed: the false-block rate over legitimate tenants (by shape), the miss
rate per attack kind and intensity, and for attacks the hours from the first message to
the first **block** against the hours to a simulated Microsoft block (5.7.750 once a drawn
number of relayed recipients is reached), with the issue's three targets marked ok or MISS.

    python tests/accuracy/report_card.py [--seed N] [--tenants N] [--work DIR]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline import detect, exports  # noqa: E402
from pipeline.ingest import ingest  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

END = datetime(2026, 11, 28, tzinfo=timezone.utc)  # the last nightly run
NIGHTS = [END - timedelta(days=d) for d in (3, 2, 1, 0)]
LEGIT = ["office", "hybrid_cert_v4", "hybrid_cert_v6", "hybrid_ip", "forwarding",
         "newsletter", "subdomains", "no_accepted_domains", "empty_connector_export", "quiet"]
ATTACKS = ["attacker_connector", "abused_connector", "open_relay", "compromised_mailbox"]
FORMATS = ["trace_ps51", "trace_ps7", "trace_ndjson", "trace_json_ps51", "trace_graph",
           "trace_graph_detail", "trace_clixml", "trace_detail", "summary_utf16",
           "extended_utf16"]
CONFIG = ["json", "csv", "clixml", "scubagear"]  # how its configuration was exported
WITH_CONNECTOR = ["summary_utf16", "extended_utf16"]  # the reports that name the connector
ON_PREMISES = ["tracking_log"]  # a hybrid tenant's own server's logs (its users' mail)
SUFFIX = {"trace_clixml": "xml", "tracking_log": "LOG"}
INTENSITY = [(0, 10), (10, 50), (50, 200), (200, 10**9)]  # recipients an hour


@dataclass
class Tenant:
    slug: str
    kind: str
    attack: bool
    rows: list[dict] = field(default_factory=list)
    connectors: list[dict] | None = None  # None: no export; []: an empty one
    domains: list[str] = field(default_factory=list)
    subdomains: bool = False
    rate: float = 0.0  # attack recipients an hour
    start: datetime | None = None  # first attack message
    hours: float = 0.0  # attack duration
    ms_block: datetime | None = None  # when Microsoft's simulated block would fall
    fmt: str = ""
    cfg: str = "json"
    no_accepted_domains: bool = False  # the tenant's accepted-domain export is missing
    inbound: float = 1.0  # received mail per sent mail (traces hold both directions)


class Sim:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n = 0

    def nid(self) -> str:
        self.n += 1
        return f"{self.rng.randrange(16**8):08x}-{self.n:04x}-4000-8000-{self.n:012x}"

    def send(self, t: Tenant, when: datetime, sender: str, recipients: list[str],
             **extra: object) -> None:
        nid = self.nid()
        for r in recipients:
            t.rows.append({"received_utc": when, "sender_address": sender,
                           "recipient_address": r, "status": "delivered",
                           "network_message_id": nid, "message_id": f"<{nid}@sim>",
                           "subject": "s", "size_bytes": self.rng.randint(2_000, 90_000),
                           **{"direction": "outbound", **extra}})

    def external(self, spread: int) -> str:
        return f"p{self.rng.randrange(10**6)}@ext{self.rng.randrange(spread)}.example"

    def ordinary(self, t: Tenant, days: int, per_day: int, connector: str | None = None,
                 ips: tuple[str, ...] = ()) -> None:
        own = t.domains[0]
        for d in range(days):
            day = END - timedelta(days=days - d)
            for _ in range(max(1, round(per_day * self.rng.uniform(0.6, 1.3)) // 2)):
                when = day + timedelta(hours=self.rng.randint(7, 18),
                                       minutes=self.rng.randint(0, 59))
                sender = f"u{self.rng.randint(1, 60)}@{own}"
                if t.subdomains and self.rng.random() < 0.3:
                    sender = f"app@mail.{own}"
                extra = {"connector": connector,
                         "client_ip": self.rng.choice(ips)} if connector else {}
                self.send(t, when, sender, [self.external(400)
                                            for _ in range(self.rng.randint(1, 3))], **extra)
            for _ in range(round(per_day * t.inbound * self.rng.uniform(0.6, 1.3)) // 2):
                when = day + timedelta(hours=self.rng.randint(0, 23),
                                       minutes=self.rng.randint(0, 59))
                self.send(t, when, self.external(400), [f"u{self.rng.randint(1, 60)}@{own}"],
                          direction="inbound")

    def forwarding(self, t: Tenant, days: int, share: float, tail: int,
                   connector: str | None = None) -> None:
        own_rows = sum(r["direction"] == "outbound" for r in t.rows)
        n = round(own_rows * share / max(1e-9, 1 - share))
        for i in range(n):
            when = END - timedelta(days=self.rng.uniform(0.02, days))
            week = int((END - when).days // 7)
            self.send(t, when, f"x@s{self.rng.randrange(tail)}-w{week}.example",
                      [f"st{i}@{t.domains[0]}".replace("@", ".fwd@") + ".example"],
                      **({"connector": connector} if connector else {}))

    def population(self, count: int) -> list[Tenant]:
        tenants = []
        for i in range(count):
            attack = i % 10 >= 7  # 30 % attacks
            kind = self.rng.choice(ATTACKS if attack else LEGIT)
            t = Tenant(f"s{i:03d}", kind, attack)
            t.domains = [f"org{i}x{self.rng.randrange(999)}.example"]
            self.shape(t)
            tenants.append(t)
        return tenants

    def shape(self, t: Tenant) -> None:
        rng = self.rng
        days = rng.randint(3, 6) if t.kind == "quiet" else 28
        t.inbound = rng.uniform(0.3, 2.0)
        per_day = rng.randint(15, 150)
        hybrid = t.kind.startswith("hybrid") or t.kind in ("abused_connector", "open_relay")
        name = f"Inbound from {rng.randrange(16**6):06x}" if hybrid else None
        v6 = t.kind == "hybrid_cert_v6"
        ips = (tuple(f"2001:db8:{rng.randrange(99)}::{k}" for k in range(1, 3)) if v6 else
               tuple(f"203.0.{rng.randrange(250)}.{k}" for k in range(1, 3)))
        t.subdomains = t.kind == "subdomains"
        if hybrid:
            cert = t.kind in ("hybrid_cert_v4", "hybrid_cert_v6", "abused_connector")
            t.connectors = [{"name": name, "connector_type": "OnPremises",
                             "sender_domains": ["*"],
                             "sender_ip_addresses": [] if cert else list(
                                 ip for ip in ips if ":" not in ip),
                             "tls_sender_certificate_name": f"mail.{t.domains[0]}" if cert
                             else None, "restrict_domains_to_certificate": cert,
                             "when_created_utc": END - timedelta(days=rng.randint(200, 900))}]
        elif t.kind == "empty_connector_export":
            t.connectors = []
        self.ordinary(t, days, per_day, name, ips)
        if t.kind in ("forwarding", "hybrid_cert_v4", "hybrid_cert_v6"):
            self.forwarding(t, days, rng.uniform(0.0, 0.09), rng.choice([1, 5, 30, 120, 300]),
                            name)
        if t.kind == "newsletter":
            day = END - timedelta(days=rng.randint(1, 20), hours=rng.randint(1, 12))
            for k in range(rng.randint(800, 4000)):
                self.send(t, day + timedelta(seconds=3 * k), f"news@{t.domains[0]}",
                          [self.external(3000)])
        if t.attack:
            self.attack(t, name, ips)
            t.no_accepted_domains = rng.random() < 0.2  # exports are often incomplete
        t.no_accepted_domains |= t.kind == "no_accepted_domains"
        t.fmt = rng.choice(WITH_CONNECTOR + ON_PREMISES if name else WITH_CONNECTOR
                           if t.kind == "attacker_connector" else FORMATS)
        t.cfg = rng.choice(CONFIG)
        t.rows.sort(key=lambda r: r["received_utc"])

    def attack(self, t: Tenant, name: str | None, ips: tuple[str, ...]) -> None:
        rng = self.rng
        t.rate = 10 ** rng.uniform(0.5, 2.8)  # 3 to 630 recipients an hour
        t.hours = rng.choice([2, 4, 6, 12, 24, 48, 72])
        t.start = END - timedelta(hours=rng.uniform(t.hours / 2, 72))
        threshold = rng.randint(300, 3000)  # relayed recipients before Microsoft blocks
        if t.kind == "attacker_connector":
            name = f"{rng.choice(['Relay', 'Partner', 'Scan', 'Backup'])} {rng.randrange(99)}"
            t.connectors = (t.connectors or []) + [{
                "name": name, "connector_type": "OnPremises", "sender_domains": ["*"],
                "sender_ip_addresses": [f"198.51.{rng.randrange(250)}.0/24"],
                "when_created_utc": t.start - timedelta(minutes=rng.randint(5, 120))}]
            ips = (f"198.51.100.{rng.randint(1, 250)}",)
        elif t.kind == "open_relay":
            ips = (f"45.{rng.randrange(250)}.{rng.randrange(250)}.{rng.randint(1, 250)}",)
        spam = [f"{w}{rng.randrange(999)}.{tld}" for w, tld in
                zip(["deal", "win", "pharma"], ["top", "biz", "click"], strict=True)]
        mailbox = f"u{rng.randint(1, 60)}@{t.domains[0]}"  # the one compromised account
        filtered = rng.uniform(0.0, 0.4)  # the share EOP's filters catch varies by campaign
        sent, hour = 0, 0.0
        while hour < t.hours and (t.start + timedelta(hours=hour)) < END:
            when = t.start + timedelta(hours=hour)
            n = max(1, round(t.rate * rng.uniform(0.5, 1.5)))
            sender = mailbox if t.kind == "compromised_mailbox" else f"promo@{rng.choice(spam)}"
            extra = {"connector": name, "client_ip": rng.choice(ips)} if name else {}
            status = "filtered_as_spam" if rng.random() < filtered else "delivered"
            for chunk in range(0, n, 25):  # messages of up to 25 recipients, n in all
                size = min(25, n - chunk)
                self.send(t, when + timedelta(minutes=rng.randint(0, 59)), sender,
                          [self.external(5000) for _ in range(size)], **extra)
                for r in t.rows[-size:]:
                    r["status"] = status
            sent += n
            if t.ms_block is None and sent >= threshold:
                t.ms_block = when
            hour += 1


def write(t: Tenant, inbox: Path, rng: random.Random, parts: int = 1,
          config: bool = True, trace: bool = True) -> None:
    """The tenant's exports in its inbox folder: configuration (unless not `config`) and
    its traffic (unless not `trace`) in `parts` files cut at message boundaries."""
    folder = inbox / t.slug
    folder.mkdir(parents=True, exist_ok=True)
    org = f"{t.slug}.onmicrosoft.com"
    domains = [{"domain_name": d, "match_subdomains": t.subdomains,
                "when_created_utc": END - timedelta(days=800)} for d in [*t.domains, org]]
    if config and t.cfg == "scubagear" and not t.no_accepted_domains and t.connectors is not None:
        exports.scubagear_export(folder / "ProviderSettingsExport.json", domains,
                                 [{**c, "when_changed_utc": c["when_created_utc"]}
                                  for c in t.connectors], END)
    elif config:
        _config(t, folder, domains, rng)
    if not trace:
        return
    cuts = sorted(rng.sample(range(1, max(2, len(t.rows))), min(parts, len(t.rows)) - 1))
    lo = 0
    for k, cut in enumerate([*cuts, len(t.rows)]):
        hi = max(cut, lo)
        while 0 < hi < len(t.rows) and (t.rows[hi]["network_message_id"]
                                        == t.rows[hi - 1]["network_message_id"]):
            hi += 1  # a message's recipients stay in one file
        if hi > lo:
            suffix = SUFFIX.get(t.fmt, "json" if "json" in t.fmt else "csv")
            _traffic(t, folder / f"traffic{k or ''}_{t.fmt}.{suffix}", t.rows[lo:hi], org)
        lo = hi


# each configuration form: the files' suffix and the writers of both exports
CONFIG_WRITERS = {
    "json": ("json", exports.accepted_domains_json, exports.inbound_connectors_json),
    "csv": ("csv", exports.accepted_domains_csv, exports.inbound_connectors_csv),
    "clixml": ("xml", exports.accepted_domains_clixml, exports.inbound_connectors_clixml),
}


def _config(t: Tenant, folder: Path, domains: list[dict], rng: random.Random) -> None:
    """Accepted domains and inbound connectors, each as its own export in t.cfg's form (a
    ScubaGear tenant without both falls back to JSON)."""
    suffix, write_domains, write_connectors = CONFIG_WRITERS.get(t.cfg, CONFIG_WRITERS["json"])
    if not t.no_accepted_domains:
        write_domains(folder / f"accepted_domains.{suffix}", domains)
    if t.connectors == []:
        (folder / "inbound_connectors.json").write_text(rng.choice(["", "[]", "[null]"]))
    elif t.connectors:
        write_connectors(folder / f"inbound_connectors.{suffix}",
                         [{**c, "when_changed_utc": c["when_created_utc"]} for c in t.connectors])


def _traffic(t: Tenant, path: Path, rows: list[dict], org: str) -> None:
    if t.fmt == "summary_utf16":
        exports.historical_summary(path, rows)
    elif t.fmt == "extended_utf16":
        exports.historical_extended(path, rows)
    elif t.fmt == "trace_graph_detail":  # the trace and, per message, its detail records
        exports.message_trace_json(path, rows, org, "graph")
        first = list({r["network_message_id"]: r for r in rows}.values())
        exports.graph_trace_detail_json(path.with_name(f"{path.stem}_detail.json"),
                                        exports.detail_events(first))
    elif t.fmt == "trace_clixml":
        exports.message_trace_clixml(path, rows, org)
    elif t.fmt == "trace_detail":
        exports.message_trace_detail_csv(path, exports.detail_events(rows), org)
    elif t.fmt == "tracking_log":  # a file a day, as the server rolls them
        events = exports.tracking_events(rows, "EX" + t.slug.upper())
        for day in sorted({e["time"].date() for e in events}):
            exports.tracking_log(path.with_name(f"MSGTRK{day:%Y%m%d}-{path.stem}.LOG"),
                                 [e for e in events if e["time"].date() == day])
    elif t.fmt.startswith("trace_ps"):
        exports.message_trace_csv(path, rows, org, t.fmt[-4:], "us" if t.fmt.endswith("51")
                                  else "iso")
    else:
        exports.message_trace_json(path, rows, org, {"trace_ndjson": "ndjson",
                                                     "trace_graph": "graph"}.get(t.fmt, "ps51"))


def run(seed: int, count: int, work: Path) -> dict[str, object]:
    started = time.monotonic()
    sim = Sim(seed)
    tenants = sim.population(count)
    inbox, lake = work / "inbox", work / "lake"
    for t in tenants:
        write(t, inbox, sim.rng)
    settings = Settings(lake=lake)
    ingest([inbox], settings)
    verdicts: dict[str, dict[datetime, str]] = defaultdict(dict)
    for night in NIGHTS:
        result = detect.detect(settings, night)
        for row in result.verdicts.iter_rows(named=True):
            verdicts[row["tenant"]][night] = row["recommendation"]
    return {"tenants": tenants, "verdicts": verdicts, "seconds": time.monotonic() - started}


def card(seed: int, tenants: list[Tenant], verdicts: dict[str, dict[datetime, str]],
         seconds: float) -> list[str]:
    legit = [t for t in tenants if not t.attack]
    attacks = [t for t in tenants if t.attack]
    false = [t for t in legit if verdicts[t.slug].get(END) == "block"]
    by_shape = Counter(t.kind for t in false)
    shapes = Counter(t.kind for t in legit)
    out = [f"seed {seed}: {len(tenants)} tenants ({len(legit)} legitimate, {len(attacks)} "
           f"attacks), {len(NIGHTS)} nightly runs, {seconds:.0f} s",
           f"  false blocks: {len(false)}/{len(legit)} ({len(false) / max(1, len(legit)):.1%})"
           f"  target 0: {'ok' if not false else 'MISS'}",
           "    by shape: " + ", ".join(f"{k} {by_shape[k]}/{shapes[k]}" for k in sorted(shapes))]
    out.append("  misses by attack kind and intensity (recipients/hour; missed/attacks):")
    for kind in ATTACKS:
        cells = []
        for lo, hi in INTENSITY:
            group = [t for t in attacks if t.kind == kind and lo <= t.rate < hi]
            missed = [t for t in group if verdicts[t.slug].get(END) != "block"]
            label = f"{lo}-{hi}" if hi < 10**9 else f">{lo}"
            cells.append(f"{label}: {len(missed)}/{len(group)}")
        out.append(f"    {kind:22} " + "   ".join(cells))
    bare = [t for t in attacks if t.no_accepted_domains]
    out.append(f"    without an accepted-domains export: "
               f"{sum(verdicts[t.slug].get(END) != 'block' for t in bare)}/{len(bare)} missed")
    flagged, before_ms, must, held = [], 0, 0, 0
    for t in attacks:
        assert t.start is not None
        first = next((n for n in NIGHTS if n > t.start and verdicts[t.slug].get(n) == "block"),
                     None)
        if first is not None:
            flagged.append((first - t.start).total_seconds() / 3600)
            if t.ms_block is None or first <= t.ms_block:
                before_ms += 1
        if t.rate >= 50 and t.hours >= 6:
            due = next((n for n in NIGHTS if n >= t.start + timedelta(hours=6)), None)
            if due is not None:
                must += 1
                held += verdicts[t.slug].get(due) == "block"
    ms = sorted((t.ms_block - t.start).total_seconds() / 3600 for t in attacks
                if t.ms_block and t.start)
    median = sorted(flagged)[len(flagged) // 2] if flagged else float("nan")
    out += [f"  hours from first attack message to first block verdict: median {median:.1f} "
            f"({len(flagged)}/{len(attacks)} attacks blocked by a nightly run); simulated "
            f"Microsoft block: median {ms[len(ms) // 2] if ms else float('nan'):.1f} h "
            f"({len(ms)} reached it)",
            f"  attacks >= 50/h for >= 6 h blocked at the next nightly run: {held}/{must}"
            f"  target all: {'ok' if held == must else 'MISS'}",
            f"  blocked no later than Microsoft's block: {before_ms}/{len(attacks)}"
            f"  target half: {'ok' if before_ms * 2 >= len(attacks) else 'MISS'}"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, action="append", help="one seed (repeatable; "
                    "default: 1, 2, 3)")
    ap.add_argument("--tenants", type=int, default=300)
    ap.add_argument("--work", type=Path, help="keep the inbox and lake here")
    args = ap.parse_args()
    for seed in args.seed or [1, 2, 3]:
        work = args.work / f"seed{seed}" if args.work else Path(tempfile.mkdtemp(
            prefix="rw-accuracy-"))
        if work.exists() and args.work:
            shutil.rmtree(work)
        got = run(seed, args.tenants, work)
        print("\n".join(card(seed, got["tenants"], got["verdicts"],  # type: ignore[arg-type]
                             got["seconds"])), flush=True)  # type: ignore[arg-type]
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
