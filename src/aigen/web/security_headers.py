"""Security headers on every response: a strict CSP, no framing, no sniffing; no caching of
a signed-in user's pages nor of any API answer.
"""

from __future__ import annotations

from quart import Quart, Response, request

from aigen.web.current_user import SESSIONLESS_ENDPOINTS, current_user_id

# htmx's indicator styles are switched off in base.html (htmx-config), so no 'unsafe-inline'.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
}
HSTS = "max-age=31536000; includeSubDomains"
NO_STORE = "no-store"
API_PREFIX = "/api/"


def never_store() -> bool:
    """Whether the answer holds a user's data: any /api/* answer, any signed-in page."""
    if request.path.startswith(API_PREFIX):
        return True
    return request.endpoint not in SESSIONLESS_ENDPOINTS and current_user_id() is not None


def init_app(app: Quart, *, production: bool, form_targets: tuple[str, ...] = ()) -> None:
    """Add the headers to every response; HSTS only in production (development is plain http).

    `form_targets` are other origins a form may lead to: the browser applies form-action to the
    redirect after a POST too, so Checkout and the billing portal must be named.
    """
    headers = dict(HEADERS)
    if form_targets:
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
            "form-action 'self'", " ".join(("form-action 'self'", *form_targets))
        )
    if production:
        headers["Strict-Transport-Security"] = HSTS

    lowered = [(name.lower(), name, value) for name, value in headers.items()]

    @app.after_request
    async def add_security_headers(response: Response) -> Response:
        # One pass over what the view set (a view may set its own policy), not one per header.
        present = {name.lower() for name in response.headers.keys()}
        response.headers.extend(
            [(name, value) for key, name, value in lowered if key not in present]
        )
        if never_store():  # nor in the browser's back-forward cache, nor in a shared proxy
            response.headers["Cache-Control"] = NO_STORE
        return response
