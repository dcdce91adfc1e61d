"""CISA ScubaGear's ProviderSettingsExport.json: one file, many tables. The Exchange Online
provider's `accepted_domains`, `inbound_connectors` and `outbound_connectors` (each the
cmdlet's output through Windows PowerShell 5.1 ConvertTo-Json: `/Date(ms)/` times, `[null]`
for an empty result) are read with the same parsers as the cmdlets' own exports, each into
its own table; a section missing from the file (the provider did not run) is no evidence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import InputFormatError
from pipeline.formats.common import Context, Parsed, TabularFormat
from pipeline.formats.source import records_frame

NAME = "scubagear_provider_settings"
# the keys every ProviderSettingsExport.json starts with (header_key form)
MARKERS = {"baselineversion", "moduleversion", "timestampzulu"}
# a real export is a few MB (a large tenant's Entra sections included)
MAX_BYTES = 512 * 2**20


def is_export(keys: set[str]) -> bool:
    return MARKERS <= keys


def parts(path: Path, ctx: Context, formats: dict[str, TabularFormat]) -> Iterator[Parsed]:
    """A Parsed per Exchange Online table the export holds (formats: table → format)."""
    if path.stat().st_size > MAX_BYTES:
        raise InputFormatError(ctx.file, None, f"a ScubaGear export over {MAX_BYTES // 2**20} "
                               "MB", "this is not a ProviderSettingsExport.json; check the file")
    try:
        with open(path, "rb") as fh:
            doc = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InputFormatError(ctx.file, getattr(exc, "lineno", None),
                               f"ScubaGear export that is not complete JSON ({exc})",
                               "run ScubaGear again; the file was cut or edited") from None
    if not isinstance(doc, dict):
        raise InputFormatError(ctx.file, 1, "ScubaGear export that is not a JSON object",
                               "give the ProviderSettingsExport.json ScubaGear wrote")
    for table, fmt in formats.items():
        section = doc.get(table)
        if section is None:
            continue
        objs = section if isinstance(section, list) else [section]
        records = [(i, o) for i, o in enumerate(objs, 1) if isinstance(o, dict)]
        parsed = fmt.parse(records_frame(records), ctx)
        parsed.format = f"{NAME}:{table}"
        yield parsed
