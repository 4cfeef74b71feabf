"""Cross-site request forgery protection for every state-changing request that carries our cookies.

Pages: a per-session token, bound to the signed-in user, sent by htmx in the X-CSRF-Token header
(htmx sends it from hx-headers on <body>) or by plain forms in a csrf_token field.

JSON API (/api/*): the token, or the browser's own word that the request is same-origin
(Sec-Fetch-Site: same-origin|none, else an Origin naming PUBLIC_URL or the request's own Host).
A request with neither header is let through, as Go's net/http CrossOriginProtection does: every
browser since 2020 sends one of them on a cross-origin POST, so a request without both did not
come from another site's page; it comes from a script (curl, an SDK) holding the cookie itself.

Requests whose credential is an API key (web/bearer.py) are not checked: a key is not ambient.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from quart import Quart, current_app, request, session
from quart_auth import current_user

from aigen.web.bearer import uses_api_key
from aigen.web.errors import APIError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
HEADER = "X-CSRF-Token"
FORM_FIELD = "csrf_token"
SESSION_TOKEN = "csrf_token"
SESSION_OWNER = "csrf_owner"
SAME_ORIGIN_FETCH_SITES = frozenset({"same-origin", "none"})
TOKEN_BYTES = 32
# Stripe's webhook is no browser request and carries no cookie of ours: it proves itself with
# the Stripe-Signature header, which the view checks before reading anything. Only it is exempt.
EXEMPT_ENDPOINTS = frozenset({"billing.webhook"})
FORBIDDEN_MESSAGE = (
    "This request was refused because it did not come from an aigen page. "
    "Reload the page and try again."
)


def _owner() -> str:
    """Who the token belongs to: the signed-in auth id, or '' when signed out."""
    return current_user.auth_id or ""


def csrf_token() -> str:
    """This session's token for the current user, created on first use (Jinja global)."""
    if session.get(SESSION_OWNER) != _owner() or not session.get(SESSION_TOKEN):
        # A new token at every change of user, so a token seen before sign-in is worthless after.
        session[SESSION_TOKEN] = secrets.token_urlsafe(TOKEN_BYTES)
        session[SESSION_OWNER] = _owner()
    return session[SESSION_TOKEN]


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _carries_our_cookies(app: Quart) -> bool:
    names = (app.config["SESSION_COOKIE_NAME"], app.config["QUART_AUTH_COOKIE_NAME"])
    return any(name in request.cookies for name in names)


async def _sent_token() -> str | None:
    token = request.headers.get(HEADER)
    if token is None and request.mimetype in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        token = (await request.form).get(FORM_FIELD)
    return token


async def has_valid_token() -> bool:
    """Whether the request carries this session's token for the current user."""
    expected = session.get(SESSION_TOKEN)
    if not expected or session.get(SESSION_OWNER) != _owner():
        return False
    sent = await _sent_token()
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())


def is_same_origin_browser_request(public_origin: str) -> bool | None:
    """True/False from Sec-Fetch-Site or Origin; None when the request has neither (no browser).

    Origin may name PUBLIC_URL or the host the request was sent to (a browser cannot forge Host).
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in SAME_ORIGIN_FETCH_SITES
    origin = request.headers.get("Origin")
    if origin is not None:
        origin = origin.lower()
        return origin == public_origin or urlsplit(origin).netloc == request.host.lower()
    return None


async def protect() -> None:
    """before_request: refuse a state-changing request with our cookies but no proof of origin."""
    if request.method in SAFE_METHODS or request.endpoint in EXEMPT_ENDPOINTS:
        return
    if not _carries_our_cookies(current_app):
        return  # without our cookies a request has no authority a forger could borrow
    if uses_api_key():
        return  # the key, not the cookie, is the credential: nothing ambient to borrow
    if await has_valid_token():
        return
    if request.path.startswith("/api/"):
        public_origin = origin_of(current_app.config["AIGEN_PUBLIC_URL"])
        if is_same_origin_browser_request(public_origin) is not False:
            return
    raise APIError(403, FORBIDDEN_MESSAGE)


def init_app(app: Quart, public_url: str) -> None:
    """Check every request and offer csrf_token() to templates."""
    app.config["AIGEN_PUBLIC_URL"] = public_url
    app.before_request(protect)
    app.jinja_env.globals["csrf_token"] = csrf_token
