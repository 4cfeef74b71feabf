"""Sign-in through the app: the real OIDC round trip, forged callbacks, redirects and sign-out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from quart import Quart

from aigen.app import create_app
from aigen.dev.oidc_provider import LocalOIDCProvider
from aigen.web.current_user import DEFAULT_NEXT, safe_next
from tests.fake_provider import FakeProvider
from tests.helpers import page_csrf_token

CALLBACK = "/auth/callback"


def path_and_query(url: str) -> str:
    """The part of a URL our test client requests."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def start_sign_in(client, next_path: str = "/dashboard") -> str:
    """GET /login and return the provider's authorize URL."""
    response = await client.get("/login", query_string={"next": next_path})
    assert response.status_code == 302
    return response.headers["Location"]


async def provider_callback(provider: LocalOIDCProvider, authorize_url: str, sub: str) -> str:
    """Post the provider's form as a person would; return our callback path with its query."""
    async with httpx.AsyncClient() as http:
        location = await provider.sign_in_via_form(authorize_url, sub, http)
    assert location.startswith("http://127.0.0.1:8000/auth/callback?")
    return path_and_query(location)


async def test_sign_in_round_trip_creates_user_and_session(
    client, db, oidc_provider: LocalOIDCProvider
) -> None:
    oidc_provider.set_user(
        "grace-sub", email="Grace@Example.com", email_verified=True, name="Grace"
    )
    authorize_url = await start_sign_in(client, "/dashboard")
    query = dict(parse_qsl(urlsplit(authorize_url).query))
    assert authorize_url.startswith(oidc_provider.url)
    assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == "http://127.0.0.1:8000/auth/callback"
    assert {"state", "nonce", "code_challenge"} <= set(query)

    response = await client.get(await provider_callback(oidc_provider, authorize_url, "grace-sub"))
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"
    cookie = response.headers.get_all("Set-Cookie")
    auth_cookie = next(value for value in cookie if value.startswith("aigen_auth="))
    assert "HttpOnly" in auth_cookie and "SameSite=Lax" in auth_cookie
    assert "Secure" not in auth_cookie  # development over plain http

    row = await db.fetchrow("SELECT * FROM users WHERE sub = 'grace-sub'")
    assert (row["email"], row["email_verified"]) == ("Grace@Example.com", True)
    assert row["name"] == "Grace"
    assert (row["plan"], row["credits_used"], row["credits_limit"]) == ("FREE", 0, 3)
    generated = await client.post("/api/generate", json={"prompt": "hello"})
    assert generated.status_code == 200


async def test_second_sign_in_keeps_plan_and_credits(
    client, db, oidc_provider: LocalOIDCProvider
) -> None:
    oidc_provider.set_user("lin-sub", email="lin@example.com", email_verified=True, name="Lin")
    authorize_url = await start_sign_in(client)
    await client.get(await provider_callback(oidc_provider, authorize_url, "lin-sub"))
    await db.execute("UPDATE users SET plan = 'PRO', credits_used = 2 WHERE sub = 'lin-sub'")
    oidc_provider.set_user("lin-sub", email="lin@example.com", email_verified=True, name="Lin Q")
    await client.post("/logout", form={"csrf_token": await page_csrf_token(client)})
    authorize_url = await start_sign_in(client)
    await client.get(await provider_callback(oidc_provider, authorize_url, "lin-sub"))
    row = await db.fetchrow("SELECT name, plan, credits_used FROM users WHERE sub = 'lin-sub'")
    assert tuple(row) == ("Lin Q", "PRO", 2)
    assert await db.fetchval("SELECT count(*) FROM users") == 1


