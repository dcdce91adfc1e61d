"""The `relaywatch` command line: parse options, call the library, print. Nothing else.

Errors from the library are printed once, as `relaywatch: error: ...`, with exit codes
0 ok, 1 failed, 2 usage/config, 3 finished with rejected input, 130 interrupted.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import click

from pipeline import __version__, output, settings as settings_mod
from pipeline.errors import EXIT_INTERRUPTED, EXIT_PARTIAL, ConfigError, RelaywatchError

log = logging.getLogger("relaywatch")


class RelaywatchGroup(click.Group):
    """Turns library errors into one message and an exit code."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except RelaywatchError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"relaywatch: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("relaywatch: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


def _setup_logging(quiet: bool, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("relaywatch: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)


@click.group(cls=RelaywatchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="relaywatch")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
              help="Settings file (default: $RELAYWATCH_CONFIG or ./relaywatch.toml).")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr.")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, quiet: bool, debug: bool) -> None:
    """relaywatch: find Microsoft 365 tenants relaying spam through EOP.

    \b
    Example:
      relaywatch ingest inbox/ --lake lake/
    """
    ctx.obj = {"debug": debug, "quiet": quiet}
    _setup_logging(quiet, debug)
    try:
        ctx.obj["settings"] = settings_mod.load(config)
    except RelaywatchError as exc:
        click.echo(f"relaywatch: error: {exc}", err=True)
        ctx.exit(exc.exit_code)


@cli.command()
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=False, path_type=Path))
@click.option("--lake", type=click.Path(file_okay=False, path_type=Path),
              help="Lake folder (default: lake, or [paths] lake / $RELAYWATCH_LAKE).")
@click.option("--tenant", help="Tenant slug for loose files or a single tenant's folder.")
@click.option("--date-order", type=click.Choice(settings_mod.DATE_ORDERS),
              help="Day/month order of culture-formatted dates (default: auto, from the file).")
@click.option("--headerless-msgtrk", type=click.Choice(settings_mod.MSGTRK_FIELD_SETS),
              help="Field set for tracking-log rows that lack their #Fields header.")
@click.pass_obj
def ingest(obj: dict, paths: tuple[Path, ...], lake: Path | None, tenant: str | None,
           date_order: str | None, headerless_msgtrk: str | None) -> None:
    """Ingest export files or an inbox folder (<inbox>/<tenant>/<files>) into the lake.

    Formats are recognised from the content, not the file name. Files already ingested
    (same content hash) are skipped; unreadable files are copied to <lake>/rejected/ with a
    .reason file, and the others go on. Exit code 3 means some files were rejected.

    \b
    Examples:
      relaywatch ingest inbox/ --lake lake/
      relaywatch ingest trace.csv --tenant contoso --date-order dmy
    """
    from pipeline import ingest as ingest_mod

    s = obj["settings"].with_overrides(lake=lake, date_order=date_order,
                                       headerless_msgtrk=headerless_msgtrk)
    show_bar = sys.stderr.isatty() and not obj["quiet"]
    total = ingest_mod.total_bytes(paths) if show_bar else 0
    if show_bar and total > 20_000_000:
        with click.progressbar(length=total, label="ingesting", file=sys.stderr) as bar:
            report = ingest_mod.ingest(paths, s, tenant, progress=bar.update)
    else:
        report = ingest_mod.ingest(paths, s, tenant)
    for f in report.files:
        (log.warning if f.status == "rejected" else log.info)("ingest: %s", f.summary())
    ingested = report.count("ingested")
    rows = sum(f.rows for f in report.files)
    log.info("ingest: %d files ingested (%s rows), %d skipped as already ingested, "
             "%d rejected, %s rejected rows; lake: %s", ingested, f"{rows:,}",
             report.count("skipped"), report.count("rejected"), f"{report.rejected_rows:,}",
             s.lake)
    if report.count("rejected"):
        sys.exit(EXIT_PARTIAL)


@cli.command()
@click.option("--lake", type=click.Path(file_okay=False, path_type=Path),
              help="Lake folder (default: lake, or [paths] lake / $RELAYWATCH_LAKE).")
