"""Settings: defaults, overridden by relaywatch.toml, then RELAYWATCH_* variables, then flags.

The settings file is optional. It is found at --config, $RELAYWATCH_CONFIG or ./relaywatch.toml.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from pipeline.errors import ConfigError

DATE_ORDERS = ("auto", "mdy", "dmy", "ymd")
MSGTRK_FIELD_SETS = ("none", "exchange2013", "exchange2010")
ENGINES = ("duckdb", "spark")  # where ingest and the rollups run


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
    steady_share_cap: float = _t(0.20, "A share over unprovisioned_max_share that was as high in "
                                       "the baseline is forwarding's week-to-week wobble, up to "
                                       "this share; above it, steady or not, it is relaying.")
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
    bounce_share: float = _t(0.10, "Share of a spike's recipients bounced as unknown addresses "
                                   "(5.1.1, 5.1.10) that marks a bought list: campaigns to "
                                   "opted-in lists bounce at 1-3%, spam runs at 10-40%.")
    flood_ratio: float = _t(10.0, "A sender or connector whose hours spike at this many times "
                                  "its own baseline...")
    flood_days: int = _t(2, "...from first to last over this many days or more is a flood from "
                            "a registered domain (a compromised mailbox or server), not a "
                            "campaign: a newsletter goes out within a day.")
    flood_hours: int = _t(4, "...or, for a sender or connector established before the window, "
                             "over this many hours: a mailbox sends at most 30 messages a "
                             "minute, so even a mail merge of thousands is out within two "
                             "hours; still at flood_ratio times its habit hours later is a "
                             "compromised account or server running until stopped...")
    flood_min_domains: int = _t(20, "...to at least this many distinct recipient domains: spam "
                                    "goes to lists across the internet, while a busy run of "
                                    "one partner's or one system's mail reaches a few.")
    established_days: int = _t(3, "Days a sender or connector sent on before the window for its "
                                  "own baseline to count as a habit (a person's mailbox sends "
                                  "most days; a new campaign address has no habit to break).")
    wide_range_prefix: int = _t(24, "Connector IP ranges this wide or wider (/24 is the widest "
                                    "Exchange Online takes) are flagged; servers are listed one "
                                    "by one.")
    connector_score: int = _t(40, "Score from which a connector counts as suspicious (reasons "
                                  "score 10-40 each; see queries/suspicious_connectors.sql).")
    infer_min_counterparties: int = _t(3, "Without an accepted-domains export, a domain that "
                                          "both writes to and hears from this many other "
                                          "domains (outside those already known as its own) "
                                          "is taken as the tenant's own: a correspondent only "
                                          "exchanges mail with the tenant's own domains, and a "
                                          "domain an attacker sends from hears from nobody.")
    restricted_min_recipients: int = _t(10, "Recipients a sender still pushes after its first "
                                            "5.1.8 (restricted) NDR that count as still active.")
    change_follow_hours: int = _t(24, "Hours after a configuration change (a connector "
                                      "created or changed, an accepted domain added, a "
                                      "transport rule, a relay permission) in which the "
                                      "unregistered-domain or spam mail that follows is put "
                                      "next to it: an attacker uses what they set up within "
                                      "hours, and a day keeps unrelated weeks apart.")


# The values each threshold may take, from wherever it comes (file, flag): outside them a
# detection is switched off (a window of 0 days sees nothing, a tolerated share of 100 %
# forgives any relaying) or fires on everything.
DETECT_RANGES: dict[str, tuple[float, float]] = {
    "window_days": (1, 366), "baseline_days": (1, 366), "stale_after_hours": (1, 8784),
    "clean_hours": (1, 8784), "blocked_now_hours": (1, 8784),
    "unprovisioned_min_messages": (1, 1_000_000), "unprovisioned_max_share": (0.0, 0.5),
    "steady_share_cap": (0.0, 1.0),
    "unprovisioned_rise_ratio": (1.0, 1000.0), "spike_min_hour": (1, 10_000_000),
    "spike_min_day": (1, 100_000_000), "spike_mads": (1.0, 100.0), "spike_ratio": (1.0, 100.0),
    "spam_share": (0.01, 1.0), "bounce_share": (0.01, 1.0), "flood_ratio": (2.0, 1000.0),
    "flood_days": (1, 31), "flood_hours": (2, 168), "flood_min_domains": (1, 100_000),
    "established_days": (1, 366), "wide_range_prefix": (0, 32), "connector_score": (1, 1000),
    "restricted_min_recipients": (1, 1_000_000), "infer_min_counterparties": (1, 1000),
    "change_follow_hours": (1, 720),
}


def detect_value(name: str, value: Any, origin: str) -> int | float:
    """One [detect] value checked against its type and range, or a ConfigError saying both."""
    kind = {f.name: f.type for f in fields(DetectSettings)}[name]
    lo, hi = DETECT_RANGES[name]
    shown = f"{origin}: [detect] {name} = {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{shown} must be a number from {lo} to {hi}")
    if kind == "int" and not float(value).is_integer():
        raise ConfigError(f"{shown} must be a whole number from {lo} to {hi}")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ConfigError(f"{shown} is out of range: use {lo} to {hi}")
    return int(value) if kind == "int" else float(value)


def check_address(text: Any, origin: str) -> str:
    """One email address (local@domain.tld), parsed by the standard library; a list, a
    display name or a line break is refused (they would reach the SMTP envelope)."""
    from email.errors import HeaderParseError, MessageDefect  # only when there is one
    from email.headerregistry import Address

    if not isinstance(text, str):
        raise ConfigError(f"{origin}: {text!r} is not an email address")
    try:
        addr = Address(addr_spec=text.strip())
        ok = bool(addr.username) and "." in addr.domain.strip(".") and "@" not in addr.domain
    except (ValueError, IndexError, HeaderParseError, MessageDefect):
        ok = False
    if not ok:
        raise ConfigError(f"{origin}: {text!r} is not one email address (like "
                          "soc@example.com); give several with the option repeated, or as a "
                          'list: to = ["a@example.com", "b@example.com"]')
    return text.strip()


@dataclass(frozen=True)
class Settings:
    lake: Path = Path("lake")
    inbox: Path = Path("inbox")
    reports: Path = Path("reports")
    date_order: str = "auto"
    headerless_msgtrk: str = "none"
    flush_rows: int = 500_000
    engine: str = "duckdb"
    # ad hoc SQL ([sql]): a statement past these stops with a message saying which
    timeout_seconds: int = 60
    memory_limit: str = "1200MB"
    max_rows: int = 1_000_000
    # --engine spark ([spark]): where ingest's tasks run (spark://host:7077, local[4]; empty:
    # what spark-submit gives, else local[*]) and each executor's memory
    spark_master: str = ""
    spark_executor_memory: str = "2g"
    detect: DetectSettings = field(default_factory=DetectSettings)
    email: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, str] = field(default_factory=dict, compare=False)

    def with_detect(self, origin: str, **values: Any) -> Settings:
        """[detect] values from flags, checked as the file's are; None means 'not given'."""
        given = {k: detect_value(k, v, origin) for k, v in values.items() if v is not None}
        return replace(self, detect=replace(self.detect, **given))  # type: ignore[arg-type]

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
    "engine": "RELAYWATCH_ENGINE",
    "spark_master": "RELAYWATCH_SPARK_MASTER",
}
# relaywatch.toml: section → keys it may hold
_TOML = {
    "paths": ("lake", "inbox", "reports"),
    "ingest": ("date_order", "headerless_msgtrk", "flush_rows", "engine"),
    "sql": ("timeout_seconds", "memory_limit", "max_rows"),
    "spark": ("master", "executor_memory"),  # fields spark_master, spark_executor_memory
}