async def test_tampered_state_is_refused_and_creates_nobody(
    client, db, oidc_provider: LocalOIDCProvider
) -> None:
    oidc_provider.set_user("eve-sub", email="eve@example.com")
    authorize_url = await start_sign_in(client)
    callback = await provider_callback(oidc_provider, authorize_url, "eve-sub")
    forged = callback.replace("state=", "state=forged")
    response = await client.get(forged)
    assert response.status_code == 400
    assert "Sign-in failed" in await response.get_data(as_text=True)
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_callback_without_a_pending_sign_in_is_refused(client, db) -> None:
    response = await client.get(CALLBACK, query_string={"code": "x", "state": "y"})
    assert response.status_code == 400
    assert "expired" in await response.get_data(as_text=True)
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_bad_nonce_is_refused(client, db, oidc_provider: LocalOIDCProvider) -> None:
    oidc_provider.set_user("mallory-sub", email="mallory@example.com")
    authorize_url = await start_sign_in(client)
    async with client.session_transaction() as session:
        session["signin"] = {**session["signin"], "nonce": "not-the-nonce-we-sent"}
    callback = await provider_callback(oidc_provider, authorize_url, "mallory-sub")
    response = await client.get(callback)
    assert response.status_code == 400
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_denied_at_the_provider_shows_a_readable_page(
    client, db, oidc_provider: LocalOIDCProvider
) -> None:
    authorize_url = await start_sign_in(client)
    async with httpx.AsyncClient() as http:
        denied = await http.post(authorize_url, data={"action": "deny"})
    response = await client.get(path_and_query(denied.headers["Location"]))
    assert response.status_code == 400
    assert "Sign-in failed" in await response.get_data(as_text=True)
    assert await db.fetchval("SELECT count(*) FROM users") == 0


@pytest.fixture(scope="module")
def foreign_provider() -> Iterator[FakeProvider]:
    """A provider that signs ID tokens with its own key and claims chosen by the test."""
    fake = FakeProvider()
    with fake.served():
        yield fake


# Claims a forgery replaces; integers (iat, exp) are seconds from now.
FORGERIES: dict[str, dict[str, str | int]] = {
    "honest": {},  # the control: the same provider with honest claims signs in
    "foreign issuer": {"iss": "https://accounts.evil.example"},
    "foreign audience": {"aud": "someone-else"},
    "expired": {"iat": -7200, "exp": -3600},
}


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_only_an_honest_id_token_signs_in(
    app_settings, db, foreign_provider: FakeProvider, forgery: str
) -> None:
    foreign_provider.reset()
    app = create_app({**app_settings, "OIDC_DISCOVERY_URL": foreign_provider.discovery_url})
    async with app.test_app():
        client = app.test_client()
        query = dict(parse_qsl(urlsplit(await start_sign_in(client)).query))
        now = int(time.time())
        claims = {
            "iss": foreign_provider.issuer,
            "aud": "aigen-test",
            "sub": "someone",
            "email": "someone@example.com",
            "email_verified": True,
            "iat": now,
            "exp": now + 600,
            "nonce": query["nonce"],
        }
        for name, value in FORGERIES[forgery].items():
            claims[name] = now + value if isinstance(value, int) else value
        foreign_provider.answer_with_id_token(claims)
        response = await client.get(CALLBACK, query_string={"code": "c", "state": query["state"]})
    users = await db.fetchval("SELECT count(*) FROM users")
    if forgery == "honest":
        assert response.status_code == 302 and users == 1
    else:
        assert response.status_code == 400 and users == 0
        assert "Sign-in failed" in await response.get_data(as_text=True)


async def test_a_second_verified_claim_to_an_address_is_refused(
    client, db, oidc_provider: LocalOIDCProvider
) -> None:
    from tests.helpers import make_user

    await make_user(db, "taken@example.com")
    oidc_provider.set_user("other-sub", email="TAKEN@example.com", email_verified=True)
    authorize_url = await start_sign_in(client)
    response = await client.get(await provider_callback(oidc_provider, authorize_url, "other-sub"))
    assert response.status_code == 409
    assert await db.fetchval("SELECT count(*) FROM users") == 1


async def sign_in_as(client, provider: LocalOIDCProvider, sub: str, *, verified: bool) -> int:
    """The whole round trip for `sub` claiming owner@example.com; the callback's status."""
    provider.set_user(sub, email="Owner@Example.com", email_verified=verified)
    authorize_url = await start_sign_in(client)
    response = await client.get(await provider_callback(provider, authorize_url, sub))
    return response.status_code


