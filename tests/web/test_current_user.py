"""Walk every route: all but the public ones need sign-in, and every unsafe method needs CSRF."""

from __future__ import annotations

import pytest
from quart import Quart
from quart.testing import QuartClient
from quart.typing import TestClientProtocol as Client
from werkzeug.routing import IntegerConverter

from aigen.store.repository import User
from tests.helpers import signed_in

# (rule, method) that anyone may call; everything else must ask for sign-in.
PUBLIC = {
    ("/", "GET"),
    ("/pricing", "GET"),
    ("/login", "GET"),
    ("/auth/callback", "GET"),
    ("/verify-email", "GET"),  # the e-mailed link works without a session (another browser)
    ("/logout", "POST"),  # signs out whoever is signed in; still CSRF-protected
    ("/logout/everywhere", "POST"),  # the same, for every session of the account
    ("/healthz", "GET"),
    ("/readyz", "GET"),
    ("/openapi.json", "GET"),  # the JSON API's OpenAPI document
    ("/static/<path:filename>", "GET"),
}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def concrete(client: Client) -> QuartClient:
    """The client as its class: quart.typing's protocol gives `open` no default for `json`."""
    assert isinstance(client, QuartClient)
    return client


def routes(app: Quart) -> list[tuple[str, str, str]]:
    """(rule, method, a concrete URL) for every route of the app."""
    adapter = app.url_map.bind("localhost")
    found = []
    for rule in app.url_map.iter_rules():
        values = {
            name: 1 if isinstance(converter, IntegerConverter) else "x"
            for name, converter in rule._converters.items()
        }
        url = adapter.build(rule.endpoint, values)
        assert rule.methods is not None, rule.rule
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((rule.rule, method, url))
    return found


async def test_the_walk_sees_the_routes(app: Quart) -> None:
    seen = {(rule, method) for rule, method, _ in routes(app)}
    assert PUBLIC <= seen
    assert {("/generate", "POST"), ("/dashboard/usage", "GET"), ("/api/generate", "POST")} <= seen


async def test_every_non_public_route_needs_sign_in(app: Quart) -> None:
    client = concrete(app.test_client())
    for rule, method, url in routes(app):
        if (rule, method) in PUBLIC:
            continue
        response = await client.open(url, method=method)
        if rule.startswith("/api/"):
            assert response.status_code == 401, (method, rule)
        else:
            assert response.status_code == 302, (method, rule)
            assert response.headers["Location"].startswith("/login?next="), (method, rule)


async def test_every_unsafe_route_needs_csrf(app: Quart, user: User, db) -> None:
    unsafe = [(rule, method, url) for rule, method, url in routes(app) if method in UNSAFE]
    assert unsafe
    async with signed_in(app, user.id) as client:
        for rule, method, url in unsafe:
            headers = {"Origin": "https://evil.example"}  # and no token
            # /api/* takes JSON only (any other body is 415 before the CSRF check).
            if rule.startswith("/api/"):
                response = await concrete(client).open(
                    url, method=method, headers=headers, json={"x": "1"}
                )
            else:
                response = await concrete(client).open(
                    url, method=method, headers=headers, form={"x": "1"}
                )
            assert response.status_code == 403, (method, rule)
        assert (await client.get("/dashboard")).status_code == 200  # still signed in
    assert await db.fetchval("SELECT count(*) FROM generations") == 0


@pytest.mark.parametrize("path", ["/generate", "/dashboard", "/history", "/pricing"])
async def test_pages_are_signed_in_pages(user_client, path) -> None:
    assert (await user_client.get(path)).status_code == 200
