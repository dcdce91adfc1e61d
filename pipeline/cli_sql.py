"""The analysts' commands: `relaywatch sql`, `relaywatch query ...` and `relaywatch catalog`.

Thin like cli.py: options in, pipeline.sql and pipeline.output do the work.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline import output
from pipeline.cli import LAKE_OPTION, cli
from pipeline.errors import ConfigError
from pipeline.lake import Lake

_FORMAT = click.option("--format", "fmt", type=click.Choice(output.FORMATS),
                       help="Output format (default: table on a terminal, csv otherwise).")
_OUTPUT = click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
                       help="Write to FILE (atomically) instead of stdout.")
_LAKE = LAKE_OPTION


def _limits(fn):  # type: ignore[no-untyped-def]
    """--timeout, --memory-limit and --max-rows, defaulting to [sql] in the settings."""
    for option in reversed((
            click.option("--timeout", "timeout_seconds", type=int, metavar="SECONDS",
                         help="Stop the query after this long (default: [sql] "
                              "timeout_seconds, 60)."),
            click.option("--memory-limit", metavar="SIZE",
                         help="DuckDB's memory for the query, e.g. 4GB (default: [sql] "
                              "memory_limit, 1200MB)."),
            click.option("--max-rows", type=int, metavar="N",
                         help="Refuse results longer than this (default: [sql] max_rows, "
                              "1000000)."))):
        fn = option(fn)
    return fn


def _emit(df, fmt: str | None, out: Path | None) -> None:  # type: ignore[no-untyped-def]
    chosen = fmt or ("table" if sys.stdout.isatty() and out is None else "csv")
    output.write(df, chosen, out, sys.stdout)


def _session(obj: dict, lake: Path | None, **limits: object):  # type: ignore[no-untyped-def]
    """A session on the lake and the limits its queries run under (flags over settings)."""
    from pipeline import guard, sql as sql_mod

    s = obj["settings"].with_overrides(lake=lake, **limits)
    session = sql_mod.Session(Lake(s.lake).must_exist().root, memory_limit=s.memory_limit)
    return session, guard.Limits(float(s.timeout_seconds), s.max_rows)


@cli.command("sql")
@click.argument("statement")
@_LAKE
@_FORMAT
@_OUTPUT
@_limits
@click.pass_obj
def sql_command(obj: dict, statement: str, lake: Path | None, fmt: str | None,
                output: Path | None, **limits) -> None:  # type: ignore[no-untyped-def]
    """Run one read-only SQL statement against the lake's views.

    Views: messages, accepted_domains, inbound_connectors, outbound_connectors,
    audit_events, rejects, ingest_log, findings, verdicts, outbound_mail, outbound_volumes,
    mail_rollup and ndr_rollup (what the detections read; docs/data-dictionary.md has every
    view); the table macro outbound_hours(since, until) gives outbound volumes per tenant,
    hour, connector and sender for any period. The session reads the lake and nothing else: no
    other files, no network, no writes.

    \b
    Examples:
      relaywatch sql "SELECT tenant, count(*) FROM messages GROUP BY ALL"
      relaywatch sql "FROM outbound_hours('2026-11-20', '2026-11-28') ORDER BY recipients DESC"
      relaywatch sql "FROM verdicts WHERE recommendation = 'block'" --format json
      relaywatch sql "FROM messages WHERE tenant = 'contoso'" -o contoso.parquet --format parquet
    """
    session, limits_ = _session(obj, lake, **limits)
    with session:
        _emit(session.ad_hoc(statement, limits_), fmt, output)


@cli.group()
def query() -> None:
    """The named queries in queries/: list them, show one, run one with parameters.

    \b
    Examples:
      relaywatch query list
      relaywatch query show spike_drilldown
      relaywatch query run spike_drilldown -p tenant litware -p hour 2026-11-23T09:00 -p limit 10
    """


@query.command("list")
def query_list() -> None:
    """List every named query with its description and parameters.

    \b
    Example:
      relaywatch query list
    """
    from pipeline import sql as sql_mod

    for q in sql_mod.queries().values():
        params = " ".join(f"${p}" for p in q.params) or "(no parameters)"
        click.echo(f"{q.name}\t{q.description}\t{params}")


@query.command("show")
@click.argument("name")
def query_show(name: str) -> None:
    """Print a named query's SQL (header comment included).

    \b
    Example:
      relaywatch query show unprovisioned_senders
    """
    from pipeline import sql as sql_mod

    click.echo(sql_mod.named(name).sql, nl=False)


@query.command("run")
@click.argument("name")
@click.option("--param", "-p", "params", nargs=2, multiple=True, metavar="KEY VALUE",
              help="A parameter, e.g. -p tenant contoso (repeatable). [detect] thresholds "
                   "default to the settings; as_of defaults to now.")
@_LAKE
@_FORMAT
@_OUTPUT
@_limits
@click.pass_obj
def query_run(obj: dict, name: str, params: tuple[tuple[str, str], ...], lake: Path | None,
              fmt: str | None, output: Path | None,
              **limits) -> None:  # type: ignore[no-untyped-def]
    """Run a named query with parameters bound by DuckDB (never spliced into the SQL).

    \b
    Examples:
      relaywatch query run unprovisioned_senders -p tenant contoso -p as_of 2026-11-28
      relaywatch query run message_by_id -p message_id '<ABC@contoso.com>' --format json
    """
    from dataclasses import asdict
    from datetime import datetime, timezone

    from pipeline import sql as sql_mod

    query = sql_mod.named(name)
    given = {k: sql_mod.parse_value(v) for k, v in params}
    extra = sorted(set(given) - set(query.params))
    if extra:
        raise ConfigError(f"query {name} has no parameter {', '.join(extra)}; it takes "
                          + (", ".join(query.params) or "none"))
    defaults = {"as_of": datetime.now(timezone.utc), **asdict(obj["settings"].detect)}
    session, limits_ = _session(obj, lake, **limits)
    with session:
        _emit(session.run(name, {**defaults, **given}, limits_), fmt, output)


@cli.command()
@_LAKE
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Database file to write (default: <lake>/lake.duckdb).")
@click.pass_obj
def catalog(obj: dict, lake: Path | None, out: Path | None) -> None:
    """Write a DuckDB database whose views read the lake, for any DuckDB client.

    Paths in the views are relative to the database file's folder: open it from there
    (cd lake && duckdb lake.duckdb), or SET file_search_path to that folder. Rerun after
    new tables appear in the lake.

    \b
    Examples:
      relaywatch catalog --lake lake/
      relaywatch catalog --lake lake/ --out lake/lake.duckdb && cd lake && duckdb lake.duckdb
    """
    from pipeline import sql as sql_mod

    s = obj["settings"].with_overrides(lake=lake)
    Lake(s.lake).must_exist()
    written = sql_mod.catalog(s.lake, out or s.lake / "lake.duckdb")
    click.echo(str(written))
