"""The JSON API: POST /api/generate and GET /api/usage."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from aigen.core.generation import validate_prompt
from aigen.core.usage import usage_report
from aigen.web.bearer import accepts_api_key, api_caller, api_user
from aigen.web.errors import APIError
from aigen.web.rate_limits import remember
from aigen.web.runtime import runtime

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
@accepts_api_key
async def generate() -> Response:
    """Generate an answer to a prompt, charging one credit."""
    caller = await api_caller()
    prompt = validate_prompt(await json_body(), runtime().settings.max_prompt_chars)
    outcome = await runtime().generations.generate(
        caller.user_id, prompt, api_key_id=caller.api_key_id
    )
    remember(outcome.rate_limit)
    return jsonify(outcome.to_json())


@blueprint.get("/usage")
@accepts_api_key
async def usage() -> Response:
    """The user's plan, credits (and when they renew) and this period's generations, tokens, days
    and keys (UTC)."""
    user = await api_user()
    return jsonify(await usage_report(runtime().pool, user))
