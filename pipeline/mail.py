"""Send a rendered report by SMTP: multipart/alternative (text, then HTML).

The password comes only from RELAYWATCH_SMTP_PASSWORD or the file named by
RELAYWATCH_SMTP_PASSWORD_FILE, never from a flag (flags show up in `ps` and shell history).
Per-tenant recipients ([email.tenants] in relaywatch.toml) get only their tenant's page;
the overview goes to --to. SMTP failures become MailError with what to check; the report
files stay where they are.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import cast

from pipeline.errors import ConfigError, RelaywatchError


class MailError(RelaywatchError):
    """The report could not be sent."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    security: str = "none"  # none | starttls | ssl
    user: str | None = None
    sender: str = "relaywatch@localhost"
    timeout: float = 30.0
    tenants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def smtp_settings(conf: Mapping[str, object], host: str | None = None, port: int | None = None,
                  security: str | None = None, user: str | None = None,
                  sender: str | None = None) -> SmtpSettings:
    """[email] settings, overridden by whatever flags were given."""
    mode = str(security or conf.get("security", "none"))
    default_port = {"ssl": 465, "starttls": 587}.get(mode, 25)
    tenants = cast(Mapping[str, Sequence[str]], conf.get("tenants", {}))
    return SmtpSettings(
        host=host or str(conf.get("host", "localhost")),
        port=port or int(conf.get("port", default_port)),  # type: ignore[call-overload]
        security=mode, user=user or conf.get("user"),  # type: ignore[arg-type]
        sender=sender or str(conf.get("from", "relaywatch@localhost")),
        tenants={k: tuple(v) for k, v in tenants.items()})


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def password(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    if env.get("RELAYWATCH_SMTP_PASSWORD"):
        return env["RELAYWATCH_SMTP_PASSWORD"]
    if env.get("RELAYWATCH_SMTP_PASSWORD_FILE"):
        path = Path(env["RELAYWATCH_SMTP_PASSWORD_FILE"])
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"RELAYWATCH_SMTP_PASSWORD_FILE={path}: cannot read it "
                              f"({exc.strerror})") from None
    return None


def headline(report_dir: Path) -> str:
    """The report's headline, read back from the first lines of report.txt."""
    lines = (report_dir / "report.txt").read_text(encoding="utf-8").splitlines()
    return lines[1] if len(lines) > 1 else "report"


def message(report_dir: Path, to: Sequence[str], sender: str, tenant: str | None = None
            ) -> EmailMessage:
    base = report_dir / "tenants" / tenant if tenant else report_dir / "report"
    html_path, text_path = base.with_suffix(".html"), base.with_suffix(".txt")
    for p in (html_path, text_path):
        if not p.is_file():
            raise ConfigError(f"{p}: missing; is {report_dir} a folder written by "
                              "`relaywatch report`?")
    text = text_path.read_text(encoding="utf-8")
    subject = f"relaywatch {report_dir.name}: " + (
        f"{tenant}: {text.splitlines()[1]}" if tenant else headline(report_dir))
    msg = EmailMessage()
    msg["Subject"] = re.sub(r"[\r\n]+", " ", subject)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1] or "relaywatch")
    msg.set_content(text)
    msg.add_alternative(html_path.read_text(encoding="utf-8"), subtype="html")
    return msg


def send(report_dir: Path, to: Sequence[str], smtp: SmtpSettings,
         secret: str | None = None) -> list[tuple[str, list[str]]]:
    """Send the overview to `to` and each configured tenant's page to its own recipients.
    Returns (what, recipients) for each message sent."""
    report_dir = Path(report_dir)
    batches: list[tuple[str | None, list[str]]] = []
    if to:
        batches.append((None, list(to)))
    for tenant, rcpts in sorted(smtp.tenants.items()):
        if (report_dir / "tenants" / f"{tenant}.html").is_file() and rcpts:
            batches.append((tenant, list(rcpts)))
    if not batches:
        raise ConfigError("no recipients: give --to ADDR or configure [email] to / "
                          "[email.tenants]")
    messages = [(t, r, message(report_dir, r, smtp.sender, t)) for t, r in batches]
    where = f"{smtp.host}:{smtp.port}"
    try:
        client: smtplib.SMTP
        if smtp.security == "ssl":
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout,
                                      context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
        with client:
            if smtp.security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if smtp.user:
                if secret is None:
                    raise ConfigError(f"--smtp-user {smtp.user} needs a password in "
                                      "RELAYWATCH_SMTP_PASSWORD or RELAYWATCH_SMTP_PASSWORD_FILE")
                client.login(smtp.user, secret)
            sent = []
            for who, addrs, msg in messages:
                refused = client.send_message(msg, smtp.sender, addrs)
                if refused:
                    raise MailError(f"{where} refused recipient(s) "
                                    + ", ".join(f"{a} ({c} {_text(m)})"
                                                for a, (c, m) in refused.items()))
                sent.append((who or "overview", addrs))
            return sent
    except ConnectionRefusedError:
        raise MailError(f"cannot connect to SMTP server {where}: connection refused; check "
                        "--smtp-host and --smtp-port") from None
    except (socket.timeout, TimeoutError):
        raise MailError(f"SMTP server {where} did not answer in {smtp.timeout:g} s") from None
    except socket.gaierror as exc:
        raise MailError(f"cannot resolve SMTP host {smtp.host!r} ({exc.strerror})") from None
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(f"{where} refused the login of {smtp.user} ({exc.smtp_code} "
                        f"{_text(exc.smtp_error)}): check the user and "
                        "RELAYWATCH_SMTP_PASSWORD(_FILE)") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailError(f"{where} refused every recipient: " + ", ".join(
            f"{a} ({c} {m.decode(errors='replace')})" for a, (c, m) in
            exc.recipients.items())) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise MailError(f"{where}: {exc}; try --ssl or no --starttls") from None
    except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
        raise MailError(f"sending through {where} failed: {exc}") from None
