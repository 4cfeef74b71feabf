"""Sign-in over real HTTP: oidc-provider-mock for the happy path, our own provider for forgeries."""

import base64
import hashlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey
from quart import Response

from aigen.clients.oidc import (
    MESSAGE_BAD_ANSWER,
    MESSAGE_EXPIRED,
    MESSAGE_INCOMPLETE,
    MESSAGE_NO_EMAIL,
    MESSAGE_REFUSED,
    MESSAGE_UNAVAILABLE,
    MESSAGE_UNVERIFIED,
    Identity,
    OIDCClient,
    PendingSignIn,
    SignInError,
)
from aigen.dev.oidc_provider import HOST, LocalOIDCProvider, LocalOIDCProviderError
from aigen.dev.serving import find_free_port
from tests.fake_provider import JSON, FakeProvider

CLIENT_ID = "aigen-test"
CLIENT_SECRET = "test-secret"
REDIRECT_URI = "http://127.0.0.1:5000/auth/callback"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    with fake.served():
        yield fake


@pytest.fixture
def fake(fake_server: FakeProvider) -> FakeProvider:
    fake_server.reset()
    return fake_server


@pytest.fixture
async def client(fake: FakeProvider) -> AsyncIterator[OIDCClient]:
    client = make_client(fake.discovery_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalOIDCProvider]:
    with LocalOIDCProvider() as provider:
        yield provider


@pytest.fixture
async def mock_client(provider: LocalOIDCProvider) -> AsyncIterator[OIDCClient]:
    client = make_client(provider.discovery_url)
    yield client
    await client.aclose()


@pytest.fixture
def sign_in_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="aigen.clients.oidc")
    return caplog


def make_client(discovery_url: str) -> OIDCClient:
    """Our relying party, configured for the test client."""
    return OIDCClient(
        discovery_url=discovery_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT_URI,
    )


def query_of(url: str) -> dict[str, str]:
    """The query arguments of a URL."""
    return dict(parse_qsl(urlsplit(url).query))


def valid_claims(fake: FakeProvider, nonce: str) -> dict[str, Any]:
    """Claims of an ID token that should be accepted."""
    now = int(time.time())
    return {
        "iss": fake.issuer,
        "aud": CLIENT_ID,
        "sub": "10769150350006150715113082367",
        "email": "jane@example.com",
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
        "nonce": nonce,
    }


def at_run_time(changes: dict[str, Any]) -> dict[str, Any]:
    """Turn the time claims of a parametrized case (offsets in seconds) into timestamps now."""
    now = int(time.time())
    return {
        k: now + v if k in ("exp", "iat", "nbf") and v is not None else v
        for k, v in changes.items()
    }


async def sign_in_with_claims(
    client: OIDCClient, fake: FakeProvider, changes: dict[str, Any], key: RSAKey | None = None
) -> Identity:
    """Run begin/finish against the fake provider; `changes` values of None drop the claim."""
    url, pending = await client.begin()
    claims = valid_claims(fake, query_of(url)["nonce"]) | changes
    fake.answer_with_id_token({k: v for k, v in claims.items() if v is not None}, key)
    return await client.finish({"code": "the-code", "state": pending.state}, pending)


# --- The happy path, against the real oidc-provider-mock ---------------------------------------


@pytest.mark.parametrize("verified", [True, False])
async def test_sign_in_through_local_provider(
    provider: LocalOIDCProvider, mock_client: OIDCClient, verified: bool
) -> None:
    sub = f"user-{verified}"
    provider.set_user(sub, email=f"{sub}@example.com", email_verified=verified, name="Jane Doe")
    url, pending = await mock_client.begin()
    async with httpx.AsyncClient() as browser:
        callback = await provider.sign_in_via_form(url, sub, browser)

    assert callback.startswith(REDIRECT_URI + "?")
    identity = await mock_client.finish(query_of(callback), pending)

    assert identity == Identity(
        sub=sub, email=f"{sub}@example.com", email_verified=verified, name="Jane Doe", picture=None
    )


async def test_denied_at_local_provider(
    provider: LocalOIDCProvider, mock_client: OIDCClient, sign_in_log: pytest.LogCaptureFixture
) -> None:
    url, pending = await mock_client.begin()
    async with httpx.AsyncClient() as browser:
        response = await browser.post(url, data={"action": "deny"})

    with pytest.raises(SignInError, match=MESSAGE_REFUSED):
        await mock_client.finish(query_of(response.headers["location"]), pending)
    assert "access_denied" in sign_in_log.text


def test_local_provider_refuses_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIGEN_ENV", "production")
    with pytest.raises(LocalOIDCProviderError, match="production"):
        LocalOIDCProvider().start()


def test_local_provider_start_failure_shows_stderr() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        busy = LocalOIDCProvider(port=taken.getsockname()[1])
        with pytest.raises(LocalOIDCProviderError, match="(?s)exited with status.*stderr"):
            busy.start()


# --- What we send, what we cache, against our own provider ------------------------------------


