"""The lake's care: `relaywatch doctor`, `rollups`, `compare` and `schema`.

Thin like cli.py: options in, the pipeline modules do the work.
"""

from __future__ import annotations

import logging
import sys
from contextlib import nullcontext
from pathlib import Path

import click

from pipeline.cli import LAKE_OPTION, cli

log = logging.getLogger("relaywatch")


@cli.command()
@LAKE_OPTION
@click.option("--repair", is_flag=True,
              help="Move unreadable files to <lake>/quarantine/ and mark the raw exports "
                   "that rebuild them for the next ingest.")
@click.pass_obj
def doctor(obj: dict, lake: Path | None, repair: bool) -> None:
    """Read back every file of the lake and say which cannot be read, and what rebuilds it.

    Without --repair nothing is changed, and the exit code is 1 when a file is damaged.
    With --repair each damaged file is quarantined (never deleted) and the next
    `relaywatch ingest` or `nightly` rebuilds it from the inbox.

    \b
    Examples:
      relaywatch doctor --lake /srv/relaywatch/lake
      relaywatch doctor --lake /srv/relaywatch/lake --repair && relaywatch nightly ...
    """
    from pipeline import doctor as doctor_mod
    from pipeline.lake import Lake

    s = obj["settings"].with_overrides(lake=lake)
    found = Lake(s.lake).must_exist()
    with found.locked() if repair else nullcontext():
        problems = doctor_mod.check(found, repair=repair)
    for p in problems:
        kept = f"; moved to {p.kept}" if repair else ""
        click.echo(f"{p.path}\tunreadable: {p.reason}{kept}; {p.remedy}")
    log.info("doctor: %d damaged files in %s", len(problems), s.lake)
    if problems and not repair:
        sys.exit(1)


@cli.command()
@click.argument("lake", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("other", type=click.Path(exists=True, file_okay=False, path_type=Path))
def compare(lake: Path, other: Path) -> None:
    """Say whether two lakes hold the same data, file by file (exit code 1 when not): a
    lake a Spark cluster wrote against a local run over the same inbox, or a lake restored
    from a backup against the original. Prints each file that is in one lake only or whose
    content differs.

    \b
    Example:
      relaywatch ingest inbox/ --lake /tmp/local-lake
      relaywatch compare /mnt/shared/lake /tmp/local-lake
    """
    from pipeline import compare as compare_mod

    found = compare_mod.compare(lake, other)
    for name, files in (("only in " + str(lake), found.only_here),
                        ("only in " + str(other), found.only_there), ("differs", found.differ)):
        for f in files:
            click.echo(f"{name}\t{f}")
    log.info("compare: %s", "the same data" if found.same else
             f"{len(found.only_here) + len(found.only_there) + len(found.differ)} difference(s)")
    if not found.same:
        sys.exit(1)


@cli.command()
@LAKE_OPTION
@click.pass_obj
def rollups(obj: dict, lake: Path | None) -> None:
    """Bring the lake's rollups (what the detections read) up to its message partitions and
    accepted domains. Ingest and detect do it themselves; run it after writing partitions
    some other way, or to see what a first build over an existing lake costs.

    \b
    Example:
      relaywatch rollups --lake /srv/relaywatch/lake
    """
    from pipeline import rollups as rollups_mod
    from pipeline.lake import Lake

    s = obj["settings"].with_overrides(lake=lake)
    found = Lake(s.lake).must_exist()
    with found.locked():
        done = rollups_mod.build(s.lake)
    click.echo(f"rollups: {done.partitions} partition(s) rolled up ({done.rows_in} rows into "
               f"{done.rows_out}), {done.removed} removed")


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
