"""Outgoing e-mail: SMTP in production, an .eml outbox in development, sent in the background."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import pathlib
import secrets
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
SUBMISSION_PORT = 587
DEFAULT_TIMEOUT_SECONDS = 10.0
URL_OPTIONS = {"timeout"}
OUTBOX_CTE = "8bit"


@dataclass(frozen=True)
class OutgoingMail:
    to: str
    subject: str
    text: str
    html: str | None = None


class MailError(Exception):
    """A message could not be delivered or saved."""


class Mailer(Protocol):
    async def send(self, mail: OutgoingMail) -> None: ...


@dataclass(frozen=True)
class SMTPSettings:
    hostname: str
    port: int
    use_tls: bool = False
    # None: upgrade when the server offers STARTTLS; True: refuse to go on without it.
    start_tls: bool | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT_SECONDS


def parse_smtp_url(url: str) -> SMTPSettings:
    """Parse SMTP_URL; ValueError says what is wrong without echoing the password."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise ValueError("SMTP_URL is not a valid URL") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"SMTP_URL must start with smtp:// or smtps://, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("SMTP_URL has no host name")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("SMTP_URL must not have a path or #fragment")
    port = _port_of(parts)
    username, password = _credentials_of(parts)
    implicit_tls = parts.scheme == "smtps"
    # A stripped STARTTLS offer must not make us send a password (or use 587) in clear text.
    must_start_tls = port == SUBMISSION_PORT or username is not None
    return SMTPSettings(
        hostname=parts.hostname,
        port=port,
        use_tls=implicit_tls,
        start_tls=False if implicit_tls else (True if must_start_tls else None),
        username=username,
        password=password,
        timeout=_timeout_of(parts.query),
    )


def _port_of(parts: urllib.parse.SplitResult) -> int:
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is None:
        return DEFAULT_PORTS[parts.scheme]
    if not 0 < port < 65536:
        raise ValueError("SMTP_URL port must be a number from 1 to 65535")
    return port


def _credentials_of(parts: urllib.parse.SplitResult) -> tuple[str | None, str | None]:
    if parts.username is None and parts.password is None:
        return None, None
    if not parts.username or not parts.password:
        raise ValueError("SMTP_URL needs both a user name and a password, or neither")
    return urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password)


def _timeout_of(query: str) -> float:
    options = urllib.parse.parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - URL_OPTIONS)
    if unknown:
        raise ValueError(f"SMTP_URL has unknown options: {', '.join(unknown)} (known: timeout)")
    if "timeout" not in options:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        timeout = float(options["timeout"][-1])
    except ValueError:
        timeout = math.nan
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError("SMTP_URL timeout must be a positive number of seconds")
    return timeout


def build_message(mail: OutgoingMail, mail_from: str, *, cte: str | None = None) -> EmailMessage:
    """Turn an OutgoingMail into a complete RFC 5322 message (text, optional html alternative).

    `cte` forces the bodies' transfer encoding; None lets the email package choose one that
    any SMTP path carries (quoted-printable for long lines).
    """
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = email.utils.format_datetime(datetime.now(UTC))
    # An explicit domain: make_msgid() would otherwise do a blocking getfqdn() DNS lookup.
    message["Message-ID"] = email.utils.make_msgid(domain=_domain_of(mail_from))
    message.set_content(mail.text, cte=cte)
    if mail.html is not None:
        message.add_alternative(mail.html, subtype="html", cte=cte)
    return message


def _domain_of(address: str) -> str:
    _, _, domain = email.utils.parseaddr(address)[1].rpartition("@")
    return domain or "localhost"


class SMTPMailer:
    """Sends each message over its own aiosmtplib connection."""

    def __init__(self, settings: SMTPSettings, mail_from: str) -> None:
        self.settings = settings
        self.mail_from = mail_from

    async def send(self, mail: OutgoingMail) -> None:
        """Deliver one message; MailError when the server is unreachable or refuses it."""
        message = build_message(mail, self.mail_from)
        smtp = self.settings
        try:
            await aiosmtplib.send(
                message,
                hostname=smtp.hostname,
                port=smtp.port,
                username=smtp.username,
                password=smtp.password,
                use_tls=smtp.use_tls,
                start_tls=smtp.start_tls,
                timeout=smtp.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise MailError(f"could not send mail via {smtp.hostname}:{smtp.port}: {exc}") from exc


class OutboxMailer:
    """Development stand-in for SMTP: saves each message as an .eml file in a folder."""

    def __init__(self, folder: pathlib.Path, mail_from: str) -> None:
        self.folder = folder
        self.mail_from = mail_from

    async def send(self, mail: OutgoingMail) -> None:
        """Save one message; logs where, never the body (it holds a secret link)."""
        # 8bit: a file has no line limit, so a link stays whole (no =3D, no soft line breaks).
        data = build_message(mail, self.mail_from, cte=OUTBOX_CTE).as_bytes()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.folder / f"{stamp}-{secrets.token_hex(4)}.eml"
        try:
            await asyncio.to_thread(_write_new_file, path, data)
        except OSError as exc:
            raise MailError(f"could not save mail to {path}: {exc}") from exc
        log.info("mail to %s: %s (saved to %s)", mail.to, mail.subject, path)


def _write_new_file(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as file:
        file.write(data)


class BackgroundMailer:
    """Sends mail in tasks of their own so a slow or broken server never fails a request."""

    def __init__(self, mailer: Mailer, *, logger: logging.Logger | None = None) -> None:
        self.mailer = mailer
        self.logger = logger or log
        self.sent = 0
        self.failed = 0
        # The loop keeps only weak references to tasks; this set stops them vanishing mid-send.
        self._tasks: set[asyncio.Task[None]] = set()

    def send_later(self, mail: OutgoingMail) -> None:
        """Schedule one message on the running loop and return at once."""
        task = asyncio.get_running_loop().create_task(self._send(mail))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, mail: OutgoingMail) -> None:
        try:
            await self.mailer.send(mail)
        except asyncio.CancelledError:
            self.failed += 1
            self.logger.error("mail to %s abandoned: %s", mail.to, mail.subject)
            raise
        except Exception:
            self.failed += 1
            self.logger.exception("mail to %s failed: %s", mail.to, mail.subject)
        else:
            self.sent += 1

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait up to `timeout` seconds for pending sends, then cancel the rest."""
        if not self._tasks:
            return
        _, unfinished = await asyncio.wait(set(self._tasks), timeout=timeout)
        if unfinished:
            self.logger.warning("gave up on %d mail(s) after %s s", len(unfinished), timeout)
            for task in unfinished:
                task.cancel()
            await asyncio.wait(unfinished)
