"""E-mail verification: the link mailed through a real SMTP server, followed through the app."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from quart import Quart
from quart.typing import TestClientProtocol as Client

from aigen.app import create_app
from aigen.config import LOCAL_OUTBOX
from aigen.core import verification
from aigen.core.email_tokens import MAX_AGE_SECONDS, VerificationClaim, make_token, read_token
from aigen.core.generation import VERIFY_EMAIL_MESSAGE
from aigen.core.verification import SUBJECT
from aigen.dev.oidc_provider import LocalOIDCProvider
from aigen.store import repository
from aigen.web.runtime import EXTENSION_KEY
from tests.helpers import (
    GENERATE,
    TEST_SECRET_KEY,
    announced_dev_defaults,
    counts,
    make_user,
    page_csrf_token,
    signed_in,
)

LINK = re.compile(r"https?://\S+/verify-email\?token=\S+")
HTMX = {"HX-Request": "true"}


class Inbox:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 Message accepted for delivery"

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        """Until `count` messages arrived (mail is sent in the background)."""
        deadline = time.monotonic() + timeout
        # Polled: the server runs on a loop in another thread, so no asyncio.Event is shared.
        while len(self.messages) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(self.messages) >= count, f"{len(self.messages)} of {count} mails arrived"
        return self.messages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server in this process."""
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


@pytest.fixture
def mail_settings(app_settings: dict[str, str], inbox: tuple[Inbox, int]) -> dict[str, str]:
    return {**app_settings, "SMTP_URL": f"smtp://127.0.0.1:{inbox[1]}"}


@pytest.fixture
async def mail_app(mail_settings: dict[str, str], db) -> AsyncIterator[Quart]:
    app = create_app(mail_settings)
    async with app.test_app():
        yield app


def link_in(message: EmailMessage) -> str:
    """The path and query of the verification link in a received mail."""
    body = message.get_body(("plain",))
    assert body is not None, "no text/plain body in the mail"
    match = LINK.search(body.get_content())
    assert match, "no verification link in the mail"
    parts = urlsplit(match.group(0))
    return f"{parts.path}?{parts.query}"


async def sign_in(app: Quart, provider: LocalOIDCProvider, sub: str, *, verified: bool) -> Client:
    """The real OIDC round trip: /login, the provider's form, our callback."""
    provider.set_user(sub, email=sub, email_verified=verified, name="Una Verified")
    client = app.test_client()
    login = await client.get("/login")
    async with httpx.AsyncClient() as browser:
        callback = await provider.sign_in_via_form(login.headers["Location"], sub, browser)
    parts = urlsplit(callback)
    response = await client.get(f"{parts.path}?{parts.query}")
    assert response.status_code == 302, await response.get_data(as_text=True)
    return client


async def csrf_htmx(client) -> dict[str, str]:
    """Headers of an htmx request from one of our pages: HX-Request and the CSRF token."""
    return {**HTMX, "X-CSRF-Token": await page_csrf_token(client)}


async def page_text(response) -> str:
    return " ".join((await response.get_data(as_text=True)).split())


# --- the whole path -------------------------------------------------------------------------


