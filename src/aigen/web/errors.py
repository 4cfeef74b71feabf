"""One exception carrying a status and a message, rendered as JSON, an HTMX partial or a page."""

from __future__ import annotations

import logging
from typing import Any

from quart import Quart, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error the user should see: HTTP status, a readable message and extra JSON fields."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        """The body of a JSON error answer."""
        return {"error": self.message, **self.extra}


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
        body = await render_template("errors/page.html", error=error)
        response = Response(body, status=error.status)
    for name, value in getattr(error, "headers", {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Quart) -> None:
    """Route every error through render_error."""

    @app.errorhandler(APIError)
    async def handle_api_error(error: APIError) -> Response:
        return await render_error(error)

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
