"""Settings: defaults, overridden by relaywatch.toml, then RELAYWATCH_* variables, then flags.

The settings file is optional. It is found at --config, $RELAYWATCH_CONFIG or ./relaywatch.toml.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from pipeline.errors import ConfigError

DATE_ORDERS = ("auto", "mdy", "dmy", "ymd")
MSGTRK_FIELD_SETS = ("none", "exchange2013", "exchange2010")


@dataclass(frozen=True)
class Settings:
    lake: Path = Path("lake")
    inbox: Path = Path("inbox")
    reports: Path = Path("reports")
    date_order: str = "auto"
    headerless_msgtrk: str = "none"
    flush_rows: int = 2_000_000
    source: Mapping[str, str] = field(default_factory=dict, compare=False)

    def with_overrides(self, **values: Any) -> Settings:
        """Apply command-line values; None means 'not given'."""
        given = {k: v for k, v in values.items() if v is not None}
        return _validated(replace(self, **given))


_ENV = {
    "lake": "RELAYWATCH_LAKE",
    "inbox": "RELAYWATCH_INBOX",
    "reports": "RELAYWATCH_REPORTS",
    "date_order": "RELAYWATCH_DATE_ORDER",
    "headerless_msgtrk": "RELAYWATCH_HEADERLESS_MSGTRK",
    "flush_rows": "RELAYWATCH_FLUSH_ROWS",
}
# relaywatch.toml: section → keys it may hold
_TOML = {
    "paths": ("lake", "inbox", "reports"),
    "ingest": ("date_order", "headerless_msgtrk", "flush_rows"),
}


def _coerce(name: str, value: Any, origin: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if kind == "Path":
            return Path(str(value))
        if kind == "int":
            return int(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{origin}: {name} = {value!r} is not a valid {kind}") from None


def _validated(s: Settings) -> Settings:
    if s.date_order not in DATE_ORDERS:
        raise ConfigError(
            f"date_order = {s.date_order!r} is not one of {', '.join(DATE_ORDERS)}"
        )
    if s.headerless_msgtrk not in MSGTRK_FIELD_SETS:
        raise ConfigError(
            f"headerless_msgtrk = {s.headerless_msgtrk!r} is not one of "
            f"{', '.join(MSGTRK_FIELD_SETS)}"
        )
    if s.flush_rows < 1000:
        raise ConfigError(f"flush_rows = {s.flush_rows} is too small (minimum 1000)")
    return s


def load(config: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the file and environment (flags are applied by the caller)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    path = config or (Path(env["RELAYWATCH_CONFIG"]) if env.get("RELAYWATCH_CONFIG") else None)
    if path is None and Path("relaywatch.toml").is_file():
        path = Path("relaywatch.toml")
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: settings file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        for section, table in data.items():
            if section not in _TOML and section not in ("detect", "report", "email"):
                raise ConfigError(
                    f"{path}: unknown section [{section}]; known: {', '.join(sorted(_TOML))}"
                )
            for key, value in table.items() if section in _TOML else ():
                if key not in _TOML[section]:
                    raise ConfigError(f"{path}: unknown key {key!r} in [{section}]")
                values[key] = _coerce(key, value, str(path))
                source[key] = str(path)
    for key, var in _ENV.items():
        if env.get(var):
            values[key] = _coerce(key, env[var], var)
            source[key] = var
    return _validated(Settings(**values, source=source))