@click.option("--as-of", "as_of", metavar="DATE",
              help="Judge the data before this moment: 2026-11-28 (midnight UTC) or an ISO "
                   "time (default: now).")
@click.option("--window-days", type=click.IntRange(1, 366),
              help="Recent window judged for compromise (default: [detect] window_days, 7).")
@click.option("--tenant", help="Only this tenant (its earlier rows for the day are replaced).")
@click.pass_obj
def detect(obj: dict, lake: Path | None, as_of: str | None, window_days: int | None,
           tenant: str | None) -> None:
    """Run the detections in queries/ and store findings and one verdict per tenant.

    Findings and verdicts go to the lake (findings/ and verdicts/, one set per as-of day,
    replacing that day's earlier run); one line per tenant is printed: verdict, score and
    the first reason. Thresholds are in relaywatch.toml [detect].

    \b
    Examples:
      relaywatch detect --lake lake/
      relaywatch detect --lake lake/ --as-of 2026-11-28 --tenant contoso
    """
    from dataclasses import replace

    from pipeline import detect as detect_mod

    s = obj["settings"].with_overrides(lake=lake)
    if window_days:
        s = replace(s, detect=replace(s.detect, window_days=window_days))
    when = detect_mod.parse_as_of(as_of)
    result = detect_mod.detect(s, when, tenant)
    v = result.verdicts.sort(["recommendation", "score"], descending=[False, True])
    for row in v.iter_rows(named=True):
        flag = " BLOCKED NOW" if row["blocked_now"] else ""
        click.echo(f"{row['tenant']}\t{row['recommendation']}{flag}\tscore {row['score']:.0f}\t"
                   f"{row['reasons'][0]}")
    log.info("detect: %d tenants, %d findings as of %s; stored in %s", v.height,
             result.findings.height, when.isoformat(), s.lake)


_FORMAT = click.option("--format", "fmt", type=click.Choice(output.FORMATS),
                       help="Output format (default: table on a terminal, csv otherwise).")
_OUTPUT = click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
                       help="Write to FILE (atomically) instead of stdout.")
_LAKE = click.option("--lake", type=click.Path(file_okay=False, path_type=Path),
                     help="Lake folder (default: lake, or [paths] lake / $RELAYWATCH_LAKE).")


def _emit(df, fmt: str | None, out: Path | None) -> None:  # type: ignore[no-untyped-def]
    chosen = fmt or ("table" if sys.stdout.isatty() and out is None else "csv")
    output.write(df, chosen, out, sys.stdout)


def _session(obj: dict, lake: Path | None):  # type: ignore[no-untyped-def]
    from pipeline import sql as sql_mod

    s = obj["settings"].with_overrides(lake=lake)
    if not s.lake.is_dir():
        raise ConfigError(f"{s.lake}: no lake here; run `relaywatch ingest` first or point "
                          "--lake at one")
    return sql_mod.Session(s.lake)


@cli.command("sql")
@click.argument("statement")
@_LAKE
@_FORMAT
@_OUTPUT
@click.pass_obj
def sql_command(obj: dict, statement: str, lake: Path | None, fmt: str | None,
                **kw) -> None:  # type: ignore[no-untyped-def]
    """Run one read-only SQL statement against the lake's views.

    Views: messages, accepted_domains, inbound_connectors, outbound_connectors,
    audit_events, rejects, ingest_log, findings, verdicts, outbound_mail. The session reads
    the lake and nothing else: no other files, no network, no writes.

    \b
    Examples:
      relaywatch sql "SELECT tenant, count(*) FROM messages GROUP BY ALL"
      relaywatch sql "FROM verdicts WHERE recommendation = 'block'" --format json
      relaywatch sql "FROM messages WHERE tenant = 'contoso'" -o contoso.parquet --format parquet
    """
    with _session(obj, lake) as session:
        _emit(session.ad_hoc(statement), fmt, kw.get("output"))


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

    found = sql_mod.queries()
    if name not in found:
        raise ConfigError(f"no query named {name!r}; `relaywatch query list` shows them")
    click.echo(found[name].sql, nl=False)


