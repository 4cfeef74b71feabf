"""Walk every route: all but the public ones need sign-in, and every unsafe method needs CSRF."""

from __future__ import annotations

import pytest
from quart import Quart
from quart.testing import QuartClient
from quart.typing import TestClientProtocol as Client
from werkzeug.routing import IntegerConverter

from aigen.store.repository import User
from aigen.web import csrf
from tests.helpers import bearer, new_api_key, signed_in

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
    ("/billing/webhook", "POST"),  # Stripe calls it: its signature is the proof, not a session
}
# Unsafe routes that need no CSRF token: no browser calls them and they carry no cookie of ours.
CSRF_EXEMPT = {("/billing/webhook", "POST")}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# (rule, method) an API key may call, as its owner; every other route refuses a key.
API_KEY_ROUTES = {("/api/generate", "POST"), ("/api/usage", "GET")}


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
    assert {
        ("/api/keys", "POST"),
        ("/api/keys", "GET"),
        ("/api/keys/<int(max=9223372036854775807):key_id>", "DELETE"),
        ("/keys", "GET"),
        ("/keys", "POST"),
        ("/keys/<int(max=9223372036854775807):key_id>/revoke", "GET"),
        ("/keys/<int(max=9223372036854775807):key_id>/revoke", "POST"),
    } <= seen


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
    unsafe = [
        (rule, method, url)
        for rule, method, url in routes(app)
        if method in UNSAFE and (rule, method) not in CSRF_EXEMPT
    ]
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


def test_only_the_stripe_webhook_is_exempt_from_csrf(app: Quart) -> None:
    exempt = {rule.endpoint for rule in app.url_map.iter_rules() if rule.rule == "/billing/webhook"}
    assert csrf.EXEMPT_ENDPOINTS == exempt == {"billing.webhook"}


async def test_an_api_key_opens_only_the_routes_made_for_it(app: Quart, user: User, db) -> None:
    key = await new_api_key(app, user.id)
    assert key["id"] == 1  # so the walk's /api/keys/1 names this very key
    client = concrete(app.test_client())  # no cookie: the key is all it has
    for rule, method, url in routes(app):
        if (rule, method) in PUBLIC:
            continue
        response = await client.open(url, method=method, headers=bearer(key["key"]))
        if (rule, method) in API_KEY_ROUTES:
            assert response.status_code in (200, 400), (method, rule)  # 400: the walk sends no body
        elif rule.startswith("/api/"):
            assert response.status_code == 403, (method, rule)
        else:
            assert response.status_code == 302, (method, rule)
            assert response.headers["Location"].startswith("/login?next="), (method, rule)
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL") == 1
    assert await db.fetchval("SELECT count(*) FROM generations") == 0


@pytest.mark.parametrize("path", ["/generate", "/dashboard", "/history", "/pricing", "/keys"])
async def test_pages_are_signed_in_pages(user_client, path) -> None:
    assert (await user_client.get(path)).status_code == 200
