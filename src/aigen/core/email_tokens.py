"""Signed, expiring e-mail verification tokens; single use comes from the nonce stored per user."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, URLSafeTimedSerializer

SALT = "aigen.verify-email"
MAX_AGE_SECONDS = 24 * 3600
NONCE_BYTES = 16


@dataclass(frozen=True)
class VerificationClaim:
    user_id: int
    email: str
    nonce: str


class TokenExpired(Exception):
    """The token is genuine but older than its allowed age."""


class TokenInvalid(Exception):
    """The token was not made by us for this purpose: forged, garbled or malformed."""


def new_nonce() -> str:
    """A fresh random nonce to store on the user row and put in the next token."""
    return secrets.token_urlsafe(NONCE_BYTES)


def make_token(secret_key: str, claim: VerificationClaim) -> str:
    """Sign a claim into a URL-safe token that carries its signing time."""
    payload = {"uid": claim.user_id, "email": claim.email, "n": claim.nonce}
    return _serializer(secret_key).dumps(payload)


def read_token(
    secret_key: str, token: str, *, max_age: int = MAX_AGE_SECONDS, now: float | None = None
) -> VerificationClaim:
    """Check signature, payload and age; TokenInvalid or TokenExpired when it does not hold."""
    try:
        payload, signed_at = _serializer(secret_key).loads(token, return_timestamp=True)
    except BadData as exc:
        raise TokenInvalid("verification token is not valid") from exc
    claim = _claim_from(payload)
    # Age is checked here rather than by loads(max_age=...) so tests can pass their own `now`.
    age = (time.time() if now is None else now) - signed_at.timestamp()
    if age > max_age:
        raise TokenExpired(f"verification token is {int(age)} s old, limit is {max_age} s")
    return claim


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def _claim_from(payload: Any) -> VerificationClaim:
    match payload:
        case {"uid": int(user_id), "email": str(email), "n": str(nonce)} if (
            not isinstance(user_id, bool) and email and nonce
        ):
            return VerificationClaim(user_id=user_id, email=email, nonce=nonce)
    raise TokenInvalid("verification token payload is malformed")
