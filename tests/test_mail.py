"""Sending the report to a real SMTP server (aiosmtpd on loopback) and reading it back."""

from __future__ import annotations

import email
import re
import socket
from email import policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner

from pipeline.cli import cli
from tests.test_report import fixed_report, tags


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self, refuse: str = "") -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse = refuse

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        if self.refuse and address == self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():  # type: ignore[no-untyped-def]
    def start(refuse: str = "", password: str | None = None) -> tuple[Inbox, int]:
        inbox = Inbox(refuse)
        kwargs = {}
        if password:
            def check(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
                ok = isinstance(auth_data, LoginPassword) and auth_data.password == password.encode()
                return AuthResult(success=ok, handled=False)
            kwargs = {"authenticator": check, "auth_require_tls": False,
                      "auth_exclude_mechanism": ["LOGIN"]}
        port = _free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        started.append(controller)
        return inbox, port

    started: list[Controller] = []
    yield start
    for c in started:
        c.stop()


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixed_report(tmp_path_factory.mktemp("mail"))


def send(report_dir: Path, port: int, *extra: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["email", str(report_dir), "--smtp-host", "127.0.0.1",
                                 "--smtp-port", str(port), "--from", "relaywatch@msp.example",
                                 *extra])
    return r.exit_code, r.stderr


def test_report_arrives_as_multipart_alternative(smtp, report_dir: Path) -> None:  # noqa: ANN001
    inbox, port = smtp()
    code, err = send(report_dir, port, "--to", "soc@msp.example", "--to", "boss@msp.example")
    assert code == 0, err
    ((sender, rcpts, raw),) = inbox.received
    assert sender == "relaywatch@msp.example"
    assert rcpts == ["soc@msp.example", "boss@msp.example"]
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"].strip() == ("relaywatch 2026-11-28: 1 tenant to block (1 blocked now), "
                              "0 ready to unblock")
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert text.replace("\r\n", "\n") == (report_dir / "report.txt").read_text()
    assert "script" not in tags(html) and "style" not in tags(html)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "url(" not in html and "@import" not in html
    assert "Unblock checklist" in html and "BLOCK" in html


def test_per_tenant_recipients_get_only_their_page(smtp, report_dir: Path,
                                                   tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    inbox, port = smtp()
    (tmp_path / "relaywatch.toml").write_text(
        '[email]\nto = ["soc@msp.example"]\n[email.tenants]\nacme = ["it@acme.com"]\n'
        'calm = ["ops@calm.com"]\n')
    code, err = send(report_dir, port)
    assert code == 0, err
    by_rcpt = {tuple(r): email.message_from_bytes(raw, policy=policy.default)
               for _, r, raw in inbox.received}
    assert set(by_rcpt) == {("soc@msp.example",), ("it@acme.com",), ("ops@calm.com",)}
    calm = by_rcpt[("ops@calm.com",)]
    assert calm["Subject"].strip().startswith("relaywatch 2026-11-28: calm: ")
    body = calm.get_body(("plain",)).get_content()
    assert "acme" not in body and "evil-deals" not in body
    assert "acme" in by_rcpt[("soc@msp.example",)].get_body(("plain",)).get_content()


def test_password_only_from_the_environment(smtp, report_dir: Path, tmp_path: Path,
                                            monkeypatch) -> None:  # noqa: ANN001
    inbox, port = smtp(password="s3cret")
    code, err = send(report_dir, port, "--to", "a@x.example", "--smtp-user", "relay")
    assert code == 2 and "needs a password in RELAYWATCH_SMTP_PASSWORD" in err
    secret = tmp_path / "pw"
    secret.write_text("wrong\n")
    monkeypatch.setenv("RELAYWATCH_SMTP_PASSWORD_FILE", str(secret))
    code, err = send(report_dir, port, "--to", "a@x.example", "--smtp-user", "relay")
    assert code == 1 and err.startswith(f"relaywatch: error: 127.0.0.1:{port} refused the "
                                        "login of relay (535")
    secret.write_text("s3cret\n")
    code, err = send(report_dir, port, "--to", "a@x.example", "--smtp-user", "relay")
    assert code == 0, err
    assert len(inbox.received) == 1
    r = CliRunner().invoke(cli, ["email", "--help"])
    assert "--password" not in r.stdout


def test_failures_exit_non_zero_and_keep_the_files(smtp, report_dir: Path) -> None:  # noqa: ANN001
    before = sorted(p.name for p in report_dir.rglob("*"))
    code, err = send(report_dir, _free_port(), "--to", "a@x.example")
    assert code == 1 and "connection refused; check --smtp-host and --smtp-port" in err
    inbox, port = smtp(refuse="gone@x.example")
    code, err = send(report_dir, port, "--to", "gone@x.example")
    assert code == 1 and "refused every recipient: gone@x.example (550" in err
    code, err = send(report_dir, port, "--to", "ok@x.example", "--to", "gone@x.example")
    assert code == 1 and "refused recipient(s) gone@x.example (550" in err
    assert sorted(p.name for p in report_dir.rglob("*")) == before
