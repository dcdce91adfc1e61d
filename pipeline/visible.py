"""Text shown to people, with control, invisible and bidi characters made visible.

Connector names, subjects and addresses are attacker-controlled: a terminal escape code
(ESC [ ...) would restyle or rewrite a terminal, and U+202E (right-to-left override) makes
`exe.pdf` read as `fdp.exe`. Each such character is shown as its Python escape (`\\x1b`,
`\\u202e`), so what a reader sees is what the data holds.
"""

from __future__ import annotations

from markupsafe import Markup


def visible(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def finalize(value: object) -> object:
    """Jinja's finalize hook: every string a template prints, made visible (markup the
    report built itself is left alone)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value