@pytest.mark.parametrize(
    ("supported", "expected"),
    [
        (["client_secret_post"], "client_secret_post"),
        (["client_secret_basic", "client_secret_post"], "client_secret_basic"),
        (None, "client_secret_basic"),
    ],
)
async def test_code_exchange_request(
    fake: FakeProvider, client: OIDCClient, supported: list[str] | None, expected: str
) -> None:
    fake.auth_methods = supported
    url, pending = await client.begin()
    authorize = query_of(url)
    fake.answer_with_id_token(valid_claims(fake, authorize["nonce"]))
    await client.finish({"code": "the-code", "state": pending.state}, pending)

    [sent] = fake.token_requests
    challenge = base64.urlsafe_b64encode(hashlib.sha256(sent["code_verifier"].encode()).digest())
    assert authorize["code_challenge"] == challenge.rstrip(b"=").decode()
    assert authorize["code_challenge_method"] == "S256"
    assert authorize["scope"] == "openid email profile"
    assert sent["grant_type"] == "authorization_code" and sent["code"] == "the-code"
    assert sent["redirect_uri"] == REDIRECT_URI
    if expected == "client_secret_post":
        assert (sent["client_secret"], sent["authorization"]) == (CLIENT_SECRET, None)
    else:
        assert "client_secret" not in sent and sent["authorization"].startswith("Basic ")


async def test_discovery_and_keys_fetched_once(fake: FakeProvider, client: OIDCClient) -> None:
    for _ in range(2):
        await sign_in_with_claims(client, fake, {})
    assert fake.fetches == {"discovery": 1, "jwks": 1}


async def test_rotated_key_is_fetched(fake: FakeProvider, client: OIDCClient) -> None:
    await sign_in_with_claims(client, fake, {})
    new_key = RSAKey.generate_key(2048, parameters={"kid": "fake-2"})
    fake.served_keys = [fake.key, new_key]
    identity = await sign_in_with_claims(client, fake, {}, key=new_key)
    assert identity.email == "jane@example.com"
    assert fake.fetches["jwks"] == 2


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"email_verified": "true", "name": "Jane", "picture": "https://x/j.png"}, (True, "Jane")),
        ({"email_verified": "false", "name": ""}, (False, None)),
        ({"email_verified": None}, (False, None)),
        ({"aud": [CLIENT_ID, "other"], "azp": CLIENT_ID}, (True, None)),
        ({"aud": [CLIENT_ID]}, (True, None)),
        # Relative to the moment the test runs (see the test body), not to collection time.
        ({"exp": -30, "iat": +30}, (True, None)),
    ],
    ids=["string-true", "string-false", "no-verified", "azp-is-us", "aud-list", "clock-skew"],
)
async def test_accepted_claims(
    fake: FakeProvider, client: OIDCClient, changes: dict[str, Any], expected: tuple
) -> None:
    identity = await sign_in_with_claims(client, fake, at_run_time(changes))
    assert (identity.email_verified, identity.name) == expected


# --- Refused sign-ins ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message", "reason"),
    [
        ({"iss": "https://evil.example"}, MESSAGE_UNVERIFIED, "'iss'"),
        ({"aud": "someone-else"}, MESSAGE_UNVERIFIED, "'aud'"),
        ({"aud": ["someone-else", "another"]}, MESSAGE_UNVERIFIED, "'aud'"),
        ({"aud": [CLIENT_ID, "other"], "azp": "other"}, MESSAGE_UNVERIFIED, "azp 'other'"),
        ({"aud": [CLIENT_ID, "other"]}, MESSAGE_UNVERIFIED, "azp None"),
        ({"azp": "other"}, MESSAGE_UNVERIFIED, "azp 'other'"),
        # Times are offsets from the moment the test runs.
        ({"exp": -120}, MESSAGE_UNVERIFIED, "expired"),
        ({"iat": +120}, MESSAGE_UNVERIFIED, "in the future"),
        ({"nbf": +120}, MESSAGE_UNVERIFIED, "not yet valid"),
        ({"nonce": "replayed"}, MESSAGE_UNVERIFIED, "nonce"),
        ({"nonce": None}, MESSAGE_UNVERIFIED, "nonce"),
        ({"exp": None}, MESSAGE_UNVERIFIED, "'exp'"),
        ({"sub": None}, MESSAGE_UNVERIFIED, "'sub'"),
        ({"email": None}, MESSAGE_NO_EMAIL, "no email"),
    ],
    ids=[
        "foreign-iss",
        "wrong-aud",
        "wrong-aud-list",
        "foreign-azp",
        "aud-list-no-azp",
        "azp-not-us",
        "expired",
        "iat-future",
        "nbf-future",
        "bad-nonce",
        "no-nonce",
        "no-exp",
        "no-sub",
        "no-email",
    ],
)
async def test_refused_claims(
    fake: FakeProvider,
    client: OIDCClient,
    sign_in_log: pytest.LogCaptureFixture,
    changes: dict[str, Any],
    message: str,
    reason: str,
) -> None:
    changes = at_run_time(changes)
    with pytest.raises(SignInError) as refused:
        await sign_in_with_claims(client, fake, changes)
    assert str(refused.value) == message
    assert reason in sign_in_log.text
    assert fake.id_token not in sign_in_log.text


