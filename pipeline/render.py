"""Render a Report to files: report.html, report.txt, verdicts.json and tenants/<slug>.html|txt.

Templates are package data, autoescaped (attacker-controlled text stays text) and strict
about undefined names. CSS is inlined after rendering so mail clients that drop <style>
still show the layout; there is no script and no remote resource. Each file is written
aside and renamed into place.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import css_inline
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from pipeline import faults
from pipeline.errors import ConfigError
from pipeline.lake import TMP_PREFIX, refuse_system_folder, write_atomically
from pipeline.report import COLOURS, Report, verdicts_json
from pipeline.visible import finalize

_ENV = Environment(loader=PackageLoader("pipeline", "templates"),
                   autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                   finalize=finalize)
_INLINER = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)
_SLUG = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class Rendered:
    html: str
    text: str


def render(report: Report, single: bool = False) -> Rendered:
    context = {"report": report, "single": single, "window_days": report.window_days,
               "colours": COLOURS}
    html = _ENV.get_template("report.html").render(**context)
    text = _ENV.get_template("report.txt").render(**context)
    return Rendered(_INLINER.inline(html), text)


def for_tenant(report: Report, tenant: str) -> Report:
    """The report cut down to one tenant (what that tenant's admins may see)."""
    return replace(report, tenants=tuple(t for t in report.tenants if t.tenant == tenant),
                   quality=tuple(q for q in report.quality if q["tenant"] == tenant),
                   rejected_files=tuple(f for f in report.rejected_files
                                        if f["tenant"] == tenant),
                   rejected_rows=tuple(r for r in report.rejected_rows if r["tenant"] == tenant))


def write(report: Report, out: Path) -> Path:
    """Write the report family into <out>/<as-of date>/ and return that folder."""
    refuse_system_folder(Path(out), "reports")
    folder = Path(out) / report.as_of.isoformat()
    full = render(report)
    files = {"report.html": full.html, "report.txt": full.text,
             "verdicts.json": json.dumps(verdicts_json(report), indent=2, ensure_ascii=False)
             + "\n"}
    for t in report.tenants:
        if not _SLUG.fullmatch(t.tenant):
            raise ConfigError(f"tenant {t.tenant!r} is not a valid slug; it cannot name a file")
        one = render(for_tenant(report, t.tenant), single=True)
        files[f"tenants/{t.tenant}.html"] = one.html
        files[f"tenants/{t.tenant}.txt"] = one.text
    for leftover in folder.rglob(f"{TMP_PREFIX}*") if folder.is_dir() else ():
        leftover.unlink(missing_ok=True)  # from a run killed mid-write (callers hold the lock)
    with faults.stage("report"):
        for name, text in files.items():
            _atomic(folder / name, text)
    return folder


def _atomic(path: Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
