"""DuckDB over the lake: one connection with a view per table, and the named queries.

Every lake table becomes a view of the same name (an empty, typed view when the lake has no
files for it yet), plus the derived views in `queries/views/`. Queries in `queries/` read
views only, take DuckDB named parameters bound by the engine, and are listed with their
parameters by DuckDB's own parser. Sessions are sandboxed by default: after the views exist,
DuckDB may read the lake folder and nothing else, and the setting is locked.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from polars._typing import PolarsDataType

from pipeline import addresses, guard, schema
from pipeline.errors import ConfigError, LakeError
from pipeline.lake import TMP_PREFIX, check_root
from pipeline.settings import DetectSettings

log = logging.getLogger("relaywatch")
# queries/ at the top of the repository, reached through pipeline/queries (a link there,
# the files themselves in a wheel, where they are package data)
QUERIES = Path(__file__).resolve().parent / "queries"
# The message columns the detections read; only these, and only the lookback's days, are
# loaded (once) for a detect run. The detections identify a message by
# coalesce(network_message_id, message_id), so the pinned copy keeps just that (in
# network_message_id): the long Message-ID strings would double its memory.
PINNED_COLUMNS = ("tenant", "date", "received_utc", "direction", "sender_address",
                  "sender_domain", "envelope_domain", "status", "ndr_code", "spam_verdict",
                  "connector", "client_ip", "network_message_id", "message_id", "source_format",
                  "recipient_domain")
_PINNED_AS = {"network_message_id": "coalesce(network_message_id, message_id)",
              "message_id": "CAST(NULL AS VARCHAR)"}
_PARTITION_TYPES = {"tenant": "VARCHAR", "date": "DATE", "as_of": "DATE"}

# Small helpers the queries share (ip_in_range and range_prefix are pipeline.addresses').
MACROS = r"""
CREATE OR REPLACE MACRO infer_min_counterparties() AS  -- a session sets it from [detect]
    coalesce(getvariable('infer_min_counterparties'), {infer_min_counterparties});
CREATE OR REPLACE MACRO states_direction(source_format) AS  -- the export says (directionality)
    source_format IN ('historical_search_summary', 'historical_search_extended',
                      'exchange_tracking_log');
CREATE OR REPLACE MACRO lookback_start(as_of, window_days, baseline_days) AS
    as_of::TIMESTAMPTZ - to_days((window_days + baseline_days)::INTEGER);
CREATE OR REPLACE MACRO detection_bounds(as_of, window_days, baseline_days) AS TABLE
    SELECT as_of::TIMESTAMPTZ AS as_of,
           as_of::TIMESTAMPTZ - to_days(window_days::INTEGER) AS window_start,
           lookback_start(as_of, window_days, baseline_days) AS baseline_start;
CREATE OR REPLACE MACRO in_period(day, ts, since, until) AS
    day >= CAST(since::TIMESTAMPTZ AS DATE) AND day <= CAST(until::TIMESTAMPTZ AS DATE)
    AND ts >= since::TIMESTAMPTZ AND ts < until::TIMESTAMPTZ;
CREATE OR REPLACE MACRO message_count(network_message_id, message_id) AS
    count(DISTINCT coalesce(network_message_id, message_id))
    + (count(*) FILTER (WHERE network_message_id IS NULL AND message_id IS NULL) > 0)::BIGINT;
CREATE OR REPLACE MACRO keys_count(message_keys, idless) AS  -- message_count over rollup rows
    length(list_distinct(flatten(list(message_keys))))
    + (coalesce(sum(idless), 0) > 0)::BIGINT;
CREATE OR REPLACE MACRO is_bounce(ndr_code) AS  -- the address does not exist (bought lists)
    ndr_code IN ('5.1.1', '5.1.10', '5.4.1', '5.1.0');
CREATE OR REPLACE MACRO is_spam(status, spam_verdict, ndr_code) AS
    status IN ('filtered_as_spam', 'quarantined') OR coalesce(spam_verdict, false)
    OR ndr_code IN ('5.7.750', '5.7.705', '5.7.711', '5.1.8', '5.7.708', '5.7.64');
CREATE OR REPLACE MACRO is_public_suffix(d) AS (  -- `*.<it>` covers the internet (PSL)
    d IS NULL OR d IN ('', '*') OR NOT contains(d, '.')  -- a bare TLD, listed or not
    OR ((lower(d) IN (SELECT suffix FROM public_suffixes WHERE kind <> 'exception')
         OR regexp_replace(lower(d), '^[^.]+\.', '')
            IN (SELECT suffix FROM public_suffixes WHERE kind = 'wildcard'))
        AND lower(d) NOT IN (SELECT suffix FROM public_suffixes WHERE kind = 'exception')));
