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
