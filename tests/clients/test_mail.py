import asyncio
import datetime
import email
import email.policy
import ipaddress
import logging
import pathlib
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aigen.clients.mail import (
    BackgroundMailer,
    MailError,
    OutboxMailer,
    OutgoingMail,
    SMTPMailer,
    SMTPSettings,
    parse_smtp_url,
)

MAIL_FROM = "aigen <no-reply@aigen.test>"
SECRET_LINK = "https://aigen.test/verify?token=SECRET-TOKEN-123"
MAIL = OutgoingMail(
    to="ada@example.com",
    subject="Bestätige deine E-Mail-Adresse",
    text=f"Grüße! Open {SECRET_LINK} within 24 hours.",
    html=f'<p>Grüße! <a href="{SECRET_LINK}">Verify</a></p>',
)
USER, PASSWORD = "user@aigen.test", "p@ss:word/1"
CREDENTIALS = "user%40aigen.test:p%40ss%3Aword%2F1"


@dataclass
class Inbox:
    """aiosmtpd handler that keeps each delivered message with how its session looked."""

    messages: list[email.message.EmailMessage] = field(default_factory=list)
    envelopes: list[Any] = field(default_factory=list)
    over_tls: list[bool] = field(default_factory=list)
    logins: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        # session.ssl stays None under implicit TLS (aiosmtpd #281), so ask the transport.
        self.over_tls.append(server.transport.get_extra_info("ssl_object") is not None)
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 Message accepted"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any):
        assert isinstance(data, LoginPassword)
        self.logins.append(data.login)
        ok = (data.login, data.password) == (USER.encode(), PASSWORD.encode())
        return AuthResult(success=ok, handled=False)


def read_outbox(folder: pathlib.Path) -> dict[pathlib.Path, email.message.EmailMessage]:
    """Every .eml file in the folder, parsed."""
    return {
        path: email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in folder.glob("*.eml")
    }


def body_text(message: email.message.EmailMessage, subtype: str) -> str:
    """The stripped text of the message's text/<subtype> body."""
    body = message.get_body((subtype,))
    assert body is not None, f"no text/{subtype} body"
    return body.get_content().strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate for 127.0.0.1, as (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def server_tls(
    certificate: tuple[pathlib.Path, pathlib.Path], monkeypatch: pytest.MonkeyPatch
) -> ssl.SSLContext:
    """Server-side TLS context; the client trusts the certificate through SSL_CERT_FILE."""
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def start_smtp() -> Iterator[Callable[..., tuple[Inbox, int]]]:
    """Start a real in-process SMTP server on 127.0.0.1; keyword arguments go to aiosmtpd."""
    controllers: list[Controller] = []

    def start(*, with_auth: bool = False, **options: Any) -> tuple[Inbox, int]:
        inbox = Inbox()
        if with_auth:
            options["authenticator"] = inbox.authenticate
        controller = Controller(
            inbox, hostname="127.0.0.1", port=free_port(), server_hostname="mx.test", **options
        )
        controller.start()
        controllers.append(controller)
        return inbox, controller.port

    yield start
    for controller in controllers:
        controller.stop()


def smtp_mailer(url: str) -> SMTPMailer:
    return SMTPMailer(parse_smtp_url(url), MAIL_FROM)


async def test_smtp_mailer_sends_text_and_html(start_smtp: Callable[..., tuple[Inbox, int]]):
    inbox, port = start_smtp()
    await smtp_mailer(f"smtp://127.0.0.1:{port}").send(MAIL)

    [envelope], [received] = inbox.envelopes, inbox.messages
    assert envelope.mail_from == "no-reply@aigen.test"
    assert envelope.rcpt_tos == [MAIL.to]
    assert received["From"] == MAIL_FROM
    assert received["To"] == MAIL.to
    assert received["Subject"] == MAIL.subject
    assert received["Date"].datetime.tzinfo is not None
    assert received["Message-ID"].endswith("@aigen.test>")
    assert received.get_content_type() == "multipart/alternative"
    assert body_text(received, "plain") == MAIL.text
    assert body_text(received, "html") == MAIL.html


async def test_smtp_mailer_sends_text_only(start_smtp: Callable[..., tuple[Inbox, int]]):
    inbox, port = start_smtp()
    await smtp_mailer(f"smtp://127.0.0.1:{port}").send(OutgoingMail("b@example.com", "Hi", "x"))

    [received] = inbox.messages
    assert received.get_content_type() == "text/plain"
    assert received.get_content().strip() == "x"


async def test_smtp_mailer_logs_in_after_starttls(
    start_smtp: Callable[..., tuple[Inbox, int]], server_tls: ssl.SSLContext
):
    inbox, port = start_smtp(tls_context=server_tls, require_starttls=True, with_auth=True)
    await smtp_mailer(f"smtp://{CREDENTIALS}@127.0.0.1:{port}").send(MAIL)

    assert inbox.logins == [USER.encode()]
    assert inbox.over_tls == [True]


async def test_smtps_mailer_uses_implicit_tls(
    start_smtp: Callable[..., tuple[Inbox, int]], server_tls: ssl.SSLContext
):
    # aiosmtpd does not notice implicit TLS and would refuse AUTH (aiosmtpd #281, #274).
    inbox, port = start_smtp(ssl_context=server_tls, with_auth=True, auth_require_tls=False)
    await smtp_mailer(f"smtps://{CREDENTIALS}@127.0.0.1:{port}").send(MAIL)

    assert inbox.logins == [USER.encode()]
    assert inbox.over_tls == [True]


async def test_password_is_never_sent_without_tls(start_smtp: Callable[..., tuple[Inbox, int]]):
    inbox, port = start_smtp(with_auth=True, auth_require_tls=False)
    with pytest.raises(MailError):
        await smtp_mailer(f"smtp://{CREDENTIALS}@127.0.0.1:{port}").send(MAIL)
    assert inbox.logins == []
    assert inbox.messages == []


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(SMTPSettings("127.0.0.1", 0, start_tls=True), id="starttls-not-offered"),
        pytest.param(SMTPSettings("127.0.0.1", 0, use_tls=True), id="tls-on-plain-port"),
    ],
)
async def test_smtp_mailer_refuses_missing_tls(
    start_smtp: Callable[..., tuple[Inbox, int]], settings: SMTPSettings
):
    inbox, port = start_smtp()
    settings = SMTPSettings(**{**vars(settings), "port": port, "timeout": 2.0})
    with pytest.raises(MailError):
        await SMTPMailer(settings, MAIL_FROM).send(MAIL)
    assert inbox.messages == []


