"""The `relaywatch` command line: parse options, call the library, print. Nothing else.

Errors from the library are printed once, as `relaywatch: error: ...`, with exit codes
0 ok, 1 failed, 2 usage/config, 3 finished with rejected input, 130 interrupted.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pipeline import __version__, settings as settings_mod
from pipeline.errors import (
    EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PARTIAL, ConfigError, RelaywatchError, unexpected,
)

log = logging.getLogger("relaywatch")


LAKE_OPTION = click.option("--lake", type=click.Path(file_okay=False, path_type=Path),
                           help="Lake folder (default: lake, or [paths] lake / $RELAYWATCH_LAKE).")


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--engine and --spark-master, for the commands that ingest."""
    command = click.option("--spark-master", metavar="URL",
                           help="With --engine spark: spark://HOST:7077, local[4] ... (default: "
                                "[spark] master, what spark-submit gives, else local[*]).")(command)
    return click.option("--engine", type=click.Choice(settings_mod.ENGINES),
                        help="Where ingest and the rollups run: duckdb (this process, the "
                             "default) or spark (a Spark cluster; pip install "
                             "'relaywatch[spark]').")(command)


class RelaywatchGroup(click.Group):
    """Turns library errors into one message and an exit code."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        def debug() -> bool:
            return bool(ctx.obj and ctx.obj.get("debug"))

        try:
            return super().invoke(ctx)
        except RelaywatchError as exc:
            if debug():
                traceback.print_exc()
            click.echo(f"relaywatch: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("relaywatch: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # the one boundary: no traceback without --debug
            if debug():
                traceback.print_exc()
            click.echo(f"relaywatch: error: {unexpected(exc, ctx.invoked_subcommand)}",
                       err=True)
            ctx.exit(EXIT_FAILED)



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
@click.option("--rehash", is_flag=True,
              help="Hash every file, even those whose path, size and mtime are unchanged.")
@engine_options
@click.pass_obj
def ingest(obj: dict, paths: tuple[Path, ...], lake: Path | None, tenant: str | None,
           date_order: str | None, headerless_msgtrk: str | None, rehash: bool,
           engine: str | None, spark_master: str | None) -> None:
    """Ingest export files or an inbox folder (<inbox>/<tenant>/<files>) into the lake.

    Formats are recognised from the content, not the file name. Files already ingested
    (same content hash) are skipped; unreadable files are copied to <lake>/rejected/ with a
    .reason file, and the others go on. Exit code 3 means some files were rejected.

    \b
    Examples:
      relaywatch ingest inbox/ --lake lake/
      relaywatch ingest trace.csv --tenant contoso --date-order dmy
      relaywatch ingest inbox/ --lake lake/ --engine spark --spark-master spark://head:7077
    """
    from pipeline import inbox, ingest as ingest_mod

    s = obj["settings"].with_overrides(lake=lake, date_order=date_order,
                                       headerless_msgtrk=headerless_msgtrk, engine=engine,
                                       spark_master=spark_master)
    show_bar = sys.stderr.isatty() and not obj["quiet"]
    total = inbox.total_bytes(paths) if show_bar and s.engine == "duckdb" else 0
    if s.engine == "spark":
        from pipeline import spark

        report = spark.ingest(paths, s, tenant, rehash=rehash)
    elif show_bar and total > 20_000_000:
        with click.progressbar(length=total, label="ingesting", file=sys.stderr) as bar:
            report = ingest_mod.ingest(paths, s, tenant, progress=bar.update, rehash=rehash)
    else:
        report = ingest_mod.ingest(paths, s, tenant, rehash=rehash)
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
@click.option("--window-days", type=int,
              help="Recent window judged for compromise, 1-366 (default: [detect] "
                   "window_days, 7).")
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
    from pipeline import detect as detect_mod

    s = obj["settings"].with_overrides(lake=lake).with_detect("--window-days",
                                                               window_days=window_days)
    when = detect_mod.parse_as_of(as_of)
    result = detect_mod.detect(s, when, tenant)
    v = result.verdicts.sort(["recommendation", "score"], descending=[False, True])
    for row in v.iter_rows(named=True):
        flag = " BLOCKED NOW" if row["blocked_now"] else ""
        click.echo(f"{row['tenant']}\t{row['recommendation']}{flag}\tscore {row['score']:.0f}\t"
                   f"{row['reasons'][0]}")
    log.info("detect: %d tenants, %d findings as of %s; stored in %s", v.height,
             result.findings.height, when.isoformat(), s.lake)


@cli.command()
@LAKE_OPTION
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Reports folder (default: reports, or [paths] reports).")
@click.option("--as-of", "as_of", metavar="DATE", type=click.DateTime(["%Y-%m-%d"]),
              help="Which detect run to report (default: the latest).")
@click.option("--tenant", help="Only this tenant.")
@click.pass_obj
def report(obj: dict, lake: Path | None, out: Path | None, as_of, tenant: str | None
           ) -> None:  # type: ignore[no-untyped-def]
    """Render the HTML/text report and verdicts.json from the stored verdicts.

    Writes <out>/<date>/report.html, report.txt, verdicts.json and tenants/<slug>.html|txt,
    and prints the folder. Run `relaywatch detect` first.

    \b
    Examples:
      relaywatch report --lake lake/ --out reports/
      relaywatch report --lake demo/lake --as-of 2026-11-28 --tenant contoso
    """
    from pipeline import render, report as report_mod

    from pipeline.lake import Lake

    s = obj["settings"].with_overrides(lake=lake, reports=out)
    with Lake(s.lake).locked():
        day = as_of.date() if as_of else report_mod.latest_as_of(s.lake)
        built = report_mod.build(s.lake, day, s.detect, tenant)
        folder = render.write(built, s.reports)
    log.info("report: %s; %d tenants", built.headline, len(built.tenants))
    click.echo(str(folder / "report.html"))


@cli.command()
@click.argument("report_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--to", "to", multiple=True, metavar="ADDR",
              help="Recipient of the overview (repeatable; default: [email] to).")
@click.option("--smtp-host", help="SMTP server (default: [email] host or localhost).")
@click.option("--smtp-port", type=int, help="SMTP port (default: 25, 465 with --ssl, 587 "
                                            "with --starttls).")
@click.option("--starttls", "security", flag_value="starttls", help="Upgrade with STARTTLS.")
@click.option("--ssl", "security", flag_value="ssl", help="Implicit TLS (SMTPS).")
@click.option("--smtp-user", help="Login user; the password comes only from "
                                  "$RELAYWATCH_SMTP_PASSWORD or $RELAYWATCH_SMTP_PASSWORD_FILE.")
@click.option("--from", "sender", help="From address (default: [email] from).")
@click.pass_obj
def email(obj: dict, report_dir: Path, to: tuple[str, ...], smtp_host: str | None,
          smtp_port: int | None, security: str | None, smtp_user: str | None,
          sender: str | None) -> None:
    """Email a report folder: text + HTML, headline in the subject.

    The overview goes to --to; tenants listed in [email.tenants] get only their own page.
    A failed send exits 1 and leaves the report files in place.

    \b
    Examples:
      relaywatch email reports/2026-11-28 --to soc@example.com --smtp-host mail.example.com \\
          --starttls --smtp-user relaywatch
      RELAYWATCH_SMTP_PASSWORD_FILE=/etc/relaywatch/smtp.pw relaywatch email reports/2026-11-28
    """
    from pipeline import mail

    conf = obj["settings"].email
    to = tuple(settings_mod.check_address(a, "--to") for a in to)
    if sender is not None:
        sender = settings_mod.check_address(sender, "--from")
    smtp = mail.smtp_settings(conf, smtp_host, smtp_port, security, smtp_user, sender)
    sent = mail.send(report_dir, list(to) or list(conf.get("to", [])), smtp, mail.password())
    for what, rcpts in sent:
        log.info("email: %s sent to %s", what, ", ".join(rcpts))


@cli.command()
@click.option("--inbox", type=click.Path(file_okay=False, path_type=Path),
              help="Inbox folder <inbox>/<tenant>/<files> (default: inbox, or [paths] inbox).")
@LAKE_OPTION
@click.option("--reports", type=click.Path(file_okay=False, path_type=Path),
              help="Reports folder (default: reports, or [paths] reports).")
@click.option("--as-of", "as_of", metavar="DATE",
              help="Judge the data before this moment (default: now).")
@click.option("--email-to", multiple=True, metavar="ADDR",
              help="Send the overview here (repeatable; default: [email] to).")
@click.option("--no-email", is_flag=True, help="Write the report but do not send it.")
@click.option("--keep-days", type=click.IntRange(1, None),
              help="Retention: drop lake partitions older than this many days.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also append the log (with timestamps) to this file.")
@click.option("--rehash", is_flag=True,
              help="Hash every inbox file, even those whose path, size and mtime are unchanged.")
@engine_options
@click.pass_obj
def nightly(obj: dict, inbox: Path | None, lake: Path | None, reports: Path | None,
            as_of: str | None, email_to: tuple[str, ...], no_email: bool,
            keep_days: int | None, log_file: Path | None, rehash: bool, engine: str | None,
            spark_master: str | None) -> None:
    """The whole job for cron: ingest new files, detect, report, email, retention.

    One run per lake at a time (a second exits at once with code 4). Exit codes: 0 done,
    1 a stage failed (the summary says which), 2 usage, 3 done but input files were
    rejected, 4 another run holds the lake. With --quiet nothing is printed on success.

    \b
    Examples:
      relaywatch nightly --inbox /srv/exports --lake /srv/lake --reports /srv/reports --no-email
      relaywatch -q nightly --inbox /srv/exports --email-to soc@msp.example --keep-days 90 \\
          --log-file /var/log/relaywatch.log
      relaywatch nightly --inbox /srv/exports --no-email --engine spark \\
          --spark-master spark://head:7077
    """
    import time

    from pipeline import detect as detect_mod, mail, nightly as nightly_mod

    handler = log.handlers[0]
    stamp = logging.Formatter("%(asctime)s relaywatch: %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    stamp.converter = time.gmtime
    handler.setFormatter(stamp)
    if log_file:
        try:
            to_file = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--log-file {log_file}: cannot append to it ({exc.strerror}); "
                              "create its folder or give another path") from None
        to_file.setFormatter(stamp)
        to_file.setLevel(logging.INFO)
        log.addHandler(to_file)
        log.setLevel(min(log.level, logging.INFO))
        handler.setLevel(logging.WARNING if obj["quiet"] else logging.INFO)
    s = obj["settings"].with_overrides(inbox=inbox, lake=lake, reports=reports, engine=engine,
                                       spark_master=spark_master)
    smtp = mail.smtp_settings(s.email)
    email_to = tuple(settings_mod.check_address(a, "--email-to") for a in email_to)
    recipients = None if no_email else list(email_to) or list(s.email.get("to", []))
    if recipients is not None and not recipients and not smtp.tenants:
        raise ConfigError("nightly emails the report: give --email-to ADDR, set [email] to in "
                          "relaywatch.toml, or pass --no-email")
    outcome = nightly_mod.run(s, s.inbox, detect_mod.parse_as_of(as_of), recipients,
                              None if no_email else smtp, keep_days, rehash)
    code = outcome.exit_code
    if code or not obj["quiet"]:
        click.echo(outcome.summary())
    sys.exit(code)


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
@click.option("--single-file", "single", type=click.Choice(["utf-8", "utf-16-le",
                                                           "utf-16-le-bom"]),
              help="Instead of an inbox, one large tenant's historical-search summary in this "
                   "encoding, of about --rows CSV rows, one per message (benchmarks).")
@click.pass_obj
def generate(obj: dict, out: Path, preset: str, days: int | None, tenants: int | None,
             rows: int | None, end_date, seed: int,
             single: str | None) -> None:  # type: ignore[no-untyped-def]
    """Write a deterministic, realistic multi-tenant inbox of exports.

    Weeks of traffic with daily and hourly rhythm, in several export formats, with a
    compromised tenant, a remediated one, a school forwarding mail, and clean tenants.

    \b
    Examples:
      relaywatch generate --out sample_logs
      relaywatch generate --out /tmp/big --preset bench --rows 5000000 --tenants 200
      relaywatch generate --out /tmp/one --single-file utf-16-le --rows 5000000
    """
    from pipeline import generate as gen

    if single:
        target = out / "inbox" / "bigco" / f"historical_search_{single}.csv"
        n = gen.write_historical(target, rows or 1_000_000, single, days or 28,
                                 end_date.date() if end_date else gen.Spec.end, seed)
        log.info("generate: %s: %s CSV rows", target, f"{n:,}")
        return
    spec = gen.Spec.preset(preset, days=days, tenants=tenants, rows=rows,
                           end=end_date.date() if end_date else None, seed=seed)
    written = gen.write_inbox(out / "inbox", spec)
    for path, n in written:
        log.info("generate: %s: %s rows", path, f"{n:,}")
    log.info("generate: %d files in %s", len(written), out / "inbox")


from pipeline import cli_lake, cli_sql  # noqa: E402,F401  (register their commands)


def main() -> None:
    cli(prog_name="relaywatch")
