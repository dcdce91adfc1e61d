"""Accepted domains as they were at each message's time (issue 17): a domain the tenant
removed stops being its own at the removal, whether an audit event or two whole cloud
snapshots show it; what does not prove a removal (a failed cmdlet, an on-premises or
filtered export, a later snapshot that still lists the domain) changes nothing.

Each case is drawn from a seed (volumes, the removal's time) and checked at the level of the
verdict, and of the recipients counted unregistered against a count made here."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from datetime import datetime, timedelta, timezone

import pytest

from pipeline import report, sql
from pipeline.settings import DetectSettings
from tests.conftest import AS_OF, LakeBuilder
from tests.test_accuracy import judged

SEEDS = range(3)
CREATED = datetime(2024, 3, 1, tzinfo=timezone.utc)
OWN, OLD = "acme.example", "legacy-acme.example"


def _tenant(build: LakeBuilder, rng: random.Random) -> list[tuple[datetime, int]]:
    """acme sends from its own domain every day, and as steadily from a second domain it
    once registered (an application's notifications, each hour of the working day):
    [(when, recipients)] from OLD."""
    build.__enter__()
    start = AS_OF - timedelta(days=35)
    sent = []
    for d in range(35):
        build.send("acme", start + timedelta(days=d, hours=9), f"staff@{OWN}",
                   rng.randint(100, 200))
        for h in range(8, 18):
            when = start + timedelta(days=d, hours=h, minutes=rng.randint(0, 59))
            n = rng.randint(5, 15)
            build.send("acme", when, f"app@{OLD}", n)
            sent.append((when, n))
    return sent


def _snapshot(build: LakeBuilder, when: datetime, *names: str, initial: bool = True) -> None:
    rows = [{"domain_name": n, "snapshot_utc": when, "when_created_utc": CREATED,
             "match_subdomains": False, "is_initial": False} for n in names]
    if initial:
        rows.append({"domain_name": "acme.onmicrosoft.com", "snapshot_utc": when,
                     "when_created_utc": CREATED, "match_subdomains": False,
                     "is_initial": True})
    build.table("accepted_domains", "acme", rows, key=when.isoformat())


def _audit(build: LakeBuilder, when: datetime, operation: str, domain: str,
           status: str = "Success") -> None:
    params = {"Identity": domain} if operation.startswith("Remove") else {
        "Name": domain, "DomainName": domain, "DomainType": "Authoritative"}
    build.table("audit_events", "acme", [{
        "record_id": f"{operation}{when.isoformat()}", "creation_utc": when,
        "operation": operation, "user_id": "admin@acme.example", "client_ip": "198.51.100.7",
        "object_id": domain, "result_status": status, "parameters": json.dumps(params)}],
        key=f"{operation}{when.isoformat()}")


def _unregistered(build: LakeBuilder) -> int:
    """Recipients of the window counted as sent from unregistered domains."""
    build.__exit__(None, None, None)  # the rows held so far, written
    with sql.Session(build.rolled()) as session:
        rows = session.run("unprovisioned_senders",
                           {"as_of": AS_OF, "tenant": "acme", **asdict(DetectSettings())})
    return int(rows["recipients"].sum()) if rows.height else 0


@pytest.mark.parametrize("seed", SEEDS)
def test_mail_from_a_domain_after_its_removal_is_unregistered(build: LakeBuilder,
                                                              seed: int) -> None:
    rng = random.Random(seed)
    sent = _tenant(build, rng)
    removed = AS_OF - timedelta(hours=rng.randint(30, 100), minutes=rng.randint(0, 59))
    _snapshot(build, AS_OF - timedelta(days=40), OWN, OLD)
    _audit(build, removed, "Remove-AcceptedDomain", OLD)
    after = sum(n for when, n in sent if when >= removed)
    assert _unregistered(build) == after
    v, _ = judged(build, "acme")
    assert v["recommendation"] == "block", v["reasons"]
    step1 = report.build(build.root, AS_OF.date(), DetectSettings(), "acme").tenants[0].steps[0]
    assert not step1.ok and f"{OLD} since {removed:%Y-%m-%d %H:%M}" in step1.evidence


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("why", ["failed", "listed later", "added again"])
def test_what_does_not_prove_a_removal_keeps_the_domain(build: LakeBuilder, seed: int,
                                                        why: str) -> None:
    """A Remove-AcceptedDomain that failed; one a later snapshot contradicts (the domain,
    created before it, still listed); one undone by New-AcceptedDomain before the mail."""
    rng = random.Random(seed)
    sent = _tenant(build, rng)
    removed = AS_OF - timedelta(hours=rng.randint(30, 100))
    _snapshot(build, AS_OF - timedelta(days=40), OWN, OLD)
    _audit(build, removed, "Remove-AcceptedDomain", OLD,
           status="False" if why == "failed" else "Success")
    if why == "listed later":
        _snapshot(build, AS_OF - timedelta(minutes=5), OWN, OLD)
    gap = 0  # the mail sent while the domain was removed
    if why == "added again":
        again = removed + timedelta(minutes=rng.randint(1, 50))
        _audit(build, again, "New-AcceptedDomain", OLD)
        gap = sum(n for when, n in sent if removed <= when < again)
    assert _unregistered(build) == gap
    v, _ = judged(build, "acme")
    assert v["recommendation"] == "unblock", v["reasons"]


@pytest.mark.parametrize("seed", SEEDS)
def test_two_whole_snapshots_show_a_removal(build: LakeBuilder, seed: int) -> None:
    """A domain listed by one cloud snapshot and missing from the next was removed by
    then: mail from it after the second snapshot is unregistered, mail before is not."""
    rng = random.Random(seed)
    sent = _tenant(build, rng)
    second = AS_OF - timedelta(hours=rng.randint(30, 100))
    _snapshot(build, AS_OF - timedelta(days=40), OWN, OLD)
    _snapshot(build, second, OWN)
    assert _unregistered(build) == sum(n for when, n in sent if when >= second)
    v, _ = judged(build, "acme")
    assert v["recommendation"] == "block", v["reasons"]


@pytest.mark.parametrize("seed", SEEDS)
def test_an_export_without_the_initial_domain_is_not_a_removal(build: LakeBuilder,
                                                               seed: int) -> None:
    """On-premises Get-AcceptedDomain (no initial *.onmicrosoft.com domain) or a filtered
    export lists fewer domains; that is not evidence the cloud removed any."""
    rng = random.Random(seed)
    _tenant(build, rng)
    _snapshot(build, AS_OF - timedelta(days=40), OWN, OLD)
    _snapshot(build, AS_OF - timedelta(hours=rng.randint(30, 90)), OWN, initial=False)
    assert _unregistered(build) == 0
    v, _ = judged(build, "acme")
    assert v["recommendation"] == "unblock", v["reasons"]