async def test_smtp_mailer_wrong_password(
    start_smtp: Callable[..., tuple[Inbox, int]], server_tls: ssl.SSLContext
):
    inbox, port = start_smtp(tls_context=server_tls, with_auth=True)
    with pytest.raises(MailError):
        await smtp_mailer(f"smtp://{CREDENTIALS}x@127.0.0.1:{port}").send(MAIL)
    assert inbox.messages == []


async def test_smtp_mailer_unreachable_server():
    with pytest.raises(MailError, match=r"127\.0\.0\.1"):
        await smtp_mailer(f"smtp://127.0.0.1:{free_port()}").send(MAIL)


async def test_outbox_mailer_saves_eml_and_logs_no_body(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="aigen.clients.mail")
    folder = tmp_path / "outbox" / "new"
    await OutboxMailer(folder, MAIL_FROM).send(MAIL)

    [(path, saved)] = read_outbox(folder).items()
    assert (saved["From"], saved["To"], saved["Subject"]) == (MAIL_FROM, MAIL.to, MAIL.subject)
    assert body_text(saved, "plain") == MAIL.text
    assert body_text(saved, "html") == MAIL.html
    assert caplog.messages == [f"mail to {MAIL.to}: {MAIL.subject} (saved to {path})"]
    assert "SECRET-TOKEN" not in caplog.text


async def test_outbox_mailer_writes_links_that_can_be_copied(tmp_path: pathlib.Path):
    """Not quoted-printable: no =3D for '=' and no soft line break inside a long link."""
    link = "https://aigen.test/verify-email?token=" + "eyJ1c2VyIjo0Mn0" * 8 + ".ZqA.sig=="
    mail = OutgoingMail(to="ada@example.com", subject="Grüße", text=f"Grüße! Open\n{link}\n")
    await OutboxMailer(tmp_path, MAIL_FROM).send(mail)
    [(path, saved)] = read_outbox(tmp_path).items()
    assert link.encode() in path.read_bytes()
    assert body_text(saved, "plain") == mail.text.strip()


async def test_outbox_mailer_keeps_every_message(tmp_path: pathlib.Path):
    mailer = OutboxMailer(tmp_path, MAIL_FROM)
    await asyncio.gather(*(mailer.send(MAIL) for _ in range(5)))
    assert len(read_outbox(tmp_path)) == 5


