"""The JSON API: POST /api/generate and GET /api/usage."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from aigen.core.generation import validate_prompt
from aigen.core.streaming import wants_stream
from aigen.core.usage import usage_report
from aigen.web.bearer import accepts_api_key, api_caller, api_user
from aigen.web.errors import APIError
from aigen.web.openapi import GENERATE_RESPONSES, USAGE_RESPONSES, GenerateRequest, documented
from aigen.web.rate_limits import remember
from aigen.web.runtime import runtime
from aigen.web.streaming import accepts_event_stream, event_stream_response

blueprint = Blueprint("api", __name__, url_prefix="/api")


NOT_JSON_MESSAGE = "Request body must be JSON."
NOT_UTF8_MESSAGE = "Request body must be JSON encoded as UTF-8."


async def json_body() -> object:
    """The request's JSON, or 400 when it is not JSON."""
    try:
        body = await request.get_json(force=True, silent=True)
    except UnicodeDecodeError as error:  # RFC 8259: JSON between systems is UTF-8
        raise APIError(400, NOT_UTF8_MESSAGE) from error
    except RecursionError:  # absurdly nested JSON: not a prompt
        body = None
    if body is None:
        raise APIError(400, NOT_JSON_MESSAGE)
    return body


@blueprint.post("/generate")
@documented(GENERATE_RESPONSES, request=GenerateRequest)
@accepts_api_key
async def generate() -> Response:
    """Generate an answer to a prompt, charging one credit; streamed as SSE when asked."""
    caller = await api_caller()
    body = await json_body()
    prompt = validate_prompt(body, runtime().settings.max_prompt_chars)
    if wants_stream(body, accepts_event_stream()):
        stream = await runtime().streaming.open(
            caller.user_id, prompt, api_key_id=caller.api_key_id
        )
        remember(stream.rate_limit)
        return event_stream_response(stream)
    outcome = await runtime().generations.generate(
        caller.user_id, prompt, api_key_id=caller.api_key_id
    )
    remember(outcome.rate_limit)
    return jsonify(outcome.to_json())


@blueprint.get("/usage")
@documented(USAGE_RESPONSES)
@accepts_api_key
async def usage() -> Response:
    """The user's plan, credits (and when they renew) and this period's generations, tokens, days
    and keys (UTC)."""
    user = await api_user()
    return jsonify(await usage_report(runtime().pool, user))
