"""E-mail verification by link: sending the link, following it, and asking for another.

Free credits wait for a verified address (see GenerationService.reserve). The link carries a
signed token (email_tokens.py) valid for 24 hours; only the newest link works, once: its nonce
is stored on the user row when it is sent and cleared when it is used.
"""

from __future__ import annotations

import enum
import hmac
import logging
from urllib.parse import urlencode

from quart import Blueprint, Response, render_template, request

from aigen.clients.mail import OutgoingMail
from aigen.clients.ratelimit import parse_rate_limit
from aigen.core.email_tokens import (
    MAX_AGE_SECONDS,
    TokenExpired,
    TokenInvalid,
    VerificationClaim,
    make_token,
    new_nonce,
    read_token,
)
from aigen.store import repository
from aigen.store.repository import User
from aigen.web.auth import current_user_id
from aigen.web.current_user import login_required, signed_in_user_id
from aigen.web.pages import current_user_row
from aigen.web.rate_limits import enforce
from aigen.web.runtime import runtime

log = logging.getLogger(__name__)

blueprint = Blueprint("verification", __name__)

RESEND_LIMIT = parse_rate_limit("3/hour")
RESEND_LIMITED_MESSAGE = (
    "You asked for several links already. Please check your inbox, or try again in {minutes} min."
)
SUBJECT = "Verify your e-mail address for aigen"
MAIL_TEXT = """Hello,

Open this link within 24 hours to verify your e-mail address and receive your free credits:

{link}

Only the newest link we sent works, and only once. If you did not sign in to aigen, you can
ignore this message.
"""


class Outcome(enum.Enum):
    """What following a verification link did."""

    VERIFIED = "verified"
    ALREADY_VERIFIED = "already_verified"
    USED = "used"
    EXPIRED = "expired"
    INVALID = "invalid"


OUTCOME_STATUS = {
    Outcome.VERIFIED: 200,
    Outcome.ALREADY_VERIFIED: 200,
    Outcome.USED: 410,
    Outcome.EXPIRED: 410,
    Outcome.INVALID: 400,
}


async def send_link(user_id: int, *, unless_sent_within: float | None = None) -> bool:
    """Store a new nonce and mail its link in the background; False when nothing was sent."""
    nonce = new_nonce()
    async with runtime().pool.acquire() as conn:
        email = await repository.update_verification_sent(
            conn, user_id, nonce, unless_sent_within=unless_sent_within
        )
    if email is None:
        return False
    settings = runtime().settings
    token = make_token(settings.secret_key, VerificationClaim(user_id, email, nonce))
    link = f"{settings.public_url}/verify-email?{urlencode({'token': token})}"
    mail = OutgoingMail(to=email, subject=SUBJECT, text=MAIL_TEXT.format(link=link))
    runtime().mailer.send_later(mail)
    log.info("verification link queued for user %s", user_id)  # never the link: it is a secret
    return True


async def send_link_after_sign_in(user: User) -> None:
    """Mail a link to an address the provider did not verify, unless one went out recently."""
    if user.email_verified or user.is_pro:
        return
    try:
        await send_link(user.id, unless_sent_within=MAX_AGE_SECONDS)
    except Exception:  # noqa: BLE001 - a mail problem must never fail the sign-in
        log.exception("could not send the verification link to user %s", user.id)


async def follow_link(token: str) -> tuple[Outcome, User | None]:
    """Check the token and, when it is the pending one, mark the address verified."""
    settings = runtime().settings
    try:
        claim = read_token(settings.secret_key, token)
    except TokenExpired:
        return Outcome.EXPIRED, None
    except TokenInvalid:
        return Outcome.INVALID, None
    async with runtime().pool.acquire() as conn, conn.transaction():
        user = await repository.lock_user(conn, claim.user_id)
        if user is None:
            return Outcome.INVALID, None
        pending = await repository.select_verification_nonce(conn, user.id)
        same_address = user.email.lower() == claim.email.lower()
        if pending is None or not same_address or not hmac.compare_digest(pending, claim.nonce):
            return Outcome.USED, user
        outcome = Outcome.ALREADY_VERIFIED if user.email_verified else Outcome.VERIFIED
        user = await repository.update_email_verified(conn, user.id)
    if outcome is Outcome.VERIFIED:
        log.info("user %s verified their e-mail address", claim.user_id)
    return outcome, user


@blueprint.get("/verify-email")
async def verify_email() -> tuple[str, int]:
    """Follow the link from the mail and say what happened."""
    outcome, user = await follow_link(request.args.get("token", ""))
    signed_in = current_user_id() is not None
    body = await render_template(
        "verification/result.html",
        outcome=outcome.value,
        # The layout shows `user` as whoever is signed in, who may not own the link.
        link_owner=user,
        user=await current_user_row() if signed_in else None,
        signed_in=signed_in,
    )
    return body, OUTCOME_STATUS[outcome]


@blueprint.post("/verify-email/resend")
@login_required
async def resend() -> str | Response:
    """Send a new link (the old one stops working); limited to a few per hour per user."""
    user_id = signed_in_user_id()
    await enforce(
        runtime().limiter, f"verify-resend:user:{user_id}", RESEND_LIMIT, RESEND_LIMITED_MESSAGE
    )
    sent = await send_link(user_id)
    template = "verification/_sent.html"
    if request.headers.get("HX-Request") != "true":
        template = "verification/sent.html"
    return await render_template(template, sent=sent)