async def test_outbox_mailer_unwritable_folder(tmp_path: pathlib.Path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(MailError):
        await OutboxMailer(tmp_path / "file", MAIL_FROM).send(MAIL)


async def test_background_mailer_returns_at_once_and_drain_delivers(
    start_smtp: Callable[..., tuple[Inbox, int]],
):
    inbox, port = start_smtp()
    background = BackgroundMailer(smtp_mailer(f"smtp://127.0.0.1:{port}"))

    background.send_later(MAIL)
    background.send_later(OutgoingMail("b@example.com", "Second", "x"))
    assert (background.sent, inbox.messages) == (0, [])

    await background.drain()
    assert (background.sent, background.failed) == (2, 0)
    assert sorted(m["To"] for m in inbox.messages) == ["ada@example.com", "b@example.com"]


async def test_background_mailer_logs_and_counts_failure(caplog: pytest.LogCaptureFixture):
    logger = logging.getLogger("test.mail")
    background = BackgroundMailer(smtp_mailer(f"smtp://127.0.0.1:{free_port()}"), logger=logger)

    background.send_later(MAIL)
    await background.drain()

    assert (background.sent, background.failed) == (0, 1)
    [record] = [r for r in caplog.records if r.name == "test.mail"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == f"mail to {MAIL.to} failed: {MAIL.subject}"
    assert "SECRET-TOKEN" not in caplog.text


class HangingMailer:
    async def send(self, mail: OutgoingMail) -> None:
        await asyncio.Event().wait()


async def test_background_mailer_drain_gives_up_after_timeout(caplog: pytest.LogCaptureFixture):
    background = BackgroundMailer(HangingMailer())
    background.send_later(MAIL)

    await background.drain(timeout=0.05)

    assert (background.sent, background.failed) == (0, 1)
    assert "gave up on 1 mail(s)" in caplog.text
    await background.drain(timeout=0.05)  # nothing left: returns at once


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SMTPSettings("mail.example.com", 587, start_tls=True)),
        ("smtp://localhost:1025", SMTPSettings("localhost", 1025, start_tls=None)),
        ("smtp://localhost:1025/", SMTPSettings("localhost", 1025, start_tls=None)),
        ("SMTP://Mail.Example.com:25", SMTPSettings("mail.example.com", 25, start_tls=None)),
        ("smtps://mail.example.com", SMTPSettings("mail.example.com", 465, True, False)),
        ("smtps://mail.example.com:2465", SMTPSettings("mail.example.com", 2465, True, False)),
        (
            f"smtp://{CREDENTIALS}@smtp.example.com:2525?timeout=2.5",
            SMTPSettings("smtp.example.com", 2525, False, True, USER, PASSWORD, 2.5),
        ),
        (
            f"smtps://{CREDENTIALS}@smtp.example.com?timeout=30",
            SMTPSettings("smtp.example.com", 465, True, False, USER, PASSWORD, 30.0),
        ),
    ],
)
def test_parse_smtp_url(url: str, expected: SMTPSettings):
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "smtp:// or smtps://"),
        ("mail.example.com", "smtp:// or smtps://"),
        ("http://mail.example.com", "smtp:// or smtps://"),
        ("smtp://", "no host"),
        ("smtp://:secret@:25", "no host"),
        ("smtp://[::1", "not a valid URL"),
        ("smtp://mail.example.com:abc", "port"),
        ("smtp://mail.example.com:0", "port"),
        ("smtp://mail.example.com:70000", "port"),
        ("smtp://user@mail.example.com", "user name and a password"),
        ("smtp://user:@mail.example.com", "user name and a password"),
        ("smtp://:secret@mail.example.com", "user name and a password"),
        ("smtp://mail.example.com/inbox", "path"),
        ("smtp://mail.example.com#x", "fragment"),
        ("smtp://mail.example.com?timeout=", "timeout"),
        ("smtp://mail.example.com?timeout=abc", "timeout"),
        ("smtp://mail.example.com?timeout=0", "timeout"),
        ("smtp://mail.example.com?timeout=-1", "timeout"),
        ("smtp://mail.example.com?timeout=inf", "timeout"),
        ("smtp://mail.example.com?starttls=no", "unknown options: starttls"),
    ],
)
def test_parse_smtp_url_rejects(url: str, problem: str):
    with pytest.raises(ValueError, match=problem) as error:
        parse_smtp_url(url)
    assert "secret" not in str(error.value)


def test_settings_repr_hides_password():
    settings = parse_smtp_url("smtp://user:hunter2@mail.example.com")
    assert "hunter2" not in repr(settings)
