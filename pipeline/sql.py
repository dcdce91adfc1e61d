"""DuckDB over the lake: one connection with a view per table, and the named queries.

Every lake table becomes a view of the same name (an empty, typed view when the lake has no
files for it yet), plus the derived views in `queries/views/`. Queries in `queries/` read
views only, take DuckDB named parameters bound by the engine, and are listed with their
parameters by DuckDB's own parser. Sessions are sandboxed by default: after the views exist,
DuckDB may read the lake folder and nothing else, and the setting is locked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from pipeline import schema
from pipeline.errors import ConfigError, LakeError

QUERIES = Path(__file__).resolve().parent.parent / "queries"
_PARTITION_TYPES = {"tenant": "VARCHAR", "date": "DATE", "as_of": "DATE"}

# Small helpers the queries share. IPv4 ranges are matched arithmetically so no extension
# (and no network, to download one) is needed; IPv6 addresses match only exactly.
MACROS = r"""
CREATE OR REPLACE MACRO ipv4_int(ip) AS CASE
    WHEN regexp_full_match(ip, '\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}') THEN
        (split_part(ip, '.', 1)::BIGINT << 24) + (split_part(ip, '.', 2)::BIGINT << 16)
        + (split_part(ip, '.', 3)::BIGINT << 8) + split_part(ip, '.', 4)::BIGINT END;
CREATE OR REPLACE MACRO ip_in_range(ip, rng) AS CASE
    WHEN ip IS NULL OR rng IS NULL THEN NULL
    WHEN ipv4_int(ip) IS NULL THEN lower(ip) = lower(split_part(rng, '/', 1))
    WHEN contains(rng, '/') THEN
        ipv4_int(ip) >> (32 - TRY_CAST(split_part(rng, '/', 2) AS INTEGER))
        = ipv4_int(split_part(rng, '/', 1)) >> (32 - TRY_CAST(split_part(rng, '/', 2) AS INTEGER))
    WHEN contains(rng, '-') THEN ipv4_int(ip) BETWEEN ipv4_int(trim(split_part(rng, '-', 1)))
                                              AND ipv4_int(trim(split_part(rng, '-', 2)))
    ELSE ipv4_int(ip) = ipv4_int(rng) END;
CREATE OR REPLACE MACRO range_prefix(rng) AS CASE
    WHEN contains(rng, '/') THEN TRY_CAST(split_part(rng, '/', 2) AS INTEGER)
    WHEN contains(rng, '-') THEN 32 - ceil(log2(ipv4_int(trim(split_part(rng, '-', 2)))
                                              - ipv4_int(trim(split_part(rng, '-', 1))) + 1))::INTEGER
    ELSE 32 END;
CREATE OR REPLACE MACRO is_provisioned(t, dom, ts) AS (
    dom IS NULL OR dom = t || '.onmicrosoft.com' OR EXISTS (
        SELECT 1 FROM accepted_domains a
        WHERE a.tenant = t
          AND (dom = a.domain_name OR (a.match_subdomains AND ends_with(dom, '.' || a.domain_name)))
          AND (a.when_created_utc IS NULL OR a.when_created_utc <= ts)));
CREATE OR REPLACE MACRO detection_bounds(as_of, window_days, baseline_days) AS TABLE
    SELECT as_of::TIMESTAMPTZ AS as_of,
           as_of::TIMESTAMPTZ - to_days(window_days::INTEGER) AS window_start,
           as_of::TIMESTAMPTZ - to_days((window_days + baseline_days)::INTEGER) AS baseline_start;
CREATE OR REPLACE MACRO is_spam(status, spam_verdict, ndr_code) AS
    status IN ('filtered_as_spam', 'quarantined') OR coalesce(spam_verdict, false)
    OR ndr_code IN ('5.7.750', '5.7.705', '5.7.711', '5.1.8', '5.7.708', '5.7.64');