CREATE OR REPLACE MACRO covered(first_since, ended, spans, ts) AS  -- in a known_domains span
    coalesce(CASE WHEN NOT ended THEN ts >= first_since
                  ELSE list_bool_or(list_transform(spans, lambda x:
                           ts >= x.span_from AND (x.span_to IS NULL OR ts < x.span_to))) END,
             false);
"""

# [detect] settings the derived views of queries/views/ read with getvariable()
VIEW_THRESHOLDS = ("infer_min_counterparties",)

# The lake's own views, by their full name: a session's temporary views of the same names
# (pinned or cached rows) stand in for them, and "main.x" would find those first.
BASE = "memory.main"

# macros over the derived views, made once those exist: whether a domain was the tenant's own
# at a time (known_domains); outbound volumes per hour for any period (mail_rollup)
VIEW_MACROS = r"""
CREATE OR REPLACE MACRO is_provisioned(t, dom, ts) AS (
    dom IS NULL OR dom = t || '.onmicrosoft.com' OR EXISTS (
        SELECT 1 FROM known_domains AS k
        WHERE k.tenant = t AND ts >= k.covered_since
          AND (k.covered_until IS NULL OR ts < k.covered_until)
          AND (dom = k.domain_name
               OR (k.match_subdomains AND ends_with(dom, '.' || k.domain_name)))));
CREATE OR REPLACE MACRO outbound_hours(since, until) AS TABLE
    SELECT tenant, date_trunc('hour', received_utc) AS hour, connector, sender_address,
           sum(recipients)::BIGINT AS recipients,
           keys_count(message_keys, idless_recipients) AS messages,
           sum(spam_recipients)::BIGINT AS spam_recipients,
           sum(bounce_recipients)::BIGINT AS bounce_recipients
    FROM mail_rollup
    WHERE direction = 'outbound' AND in_period(date, received_utc, since, until)
    GROUP BY ALL;
