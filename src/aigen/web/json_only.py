"""/api/* takes JSON only: a body of any other type is refused with 415 before anything else.

An old browser's cross-site form may post text/plain without an Origin header, which the API's
CSRF rule lets through as "not a browser"; a cross-site application/json request needs a CORS
preflight, which this app never grants. Checked first, so no such body reaches any rule.
"""

from __future__ import annotations

from quart import Quart, request

from aigen.web.errors import APIError

API_PREFIX = "/api/"
NOT_JSON_MESSAGE = "Request body must be JSON, sent with Content-Type: application/json."


async def refuse_other_bodies() -> None:
    """before_request: 415 for an /api/* body whose Content-Type is not JSON."""
    if not request.path.startswith(API_PREFIX) or request.is_json:
        return
    # Read (and cache) the body: HTTP/2 clients need not send a Content-Length.
    if await request.get_data():
        raise APIError(415, NOT_JSON_MESSAGE)


def init_app(app: Quart) -> None:
    """Register the check; call before any other before_request hook is registered."""
    app.before_request(refuse_other_bodies)
