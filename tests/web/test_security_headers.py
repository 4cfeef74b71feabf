"""Security headers on every response, and templates the strict CSP can live with."""

from __future__ import annotations

import re

import pytest
from quart import Quart

from aigen.paths import TEMPLATES_DIR
from aigen.web import security_headers

EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; "
    "object-src 'none'"
)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/pricing", 200),
        ("GET", "/static/aigen.css", 200),
        ("GET", "/static/htmx-2.0.11.min.js", 200),
        ("GET", "/dashboard", 302),
        ("GET", "/no/such/page", 404),
        ("POST", "/api/generate", 401),
        ("GET", "/healthz", 200),
    ],
)
async def test_every_response_carries_the_headers(client, method, path, status) -> None:
    response = await client.open(path, method=method, json={} if method == "POST" else None)
    assert response.status_code == status
    headers = response.headers
    assert headers["Content-Security-Policy"] == EXPECTED_CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in headers  # development runs over plain http


def test_csp_allows_no_inline_script_nor_eval() -> None:
    policy = security_headers.CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy


async def test_hsts_only_in_production() -> None:
    app = Quart(__name__)
    security_headers.init_app(app, production=True)

    @app.get("/")
    async def index() -> str:
        return "ok"

    response = await app.test_client().get("/")
    assert response.headers["Strict-Transport-Security"] == security_headers.HSTS
    assert response.headers["Content-Security-Policy"] == EXPECTED_CSP


@pytest.mark.parametrize(
    "template", sorted(TEMPLATES_DIR.rglob("*.html")), ids=lambda path: path.name
)
def test_templates_have_no_inline_script_style_or_handlers(template) -> None:
    source = template.read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", source), "inline <script>"
    assert "<style" not in source and not re.search(r"\sstyle=", source)
    assert not re.search(r"\son[a-z]+=", source), "inline event handler"
    assert "|safe" not in source
    assert "hx-on" not in source  # htmx evaluates hx-on:* like inline script


@pytest.mark.parametrize(
    "path", ["/dashboard", "/generate", "/history", "/dashboard/usage", "/pricing", "/api/usage"]
)
async def test_signed_in_answers_are_never_stored(user_client, path: str) -> None:
    response = await user_client.get(path)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


async def test_api_answers_are_never_stored_and_public_files_may_be(client, user_client) -> None:
    signed_out = await client.post("/api/generate", json={"prompt": "x"})
    assert signed_out.status_code == 401 and signed_out.headers["Cache-Control"] == "no-store"
    assert (await client.get("/pricing")).headers.get("Cache-Control") != "no-store"
    css = await user_client.get("/static/aigen.css")
    assert css.headers.get("Cache-Control") != "no-store"


async def test_production_cookies_carry_the_host_prefix(database_url: str) -> None:
    from aigen.app import create_app
    from tests.helpers import PRODUCTION

    app = create_app({**PRODUCTION, "DATABASE_URL": database_url})
    assert app.config["QUART_AUTH_COOKIE_NAME"] == "__Host-aigen_auth"
    assert app.config["SESSION_COOKIE_NAME"] == "__Host-aigen_session"
    response = await app.test_client().get("/pricing", scheme="https")
    (cookie,) = response.headers.get_all("Set-Cookie")
    # What browsers require of a __Host- cookie: Secure, Path=/ and no Domain.
    assert cookie.startswith("__Host-aigen_session=")
    assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie
