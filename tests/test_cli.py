"""The command line: help and examples, exit codes, the one error format, the README."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from tests.conftest import DATA, ROOT

COMMANDS = sorted(cli.commands)


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    code, out, _ = run(command, "--help")
    assert code == 0
    assert "Example" in out and f"relaywatch {command}" in out


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^### `relaywatch (\w+)", readme, flags=re.M))
    assert documented == set(COMMANDS)


def test_readme_starts_with_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first = readme.split("\n## ")[1]
    assert re.findall(r"^make \w+", first, flags=re.M) == ["make demo", "make test"]


def test_loose_file_without_tenant_is_a_usage_error(tmp_path: Path) -> None:
    code, out, err = run("ingest", str(DATA / "messagetrace_ps51.csv"), "--lake", str(tmp_path))
    assert code == 2 and out == ""
    assert err == (f"relaywatch: error: {DATA / 'messagetrace_ps51.csv'}: a single file needs "
                   "--tenant SLUG (or put it in <inbox>/<tenant>/ and ingest the inbox)\n")


def test_rejected_files_exit_3_and_are_named_on_stderr(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox" / "contoso"
    inbox.mkdir(parents=True)
    shutil.copy(DATA / "messagetrace_ps51.csv", inbox)
    shutil.copy(DATA / "unknown_header.csv", inbox)
    code, out, err = run("ingest", str(tmp_path / "inbox"), "--lake", str(tmp_path / "lake"))
    assert code == 3 and out == ""
    lines = err.splitlines()
    assert "relaywatch: ingest: contoso/unknown_header.csv: REJECTED: contoso/unknown_header.csv:1: unknown columns Foo, Bar, Baz;" in lines[0]
    assert re.fullmatch(r"relaywatch: ingest: contoso/messagetrace_ps51.csv: message_trace_ps51, "
                        r"2 rows, 1 rejected rows, \d+\.\d\ds", lines[1])
    assert lines[-1].startswith("relaywatch: ingest: 1 files ingested (2 rows), 0 skipped as "
                                "already ingested, 1 rejected, 1 rejected rows; lake: ")
    code, _, err = run("-q", "ingest", str(tmp_path / "inbox"), "--lake", str(tmp_path / "lake"))
    assert code == 3 and "REJECTED" in err and "skipped" not in err


def test_date_order_option_reaches_the_parser(tmp_path: Path) -> None:
    args = ["ingest", str(DATA / "messagetrace_ambiguous_dates.csv"), "--tenant", "c",
            "--lake", str(tmp_path / "lake")]
    code, _, err = run(*args)
    assert code == 3 and "--date-order" in err
    code, _, err = run(*args, "--date-order", "dmy")
    assert code == 0, err
    assert "2 rows" in err


def test_settings_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "relaywatch.toml").write_text('[paths]\nlake = "from-file"\n')
    code, _, _ = run("ingest", str(DATA / "messagetrace_ps51.csv"), "--tenant", "c")
    assert code == 0 and (tmp_path / "from-file" / "messages").is_dir()
    monkeypatch.setenv("RELAYWATCH_LAKE", str(tmp_path / "from-env"))
    code, _, _ = run("ingest", str(DATA / "messagetrace_ps51.csv"), "--tenant", "c")
    assert code == 0 and (tmp_path / "from-env" / "messages").is_dir()
    (tmp_path / "relaywatch.toml").write_text('[paths]\nlake = "x"\n[nonsense]\n')
    code, _, err = run("schema")
    assert code == 2
    assert err == ("relaywatch: error: relaywatch.toml: unknown section [nonsense]; known: "
                   "detect, email, ingest, paths, spark, sql\n")
    (tmp_path / "relaywatch.toml").write_text('[paths]\nlake = 3\n')
    code, _, err = run("schema")
    assert code == 2
    assert err == ("relaywatch: error: relaywatch.toml: [paths]: lake = 3 must be a non-empty "
                   "folder path\n")


def test_detect_thresholds_come_from_the_settings_file(tmp_path: Path) -> None:
    from pipeline import settings

    (tmp_path / "relaywatch.toml").write_text("[detect]\nclean_hours = 24\nspam_share = 0.5\n")
    loaded = settings.load()
    assert (loaded.detect.clean_hours, loaded.detect.spam_share) == (24, 0.5)
    assert loaded.detect.window_days == 7
    (tmp_path / "relaywatch.toml").write_text("[detect]\nclean_hour = 24\n")
    with pytest.raises(settings.ConfigError, match="unknown key 'clean_hour' in \\[detect\\]"):
        settings.load()
    (tmp_path / "relaywatch.toml").write_text('[detect]\nclean_hours = "soon"\n')
    with pytest.raises(settings.ConfigError, match="clean_hours = 'soon' must be a number"):
        settings.load()


def test_readme_documents_every_detect_threshold() -> None:
    from pipeline import settings

    assert settings.detect_markdown() in (ROOT / "README.md").read_text(), \
        "paste settings.detect_markdown() into the README's Settings section"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    code, _, err = run("--debug", "ingest", str(tmp_path / "missing"), "--tenant", "c")
    assert code == 2
    assert "Traceback" in err and err.rstrip().endswith("no such file or folder")


def test_python_dash_m_pipeline_works() -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "pipeline", "--version"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("relaywatch, version ")
