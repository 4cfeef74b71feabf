"""E-mail verification by link: sending the link, following it, and asking for another.

Free credits wait for a verified address (core/plans.py). The link carries a signed token
(email_tokens.py) valid for 24 hours; only the newest link works, once: its nonce is stored on
the user row when it is sent and cleared when it is used.
"""

from __future__ import annotations

import enum
import hmac
import logging
from urllib.parse import urlencode

import asyncpg

from aigen.clients.mail import BackgroundMailer, OutgoingMail
from aigen.clients.ratelimit import Decision
from aigen.core import limits
from aigen.core.database import connection
from aigen.core.email_tokens import (
    MAX_AGE_SECONDS,
    TokenExpired,
    TokenInvalid,
    VerificationClaim,
    make_token,
    new_nonce,
    read_token,
)
from aigen.core.plans import needs_verification
from aigen.store import repository
from aigen.store.repository import User

log = logging.getLogger(__name__)

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
    TAKEN = "taken"  # another account verified this address meanwhile


class VerificationService:
    """Sends and checks verification links for one app (pool, mailer, signing key, limiter)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        mailer: BackgroundMailer,
        limiter: limits.Limiter,
        *,
        secret_key: str,
        public_url: str,
        log_links: bool = False,
    ) -> None:
        self.pool = pool
        self.mailer = mailer
        self.limiter = limiter
        self.secret_key = secret_key
        self.public_url = public_url
        # Development only: the local outbox stands in for mail, so the link may be shown.
        self.log_links = log_links

    async def send_link(self, user_id: int, *, unless_sent_within: float | None = None) -> bool:
        """Store a new nonce and mail its link in the background; False when nothing was sent."""
        nonce = new_nonce()
        async with connection(self.pool) as conn:
            email = await repository.update_verification_sent(
                conn, user_id, nonce, unless_sent_within=unless_sent_within
            )
        if email is None:
            return False
        token = make_token(self.secret_key, VerificationClaim(user_id, email, nonce))
        link = f"{self.public_url}/verify-email?{urlencode({'token': token})}"
        mail = OutgoingMail(to=email, subject=SUBJECT, text=MAIL_TEXT.format(link=link))
        self.mailer.send_later(mail)
        if self.log_links:
            log.info("verification link for user %s (development outbox): %s", user_id, link)
        else:
            log.info("verification link queued for user %s", user_id)  # the link is a secret
        return True

    async def send_link_after_sign_in(self, user: User) -> None:
        """Mail a link to an address the provider did not verify, unless one went out recently."""
        if not needs_verification(user):
            return
        try:
            await self.send_link(user.id, unless_sent_within=MAX_AGE_SECONDS)
        except Exception:  # a mail problem must never fail the sign-in
            log.exception("could not send the verification link to user %s", user.id)

    async def resend(self, user_id: int) -> tuple[bool, Decision]:
        """A new link on request (the old one stops working), a few per hour per user."""
        decision = await limits.check(
            self.limiter,
            limits.resend_key(user_id),
            limits.RESEND_LIMIT,
            limits.RESEND_LIMITED_MESSAGE,
        )
        return await self.send_link(user_id), decision

    async def follow_link(self, token: str) -> tuple[Outcome, User | None]:
        """Check the token and, when it is the pending one, mark the address verified."""
        try:
            claim = read_token(self.secret_key, token)
        except TokenExpired:
            return Outcome.EXPIRED, None
        except TokenInvalid:
            return Outcome.INVALID, None
        try:
            outcome, user = await self._use_link(claim)
        except asyncpg.UniqueViolationError:  # another account verified it at the same instant
            outcome, user = Outcome.TAKEN, None
        if outcome is Outcome.VERIFIED:
            log.info("user %s verified their e-mail address", claim.user_id)
        return outcome, user

    async def _use_link(self, claim: VerificationClaim) -> tuple[Outcome, User | None]:
        """Verify the address when the claim names the pending link and nobody else owns it."""
        async with connection(self.pool) as conn, conn.transaction():
            user = await repository.lock_user(conn, claim.user_id)
            if user is None:
                return Outcome.INVALID, None
            pending = await repository.select_verification_nonce(conn, user.id)
            same_address = user.email.lower() == claim.email.lower()
            if pending is None or not same_address or not hmac.compare_digest(pending, claim.nonce):
                return Outcome.USED, user
            outcome = Outcome.ALREADY_VERIFIED if user.email_verified else Outcome.VERIFIED
            verified = await repository.update_email_verified(conn, user.id)
        if verified is None:
            return Outcome.TAKEN, user
        return outcome, verified
