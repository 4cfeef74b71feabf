"""Errors as the user sees them: one exception with a status, and the one place that maps the
core's domain errors to statuses; rendered as JSON for /api/*, a partial for htmx, else a page.
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Quart, Response, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from aigen.core.errors import (
    Conflict,
    CreditLimitReached,
    DomainError,
    InvalidInput,
    NotFound,
    NotSignedIn,
    PaymentsUnavailable,
    RateLimited,
    ServiceUnavailable,
    SignInFailed,
    SignInUnavailable,
    UpstreamFailed,
    VerificationRequired,
)
from aigen.web.current_user import USER_KEY

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error the user should see: HTTP status, a readable message and extra JSON fields."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}

    def to_json(self) -> dict[str, Any]:
        """The body of a JSON error answer."""
        return {"error": self.message, **self.extra}


DOMAIN_STATUS: dict[type[DomainError], int] = {
    InvalidInput: 400,
    SignInFailed: 400,
    NotSignedIn: 401,
    CreditLimitReached: 402,
    VerificationRequired: 403,
    NotFound: 404,
    Conflict: 409,
    RateLimited: 429,
    SignInUnavailable: 503,
    PaymentsUnavailable: 503,
    ServiceUnavailable: 503,
}
UPSTREAM_STATUS = {
    UpstreamFailed.BAD_ANSWER: 502,
    UpstreamFailed.REJECTED: 502,
    UpstreamFailed.UNAVAILABLE: 503,
    UpstreamFailed.TIMEOUT: 504,
}
UNAUTHORIZED = "Unauthorized"


def api_error_from(error: DomainError) -> APIError:
    """The status, message, extra JSON fields and headers of a domain error."""
    api_error = _status_of(error)
    if error.rate_limit is not None:
        api_error.headers = {**error.rate_limit.headers(), **api_error.headers}
    return api_error


def _status_of(error: DomainError) -> APIError:
    match error:
        case ServiceUnavailable():
            # One line per failed request, no traceback: an outage must not flood the log.
            log.warning(
                "%s %s: 503, database unavailable (%s)", request.method, request.path, error.reason
            )
            api_error = APIError(503, error.message, retryable=error.retryable)
            api_error.headers = {"Retry-After": str(error.retry_after)}
            return api_error
        case UpstreamFailed():
            return APIError(UPSTREAM_STATUS[error.kind], error.message, retryable=error.retryable)
        case RateLimited():
            return APIError(429, error.message, retry_after=error.retry_after)
        case CreditLimitReached():
            return APIError(402, error.message, upgrade=True)
        case VerificationRequired():
            return APIError(403, error.message, verify_email=True)
        case NotSignedIn() if wants_json():
            return APIError(401, UNAUTHORIZED)  # the API's 401 body is fixed
    return APIError(DOMAIN_STATUS[type(error)], error.message)


def wants_json() -> bool:
    """JSON for the API, HTML for pages."""
    return request.path.startswith("/api/")


async def render_error(error: APIError) -> Response:
    """Render the error for whoever asked: API client, HTMX fragment or browser page."""
    if wants_json():
        response = jsonify(error.to_json())
        response.status_code = error.status
    elif request.headers.get("HX-Request") == "true":
        body = await render_template("errors/_message.html", error=error)
        # htmx 2 only swaps 2xx answers: the partial is the answer, the status is in a header.
        response = Response(body, status=200)
        response.headers["X-Aigen-Status"] = str(error.status)
    else:
        # The signed-in user's row if this request read it already (never a query here: the
        # error may be that the database is out of reach), for the header's user badge.
        user = g.get(USER_KEY)
        body = await render_template("errors/page.html", error=error, user=user)
        response = Response(body, status=error.status)
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Quart) -> None:
    """Route every error through render_error."""

    @app.errorhandler(APIError)
    async def handle_api_error(error: APIError) -> Response:
        return await render_error(error)

    @app.errorhandler(DomainError)
    async def handle_domain_error(error: DomainError) -> Response:
        return await render_error(api_error_from(error))

    @app.errorhandler(HTTPException)
    async def handle_http_exception(error: HTTPException) -> Response:
        return await render_error(APIError(error.code or 500, _http_message(error)))

    @app.errorhandler(Exception)
    async def handle_unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return await render_error(APIError(500, "Something went wrong on our side."))


def _http_message(error: HTTPException) -> str:
    if error.code == 404:
        return "Not found"
    if error.code == 405:
        return "Method not allowed"
    if error.code == 413:
        return "Request body too large"
    return error.name