@query.command("run")
@click.argument("name")
@click.option("--param", "-p", "params", nargs=2, multiple=True, metavar="KEY VALUE",
              help="A parameter, e.g. -p tenant contoso (repeatable). [detect] thresholds "
                   "default to the settings; as_of defaults to now.")
@_LAKE
@_FORMAT
@_OUTPUT
@click.pass_obj
def query_run(obj: dict, name: str, params: tuple[tuple[str, str], ...], lake: Path | None,
              fmt: str | None, **kw) -> None:  # type: ignore[no-untyped-def]
    """Run a named query with parameters bound by DuckDB (never spliced into the SQL).

    \b
    Examples:
      relaywatch query run unprovisioned_senders -p tenant contoso -p as_of 2026-11-28
      relaywatch query run message_by_id -p message_id '<ABC@contoso.com>' --format json
    """
    from dataclasses import asdict
    from datetime import datetime, timezone

    from pipeline import sql as sql_mod

    found = sql_mod.queries()
    if name not in found:
        raise ConfigError(f"no query named {name!r}; `relaywatch query list` shows them")
    given = {k: sql_mod.parse_value(v) for k, v in params}
    extra = sorted(set(given) - set(found[name].params))
    if extra:
        raise ConfigError(f"query {name} has no parameter {', '.join(extra)}; it takes "
                          + (", ".join(found[name].params) or "none"))
    defaults = {"as_of": datetime.now(timezone.utc), **asdict(obj["settings"].detect)}
    with _session(obj, lake) as session:
        _emit(session.run(name, {**defaults, **given}), fmt, kw.get("output"))


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
    if not s.lake.is_dir():
        raise ConfigError(f"{s.lake}: no lake here; run `relaywatch ingest` first")
    written = sql_mod.catalog(s.lake, out or s.lake / "lake.duckdb")
    click.echo(str(written))


@cli.command()
@click.option("--markdown", is_flag=True, help="Print the data dictionary as Markdown.")
def schema(markdown: bool) -> None:
    """Print the lake's tables and columns (the data dictionary).

    \b
    Example:
      relaywatch schema --markdown > docs/data-dictionary.md
    """
    from pipeline import schema as schema_mod

    if markdown:
        click.echo(schema_mod.markdown(), nl=False)
        return
    for t in schema_mod.TABLES.values():
        click.echo(f"{t.name}: " + ", ".join(c.name for c in t.columns))


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write into (an inbox/ folder is created in it).")
@click.option("--preset", type=click.Choice(["sample", "bench"]), default="sample",
              show_default=True, help="sample: a few MB for the demo; bench: sized by --rows.")
@click.option("--days", type=int, help="Days of traffic (default: 21).")
@click.option("--tenants", type=int, help="Extra clean tenants beyond the story tenants.")
@click.option("--rows", type=int, help="Approximate message rows in total.")
@click.option("--end", "end_date", type=click.DateTime(["%Y-%m-%d"]),
              help="Last day of traffic (default: 2026-11-27).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.pass_obj
def generate(obj: dict, out: Path, preset: str, days: int | None, tenants: int | None,
             rows: int | None, end_date, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Write a deterministic, realistic multi-tenant inbox of exports.

    Weeks of traffic with daily and hourly rhythm, in several export formats, with a
    compromised tenant, a remediated one, a school forwarding mail, and clean tenants.

    \b
    Examples:
      relaywatch generate --out sample_logs
      relaywatch generate --out /tmp/big --preset bench --rows 5000000 --tenants 200
    """
    from pipeline import generate as gen

    spec = gen.Spec.preset(preset, days=days, tenants=tenants, rows=rows,
                           end=end_date.date() if end_date else None, seed=seed)
    written = gen.write_inbox(out / "inbox", spec)
    for path, n in written:
        log.info("generate: %s: %s rows", path, f"{n:,}")
    log.info("generate: %d files in %s", len(written), out / "inbox")


def main() -> None:
    cli(prog_name="relaywatch")
