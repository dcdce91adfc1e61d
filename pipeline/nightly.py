"""The nightly job: ingest what is new, detect, report, email, retention; one summary line.

Each stage is the same code as its own command, run under one lake lock so a second
nightly on the same lake stops at once. Every stage is idempotent and writes atomically,
so after a kill at any point a rerun with the same --as-of leaves the same lake and report
as an uninterrupted run. A report already emailed with the same content is not sent again.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pipeline import detect, doctor, ingest, mail, render, report
from pipeline.inbox import check_apart
from pipeline.errors import (
    EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, ConfigError, RelaywatchError, unexpected,
)
from pipeline.lake import Lake
from pipeline.settings import Settings
from pipeline.sql import Session

log = logging.getLogger("relaywatch")
SENT_MARK = ".emailed"
# How far ahead of this machine's clock an --as-of may be when retention runs: a clock a
# little behind the scheduler's, or a run started just before midnight for the next day.
MAX_CLOCK_SKEW = timedelta(hours=1)


@dataclass
class Outcome:
    as_of: datetime
    ingested: int = 0
    rows: int = 0
    skipped: int = 0
    rejected: int = 0
    rejected_rows: int = 0
    dropped: list[Path] = field(default_factory=list)
    headline: str = ""
    tenants: int = 0
    report_dir: Path | None = None
    emailed: str = ""
    failure: str = ""

    @property
    def exit_code(self) -> int:
        if self.failure:
            return EXIT_FAILED
        return EXIT_PARTIAL if self.rejected else EXIT_OK

    def summary(self) -> str:
        parts = [f"nightly {self.as_of:%Y-%m-%d %H:%M}Z:",
                 f"ingested {self.ingested} files ({self.rows:,} rows), skipped {self.skipped},"
                 f" rejected {self.rejected} files and {self.rejected_rows:,} rows;"]
        if self.dropped:
            parts.append(f"dropped {len(self.dropped)} old partitions;")
        if self.report_dir:
            parts.append(f"{self.tenants} tenants: {self.headline}; report "
                         f"{self.report_dir / 'report.html'};")
        if self.emailed:
            parts.append(f"{self.emailed};")
        if self.failure:
            parts.append(f"FAILED: {self.failure}")
        return " ".join(parts).rstrip(";")


def run(settings: Settings, inbox: Path, as_of: datetime, email_to: list[str] | None,
        smtp: mail.SmtpSettings | None, keep_days: int | None = None,
        rehash: bool = False) -> Outcome:
    """The whole job. email_to None means --no-email. Raises RelaywatchError only for what
    stops the run before it starts (usage, lock); later failures land in Outcome.failure."""
    if not Path(inbox).is_dir():
        raise ConfigError(f"{inbox}: inbox folder not found (expected <inbox>/<tenant>/<files>)")
    Lake(settings.lake).check_place()
    check_apart([("inbox", inbox), ("lake", settings.lake),
                        ("reports", settings.reports)])
    if keep_days is not None and as_of > datetime.now(timezone.utc) + MAX_CLOCK_SKEW:
        raise ConfigError(f"--as-of {as_of:%Y-%m-%d %H:%M}Z is in the future: with --keep-days "
                          "it would drop data that is not old; give today's date or leave "
                          "--as-of out")
    lookback = settings.detect.window_days + settings.detect.baseline_days
    if keep_days is not None and keep_days < lookback:
        log.warning("nightly: --keep-days %d is shorter than the detection lookback (%d days: "
                    "window_days + baseline_days); baselines will be thin", keep_days, lookback)
    out = Outcome(as_of)
    lake = Lake(settings.lake)
    with lake.locked():
        try:
            try:
                _stages(settings, Path(inbox), out, lake, email_to, smtp, keep_days, rehash)
            except Exception:
                # a damaged lake file fails every tenant: put it aside, have its raw
                # exports read again, and run once more (every stage is idempotent)
                if not doctor.check(lake, repair=True):
                    raise
                log.warning("nightly: damaged lake files were quarantined; running again")
                _stages(settings, Path(inbox), out, lake, email_to, smtp, keep_days, rehash)
        except RelaywatchError as exc:
            out.failure = str(exc)
            log.error("nightly: %s", exc)
        except Exception as exc:  # the summary line is always printed
            log.debug("nightly failure", exc_info=True)
            out.failure = unexpected(exc, "nightly")
            log.error("nightly: %s", out.failure)
    return out


def _stages(settings: Settings, inbox: Path, out: Outcome, lake: Lake,
            email_to: list[str] | None, smtp: mail.SmtpSettings | None,
            keep_days: int | None, rehash: bool) -> None:
    log.info("nightly: ingesting %s", inbox)
    if settings.engine == "spark":
        from pipeline import spark

        got = spark.ingest([inbox], settings, rehash=rehash)
    else:
        got = ingest.ingest([inbox], settings, rehash=rehash)
    out.ingested, out.skipped, out.rejected = (got.count("ingested"), got.count("skipped"),
                                               got.count("rejected"))
    out.rows = sum(f.rows for f in got.files)
    out.rejected_rows = got.rejected_rows
    for f in got.files:
        if f.status == "rejected":
            log.warning("ingest: %s", f.summary())
        elif f.status == "ingested":
            log.debug("ingest: %s", f.summary())
    if keep_days is not None:
        cutoff = (out.as_of - timedelta(days=keep_days)).date()
        out.dropped = lake.drop_partitions_before(cutoff)
        if out.dropped:
            log.info("retention: dropped %d partitions before %s: %s", len(out.dropped),
                     cutoff, ", ".join(str(p.relative_to(lake.root)) for p in out.dropped[:20])
                     + (" ..." if len(out.dropped) > 20 else ""))
        else:
            log.info("retention: nothing before %s to drop", cutoff)
    log.info("nightly: detecting as of %s", out.as_of.isoformat())
    # detect and report share one session: the lookback is loaded once
    with Session(settings.lake) as session:
        detect.detect(settings, out.as_of, session=session)
        built = report.build(settings.lake, out.as_of.date(), settings.detect, shared=session)
    out.report_dir = render.write(built, settings.reports)
    out.headline, out.tenants = built.headline, len(built.tenants)
    log.info("nightly: report %s: %s", out.report_dir, built.headline)
    if email_to is None or smtp is None:
        return
    mark = out.report_dir / SENT_MARK
    digest = hashlib.sha256((out.report_dir / "report.html").read_bytes()).hexdigest()
    if mark.is_file() and mark.read_text().strip() == digest:
        out.emailed = "already emailed (same report)"
        return
    sent = mail.send(out.report_dir, email_to, smtp, mail.password())
    mark.write_text(digest + "\n")
    out.emailed = "emailed to " + ", ".join(sorted({a for _, r in sent for a in r}))