@pytest.mark.parametrize(
    ("kid", "reason", "jwks_fetches"),
    [("stranger", "key unknown", 2), ("fake-1", "bad_signature", 1)],
    ids=["unknown-kid", "bad-signature"],
)
async def test_refused_signature(
    fake: FakeProvider,
    client: OIDCClient,
    sign_in_log: pytest.LogCaptureFixture,
    kid: str,
    reason: str,
    jwks_fetches: int,
) -> None:
    forger = RSAKey.generate_key(2048, parameters={"kid": kid})
    with pytest.raises(SignInError, match=MESSAGE_UNVERIFIED):
        await sign_in_with_claims(client, fake, {}, key=forger)
    assert reason in sign_in_log.text
    assert fake.fetches["jwks"] == jwks_fetches


@pytest.mark.parametrize(
    ("params", "message", "reason"),
    [
        ({"state": "forged", "code": "c"}, MESSAGE_EXPIRED, "state"),
        ({"code": "c"}, MESSAGE_EXPIRED, "state"),
        ({"error": "access_denied", "state": "forged"}, MESSAGE_REFUSED, "access_denied"),
        ({"state": None}, MESSAGE_INCOMPLETE, "without code"),
        ({"state": None, "code": ""}, MESSAGE_INCOMPLETE, "without code"),
    ],
    ids=["bad-state", "no-state", "provider-error", "no-code", "empty-code"],
)
async def test_refused_callback(
    fake: FakeProvider,
    client: OIDCClient,
    sign_in_log: pytest.LogCaptureFixture,
    params: dict[str, str | None],
    message: str,
    reason: str,
) -> None:
    url, pending = await client.begin()
    fake.answer_with_id_token(valid_claims(fake, query_of(url)["nonce"]))
    callback = {k: pending.state if v is None else v for k, v in params.items()}
    with pytest.raises(SignInError, match=message):
        await client.finish(callback, pending)
    assert reason in sign_in_log.text
    assert fake.token_requests == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Response("upstream broke", 500), "500"),
        (Response("<html>maintenance</html>", 200, content_type="text/html"), "not a JSON"),
        (Response('{"access_token": "a"}', 200, content_type=JSON), "without id_token"),
        (Response('{"error": "invalid_grant"}', 400, content_type=JSON), "invalid_grant"),
    ],
    ids=["status-500", "not-json", "no-id-token", "invalid-grant"],
)
async def test_refused_token_answer(
    fake: FakeProvider,
    client: OIDCClient,
    sign_in_log: pytest.LogCaptureFixture,
    answer: Response,
    reason: str,
) -> None:
    url, pending = await client.begin()
    fake.answer = answer
    with pytest.raises(SignInError, match=MESSAGE_BAD_ANSWER):
        await client.finish({"code": "the-code", "state": pending.state}, pending)
    assert reason in sign_in_log.text


@pytest.mark.parametrize("where", ["closed-port", "wrong-path"])
async def test_discovery_unavailable(fake: FakeProvider, where: str) -> None:
    url = {
        "closed-port": f"http://{HOST}:{find_free_port()}/.well-known/openid-configuration",
        "wrong-path": fake.issuer + "/nowhere/.well-known/openid-configuration",
    }[where]
    client = make_client(url)
    pending = PendingSignIn(state="s", nonce="n", code_verifier="v")
    try:
        with pytest.raises(SignInError, match=MESSAGE_UNAVAILABLE):
            await client.begin()
        with pytest.raises(SignInError, match=MESSAGE_UNAVAILABLE):
            await client.finish({"code": "c", "state": "s"}, pending)
    finally:
        await client.aclose()


async def test_keys_unavailable(
    fake: FakeProvider, client: OIDCClient, sign_in_log: pytest.LogCaptureFixture
) -> None:
    fake.served_keys = []
    with pytest.raises(SignInError, match=MESSAGE_UNAVAILABLE):
        await sign_in_with_claims(client, fake, {})
    assert "JWKS unusable" in sign_in_log.text


# --- What the session keeps ---------------------------------------------------------------------


def test_pending_sign_in_round_trip() -> None:
    pending = PendingSignIn(state="s", nonce="n", code_verifier="v")
    assert PendingSignIn.from_dict(json.loads(json.dumps(pending.to_dict()))) == pending


@pytest.mark.parametrize(
    "data",
    [
        None,
        "text",
        {},
        {"state": "s", "nonce": "n"},
        {"state": "s", "nonce": 1, "code_verifier": ""},
    ],
)
def test_pending_sign_in_rejects_bad_data(data: object) -> None:
    with pytest.raises(SignInError, match=MESSAGE_EXPIRED):
        PendingSignIn.from_dict(data)
