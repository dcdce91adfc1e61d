"""The report in a real browser: headless Chromium opens report.html and we read the DOM.

A probe script is added to a copy of the page (the report itself has none); it measures
what a reader sees and leaves the figures in the DOM that Chromium dumps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_report import fixed_report

WIDTH = 800
PROBE = """<script>
const box = e => { const b = e.getBoundingClientRect(), s = getComputedStyle(e);
  return {w: b.width, h: b.height, right: b.right,
          shown: b.width > 0 && b.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'}; };
const all = sel => [...document.querySelectorAll(sel)].map(box);
const red = [...document.querySelectorAll('table.chart div')].filter(
  d => getComputedStyle(d).backgroundColor === 'rgb(214, 69, 69)' && d.getBoundingClientRect().height > 0);
const result = {
  viewport: window.innerWidth, scrollWidth: document.documentElement.scrollWidth,
  widest: Math.max(...[...document.body.querySelectorAll('*')].map(e => e.getBoundingClientRect().right)),
  banners: all('table.banner td'), checklist: all('table.checklist tr'),
  charts: all('table.chart'), redBars: red.length, spikes: all('table.chart td.spike').length,
  scripts: document.scripts.length - 1,
  bannerText: [...document.querySelectorAll('table.banner td')].map(e => e.innerText).join(' | ')};
document.body.setAttribute('data-probe', JSON.stringify(result));
</script>"""


def chromium() -> str:
    found = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser",
                                                         "google-chrome")) if p), None)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("CI must have Chromium: .ci/run installs Debian's chromium package")
    pytest.skip("no Chromium on this machine (apt-get install chromium); CI runs this test")


def run_chromium(binary: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'profile'}", f"--window-size={WIDTH},2000",
             "--hide-scrollbars"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixed_report(tmp_path_factory.mktemp("browser"))


@pytest.mark.parametrize("page", ["report.html", "tenants/acme.html"])
def test_report_shows_banners_checklist_and_chart_within_the_width(pages: Path, page: str,
                                                                   tmp_path: Path) -> None:
    binary = chromium()
    probe = tmp_path / "probe.html"
    probe.write_text((pages / page).read_text().replace("</body>", PROBE + "</body>"))
    done = run_chromium(binary, tmp_path, "--virtual-time-budget=5000", "--dump-dom",
                        probe.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    marker = 'data-probe="'
    start = done.stdout.index(marker) + len(marker)
    raw = done.stdout[start:done.stdout.index('"', start)]
    import html

    seen = json.loads(html.unescape(raw))
    assert seen["scripts"] == 0                       # the report itself has no script
    assert seen["viewport"] == WIDTH
    assert seen["scrollWidth"] <= WIDTH and seen["widest"] <= WIDTH, "something overflows"
    assert seen["banners"] and all(b["shown"] and b["h"] >= 30 for b in seen["banners"])
    assert len(seen["checklist"]) == 5              # header + four steps, acme only
    assert all(r["shown"] for r in seen["checklist"])
    assert seen["charts"] and all(c["shown"] and 600 <= c["w"] <= 720 for c in seen["charts"])
    assert seen["redBars"] >= 16                      # 2 days x 8 relaying hours
    assert seen["spikes"] >= 1
    assert seen["bannerText"].startswith("BLOCK — acme\nBlocked by Microsoft now")
    shot = tmp_path / "shot.png"
    done = run_chromium(binary, tmp_path, f"--screenshot={shot}", (pages / page).as_uri())
    assert shot.stat().st_size > 20_000
