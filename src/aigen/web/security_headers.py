"""Security headers on every response: a strict CSP, no framing, no sniffing."""

from __future__ import annotations

from quart import Quart, Response

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

    @app.after_request
    async def add_security_headers(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response
