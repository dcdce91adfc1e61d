"""The report card's simulator and scoring run (a small population; `make accuracy` runs
the full one): every tenant is written, ingested and judged each night, and the card's
counts add up to the population."""

from __future__ import annotations

import re
from pathlib import Path

from tests.accuracy import report_card as rc


def test_a_small_population_is_judged_and_scored(tmp_path: Path) -> None:
    got = rc.run(5, 30, tmp_path)
    tenants = got["tenants"]
    verdicts = got["verdicts"]
    assert len(tenants) == 30 and {t.slug for t in tenants} <= set(verdicts)
    assert all(set(verdicts[t.slug]) == set(rc.NIGHTS) for t in tenants)
    lines = rc.card(5, tenants, verdicts, 1.0)  # type: ignore[arg-type]
    legit = sum(not t.attack for t in tenants)
    assert lines[1].startswith("  false blocks: ") and f"/{legit} (" in lines[1]
    cells = [tuple(map(int, m)) for line in lines if line.startswith("    ") and ": " in line
             for m in re.findall(r": (\d+)/(\d+)", line)]
    attacks = sum(t.attack for t in tenants)
    per_kind = [c for line in lines[4:4 + len(rc.ATTACKS)]
                for c in re.findall(r": (\d+)/(\d+)", line)]
    assert sum(int(n) for _, n in per_kind) == attacks and cells
    assert any("target all:" in line for line in lines)
