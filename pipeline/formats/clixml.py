"""PowerShell CLIXML (`Export-Clixml`): the objects of an `<Objs>` document as records, one
at a time, the way JSON exports are read.

Each top-level `<Obj>` becomes a record of its properties (`<Props>` and the extended
members of `<MS>`, by their `N` names). Values: `<S>`, `<DT>`, numbers and the other
primitives as their text (`_xHHHH_` escapes decoded), `<B>` as a boolean, `<Nil/>` as
null, a list (`<LST>`, `<IE>`, `<STK>`, `<QUE>`) as a list, a dictionary (`<DCT>`) as a
dict, a rich object (an enum, `SmtpDomainWithSubdomains`, `ExchangeObjectVersion`) as its
`<ToString>`, and `<Ref RefId>` as the object it refers back to.

The XML is parsed with defusedxml, streaming: a DTD, an entity declaration or an external
reference is refused before anything is expanded (an XML bomb is bad input, not a crash),
and memory holds one object (plus the values later objects may refer back to), never the
file.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import defusedxml  # type: ignore[import-untyped]
import defusedxml.ElementTree as safe_et  # type: ignore[import-untyped]

from pipeline.errors import InputFormatError

LISTS = {"LST", "IE", "STK", "QUE"}
NUMBERS = {"I16", "I32", "I64", "U8", "U16", "U32", "U64", "By", "SB", "Db", "D", "Sg"}
TEXT = {"S", "DT", "TS", "G", "URI", "Version", "XD", "SBK", "SS", "PR", *NUMBERS}
# an export's objects are a few levels deep (object, property object, list, item); far
# deeper is a hostile file, and so is an object with more properties than an export has
MAX_DEPTH = 64
MAX_PROPERTIES = 1000
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")

# (position, record, None) of an object; (position, None, (reason, raw)) of one refused
Item = tuple[int, dict | None, tuple[str, str] | None]


def _text(s: str | None) -> str:
    """PowerShell escapes characters XML cannot hold as `_xHHHH_` (`_x000A_` a newline)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), s or "")


def _tag(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.refs: dict[str, Any] = {}

    def value(self, el: ET.Element) -> Any:
        tag = _tag(el)
        if tag == "Nil":
            return None
        if tag == "B":
            return (el.text or "").strip().lower() == "true"
        if tag == "C":  # a character, as its code
            return chr(int(el.text or "0"))
        if tag == "BA":  # base64 serialization data: nothing an export's reader needs
            return None
        if tag in TEXT:
            return _text(el.text)
        if tag == "Ref":
            return self.refs.get(el.get("RefId", ""))
        if tag == "Obj":
            got = self.obj(el, top=False)
            if el.get("RefId") is not None:
                self.refs[el.get("RefId", "")] = got
            return got
        return _text(el.text) if el.text and el.text.strip() else None

    def obj(self, el: ET.Element, top: bool) -> Any:
        parts = {_tag(c): c for c in el}
        for kind in LISTS:
            if kind in parts:
                return [self.value(c) for c in parts[kind]]
        if "DCT" in parts:
            out = {}
            for en in parts["DCT"]:
                pair = {c.get("N"): self.value(c) for c in en}
                if pair.get("Key") is not None:
                    out[str(pair["Key"])] = pair.get("Value")
            return out
        if not top and "ToString" in parts:
            return _text(parts["ToString"].text)
        props: dict[str, Any] = {}
        for group in ("Props", "MS"):
            for c in parts.get(group, ()):
                name = c.get("N")
                if name is not None:
                    props[name] = self.value(c)
        if len(props) > MAX_PROPERTIES:
            raise InputFormatError(self.file, None, f"a CLIXML object with {len(props):,} "
                                   "properties (exports have a few dozen)",
                                   "this is not an Exchange export; check the file")
        if not props:  # a primitive wrapped in an object (an enum without ToString)
            inner = [c for c in el if _tag(c) not in ("TN", "TNRef", "ToString")]
            return self.value(inner[0]) if inner else _text(parts.get("ToString", el).text)
        return props


def records(path: Path, file: str) -> Iterator[Item]:
    """The top-level objects of a CLIXML file, each with its position (1-based)."""
    reader = _Reader(file)
    depth, n = 0, 0
    root: ET.Element | None = None
    try:
        with open(path, "rb") as fh:
            for event, el in safe_et.iterparse(fh, events=("start", "end"), forbid_dtd=True):
                if event == "start":
                    depth += 1
                    if depth == 1:
                        root = el
                        if _tag(el) != "Objs":
                            raise InputFormatError(file, 1, f"XML whose root is <{_tag(el)}>, "
                                                   "not PowerShell's <Objs>",
                                                   "export with Export-Clixml")
                    elif depth > MAX_DEPTH:
                        raise InputFormatError(file, None, "CLIXML nested too deeply to be "
                                               "an export", "export with Export-Clixml")
                    continue
                depth -= 1
                if depth != 1:
                    continue
                n += 1
                if _tag(el) == "Obj":
                    got = reader.obj(el, top=True)
                    if el.get("RefId") is not None:
                        reader.refs[el.get("RefId", "")] = got
                    if isinstance(got, dict):
                        yield n, got, None
                    else:
                        yield n, None, ("not an object with properties", str(got)[:1000])
                else:
                    yield n, None, (f"a bare <{_tag(el)}>, not an object",
                                    (el.text or "")[:1000])
                if root is not None:
                    root.clear()  # the objects read so far: memory holds one at a time
    except defusedxml.DefusedXmlException as exc:
        raise InputFormatError(file, None, f"XML with a DTD, entities or external references "
                               f"({type(exc).__name__}): refused, as CLIXML never has them",
                               "export with Export-Clixml; this file is not one") from None
    except ET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        raise InputFormatError(file, line, f"broken XML ({exc})",
                               "export again with Export-Clixml; the file was cut or "
                               "edited") from None


def first_keys(path: Path, file: str) -> list[str]:
    """The property names of the file's first object (what recognises its format)."""
    for _, record, _problem in records(path, file):
        if record is not None:
            return list(record)
    raise InputFormatError(file, None, "CLIXML that holds no objects with properties",
                           "export objects with Export-Clixml")
