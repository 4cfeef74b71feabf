"""Sign-out revokes: a copy of the cookie dies with it; "Sign out everywhere" ends every session."""

from __future__ import annotations

from http.cookies import SimpleCookie

import httpx
from quart import Quart
from quart.typing import TestClientProtocol as Client

from aigen.dev.oidc_provider import LocalOIDCProvider
from aigen.store.repository import User
from tests.helpers import FIRST_SESSION_VERSION, auth_cookie, make_user, page_csrf_token, signed_in

COOKIE = "aigen_auth"


async def sign_in(app: Quart, provider: LocalOIDCProvider, sub: str) -> tuple[Client, str]:
    """The real OIDC round trip; the client and the sign-in cookie the app set."""
    provider.set_user(sub, email=f"{sub}@example.com", email_verified=True)
    client = app.test_client()
    login = await client.get("/login")
    async with httpx.AsyncClient() as browser:
        callback = await provider.sign_in_via_form(login.headers["Location"], sub, browser)
    response = await client.get(callback.split("127.0.0.1:8000", 1)[1])
    assert response.status_code == 302
    cookies = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie"):
        cookies.load(header)
    return client, cookies[COOKIE].value


def with_cookie(app: Quart, value: str) -> Client:
    """A new client (another browser) carrying a copied sign-in cookie."""
    client = app.test_client()
    client.set_cookie("127.0.0.1", COOKIE, value)
    return client


async def test_a_cookie_copied_before_sign_out_stops_working(
    app: Quart, oidc_provider: LocalOIDCProvider
) -> None:
    client, cookie = await sign_in(app, oidc_provider, "copied")
    assert (await with_cookie(app, cookie).get("/api/usage")).status_code == 200
    signed_out = await client.post("/logout", form={"csrf_token": await page_csrf_token(client)})
    assert signed_out.status_code == 302
    copy = with_cookie(app, cookie)
    assert (await copy.get("/api/usage")).status_code == 401
    page = await copy.get("/dashboard")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    # The stale cookie is deleted, and signing in again works.
    assert any(COOKIE in header for header in page.headers.get_all("Set-Cookie"))
    again, _ = await sign_in(app, oidc_provider, "copied")
    assert (await again.get("/api/usage")).status_code == 200


async def test_sign_out_everywhere_ends_every_session(app: Quart, db, user: User) -> None:
    async with signed_in(app, user.id) as laptop, signed_in(app, user.id) as phone:
        dashboard = await laptop.get("/dashboard")
        page = await dashboard.get_data(as_text=True)
        assert 'action="/logout/everywhere"' in page and "Sign out everywhere" in page
        token = await page_csrf_token(laptop, "/dashboard")
        assert (await laptop.post("/logout/everywhere")).status_code == 403  # CSRF
        response = await laptop.post("/logout/everywhere", form={"csrf_token": token})
        assert response.status_code == 302 and response.headers["Location"] == "/"
        assert (await phone.get("/api/usage")).status_code == 401
        assert (await laptop.get("/api/usage")).status_code == 401
    version = await db.fetchval("SELECT session_version FROM users WHERE id = $1", user.id)
    assert version == FIRST_SESSION_VERSION + 1


async def test_a_cookie_of_another_version_or_shape_is_signed_out(
    app: Quart, db, user: User
) -> None:
    other = await make_user(db, "bob@example.com")
    assert other.session_version == FIRST_SESSION_VERSION  # what tests.helpers assumes
    extension = app.extensions["QUART_AUTH"][0]
    for auth_id in (str(user.id), f"{user.id}.{FIRST_SESSION_VERSION + 1}", f"{user.id}.x"):
        client = with_cookie(app, extension.dump_token(auth_id, app))
        assert (await client.get("/api/usage")).status_code == 401, auth_id
    current = with_cookie(app, auth_cookie(app, user.id))
    assert (await current.get("/api/usage")).status_code == 200
