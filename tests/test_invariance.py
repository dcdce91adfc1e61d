"""Invariance of verdicts (issue 17): what must not change a verdict does not, and an attack
above the stated intensity changes any clean one. Tenants come from the report card's
simulator (every volume, share and name drawn), written as exports in a drawn format,
ingested and judged as a user's would be; hypothesis draws the shapes and the changes.
"""

from __future__ import annotations

import copy
import random
import re
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import detect
from pipeline.ingest import ingest
from pipeline.settings import Settings
from tests.accuracy import report_card as rc

LEGIT = [k for k in rc.LEGIT if k != "quiet"]  # quiet: history too short for every change
FEW = settings(max_examples=6, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow])


def tenant(seed: int, kind: str, slug: str = "t000") -> rc.Tenant:
    sim = rc.Sim(seed)
    t = rc.Tenant(slug, kind, kind in rc.ATTACKS)
    t.domains = [f"org{seed % 97}x{sim.rng.randrange(999)}.example"]
    sim.shape(t)
    return t


def verdict(work: Path, *tenants: rc.Tenant, parts: int = 1, seed: int = 0) -> dict:
    """Each tenant's last-night verdict: recommendation, score and the four steps."""
    rng = random.Random(seed)
    for t in tenants:
        rc.write(t, work / "inbox", rng, parts=parts)
    s = Settings(lake=work / "lake")
    ingest([work / "inbox"], s)
    return _judged(s)


def _judged(s: Settings) -> dict:
    got = detect.detect(s, rc.END).verdicts
    return {r["tenant"]: (r["recommendation"], r["score"], r["step1_ok"], r["step2_ok"],
                          r["step3_ok"]) for r in got.iter_rows(named=True)}


def renamed(t: rc.Tenant, tag: str) -> rc.Tenant:
    """The same tenant with its slug, own domains and connector names changed."""
    r = copy.deepcopy(t)
    subs = {t.slug: f"{tag}{t.slug}", **{d: f"{tag}-{d}" for d in t.domains},
            **{c["name"]: f"{c['name']} {tag.upper()}" for c in t.connectors or []}}
    pattern = re.compile("|".join(re.escape(k) for k in sorted(subs, key=len, reverse=True)))

    def sub(v: object) -> object:
        return pattern.sub(lambda m: subs[m.group(0)], v) if isinstance(v, str) else v

    r.slug = subs[t.slug]
    r.domains = [subs[d] for d in t.domains]
    r.rows = [{k: sub(v) for k, v in row.items()} for row in t.rows]
    r.connectors = None if t.connectors is None else [
        {k: sub(v) for k, v in c.items()} for c in t.connectors]
    return r


kinds = st.sampled_from([*LEGIT, *rc.ATTACKS])


@FEW
@given(seed=st.integers(0, 10**6), kind=kinds, tag=st.sampled_from(["zz", "q", "renamed"]))
def test_renaming_tenant_domains_and_connectors_changes_no_verdict(tmp_path_factory, seed,  # type: ignore[no-untyped-def]
                                                                   kind, tag) -> None:
    t = tenant(seed, kind)
    before = verdict(tmp_path_factory.mktemp("a"), t)[t.slug]
    r = renamed(t, tag)
    assert verdict(tmp_path_factory.mktemp("b"), r)[r.slug] == before


@FEW
@given(seed=st.integers(0, 10**6), kind=kinds, parts=st.integers(2, 7))
def test_splitting_the_trace_into_files_changes_no_verdict(tmp_path_factory, seed, kind,  # type: ignore[no-untyped-def]
                                                           parts) -> None:
    t = tenant(seed, kind)
    whole = verdict(tmp_path_factory.mktemp("a"), t)
    assert verdict(tmp_path_factory.mktemp("b"), t, parts=parts, seed=seed) == whole


@FEW
@given(seed=st.integers(0, 10**6), kind=kinds, when=st.sampled_from(["same_run", "night_after"]))
def test_config_before_with_or_a_night_after_the_trace_changes_no_verdict(  # type: ignore[no-untyped-def]
        tmp_path_factory, seed, kind, when) -> None:
    t = tenant(seed, kind)
    first = verdict(tmp_path_factory.mktemp("a"), t)
    work = tmp_path_factory.mktemp("b")
    s = Settings(lake=work / "lake")
    rng = random.Random(seed)
    rc.write(t, work / "inbox", rng, config=False)
    if when == "night_after":
        ingest([work / "inbox"], s)
        detect.detect(s, rc.END - timedelta(days=1))  # a night without the configuration
    rc.write(t, work / "inbox", rng, trace=False)
    ingest([work / "inbox"], s)
    assert _judged(s) == first


@FEW
@given(seed=st.integers(0, 10**6), kind=st.sampled_from(LEGIT), share=st.floats(0.0, 0.08),
       tail=st.integers(1, 400))
def test_forwarding_under_the_tolerated_share_changes_no_clean_verdict(  # type: ignore[no-untyped-def]
        tmp_path_factory, seed, kind, share, tail) -> None:
    """From any number of domains: the tolerated share (10 %) is a share, not a count."""
    t = tenant(seed, kind)
    assert verdict(tmp_path_factory.mktemp("a"), t)[t.slug][0] == "unblock"
    sim = rc.Sim(seed + 1)
    sim.forwarding(t, 28, share, tail)
    t.rows.sort(key=lambda r: r["received_utc"])
    assert verdict(tmp_path_factory.mktemp("b"), t)[t.slug][0] == "unblock"


@FEW
@given(seed=st.integers(0, 10**6), kind=st.sampled_from(LEGIT),
       attack=st.sampled_from(["attacker_connector", "open_relay", "abused_connector"]),
       rate=st.floats(50, 600), hours=st.integers(6, 30))
def test_an_attack_above_the_stated_intensity_blocks_any_clean_tenant(  # type: ignore[no-untyped-def]
        tmp_path_factory, seed, kind, attack, rate, hours) -> None:
    """50 recipients an hour or more for 6 hours or more, relayed from unregistered domains,
    ending before the night's run: blocked that night, whatever the tenant was."""
    t = tenant(seed, kind)
    sim = rc.Sim(seed + 2)
    t.rate, t.hours = rate, hours
    t.start = rc.END - timedelta(hours=hours + 1)
    name = next((c["name"] for c in t.connectors or []), None)
    if attack == "attacker_connector":
        name = "Partner 42"
        t.connectors = [*(t.connectors or []), {
            "name": name, "connector_type": "OnPremises", "sender_domains": ["*"],
            "sender_ip_addresses": ["198.51.100.0/24"],
            "when_created_utc": t.start - timedelta(minutes=30)}]
    elif attack == "open_relay":
        name = None
    _replay(sim, t, name)
    t.rows.sort(key=lambda r: r["received_utc"])
    assert verdict(tmp_path_factory.mktemp("a"), t)[t.slug][0] == "block"


def _replay(sim: rc.Sim, t: rc.Tenant, name: str | None) -> None:
    """The attack's traffic at t.rate for t.hours, ending an hour before the run."""
    assert t.start is not None
    for h in range(int(t.hours)):
        n = max(50, round(t.rate * sim.rng.uniform(0.8, 1.2)))
        extra = {"connector": name, "client_ip": "198.51.100.9"} if name else {}
        sim.send(t, t.start + timedelta(hours=h, minutes=sim.rng.randint(0, 50)),
                 f"promo@deal{h % 3}.top", [sim.external(5000) for _ in range(n)], **extra)
