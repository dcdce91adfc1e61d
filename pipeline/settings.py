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


def _t(default: Any, reason: str) -> Any:
    return field(default=default, metadata={"reason": reason})


@dataclass(frozen=True)
class DetectSettings:
    """Detection thresholds ([detect] in relaywatch.toml). Each is also the name of the
    query parameter that uses it, so `relaywatch query run` takes the same names."""

    window_days: int = _t(7, "The recent window judged for active compromise: a week covers "
                             "weekday/weekend rhythm and a missed export or two.")
    baseline_days: int = _t(28, "History before the window that baselines are drawn from: four "
                               "of each weekday.")
    stale_after_hours: int = _t(48, "Exports are daily; two silent days mean the data can no "
                                   "longer vouch for the tenant.")
    clean_hours: int = _t(72, "Hours without unregistered-domain relaying or spam signals before "
                             "step 3 passes; a weekend is not proof, three days usually are.")
    blocked_now_hours: int = _t(48, "A block NDR (5.7.750, 5.7.705, 5.7.711) this recent means "
                                   "the block is still in force.")
    unprovisioned_min_messages: int = _t(20, "Fewer unregistered-domain messages than this in "
                                            "the window are noise, not relaying.")
    unprovisioned_max_share: float = _t(0.10, "Share of outbound recipients from unregistered "
                                              "domains tolerated as forwarding (Microsoft allows "
                                              "'a reasonable amount'; schools run at 3-6%).")
    unprovisioned_rise_ratio: float = _t(3.0, "Unregistered-domain volume per day this many "
                                              "times the baseline's is a rise, not a habit.")
    spike_min_hour: int = _t(50, "Recipients in one hour below which no hourly spike is "
                                 "reported, so quiet tenants don't alarm.")
    spike_min_day: int = _t(300, "Recipients in one day below which no daily spike is reported.")
    spike_mads: float = _t(5.0, "A spike exceeds the baseline median by this many scaled MADs "
                                "(about 5 standard deviations for normal traffic).")
    spike_ratio: float = _t(3.0, "...and is at least this many times the baseline median, so "
                                 "steady large senders don't alarm on small wobbles.")
    spam_share: float = _t(0.20, "Share of a spike's or connector's recipients filtered as spam, "
                                 "quarantined or refused that marks it as spam, not a campaign.")
    wide_range_prefix: int = _t(24, "Connector IP ranges this wide or wider (/24 is the widest "
                                    "Exchange Online takes) are flagged; servers are listed one "
                                    "by one.")
    connector_score: int = _t(40, "Score from which a connector counts as suspicious (reasons "
                                  "score 10-40 each; see queries/suspicious_connectors.sql).")
    restricted_min_recipients: int = _t(10, "Recipients a sender still pushes after its first "
                                            "5.1.8 (restricted) NDR that count as still active.")


@dataclass(frozen=True)
class Settings:
    lake: Path = Path("lake")
    inbox: Path = Path("inbox")
    reports: Path = Path("reports")
    date_order: str = "auto"
    headerless_msgtrk: str = "none"
    flush_rows: int = 500_000
    detect: DetectSettings = field(default_factory=DetectSettings)
    email: Mapping[str, Any] = field(default_factory=dict)
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


def _detect(table: Mapping[str, Any], origin: str) -> DetectSettings:
    known = {f.name: f for f in fields(DetectSettings)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{origin}: unknown key {key!r} in [detect]; known: "
                              f"{', '.join(known)}")
        kind = int if known[key].type == "int" else float
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{origin}: [detect] {key} = {value!r} must be a number >= 0")
        values[key] = kind(value)
    return DetectSettings(**values)


EMAIL_KEYS = ("host", "port", "security", "user", "from", "to", "tenants")


def _email(table: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """[email]: SMTP server and recipients; [email.tenants] maps a tenant slug to the
    addresses that get only that tenant's page. Never a password."""
    for key in table:
        if key not in EMAIL_KEYS:
            hint = " (passwords go in RELAYWATCH_SMTP_PASSWORD or _FILE)" if "pass" in key else ""
            raise ConfigError(f"{origin}: unknown key {key!r} in [email]{hint}; known: "
                              f"{', '.join(EMAIL_KEYS)}")
    if table.get("security", "none") not in ("none", "starttls", "ssl"):
        raise ConfigError(f"{origin}: [email] security must be none, starttls or ssl")
    tenants = table.get("tenants", {})
    if not isinstance(tenants, dict) or not all(
            isinstance(v, list) and all(isinstance(a, str) for a in v) for v in tenants.values()):
        raise ConfigError(f"{origin}: [email.tenants] maps a tenant to a list of addresses, "
                          'e.g. contoso = ["it@contoso.com"]')
    return dict(table)


def detect_markdown() -> str:
    """The [detect] thresholds as a Markdown table (kept in the README by a test)."""
    rows = ["| key | default | why |", "|---|---|---|"]
    for f in fields(DetectSettings):
        rows.append(f"| `{f.name}` | {f.default} | {f.metadata['reason']} |")
    return "\n".join(rows) + "\n"


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
            if section == "detect":
                values["detect"] = _detect(table, str(path))
                source["detect"] = str(path)
                continue
            if section == "email":
                values["email"] = _email(table, str(path))
                continue
            if section not in _TOML:
                raise ConfigError(
                    f"{path}: unknown section [{section}]; known: "
                    f"{', '.join(sorted([*_TOML, 'detect', 'email']))}"
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