"""


def duck_type(dtype: pl.DataType) -> str:
    if dtype == schema.UTC_TS:
        return "TIMESTAMPTZ"
    if dtype == schema.STR_LIST:
        return "VARCHAR[]"
    return {pl.String: "VARCHAR", pl.Int64: "BIGINT", pl.Boolean: "BOOLEAN",
            pl.Date: "DATE", pl.Float64: "DOUBLE"}[dtype]  # type: ignore[index]


def table_glob(table: schema.Table) -> str:
    return re.sub(r"<[^>]+>", "*", table.layout)


def view_sql(table: schema.Table, root: str, has_files: bool) -> str:
    """The SELECT of one table's view; `root` is embedded as a SQL string literal."""
    cols = ", ".join(f'"{c.name}"' for c in table.columns)
    if not has_files:
        typed = ", ".join(f'CAST(NULL AS {duck_type(c.dtype)}) AS "{c.name}"'
                          for c in table.columns)
        return f"SELECT {typed} WHERE false"
    path = f"{root}/{table_glob(table)}".replace("'", "''")
    keys = {k: v for k, v in _PARTITION_TYPES.items() if f"{k}=" in table.layout}
    hive = ", ".join(f"'{k}': '{v}'" for k, v in keys.items())
    options = f", hive_partitioning = true, hive_types = {{{hive}}}" if keys else ""
    return (f"SELECT {cols} FROM read_parquet('{path}', union_by_name = true{options})")


@dataclass(frozen=True)
class Query:
    """A named query: one statement in queries/<name>.sql with a header comment."""

    name: str
    path: Path
    description: str
    example: str
    params: tuple[str, ...]
    sql: str


def _header(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:].strip())
    return lines


def load_query(path: Path) -> Query:
    text = path.read_text(encoding="utf-8")
    header = _header(text)
    if not header or not header[0]:
        raise ConfigError(f"{path}:1: a named query starts with a '-- description' comment line")
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise ConfigError(f"{path}: not valid DuckDB SQL ({exc})") from None
    if len(statements) != 1:
        raise ConfigError(f"{path}: holds {len(statements)} statements; a named query holds one")
    example = next((h.split(":", 1)[1].strip() for h in header
                    if h.lower().startswith("example:")), "")
    return Query(path.stem, path, header[0], example,
                 tuple(sorted(statements[0].named_parameters)), text)


def parse_value(text: str) -> Any:
    """A parameter value typed on a command line or in a header example: integers and
    decimals become numbers, `null` becomes NULL, anything else stays text (DuckDB casts
    it where the query says `$name::TYPE`)."""
    if text.lower() == "null":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def example_params(query: Query) -> dict[str, Any]:
    """The parameters of the header's `Example:` line (`name=value` pairs)."""
    return {k: parse_value(v) for k, v in (p.split("=", 1) for p in query.example.split())}


def queries(folder: Path = QUERIES) -> dict[str, Query]:
    return {p.stem: load_query(p) for p in sorted(folder.glob("*.sql"))}


class Session:
    """A DuckDB connection over one lake."""

    def __init__(self, lake: Path, *, sandbox: bool = True, queries_dir: Path = QUERIES,
                 memory_limit: str = "2GB") -> None:
        self.lake = Path(lake).resolve()
        self.queries_dir = queries_dir
        self.con = duckdb.connect(":memory:", config={"memory_limit": memory_limit})
        self.con.execute("SET TimeZone = 'UTC'")
        root = str(self.lake)
        for table in schema.TABLES.values():
            has_files = any(self.lake.glob(table_glob(table)))
            self.con.execute(f'CREATE VIEW "{table.name}" AS {view_sql(table, root, has_files)}')
        self.con.execute(MACROS)
        for path in sorted((queries_dir / "views").glob("*.sql")):
            self.con.execute(f'CREATE VIEW "{path.stem}" AS {path.read_text(encoding="utf-8")}')
        if sandbox:
            self.con.execute("SET allowed_directories = [$root]", {"root": root + "/"})
            self.con.execute("SET enable_external_access = false")
            self.con.execute("SET lock_configuration = true")

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frame(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        try:
            return self.con.sql(sql, params=params or None).pl()
        except duckdb.Error as exc:
            raise LakeError(f"query failed: {exc}") from None

    def run(self, name: str, params: dict[str, Any]) -> pl.DataFrame:
        """Run queries/<name>.sql with exactly the parameters it names."""
        query = load_query(self.queries_dir / f"{name}.sql")
        missing = sorted(set(query.params) - set(params))
        if missing:
            raise ConfigError(f"query {name}: missing parameter(s) {', '.join(missing)}")
        bound = {k: _bindable(params[k]) for k in query.params}
        try:
            return self.con.sql(query.sql, params=bound or None).pl()
        except duckdb.Error as exc:
            raise LakeError(f"{query.path}: {exc}") from None


def _bindable(value: Any) -> Any:
    if isinstance(value, (date, datetime)) and not isinstance(value, datetime):
        return value.isoformat()
    return value