async def test_unverified_sign_in_mails_a_link_that_unlocks_free_credits(
    mail_app: Quart, inbox, oidc_provider: LocalOIDCProvider, db, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await sign_in(mail_app, oidc_provider, "una@example.com", verified=False)
    user_id = await db.fetchval("SELECT id FROM users WHERE email = 'una@example.com'")

    refused = await client.post(GENERATE, json={"prompt": "free credits please"})
    assert refused.status_code == 403
    assert await refused.get_json() == {"error": VERIFY_EMAIL_MESSAGE, "verify_email": True}
    assert await counts(db, user_id) == (0, {})

    (message,) = await inbox[0].wait_for(1)
    assert message["To"] == "una@example.com"
    assert message["Subject"] == SUBJECT
    link = link_in(message)
    followed = await client.get(link)
    assert followed.status_code == 200
    followed_text = await page_text(followed)
    assert "Your e-mail address is verified" in followed_text
    # The header shows the row as the link left it, not as it was read before (QA).
    assert "Verify for credits" not in followed_text
    assert await db.fetchval("SELECT email_verified FROM users WHERE id = $1", user_id)

    assert (await client.post(GENERATE, json={"prompt": "now?"})).status_code == 200
    again = await client.get(link)
    assert again.status_code == 410
    assert "already been used" in await page_text(again)
    token = link.split("token=", 1)[1]
    assert not [record for record in caplog.records if token in record.getMessage()]


async def test_link_works_in_another_browser(mail_app: Quart, inbox, db) -> None:
    """The token is the proof: following it needs no session."""
    una = await make_user(db, "una@example.com", verified=False)
    async with mail_app.app_context():
        assert await mail_app.extensions[EXTENSION_KEY].verification.send_link(una.id)
    (message,) = await inbox[0].wait_for(1)
    response = await mail_app.test_client().get(link_in(message))
    assert response.status_code == 200
    assert "Your e-mail address is verified" in await page_text(response)


async def test_provider_verified_sign_in_sends_nothing_and_generates(
    mail_app: Quart, inbox, oidc_provider: LocalOIDCProvider, db
) -> None:
    client = await sign_in(mail_app, oidc_provider, "vera@example.com", verified=True)
    assert (await client.post(GENERATE, json={"prompt": "hi"})).status_code == 200
    await asyncio.sleep(0.2)
    assert inbox[0].messages == []


async def test_second_sign_in_does_not_send_another_link(
    mail_app: Quart, inbox, oidc_provider: LocalOIDCProvider
) -> None:
    await sign_in(mail_app, oidc_provider, "twice@example.com", verified=False)
    await sign_in(mail_app, oidc_provider, "twice@example.com", verified=False)
    await inbox[0].wait_for(1)
    await asyncio.sleep(0.2)
    assert len(inbox[0].messages) == 1


async def test_pro_users_are_not_held_back_by_verification(mail_app: Quart, db) -> None:
    pro = await make_user(db, "payer@example.com", plan="PRO", verified=False)
    async with signed_in(mail_app, pro.id) as client:
        assert (await client.post(GENERATE, json={"prompt": "paid"})).status_code == 200


async def test_verification_is_checked_before_the_credit_limit(mail_app: Quart, db) -> None:
    spent = await make_user(db, "spent@example.com", credits_limit=0, verified=False)
    async with signed_in(mail_app, spent.id) as client:
        response = await client.post(GENERATE, json={"prompt": "x"})
    assert response.status_code == 403 and (await response.get_json())["verify_email"] is True


# --- the three bad tokens ---------------------------------------------------------------------


async def test_expired_link_offers_a_new_one(
    mail_app: Quart, inbox, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    una = await make_user(db, "una@example.com", verified=False)
    async with mail_app.app_context():
        await mail_app.extensions[EXTENSION_KEY].verification.send_link(una.id)
    (message,) = await inbox[0].wait_for(1)

    def a_day_later(secret_key: str, token: str) -> VerificationClaim:
        return read_token(secret_key, token, now=time.time() + MAX_AGE_SECONDS + 60)

    monkeypatch.setattr(verification, "read_token", a_day_later)
    async with signed_in(mail_app, una.id) as client:
        response = await client.get(link_in(message))
    assert response.status_code == 410
    text = await page_text(response)
    assert "This link has expired" in text and 'hx-post="/verify-email/resend"' in text
    assert not await db.fetchval("SELECT email_verified FROM users WHERE id = $1", una.id)
    signed_out = await mail_app.test_client().get(link_in(message))
    assert "Sign in" in await page_text(signed_out)


async def test_superseded_link_is_refused_and_the_newest_works(mail_app: Quart, inbox, db) -> None:
    una = await make_user(db, "una@example.com", verified=False)
    async with signed_in(mail_app, una.id) as client:
        async with mail_app.app_context():
            await mail_app.extensions[EXTENSION_KEY].verification.send_link(una.id)
        await client.post("/verify-email/resend", headers=await csrf_htmx(client))
        first, second = await inbox[0].wait_for(2)
        old = await client.get(link_in(first))
        new = await client.get(link_in(second))
    assert old.status_code == 410
    assert "already been used" in await page_text(old)
    assert 'hx-post="/verify-email/resend"' in await page_text(old)
    assert new.status_code == 200


async def test_a_link_stops_working_once_another_account_verified_the_address(
    mail_app: Quart, inbox, db
) -> None:
    """The squatter's link reached the owner's mailbox; after the owner signed in, it is dead."""
    squatter = await make_user(db, "owner@example.com", verified=False)
    async with mail_app.app_context():
        assert await mail_app.extensions[EXTENSION_KEY].verification.send_link(squatter.id)
    (message,) = await inbox[0].wait_for(1)
    await repository.upsert_user(
        db,
        sub="owner-sub",
        email="OWNER@example.com",
        email_verified=True,
        name=None,
        avatar_url=None,
        credits_limit=3,
    )
    response = await mail_app.test_client().get(link_in(message))
    assert response.status_code == 409
    assert "verified by another aigen account" in await page_text(response)
    assert not await db.fetchval("SELECT email_verified FROM users WHERE id = $1", squatter.id)
    async with signed_in(mail_app, squatter.id) as client:
        resent = await client.post("/verify-email/resend", headers=await csrf_htmx(client))
    assert "verified by another aigen account" in await page_text(resent)
    await asyncio.sleep(0.2)
    assert len(inbox[0].messages) == 1


def forged_tokens() -> list[str]:
    genuine = make_token(TEST_SECRET_KEY, VerificationClaim(1, "una@example.com", "nonce"))
    other_key = make_token("another-secret", VerificationClaim(1, "una@example.com", "nonce"))
    payload, stamp, signature = genuine.split(".")
    return [
        "",
        "not-a-token",
        other_key,
        f"{payload}.{stamp}.{signature[:-2]}xx",
        f"{make_token(TEST_SECRET_KEY, VerificationClaim(2, 'x@example.com', 'n')).split('.')[0]}"
        f".{stamp}.{signature}",
    ]


@pytest.mark.parametrize("token", forged_tokens())
async def test_forged_link_gets_a_clear_page(mail_app: Quart, db, token: str) -> None:
    await make_user(db, "una@example.com", verified=False)
    response = await mail_app.test_client().get("/verify-email", query_string={"token": token})
    assert response.status_code == 400
    assert "This link is not valid" in await page_text(response)
    assert await db.fetchval("SELECT count(*) FROM users WHERE email_verified") == 0


async def test_genuine_token_of_a_deleted_user_is_not_valid(mail_app: Quart, inbox, db) -> None:
    una = await make_user(db, "una@example.com", verified=False)
    async with mail_app.app_context():
        await mail_app.extensions[EXTENSION_KEY].verification.send_link(una.id)
    (message,) = await inbox[0].wait_for(1)
    await db.execute("DELETE FROM users WHERE id = $1", una.id)
    assert (await mail_app.test_client().get(link_in(message))).status_code == 400


async def test_link_for_a_previous_address_is_refused(mail_app: Quart, inbox, db) -> None:
    una = await make_user(db, "una@example.com", verified=False)
    async with mail_app.app_context():
        await mail_app.extensions[EXTENSION_KEY].verification.send_link(una.id)
    (message,) = await inbox[0].wait_for(1)
    await db.execute("UPDATE users SET email = 'new@example.com' WHERE id = $1", una.id)
    response = await mail_app.test_client().get(link_in(message))
    assert response.status_code == 410
    assert not await db.fetchval("SELECT email_verified FROM users WHERE id = $1", una.id)


async def test_provider_verified_meanwhile_says_already_verified(
    mail_app: Quart, inbox, db
) -> None:
    una = await make_user(db, "una@example.com", verified=False)
    async with mail_app.app_context():
        await mail_app.extensions[EXTENSION_KEY].verification.send_link(una.id)
    (message,) = await inbox[0].wait_for(1)
    await make_user(db, "una@example.com", verified=True)  # the provider now vouches for it
    response = await mail_app.test_client().get(link_in(message))
    assert response.status_code == 200
    assert "Already verified" in await page_text(response)


async def test_changed_address_loses_verification_and_pending_link(db) -> None:
    from aigen.store import repository

    una = await make_user(db, "una@example.com", verified=True)
    await db.execute("UPDATE users SET verify_nonce = 'n' WHERE id = $1", una.id)
    moved = await repository.upsert_user(
        db, sub=una.sub, email="elsewhere@example.com", email_verified=False, name=None,
        avatar_url=None, credits_limit=3,
    )  # fmt: skip
    assert moved.email_verified is False
    assert await repository.select_verification_nonce(db, una.id) is None


# --- resend ------------------------------------------------------------------------------------


async def test_resend_htmx_answers_a_partial_and_mails(mail_app: Quart, inbox, db) -> None:
    una = await make_user(db, "una@example.com", verified=False)
    async with signed_in(mail_app, una.id) as client:
        response = await client.post("/verify-email/resend", headers=await csrf_htmx(client))
    assert response.status_code == 200
    body = await page_text(response)
    assert "on its way" in body and "<html" not in body
    (message,) = await inbox[0].wait_for(1)
    assert message["To"] == "una@example.com"


async def test_resend_is_rate_limited(mail_app: Quart, inbox, db) -> None:
    una = await make_user(db, "una@example.com", verified=False)
    async with signed_in(mail_app, una.id) as client:
        headers = await csrf_htmx(client)
        sent = [await client.post("/verify-email/resend", headers=headers) for _ in range(3)]
        htmx_refused = await client.post("/verify-email/resend", headers=await csrf_htmx(client))
        page_refused = await client.post(
            "/verify-email/resend", form={"csrf_token": await page_csrf_token(client)}
        )
    assert [response.status_code for response in sent] == [200, 200, 200]
    assert sent[-1].headers["RateLimit-Remaining"] == "0"
    assert htmx_refused.status_code == 200 and htmx_refused.headers["X-Aigen-Status"] == "429"
    assert "You asked for several links already" in await page_text(htmx_refused)
    assert page_refused.status_code == 429 and int(page_refused.headers["Retry-After"]) > 0
    await inbox[0].wait_for(3)
    await asyncio.sleep(0.2)
    assert len(inbox[0].messages) == 3


async def test_resend_when_verified_sends_nothing(mail_app: Quart, inbox, user) -> None:
    async with signed_in(mail_app, user.id) as client:
        response = await client.post("/verify-email/resend", headers=await csrf_htmx(client))
    assert "already verified" in await page_text(response)
    await asyncio.sleep(0.2)
    assert inbox[0].messages == []


async def test_resend_needs_sign_in(mail_app: Quart) -> None:
    response = await mail_app.test_client().post("/verify-email/resend")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


# --- mail problems and the development outbox ---------------------------------------------------


async def test_unreachable_smtp_does_not_break_sign_in(
    app_settings, db, oidc_provider: LocalOIDCProvider, caplog
) -> None:
    app = create_app({**app_settings, "SMTP_URL": f"smtp://127.0.0.1:{free_port()}"})
    async with app.test_app():
        with caplog.at_level(logging.ERROR):
            await sign_in(app, oidc_provider, "lost@example.com", verified=False)
            mailer = app.extensions[EXTENSION_KEY].mailer
            for _ in range(100):
                if mailer.failed:
                    break
                await asyncio.sleep(0.05)
    assert mailer.failed == 1
    assert any(
        "mail to lost@example.com failed" in record.getMessage() for record in caplog.records
    )


async def test_development_outbox_keeps_the_mail(
    app_settings, db, oidc_provider: LocalOIDCProvider, caplog
) -> None:
    caplog.set_level(logging.INFO)
    outbox = f"{app_settings['AIGEN_DATA_DIR']}/outbox"
    app = create_app(app_settings)
    assert LOCAL_OUTBOX in announced_dev_defaults(app)
    async with app.test_app():
        client = await sign_in(app, oidc_provider, "dev-mail@example.com", verified=False)
        await app.extensions[EXTENSION_KEY].mailer.drain()
        (saved,) = Path(outbox).glob("*.eml")  # noqa: ASYNC240 - a small tmp folder
        message = email.message_from_bytes(saved.read_bytes(), policy=email.policy.default)
        response = await client.get(link_in(message))
    assert response.status_code == 200
    # The outbox is a local stand-in: the link is in the log, and whole in the file (no
    # quoted-printable =3D or soft line breaks), so either can be copied.
    link = link_in(message)
    assert link.encode() in saved.read_bytes()
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "mail to dev-mail@example.com" in logged and link in logged


async def test_someone_elses_link_does_not_show_their_account_in_the_nav(
    mail_app: Quart, inbox, db
) -> None:
    """Bob signed in opens Ada's link: the layout keeps showing Bob, not Ada."""
    ada = await make_user(db, "ada@example.com", verified=False)
    bob = await make_user(db, "bob@example.com")
    async with mail_app.app_context():
        assert await mail_app.extensions[EXTENSION_KEY].verification.send_link(ada.id)
    (message,) = await inbox[0].wait_for(1)
    async with signed_in(mail_app, bob.id) as client:
        response = await client.get(link_in(message))
    html = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'title="bob@example.com"' in html and "ada@example.com" not in html