"""


def duck_type(dtype: PolarsDataType) -> str:
    dtype = schema.text_type(dtype)
    if dtype == schema.UTC_TS:
        return "TIMESTAMPTZ"
    if dtype == schema.STR_LIST:
        return "VARCHAR[]"
    if dtype == schema.INT_LIST:
        return "BIGINT[]"
    return {pl.String: "VARCHAR", pl.Int64: "BIGINT", pl.Boolean: "BOOLEAN",
            pl.Date: "DATE", pl.Float64: "DOUBLE"}[dtype]  # type: ignore[index]


def table_glob(table: schema.Table) -> str:
    return re.sub(r"<[^>]+>", "*", table.layout)


def source(table: schema.Table, root: str, files: list[str] | None = None) -> str:
    """read_parquet(...) over a table's files (`files`, else every file under `root`). Only
    the small tables pay for union_by_name (reading every file's footer); message
    partitions all come from one writer."""
    if files is None:
        paths = "'" + f"{root}/{table_glob(table)}".replace("'", "''") + "'"
    else:
        paths = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    keys = {k: v for k, v in _PARTITION_TYPES.items() if f"{k}=" in table.layout}
    hive = ", ".join(f"'{k}': '{v}'" for k, v in keys.items())
    options = f", hive_partitioning = true, hive_types = {{{hive}}}" if keys else ""
    if files is not None:  # an explicit list: say which file each row came from
        options += ", filename = true"
    one_writer = table is schema.MESSAGES or table in schema.ROLLUPS
    union = "false" if one_writer and files is None else "true"
    return f"read_parquet({paths}, union_by_name = {union}{options})"


def present_columns(con: duckdb.DuckDBPyConnection, source: str) -> set[str]:
    """The columns the files behind a read_parquet(...) source have."""
    return {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}


def view_sql(table: schema.Table, root: str, present: set[str] | None,
             files: list[str] | None = None) -> str:
    """The SELECT of one table's view; `root` is embedded as a SQL string literal.

    `present` holds the columns the files have (None: no files yet). Columns the files
    lack, e.g. added by a newer relaywatch, read as typed NULLs, so an older lake stays
    readable."""
    cols = columns_sql(table, present or set())
    if present is None:
        return f"SELECT {cols} WHERE false"
    return f"SELECT {cols} FROM {source(table, root, files)}"


def columns_sql(table: schema.Table, present: set[str]) -> str:
    """The table's columns in order, a typed NULL for each the files do not have."""
    return ", ".join(f'"{c.name}"' if c.name in present
                     else f'CAST(NULL AS {duck_type(c.dtype)}) AS "{c.name}"'
                     for c in table.columns)


def table_view(con: duckdb.DuckDBPyConnection, lake: Path, root: str,
               table: schema.Table, placeholder: bool = False) -> None:
    """The table's view over its files (a typed empty view when it has none, or when it is
    a `placeholder` that a session's temporary view of the same name will stand in for)."""
    present = None
    if not placeholder and any(lake.glob(table_glob(table))):
        present = present_columns(con, source(table, root))
    con.execute(f'CREATE OR REPLACE VIEW "{table.name}" AS {view_sql(table, root, present)}')


def create_views(con: duckdb.DuckDBPyConnection, lake: Path, root: str,
                 queries_dir: Path, tables: Collection[str] | None = None,
                 placeholders: Collection[str] = ()) -> None:
    """A view per lake table (reading `root`, as written in the SQL), the macros, and the
    derived views of queries/views/; with `tables`, only those tables' views (opening a
    view reads the footers of its files, which for thousands of files is not free)."""
    for table in schema.TABLES.values():
        if tables is None or table.name in tables:
            table_view(con, lake, root, table, table.name in placeholders)
    addresses.register(con)
    con.execute(MACROS.replace("{infer_min_counterparties}",
                               str(DetectSettings().infer_min_counterparties)))
    if tables is not None:
        return
    for path in sorted((queries_dir / "views").glob("*.sql")):
        con.execute(f'CREATE VIEW "{path.stem}" AS {path.read_text(encoding="utf-8")}')
    con.execute(VIEW_MACROS)
    for name in MACRO_QUERIES:
        con.execute(query_macro(name, queries_dir))


# Queries other queries read as table macros, `name(as_of_ := ..., tenant_ := ...)`: the
# file's named parameters become the macro's, each NULL unless given (onprem_injection
# reads onprem_relay_settings)
MACRO_QUERIES = ("onprem_relay_settings",)


def query_macro(name: str, queries_dir: Path) -> str:
    query = named(name, queries_dir)
    body = re.sub(r"\$(\w+)::", r"\1_::", query.sql.strip().rstrip(";"))
    params = ", ".join(f"{p}_ := NULL" for p in query.params)
    return f'CREATE OR REPLACE MACRO "{name}"({params}) AS TABLE {body}'


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


def _one_statement(text: str, where: str) -> duckdb.Statement:
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise ConfigError(f"{where}: not valid DuckDB SQL ({exc})") from None
    if len(statements) != 1:
        raise ConfigError(f"{where}: give one statement, not {len(statements)}")
    return statements[0]


def load_query(path: Path) -> Query:
    text = path.read_text(encoding="utf-8")
    header = _header(text)
    if not header or not header[0]:
        raise ConfigError(f"{path}:1: a named query starts with a '-- description' comment line")
    statement = _one_statement(text, str(path))
    example = next((h.split(":", 1)[1].strip() for h in header
                    if h.lower().startswith("example:")), "")
    body = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("--"))
    untyped = sorted(p for p in statement.named_parameters
                     if re.search(rf"\${p}\b(?!::)", body))
    if untyped:  # a value's type comes from the query, never from how the value looks
        raise ConfigError(f"{path}: parameter(s) {', '.join(untyped)} used without a type; "
                          "write each use as $name::TYPE")
    return Query(path.stem, path, header[0], example,
                 tuple(sorted(statement.named_parameters)), text)


def parse_value(text: str) -> str | None:
    """A parameter value typed on a command line or in a header example: `null` is NULL,
    anything else is bound as text, which DuckDB casts to the type the query declares
    (`$name::TYPE`): `-p tenant 007` stays '007', `-p limit 10` becomes an INTEGER."""
    return None if text.lower() == "null" else text


def example_params(query: Query) -> dict[str, Any]:
    """The parameters of the header's `Example:` line (`name=value` pairs)."""
    return {k: parse_value(v) for k, v in (p.split("=", 1) for p in query.example.split())}


def named(name: str, folder: Path = QUERIES) -> Query:
    """queries/<name>.sql, or a ConfigError; the name is checked before it becomes a path."""
    path = folder / f"{name}.sql"
    if not re.fullmatch(r"[a-z0-9_]+", name) or not path.is_file():
        raise ConfigError(f"no query named {name!r}; `relaywatch query list` shows them")
    return load_query(path)


def queries(folder: Path = QUERIES) -> dict[str, Query]:
    return {p.stem: load_query(p) for p in sorted(folder.glob("*.sql"))}


_READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def read_only(text: str) -> str:
    """The one read-only statement in `text` (SELECT, WITH, FROM, DESCRIBE, SUMMARIZE, SHOW,
    EXPLAIN), or a ConfigError saying why not."""
    kind = _one_statement(text, "relaywatch sql").type
    if kind not in _READ_ONLY:
        name = str(kind).rsplit(".", 1)[-1]
        raise ConfigError(f"relaywatch sql only reads: {name} statements are refused "
                          "(to save results use --output FILE --format csv|json|parquet)")
    return text


def rollup_sql(table: schema.Table) -> str:
    """The SELECT that rolls `messages` up into a rollup table (queries/rollups/<name>.sql:
    mail_rollup's is mail.sql), for pipeline.rollups' build and a session's live rollups."""
    return (QUERIES / "rollups" / f"{table.name.split('_')[0]}.sql").read_text(encoding="utf-8")


def pinned_select(columns: tuple[str, ...]) -> str:
    """The select list that reads `columns` of messages the way detection keeps them."""
    return ", ".join(f'{_PINNED_AS.get(c, chr(34) + c + chr(34))} AS "{c}"' for c in columns)


SPILL_PREFIX = "relaywatch-duckdb-"


def _sweep_spills() -> None:
    """Remove the spill folders of sessions whose process is gone (killed runs): only this
    user's, only relaywatch's (by name), only of processes that no longer exist."""
    base = Path(tempfile.gettempdir())
    for folder in base.glob(f"{SPILL_PREFIX}*"):
        pid = folder.name[len(SPILL_PREFIX):].split("-", 1)[0]
        try:
            if not pid.isdigit() or folder.is_symlink() or folder.lstat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


