"""Which change started it (issue 18): a configuration change put next to the
unregistered-domain or spam mail that followed it within change_follow_hours, with who made
it and from where; counted against numbers drawn and counted here. A change nothing followed,
or mail through another connector, is not "what started it"."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import pytest

from pipeline import report
from pipeline.settings import DetectSettings
from tests.conftest import AS_OF, SNAPSHOT, LakeBuilder
from tests.test_accuracy import judged

SEEDS = range(3)
FOLLOW = timedelta(hours=DetectSettings().change_follow_hours)


def _office(build: LakeBuilder, rng: random.Random) -> None:
    build.__enter__()
    build.domains("acme", "acme.example")
    for d in range(35):
        build.send("acme", AS_OF - timedelta(days=35 - d, hours=-9), "staff@acme.example",
                   rng.randint(40, 90), connector=None)


def _audit(build: LakeBuilder, when: datetime, operation: str, name: str) -> None:
    build.table("audit_events", "acme", [{
        "record_id": f"{operation}{when.isoformat()}", "creation_utc": when,
        "operation": operation, "user_id": "it-admin@acme.onmicrosoft.com",
        "client_ip": "185.220.101.9", "object_id": name, "result_status": "True",
        "parameters": json.dumps({"Name": name})}], key=f"{operation}{when.isoformat()}")


def _connectors(build: LakeBuilder, *rows: tuple[str, datetime]) -> None:
    build.table("inbound_connectors", "acme", [
        {"snapshot_utc": SNAPSHOT, "name": name, "connector_type": "OnPremises",
         "sender_domains": ["*"], "sender_ip_addresses": ["198.51.100.0/24"], "enabled": True,
         "when_created_utc": created, "when_changed_utc": created} for name, created in rows])


def _relay(build: LakeBuilder, rng: random.Random, start: datetime, connector: str
           ) -> list[tuple[datetime, str, int]]:
    sent = []
    for h in range(rng.randint(4, 30)):
        when = start + timedelta(hours=h, minutes=rng.randint(0, 50))
        domain = f"deal{rng.randrange(9)}.top"
        n = rng.randint(20, 120)
        build.send("acme", when, f"promo@{domain}", n, connector=connector,
                   client_ip="198.51.100.7")
        sent.append((when, domain, n))
    return sent


def _changes(build: LakeBuilder) -> dict:
    """The tenant's verdict, step 2's evidence and its reasons."""
    v, _ = judged(build, "acme")
    t = report.build(build.root, AS_OF.date(), DetectSettings(), "acme").tenants[0]
    return {"recommendation": v["recommendation"], "step2": t.steps[1].evidence,
            "reasons": v["reasons"]}


@pytest.mark.parametrize("seed", SEEDS)
def test_the_connector_created_before_the_relaying_is_named_with_who_and_when(
        build: LakeBuilder, seed: int) -> None:
    rng = random.Random(seed)
    _office(build, rng)
    created = AS_OF - timedelta(days=rng.randint(2, 5), minutes=rng.randint(0, 600))
    name = f"Partner {rng.randrange(99)}"
    _connectors(build, (name, created), ("Hybrid", created - timedelta(days=300)))
    _audit(build, created, "New-InboundConnector", name)
    delay = rng.randint(5, 180)
    sent = _relay(build, rng, created + timedelta(minutes=delay), name)
    first = min(w for w, _, _ in sent)
    after = [(w, d, n) for w, d, n in sent if w < created + FOLLOW]
    got = _changes(build)
    assert got["recommendation"] == "block"
    want = (f"New-InboundConnector {name!r} by it-admin@acme.onmicrosoft.com from "
            f"185.220.101.9 at {created:%Y-%m-%d %H:%M} UTC (audit); "
            f"{round((first - created).total_seconds() / 60)} minutes later it carried mail "
            f"from {len({d for _, d, _ in after})} unregistered domain(s): "
            f"{sum(n for _, _, n in after):,} unregistered or spam recipients")
    assert want in got["step2"], got["step2"]
    assert any(r.startswith("which change started it: New-InboundConnector") for r in
               got["reasons"])


@pytest.mark.parametrize("seed", SEEDS)
def test_a_snapshot_shows_the_change_when_no_audit_event_does(build: LakeBuilder,
                                                              seed: int) -> None:
    rng = random.Random(seed)
    _office(build, rng)
    created = (AS_OF - timedelta(days=rng.randint(2, 5))).replace(minute=0)
    _connectors(build, ("Scan relay", created))
    _relay(build, rng, created + timedelta(minutes=rng.randint(5, 180)), "Scan relay")
    got = _changes(build)
    assert "inbound connector created 'Scan relay' at " f"{created:%Y-%m-%d %H:%M} UTC " \
           "(snapshot)" in got["step2"]


@pytest.mark.parametrize("seed", SEEDS)
def test_changes_nothing_followed_are_not_what_started_it(build: LakeBuilder,
                                                         seed: int) -> None:
    """A transport rule created on a quiet day, and a connector whose change the relaying
    through another connector did not follow: neither is named."""
    rng = random.Random(seed)
    _office(build, rng)
    quiet = AS_OF - timedelta(days=rng.randint(2, 5))
    _audit(build, quiet, "New-TransportRule", "Disclaimer")
    _connectors(build, ("Partner A", quiet - timedelta(days=200)),
                ("Partner B", quiet - timedelta(days=300)))
    _audit(build, AS_OF - timedelta(days=6), "Set-InboundConnector", "Partner A")
    _relay(build, rng, AS_OF - timedelta(days=6, hours=-1), "Partner B")
    got = _changes(build)
    assert "Which change started it" not in got["step2"]