def _coerce(name: str, value: Any, origin: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if kind == "Path":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{origin}: {name} = {value!r} must be a non-empty folder path")
        return Path(value)
    if kind == "int":
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{origin}: {name} = {value!r} must be a whole number") from None
    if not isinstance(value, str):
        raise ConfigError(f"{origin}: {name} = {value!r} must be text")
    return value


def _detect(table: Mapping[str, Any], origin: str) -> DetectSettings:
    known = {f.name for f in fields(DetectSettings)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{origin}: unknown key {key!r} in [detect]; known: "
                              f"{', '.join(known)}")
        values[key] = detect_value(key, value, origin)
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
    out = dict(table)
    if table.get("security", "none") not in ("none", "starttls", "ssl"):
        raise ConfigError(f"{origin}: [email] security must be none, starttls or ssl")
    for key in ("host", "user"):
        if key in table and (not isinstance(table[key], str) or not table[key].strip()
                             or any(ch in table[key] for ch in "\r\n")):
            raise ConfigError(f"{origin}: [email] {key} = {table[key]!r} must be one line of text")
    if "port" in table:
        port = table["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError(f"{origin}: [email] port = {port!r} must be a number from 1 to "
                              "65535")
    if "from" in table:
        out["from"] = check_address(table["from"], f"{origin}: [email] from")
    if "to" in table:
        to = [table["to"]] if isinstance(table["to"], str) else table["to"]
        if not isinstance(to, list):
            raise ConfigError(f'{origin}: [email] to must be a list: to = ["soc@example.com"]')
        out["to"] = [check_address(a, f"{origin}: [email] to") for a in to]
    tenants = table.get("tenants", {})
    if not isinstance(tenants, dict) or not all(
            isinstance(v, list) and all(isinstance(a, str) for a in v) for v in tenants.values()):
        raise ConfigError(f"{origin}: [email.tenants] maps a tenant to a list of addresses, "
                          'e.g. contoso = ["it@contoso.com"]')
    out["tenants"] = {k: [check_address(a, f"{origin}: [email.tenants] {k}") for a in v]
                      for k, v in tenants.items()}
    return out


def detect_markdown() -> str:
    """The [detect] thresholds as a Markdown table (kept in the README by a test)."""
    rows = ["| key | default | range | why |", "|---|---|---|---|"]
    for f in fields(DetectSettings):
        lo, hi = DETECT_RANGES[f.name]
        rows.append(f"| `{f.name}` | {f.default} | {lo}–{hi} | {f.metadata['reason']} |")
    return "\n".join(rows) + "\n"


# The whole-number settings outside [detect] and the values they may take
_RANGES = {"timeout_seconds": (1, 86_400), "max_rows": (1, 100_000_000),
           "flush_rows": (1000, 100_000_000)}


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
    if s.engine not in ENGINES:
        raise ConfigError(f"engine = {s.engine!r} is not one of {', '.join(ENGINES)}")
    for name, (lo, hi) in _RANGES.items():
        if not lo <= getattr(s, name) <= hi:
            raise ConfigError(f"{name} = {getattr(s, name)} is out of range: use {lo} to {hi}")
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", s.memory_limit.strip()):
        raise ConfigError(f"memory_limit = {s.memory_limit!r}: give a size like 1200MB or 4GB")
    return s


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: settings file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a settings file; point --config or "
                          "RELAYWATCH_CONFIG at relaywatch.toml itself") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the settings file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the settings "
                          "file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def load(config: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the file and environment (flags are applied by the caller)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    path = config or (Path(env["RELAYWATCH_CONFIG"]) if env.get("RELAYWATCH_CONFIG") else None)
    if path is None and Path("relaywatch.toml").is_file():
        path = Path("relaywatch.toml")
    if path is not None:
        data = _read_toml(path)
        for section, table in data.items():
            if section not in (*_TOML, "detect", "email"):
                raise ConfigError(
                    f"{path}: unknown section [{section}]; known: "
                    f"{', '.join(sorted([*_TOML, 'detect', 'email']))}"
                )
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: {section} = {table!r} must be a section: "
                                  f"[{section}] on a line of its own, then key = value lines")
            if section == "detect":
                values["detect"] = _detect(table, str(path))
                source["detect"] = str(path)
                continue
            if section == "email":
                values["email"] = _email(table, str(path))
                continue
            for key, value in table.items():
                if key not in _TOML[section]:
                    raise ConfigError(f"{path}: unknown key {key!r} in [{section}]; known: "
                                      f"{', '.join(_TOML[section])}")
                name = f"spark_{key}" if section == "spark" else key
                values[name] = _coerce(name, value, f"{path}: [{section}]")
                source[name] = str(path)
    for key, var in _ENV.items():
        if env.get(var):
            values[key] = _coerce(key, env[var], var)
            source[key] = var
    return _validated(Settings(**values, source=source))
