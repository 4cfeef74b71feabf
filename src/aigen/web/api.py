"""The JSON API: POST /api/generate and GET /api/usage."""

from __future__ import annotations

from datetime import UTC, datetime

from quart import Blueprint, Response, jsonify, request

from aigen.core.generation import validate_prompt
from aigen.core.streaming import wants_stream
from aigen.core.usage import usage_report
from aigen.web.current_user import signed_in_user, signed_in_user_id
from aigen.web.errors import APIError
from aigen.web.rate_limits import remember
from aigen.web.runtime import runtime
from aigen.web.streaming import accepts_event_stream, event_stream_response

blueprint = Blueprint("api", __name__, url_prefix="/api")


async def json_body() -> object:
    """The request's JSON, or 400 when it is not JSON."""
    try:
        body = await request.get_json(force=True, silent=True)
    except RecursionError:  # absurdly nested JSON: not a prompt
        body = None
    if body is None:
        raise APIError(400, "Request body must be JSON.")
    return body


@blueprint.post("/generate")
async def generate() -> Response:
    """Generate an answer to a prompt, charging one credit; streamed as SSE when asked."""
    user_id = signed_in_user_id()
    body = await json_body()
    prompt = validate_prompt(body, runtime().settings.max_prompt_chars)
    if wants_stream(body, accepts_event_stream()):
        stream = await runtime().streaming.open(user_id, prompt)
        remember(stream.rate_limit)
        return event_stream_response(stream)
    outcome = await runtime().generations.generate(user_id, prompt)
    remember(outcome.rate_limit)
    return jsonify(outcome.to_json())


@blueprint.get("/usage")
async def usage() -> Response:
    """The user's plan, credits and this month's generations, tokens and days (UTC)."""
    user = await signed_in_user()
    return jsonify(await usage_report(runtime().pool, user, datetime.now(UTC)))
