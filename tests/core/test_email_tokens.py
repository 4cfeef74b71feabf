import time
from collections.abc import Callable

import pytest
from itsdangerous import URLSafeTimedSerializer

from aigen.core.email_tokens import (
    MAX_AGE_SECONDS,
    SALT,
    TokenExpired,
    TokenInvalid,
    VerificationClaim,
    make_token,
    new_nonce,
    read_token,
)

SECRET = "test-secret-key-that-is-long-enough-0123456789"
OTHER_SECRET = "another-secret-key-nobody-should-accept-98765"
CLAIM = VerificationClaim(user_id=42, email="ada@example.com", nonce="n0nce-abc")
PAYLOAD = {"uid": 42, "email": "ada@example.com", "n": "n0nce-abc"}


def swap_payload(token: str) -> str:
    """Keep the timestamp and signature of `token` but carry someone else's claim."""
    other = make_token(OTHER_SECRET, VerificationClaim(1, "eve@example.com", "n0nce-abc"))
    return ".".join([other.split(".")[0], *token.split(".")[1:]])


def test_round_trip() -> None:
    assert read_token(SECRET, make_token(SECRET, CLAIM)) == CLAIM


@pytest.mark.parametrize(
    ("age", "max_age"),
    [(0, MAX_AGE_SECONDS), (MAX_AGE_SECONDS - 1, MAX_AGE_SECONDS), (59, 60)],
)
def test_token_within_max_age_is_accepted(age: int, max_age: int) -> None:
    token = make_token(SECRET, CLAIM)
    assert read_token(SECRET, token, max_age=max_age, now=time.time() + age) == CLAIM


@pytest.mark.parametrize(
    ("age", "max_age"),
    [(MAX_AGE_SECONDS + 2, MAX_AGE_SECONDS), (7 * MAX_AGE_SECONDS, MAX_AGE_SECONDS), (62, 60)],
)
def test_old_token_is_expired(age: int, max_age: int) -> None:
    token = make_token(SECRET, CLAIM)
    with pytest.raises(TokenExpired):
        read_token(SECRET, token, max_age=max_age, now=time.time() + age)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: make_token(OTHER_SECRET, CLAIM), id="forged-other-secret"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "not-a-token", id="no-dots"),
        pytest.param(lambda t: "a.b.c", id="garbage-parts"),
        pytest.param(lambda t: t[:-4], id="truncated-signature"),
        pytest.param(lambda t: t + "x", id="extra-character"),
        pytest.param(lambda t: t.rsplit(".", 1)[0], id="signature-missing"),
        pytest.param(swap_payload, id="tampered-payload"),
        pytest.param(
            lambda t: URLSafeTimedSerializer(SECRET, salt="aigen.reset-password").dumps(PAYLOAD),
            id="wrong-salt",
        ),
        pytest.param(lambda t: URLSafeTimedSerializer(SECRET).dumps(PAYLOAD), id="default-salt"),
    ],
)
def test_bad_token_is_invalid(mangle: Callable[[str], str]) -> None:
    with pytest.raises(TokenInvalid):
        read_token(SECRET, mangle(make_token(SECRET, CLAIM)))


@pytest.mark.parametrize(
    "payload",
    [
        [42, "ada@example.com", "n0nce-abc"],
        "ada@example.com",
        {"uid": "42", "email": "ada@example.com", "n": "n0nce-abc"},
        {"uid": True, "email": "ada@example.com", "n": "n0nce-abc"},
        {"uid": 42, "email": "", "n": "n0nce-abc"},
        {"uid": 42, "email": "ada@example.com", "n": ""},
        {"uid": 42, "email": "ada@example.com", "n": None},
        {"uid": 42, "email": "ada@example.com"},
    ],
)
def test_genuinely_signed_bad_payload_is_invalid(payload: object) -> None:
    token = URLSafeTimedSerializer(SECRET, salt=SALT).dumps(payload)
    with pytest.raises(TokenInvalid):
        read_token(SECRET, token)


def test_forged_token_is_invalid_not_expired_even_when_old() -> None:
    token = make_token(OTHER_SECRET, CLAIM)
    with pytest.raises(TokenInvalid):
        read_token(SECRET, token, now=time.time() + 10 * MAX_AGE_SECONDS)


def test_nonces_are_fresh_and_url_safe() -> None:
    nonces = {new_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(len(n) >= 20 and n.replace("-", "").replace("_", "").isalnum() for n in nonces)