class Session:
    """A DuckDB connection over one lake."""

    def __init__(self, lake: Path, *, sandbox: bool = True, queries_dir: Path = QUERIES,
                 memory_limit: str = "1200MB", tables: Collection[str] | None = None,
                 placeholders: Collection[str] = ()) -> None:
        self.lake = check_root(Path(lake).resolve())
        self.queries_dir = queries_dir
        self.memory_limit = memory_limit
        # DuckDB's share of the memory; past it, work spills to a private temp folder,
        # named with this process's id so that the next session removes it if we are killed
        _sweep_spills()
        self._spill = tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-")
        self.con = duckdb.connect(":memory:", config={"memory_limit": memory_limit,
                                                      "temp_directory": self._spill})
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET enable_progress_bar = false")  # logs go to stderr, not bars
        self.set_thresholds(DetectSettings())
        self._pinned: tuple[date, bool, int] | None = None
        root = str(self.lake)
        # `placeholders`: tables whose views stay empty (without reading their files' footers)
        # because the caller's temporary views of the same names stand in for them
        create_views(self.con, self.lake, root, queries_dir, tables, placeholders=placeholders)
        if sandbox:
            self.con.execute("SET allowed_directories = [$root]", {"root": root + "/"})
            self.con.execute("SET enable_external_access = false")
            self.con.execute("SET lock_configuration = true")

    def set_thresholds(self, detect: DetectSettings) -> None:
        """The [detect] values the derived views read (queries take theirs as parameters)."""
        for name in VIEW_THRESHOLDS:
            self.con.execute(f"SET VARIABLE {name} = $v", {"v": getattr(detect, name)})

    def refresh(self, *names: str) -> None:
        """See files written since the session began (detect's results, for the report)."""
        for name in names:
            table_view(self.con, self.lake, str(self.lake), schema.TABLES[name])

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self._spill, ignore_errors=True)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pin_lookback(self, since: date, stored: bool = True) -> int:
        """Read the lookback from `since` into memory once, and let this session's
        `mail_rollup` and `ndr_rollup` mean it: the detections then scan memory instead of
        reopening thousands of Parquet partitions each. Returns the rollup rows pinned.

        `stored`: the lake's rollups (pipeline.rollups builds them), except for tenants
        without accepted domains, whose own domains are inferred from the lookback's rows:
        theirs are rolled up now from their raw rows. Without `stored`, every tenant's are
        (detections over raw rows, which tests compare with the stored ones). `messages`
        then means the raw rows rolled up here (those tenants' or, without `stored`, all),
        which is what known_domains infers from."""
        if self._pinned is not None and self._pinned[:2] == (since, stored):
            return self._pinned[2]  # already loaded by an earlier stage of this run
        listed = f"tenant IN (SELECT tenant FROM {BASE}.accepted_domains)"
        live = f"AND NOT {listed}" if stored else ""
        rollup = {t.name: rollup_sql(t) for t in schema.ROLLUPS}
        try:
            self._pin("accepted_domains", f"SELECT * FROM {BASE}.accepted_domains")
            self._pin("messages", f"SELECT {pinned_select(PINNED_COLUMNS)} FROM {BASE}.messages "
                                  f"WHERE date >= $since {live}", {"since": since})
            if stored:
                self._pin("mail_rollup", f"SELECT * FROM {BASE}.mail_rollup WHERE date >= $since "
                                         f"AND {listed} UNION ALL "
                                         f"SELECT * FROM ({rollup['mail_rollup']})",
                          {"since": since})
                self._pin("ndr_rollup", f"SELECT * FROM {BASE}.ndr_rollup WHERE date >= $since",
                          {"since": since})
            else:
                for name, text in rollup.items():
                    self._pin(name, text)
            count = self.con.sql("SELECT count(*) FROM _pinned_mail_rollup").fetchall()[0][0]
        except duckdb.Error as exc:
            raise LakeError(f"{self.lake}: cannot read the lookback ({exc})") from None
        self._pinned = (since, stored, count)
        return count

    def _pin(self, view: str, select: str, params: dict[str, Any] | None = None) -> None:
        """Materialise `select` in memory and let `view` mean it in this session."""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE _pinned_{view} AS {select}", params)
        self.con.execute(f'CREATE OR REPLACE TEMP VIEW "{view}" AS SELECT * FROM _pinned_{view}')

    def frame(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        try:
            return self.con.sql(sql, params=params or None).pl()
        except duckdb.Error as exc:
            raise LakeError(f"query failed: {exc}") from None

    def run(self, name: str, params: dict[str, Any],
            limits: guard.Limits | None = None) -> pl.DataFrame:
        """Run queries/<name>.sql with the parameters it names (others in `params` are
        ignored, so one dict of settings can serve every query); an analyst's run goes
        under `limits`."""
        query = named(name, self.queries_dir)
        missing = sorted(set(query.params) - set(params))
        if missing:
            raise ConfigError(f"query {name}: missing parameter(s) "
                              + ", ".join(f"-p {m} VALUE" for m in missing))
        bound = {k: params[k] for k in query.params}
        if limits is not None:
            return self.limited(query.sql, bound, limits, name)
        started = time.monotonic()
        try:
            out = self.con.sql(query.sql, params=bound or None).pl()
            log.debug("query %s: %d rows, %.2f s", name, out.height, time.monotonic() - started)
            return out
        except duckdb.ConversionException as exc:
            raise _wrong_type(name, exc) from None
        except duckdb.Error as exc:
            raise LakeError(f"{query.path}: {exc}") from None

    def ad_hoc(self, text: str, limits: guard.Limits | None = None) -> pl.DataFrame:
        """An analyst's statement, read-only, under limits (the defaults unless given)."""
        read_only(text)
        return self.limited(guard.printable(self.con, text), None, limits or guard.Limits())

    def limited(self, text: str, params: dict[str, Any] | None, limits: guard.Limits,
                name: str | None = None) -> pl.DataFrame:
        try:
            return guard.run(self.con, text, params, limits)
        except duckdb.OutOfMemoryException:
            raise guard.QueryLimit(f"the query needed more than the {self.memory_limit} memory "
                                   "limit; narrow it, or raise --memory-limit ([sql] "
                                   "memory_limit)") from None
        except duckdb.ConversionException as exc:
            if name:
                raise _wrong_type(name, exc) from None
            raise ConfigError(f"a value has the wrong type ({_first(exc)})") from None
        except duckdb.Error as exc:
            raise ConfigError(f"query failed: {exc}") from None


def catalog(lake: Path, out: Path) -> Path:
    """A DuckDB database file with a view per lake table (paths relative to the file's
    folder, so lake and catalog move together), the macros and the derived views."""
    lake, out = Path(lake).resolve(), Path(out).resolve()
    root = os.path.relpath(lake, out.parent)
    tmp = out.with_name(f"{TMP_PREFIX}{os.getpid()}-{out.name}")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        con.execute("SET file_search_path = $p", {"p": str(out.parent)})
        create_views(con, lake, root, QUERIES)
        con.execute("CHECKPOINT")
    except duckdb.Error as exc:
        con.close()
        tmp.unlink(missing_ok=True)
        raise LakeError(f"{out}: cannot write the catalog ({exc})") from None
    con.close()
    os.replace(tmp, out)
    return out


def _first(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300]


def _wrong_type(name: str, exc: Exception) -> ConfigError:
    return ConfigError(f"query {name}: a parameter has the wrong type ({exc}); "
                       f"`relaywatch query show {name}` shows what each expects")