async def test_an_unverified_claim_never_blocks_the_verified_owner(
    app: Quart, db, oidc_provider: LocalOIDCProvider
) -> None:
    squatter, owner = app.test_client(), app.test_client()
    assert await sign_in_as(squatter, oidc_provider, "squatter-sub", verified=False) == 302
    assert await sign_in_as(owner, oidc_provider, "owner-sub", verified=True) == 302
    rows = await db.fetch("SELECT sub, email_verified FROM users ORDER BY id")
    assert [tuple(row) for row in rows] == [("squatter-sub", False), ("owner-sub", True)]
    assert (await owner.post("/api/generate", json={"prompt": "mine"})).status_code == 200
    assert (await squatter.post("/api/generate", json={"prompt": "x"})).status_code == 403


async def test_an_unverified_claim_to_an_owned_address_gets_its_own_row_and_no_mail(
    app: Quart, db, oidc_provider: LocalOIDCProvider
) -> None:
    owner, squatter = app.test_client(), app.test_client()
    assert await sign_in_as(owner, oidc_provider, "owner-sub", verified=True) == 302
    assert await sign_in_as(squatter, oidc_provider, "squatter-sub", verified=False) == 302
    row = await db.fetchrow(
        "SELECT email_verified, verify_sent_at FROM users WHERE sub = 'squatter-sub'"
    )
    assert tuple(row) == (False, None)  # no link was mailed to the owner's address
    assert (await owner.get("/api/usage")).status_code == 200


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/dashboard", "/dashboard"),
        ("/history?before=abc", "/history?before=abc"),
        (None, DEFAULT_NEXT),
        ("", DEFAULT_NEXT),
        ("dashboard", DEFAULT_NEXT),
        ("//evil.example/x", DEFAULT_NEXT),
        ("/\\evil.example", DEFAULT_NEXT),
        ("https://evil.example/", DEFAULT_NEXT),
        ("javascript:alert(1)", DEFAULT_NEXT),
        ("/ok\r\nSet-Cookie: x=y", DEFAULT_NEXT),
        ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),
    ],
)
def test_safe_next_allows_only_same_site_paths(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


async def test_open_redirect_through_the_whole_flow_is_neutralized(
    client, oidc_provider: LocalOIDCProvider
) -> None:
    oidc_provider.set_user("redir-sub", email="redir@example.com")
    authorize_url = await start_sign_in(client, "//evil.example/phish")
    response = await client.get(await provider_callback(oidc_provider, authorize_url, "redir-sub"))
    assert response.headers["Location"] == DEFAULT_NEXT


async def test_signed_in_login_goes_straight_to_next(app: Quart, user) -> None:
    from tests.helpers import signed_in

    async with signed_in(app, user.id) as client:
        response = await client.get("/login", query_string={"next": "/history"})
    assert response.status_code == 302 and response.headers["Location"] == "/history"


async def test_logout_ends_the_session(client, db, oidc_provider: LocalOIDCProvider) -> None:
    oidc_provider.set_user("bye-sub", email="bye@example.com")
    authorize_url = await start_sign_in(client)
    await client.get(await provider_callback(oidc_provider, authorize_url, "bye-sub"))
    assert (await client.post("/api/generate", json={"prompt": "hi"})).status_code == 200
    response = await client.post("/logout", form={"csrf_token": await page_csrf_token(client)})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert (await client.post("/api/generate", json={"prompt": "hi"})).status_code == 401


def test_cookies_are_secure_in_production(database_url: str) -> None:
    from tests.helpers import PRODUCTION

    app = create_app({**PRODUCTION, "DATABASE_URL": database_url})
    assert app.config["QUART_AUTH_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["QUART_AUTH_COOKIE_HTTP_ONLY"] is True
    assert app.config["QUART_AUTH_COOKIE_SAMESITE"] == "Lax"
