"""Each detection query on a tiny hand-built lake; expected numbers are worked out by hand."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

import polars as pl
import pytest

from pipeline import sql
from pipeline.settings import DetectSettings
from tests.conftest import AS_OF, LakeBuilder, at

PARAMS = {"as_of": AS_OF, "tenant": None, **asdict(DetectSettings())}


def run(build: LakeBuilder, name: str, **override: object) -> pl.DataFrame:
    with sql.Session(build.rolled()) as session:
        return session.run(name, {**PARAMS, **override})


def test_every_query_file_has_a_header_and_parses() -> None:
    found = sql.queries()
    assert set(found) >= {"unprovisioned_senders", "volume_spikes", "suspicious_connectors",
                          "block_ndrs", "restricted_senders", "tenant_activity"}
    for q in found.values():
        assert len(q.description) > 20, q.name
        assert q.example, f"{q.name}: header needs an 'Example:' line"
        for pair in q.example.split():
            assert pair.split("=")[0] in q.params, f"{q.name}: example names {pair}"


def test_every_query_runs_on_the_sample_lake_with_its_example(sample_lake) -> None:
    with sql.Session(sample_lake) as session:
        for q in sql.queries().values():
            params = sql.example_params(q)
            assert set(params) == set(q.params), f"{q.name}: example must name every parameter"
            got = session.run(q.name, params)
            assert got.width > 2, q.name


def test_unprovisioned_senders(build: LakeBuilder) -> None:
    build.domains("t", "t.com", "sub.org", subdomains=("sub.org",))
    build.domains("t", "late.com", created=at(25, 12))
    build.send("t", at(26, 10), "a@t.com", 3)                       # registered
    build.send("t", at(26, 11), "x@mail.sub.org")                   # MatchSubDomains
    build.send("t", at(26, 12), "y@t.onmicrosoft.com")              # the tenant's own
    build.send("t", at(26, 13), "s@spam.biz", 2, connector="Evil", client_ip="198.51.100.7")
    build.send("t", at(27, 9), "s@spam.biz", 1, connector="Evil", client_ip="198.51.100.8",
               status="filtered_as_spam")
    build.send("t", at(24, 10), "n@late.com")                       # before late.com existed
    build.send("t", at(26, 10, 30), "n@late.com")                   # after: registered
    build.send("t", at(26, 14), "a@t.com", envelope="b@bounce.evil")  # envelope only
    build.send("t", at(20, 10), "o@old.biz")                        # baseline, before window
    build.send("t", at(26, 15), "o@old.biz")
    build.send("t", at(26, 16), "q@notsub.org")                     # not a subdomain of sub.org
    build.send("t", at(26, 17), "z@spam.biz", ["me@t.com"], direction="inbound")
    build.send("t", at(28, 1), "s@spam.biz", 5)                     # after as_of
    build.send("u", at(26, 10), "s@spam.biz", 4)                    # no accepted domains: unknown
    got = run(build, "unprovisioned_senders")
    # 11-26 outbound recipients of t: 3+1+1+2+1+1+1+1 = 11; 11-27: 1; 11-24: 1
    rows = {(r["domain"], r["day"].day, r["client_ip"]): r for r in got.iter_rows(named=True)}
    assert set(rows) == {("spam.biz", 26, "198.51.100.7"), ("spam.biz", 27, "198.51.100.8"),
                         ("late.com", 24, None), ("bounce.evil", 26, None),
                         ("old.biz", 26, None), ("notsub.org", 26, None)}
    assert got["tenant"].unique().to_list() == ["t"]
    spam = rows[("spam.biz", 26, "198.51.100.7")]
    assert (spam["messages"], spam["recipients"], spam["connector"]) == (1, 2, "Evil")
    assert spam["share_of_outbound"] == round(2 / 11, 4) and spam["new_domain"]
    late = rows[("spam.biz", 27, "198.51.100.8")]
    assert (late["spam_recipients"], late["share_of_outbound"]) == (1, 1.0)
    assert rows[("late.com", 24, None)]["share_of_outbound"] == 1.0
    assert rows[("bounce.evil", 26, None)]["domain_source"] == "envelope"
    old = rows[("old.biz", 26, None)]
    assert (old["new_domain"], old["baseline_recipients"]) == (False, 1)
    assert got["recipients"].sum() == 2 + 1 + 1 + 1 + 1 + 1


def _steady(build: LakeBuilder, tenant: str, weekday: int, weekend: int, days=range(7, 28)) -> None:
    for d in days:
        n = weekend if at(d).isoweekday() >= 6 else weekday
        if n:
            build.send(tenant, at(d, 10), f"a@{tenant}.com", n)


def test_volume_spikes(build: LakeBuilder) -> None:
    _steady(build, "t", weekday=5, weekend=5)
    build.send("t", at(25, 10, 5), "b@t.com", 60)          # a new sender at volume
    _steady(build, "q", weekday=5, weekend=5)
    build.send("q", at(25, 10, 5), "b@q.com", 40)          # below the minimum: quiet tenant
    _steady(build, "w", weekday=60, weekend=0, days=range(2, 28))  # weekdays only ...
    build.send("w", at(21, 10, 5), "a@w.com", 60)          # ... so a Saturday at 60 spikes
    build.send("n", at(25, 10), "a@n.com", 70)              # no history at all: not judged
    got = run(build, "volume_spikes", spike_min_hour=50, spike_min_day=60)
    keys = {(r["tenant"], r["scope"], r["key"], r["grain"], r["bucket"].day, r["bucket"].hour)
            for r in got.iter_rows(named=True)}
    assert keys == {
        ("t", "tenant", "t", "hour", 25, 10), ("t", "sender", "b@t.com", "hour", 25, 10),
        ("t", "tenant", "t", "day", 25, 0), ("t", "sender", "b@t.com", "day", 25, 0),
        ("w", "tenant", "w", "hour", 21, 10), ("w", "sender", "a@w.com", "hour", 21, 10),
        ("w", "tenant", "w", "day", 21, 0), ("w", "sender", "a@w.com", "day", 21, 0),
    }
    row = got.filter((pl.col("tenant") == "t") & (pl.col("scope") == "tenant")
                     & (pl.col("grain") == "hour")).row(0, named=True)
    # weekdays 11-09..13 and 11-16..20 at 10:00, each 5 recipients: median 5, MAD 0
    assert (row["recipients"], row["messages"], row["baseline_n"]) == (65, 2, 10)
    assert (row["baseline_median"], row["baseline_mad"], row["threshold"]) == (5, 0, 10)
    assert row["ratio"] == 13.0
    new = got.filter((pl.col("key") == "b@t.com") & (pl.col("grain") == "hour")).row(0, named=True)
    assert (new["baseline_median"], new["ratio"]) == (0, 60.0)
    sat = got.filter((pl.col("tenant") == "w") & (pl.col("scope") == "tenant")
                     & (pl.col("grain") == "hour")).row(0, named=True)
    assert (sat["baseline_n"], sat["baseline_median"]) == (4, 0)  # 11-07, 08, 14, 15


@pytest.mark.parametrize("stored", [False, True])
def test_hour_volumes_count_only_the_period_of_a_partial_hour(build: LakeBuilder,
                                                                stored: bool) -> None:
    """outbound_hours over the rollups (the lake's, or rolled up from the raw rows): a
    first or last hour cut by the period counts only the rows inside it; volume_spikes with
    an as-of inside an hour counts only what came before it."""
    from datetime import date

    for minute, n in ((50, 2), (70, 3), (100, 4), (180, 1), (260, 5), (290, 6)):
        build.send("h", at(10, 9, 0) + timedelta(minutes=minute), "a@h.com", n)
    _steady(build, "p", weekday=5, weekend=5)
    build.send("p", at(27, 10, 5), "b@p.com", 40)
    build.send("p", at(27, 10, 40), "b@p.com", 40)      # after the as-of below
    with sql.Session(build.rolled()) as session:
        session.pin_lookback(date(2026, 10, 1), stored)

        def hours(since: datetime, until: datetime) -> dict[int, tuple[int, int]]:
            got = session.frame("SELECT hour, sum(recipients) AS r, sum(messages) AS m FROM "
                                "outbound_hours($s, $u) WHERE tenant = 'h' GROUP BY ALL",
                                {"s": since, "u": until})
            return {r["hour"].hour: (r["r"], r["m"]) for r in got.iter_rows(named=True)}

        assert hours(at(10, 10, 30), at(10, 13, 30)) == {10: (4, 1), 12: (1, 1), 13: (5, 1)}
        assert hours(at(10, 10), at(10, 14)) == {10: (7, 2), 12: (1, 1), 13: (11, 2)}
        assert hours(at(10, 10, 15), at(10, 10, 45)) == {10: (4, 1)}
        spikes = session.run("volume_spikes", {**PARAMS, "as_of": at(27, 10, 30),
                                               "spike_min_hour": 30, "spike_min_day": 1000})
    got = {(r["scope"], r["grain"]): (r["bucket"].hour, r["recipients"], r["messages"])
           for r in spikes.iter_rows(named=True)}
    # 11-27 10:00-10:30: the steady 5 at 10:00 and the 40 at 10:05, not the 40 at 10:40
    assert got == {("tenant", "hour"): (10, 45, 2), ("sender", "hour"): (10, 40, 1)}


def _connectors(build: LakeBuilder) -> None:
    from tests.conftest import SNAPSHOT

    build.table("inbound_connectors", "c", [
        {"snapshot_utc": SNAPSHOT, "name": "Good", "connector_type": "OnPremises",
         "sender_ip_addresses": ["203.0.113.10"], "sender_domains": ["*"],
         "tls_sender_certificate_name": "mail.c.com", "restrict_domains_to_certificate": True,
         "when_created_utc": at(1, month=1)},
        {"snapshot_utc": SNAPSHOT, "name": "Evil", "connector_type": "OnPremises",
         "sender_ip_addresses": ["198.51.100.0/24"], "sender_domains": ["*"],
         "when_created_utc": at(25, 20, 20)},
    ])
    build.table("audit_events", "c", [
        {"record_id": "1", "creation_utc": at(25, 20, 20), "operation": "New-InboundConnector",
         "user_id": "admin@c.onmicrosoft.com", "client_ip": "185.220.101.47", "object_id": "Evil",
         "parameters": '{"Name": "Evil", "SenderDomains": "smtp:*;1"}'},
        {"record_id": "2", "creation_utc": at(26, 8), "operation": "Set-InboundConnector",
         "user_id": "ops@c.com", "client_ip": "192.0.2.1", "object_id": "Good",
         "parameters": '{"Identity": "Good", "Comment": "x"}'},
    ])
    build.domains("c", "c.com")
    build.send("c", at(26, 1), "s@spam.biz", 2, connector="Evil", client_ip="198.51.100.7")
    build.send("c", at(26, 2), "s@spam.biz", 1, connector="Evil", client_ip="198.51.100.9",
               status="filtered_as_spam")
    build.send("c", at(26, 3), "a@c.com", 2, connector="Evil", client_ip="203.0.113.99")
    build.send("c", at(26, 4), "a@c.com", 1, connector="Ghost", client_ip="203.0.113.10")
    build.send("c", at(26, 5), "a@c.com", 1, connector="good", client_ip="203.0.113.10")
    build.send("d", at(26, 5), "a@d.com", 1, connector="X", client_ip="10.0.0.1")


def test_suspicious_connectors(build: LakeBuilder) -> None:
    _connectors(build)
    got = {r["connector"]: r for r in run(build, "suspicious_connectors").iter_rows(named=True)}
    assert set(got) == {"Good", "Evil", "Ghost", "X"}
    evil = got["Evil"]
    # created 30 + open relay 25 + /24 10 + outside IPs 25 + spam 1/5=20% 20, and 10 for
    # unregistered mail: 3 recipients, under unprovisioned_min_messages (40 from 20 on)
    assert evil["score"] == 120 and evil["suspicious"]
    assert (evil["window_recipients"], evil["unprovisioned_recipients"],
            evil["spam_recipients"], evil["outside_ip_recipients"]) == (5, 3, 1, 2)
    assert evil["outside_ips"] == ["203.0.113.99"]
    assert evil["created_by"] == "admin@c.onmicrosoft.com" and evil["widest_prefix"] == 24
    assert evil["reasons"][0] == ("created 2026-11-25 20:20 UTC by admin@c.onmicrosoft.com "
                                  "from 185.220.101.47")
    good = got["Good"]  # certificate-restricted, its IP listed, changed in the window: 15
    assert (good["score"], good["suspicious"], good["window_recipients"]) == (15, False, 1)
    assert good["changed_by"] == "ops@c.com"
    ghost = got["Ghost"]
    assert (ghost["score"], ghost["in_connector_list"], ghost["suspicious"]) == (40, False, True)
    assert got["X"]["score"] == 0  # tenant d has no connector list to compare with


def test_block_ndrs_and_restricted_senders(build: LakeBuilder) -> None:
    build.send("b", at(15, 9), "s1@spam.biz", 1, status="failed", ndr_code="5.7.750")
    build.send("b", at(26, 9), "s1@spam.biz", 2, status="failed", ndr_code="5.7.750")
    build.send("b", at(27, 9), "s2@spam.biz", 1, status="failed", ndr_code="5.7.750")
    build.send("b", at(27, 9), "u@b.com", 1, status="failed", ndr_code="5.1.1")
    build.send("b", at(25, 9), "u@b.com", 5)
    build.send("b", at(26, 10), "u@b.com", 1, status="failed", ndr_code="5.1.8")
    for hour in range(11, 14):
        build.send("b", at(26, hour), "u@b.com", 4)
    build.send("b", at(2, month=12), "u@b.com", 50)  # after as_of: not counted
    ndrs = {r["ndr_code"]: r for r in run(build, "block_ndrs").iter_rows(named=True)}
    assert set(ndrs) == {"5.7.750", "5.1.8"}
    block = ndrs["5.7.750"]
    assert (block["kind"], block["recipients"], block["window_recipients"], block["messages"],
            block["senders"]) == ("tenant_block", 4, 3, 3, 2)
    assert (block["first_seen_utc"], block["last_seen_utc"]) == (at(15, 9), at(27, 9))
    assert block["sample_senders"] == ["s1@spam.biz", "s2@spam.biz"]
    assert ndrs["5.1.8"]["kind"] == "sender_restricted"
    (r,) = run(build, "restricted_senders").iter_rows(named=True)
    assert (r["sender_address"], r["first_restricted_utc"]) == ("u@b.com", at(26, 10))
    # from the 5.1.8 on: itself, 3 x 4 recipients, and the 5.1.1 failure on 11-27
    assert (r["recipients_after"], r["refused_after"], r["last_seen_utc"]) == (14, 1, at(27, 9))


def test_tenant_activity(build: LakeBuilder) -> None:
    build.domains("a", "a.com")
    build.send("a", at(10, 9), "x@a.com", 2)                     # baseline
    build.send("a", at(12, 9), "x@evil.biz", 1)                  # baseline, unregistered
    build.send("a", at(26, 9), "x@a.com", 3)
    build.send("a", at(26, 9, 30), "x@evil.biz", 2, status="filtered_as_spam")
    build.send("a", at(27, 9), "in@ext.example", [f"u{i}@a.com" for i in range(4)],
               direction="inbound")
    build.domains("cfg", "cfg.com")                               # config only, no traffic
    rows = {r["tenant"]: r for r in run(build, "tenant_activity").iter_rows(named=True)}
    assert set(rows) == {"a", "cfg"}
    a = rows["a"]
    assert (a["window_outbound"], a["window_unprovisioned"], a["window_spam"]) == (5, 2, 2)
    assert (a["baseline_outbound"], a["baseline_unprovisioned"]) == (3, 1)
    assert (a["window_days_with_data"], a["baseline_days_with_data"], a["window_recipients"]) \
        == (2, 2, 9)
    assert (a["last_event_utc"], a["last_unprovisioned_utc"]) == (at(27, 9), at(26, 9, 30))
    assert rows["cfg"]["last_event_utc"] is None and rows["cfg"]["has_accepted_domains"]


@pytest.mark.parametrize("hostile", ["x' OR '1'='1", "t; DROP VIEW messages; --", "%"])
def test_tenant_parameter_is_bound_not_spliced(build: LakeBuilder, hostile: str) -> None:
    build.send("t", at(26, 9), "s@spam.biz", 1)
    build.domains("t", "t.com")
    assert run(build, "unprovisioned_senders", tenant=hostile).height == 0
    assert run(build, "unprovisioned_senders").height == 1


def test_a_tenant_known_only_from_its_messages_is_judged(build: LakeBuilder) -> None:
    build.send("lone", at(26, 9), "a@lone.example", 2)
    (row,) = run(build, "tenant_activity").iter_rows(named=True)
    assert (row["tenant"], row["window_outbound"], row["has_accepted_domains"]) == ("lone", 2,
                                                                                    False)


@pytest.mark.parametrize("k", [2, 3, 7])
def test_known_domains_infers_on_both_sides_of_infer_min_counterparties(build: LakeBuilder,
                                                                        k: int) -> None:
    """A domain trading mail both ways with k outside domains (gmail.com one of them) is
    taken as the tenant's own at infer_min_counterparties = k, not at k + 1; one that only
    sends (an attacker's) or only trades with own domains (gmail.com, a correspondent) never
    is; a tenant with accepted domains is judged by them alone."""
    for i in range(k - 1):
        build.send("n", at(20, 9), "me@own.example", [f"x@w{i}.example"], direction="unknown")
        build.send("n", at(20, 10), f"x@v{i}.example", ["me@own.example"], direction="unknown")
    build.send("n", at(20, 11), "fan@gmail.com", ["me@own.example"], direction="unknown")
    build.send("n", at(20, 12), "me@own.example", ["fan@gmail.com"], direction="unknown")
    build.send("n", at(20, 13), "promo@deal.top", [f"v{i}@t{i}.example" for i in range(50)],
               direction="unknown")
    build.send("a", at(20, 9), "me@listed.example", [f"x@w{i}.example" for i in range(9)])
    build.domains("a", "listed.example")
    for threshold, own in ((k, {"own.example"}), (k + 1, set())):
        with sql.Session(build.root) as session:
            session.set_thresholds(DetectSettings(infer_min_counterparties=threshold))
            got = session.frame("FROM known_domains ORDER BY tenant, domain_name")
        assert set(got.filter(pl.col("tenant") == "n")["domain_name"]) == own, threshold
        assert got.filter(pl.col("tenant") == "a").select("domain_name", "inferred").rows() \
            == [("listed.example", False)]
