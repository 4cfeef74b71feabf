"""Rate limits at the HTTP edge: the sign-in limit per address and the RateLimit-* headers.

The rules (which key, which limit) live in core/limits.py and the GCRA in clients/ratelimit.py;
here the decision of a request becomes its headers.
"""

from __future__ import annotations

from quart import Quart, Response, g, request

from aigen.clients.ratelimit import Decision
from aigen.core import limits
from aigen.web.runtime import runtime

SIGN_IN_ENDPOINTS = ("auth.login", "auth.callback")


def remember(decision: Decision | None) -> None:
    """Keep the request's rate-limit decision for the RateLimit-* headers of its answer."""
    if decision is not None:
        g.rate_limit = decision


def client_ip() -> str:
    """The client's address (already corrected by ProxyFixMiddleware when FORWARDED_HOPS > 0)."""
    return request.remote_addr or "unknown"


async def limit_sign_in() -> None:
    """Per-address limit of /login and /auth/callback (before_request)."""
    if request.endpoint in SIGN_IN_ENDPOINTS:
        limit = runtime().settings.login_rate_limit
        remember(await limits.check(runtime().limiter, limits.sign_in_key(client_ip()), limit))


async def add_rate_limit_headers(response: Response) -> Response:
    """RateLimit-Limit/-Remaining/-Reset on every answer of a limited route."""
    decision: Decision | None = g.get("rate_limit")
    if decision is not None:
        for name, value in decision.headers().items():
            response.headers.setdefault(name, value)
    return response


def init_app(app: Quart, forwarded_hops: int) -> None:
    """Register the sign-in limit and header hooks; behind proxies, trust X-Forwarded-For."""
    app.before_request(limit_sign_in)
    app.after_request(add_rate_limit_headers)
    if forwarded_hops:
        from hypercorn.middleware import ProxyFixMiddleware

        app.asgi_app = ProxyFixMiddleware(  # type: ignore[method-assign]
            app.asgi_app, mode="legacy", trusted_hops=forwarded_hops
        )
