"""The generate page: a prompt box whose answer streams into the result region.

The POST shares GenerationService with the JSON API, so the credit rules exist once. Asked for
text/event-stream (static/aigen.js does), it streams the answer's events as the API does, and
answers a refusal with the partial that explains it (200, the status in X-Aigen-Status). An htmx
request gets the partial of the finished answer, 200 whatever happened (htmx 2 swaps only 2xx),
with HX-Trigger: credits-changed, which the usage card listens for. Without JavaScript the form
posts normally and gets the whole page.
"""

from __future__ import annotations

from quart import Blueprint, Response, render_template, request

from aigen.core.errors import DomainError, ServiceUnavailable
from aigen.core.generation import GenerationOutcome, validate_prompt
from aigen.core.plans import is_unlimited
from aigen.web.current_user import is_htmx, login_required, signed_in_user, signed_in_user_id
from aigen.web.errors import APIError, api_error_from
from aigen.web.rate_limits import remember
from aigen.web.runtime import runtime
from aigen.web.streaming import accepts_event_stream, event_stream_response

blueprint = Blueprint("generate", __name__)

CREDITS_CHANGED = "credits-changed"
ERROR_TITLES = {
    400: "Please check your prompt",
    429: "You're sending prompts too quickly",
    502: "Claude gave an answer we couldn't use",
    503: "Claude is unavailable right now",
    504: "Claude took too long to answer",
}
# 503 has two causes: Claude, or aigen's own database (then nothing was charged, or it is given
# back as the message says).
UNAVAILABLE_TITLE = "aigen is briefly unavailable"
UNAVAILABLE_NOTE = "No credit is used for it."


@blueprint.get("/generate")
@login_required
async def page() -> str:
    """The prompt box, the (empty) result region and the usage card."""
    return await _render_page(user=await signed_in_user())


@blueprint.post("/generate")
@login_required
async def generate() -> Response:
    """Run one generation through the shared service and answer with the partial to swap in."""
    prompt = (await request.form).get("prompt", "")
    if accepts_event_stream():
        return await _stream(prompt)
    attempted = False
    try:
        valid_prompt = validate_prompt({"prompt": prompt}, runtime().settings.max_prompt_chars)
        attempted = True
        outcome = await runtime().generations.generate(signed_in_user_id(), valid_prompt)
    except DomainError as error:
        template, context, status = await _refusal(error)
    else:
        remember(outcome.rate_limit)
        template, context = "generate/_result.html", _result_context(outcome)
        status = 200
    if is_htmx():
        response = Response(await render_template(template, swap_nav=True, **context))
    else:
        # Without JavaScript the form posts normally: the whole page, prompt kept in the box.
        page_context = {"user": await signed_in_user(), **context}
        body = await _render_page(prompt=prompt, result_template=template, **page_context)
        response = Response(body, status=status)
    if attempted:
        response.headers["HX-Trigger"] = CREDITS_CHANGED
    return response


async def _stream(prompt: str) -> Response:
    """The answer as server-sent events, or the partial explaining why it was refused."""
    try:
        valid_prompt = validate_prompt({"prompt": prompt}, runtime().settings.max_prompt_chars)
        stream = await runtime().streaming.open(signed_in_user_id(), valid_prompt)
    except DomainError as error:
        template, context, status = await _refusal(error)
        response = Response(await render_template(template, swap_nav=True, **context))
        response.headers["X-Aigen-Status"] = str(status)
        return response
    remember(stream.rate_limit)
    return event_stream_response(stream)


async def _refusal(error: DomainError) -> tuple[str, dict[str, object], int]:
    """The partial that explains a refusal, its context and the status it stands for."""
    remember(error.rate_limit)
    api_error = api_error_from(error)
    template, context = await _error_partial(api_error, error)
    return template, context, api_error.status


async def _render_page(**context: object) -> str:
    settings = runtime().settings
    return await render_template(
        "generate/page.html", max_prompt_chars=settings.max_prompt_chars, **context
    )


def _result_context(outcome: GenerationOutcome) -> dict[str, object]:
    return {"generation": outcome.generation, "user": outcome.user}


async def _error_partial(error: APIError, cause: DomainError) -> tuple[str, dict[str, object]]:
    """Which partial explains this error, and what it needs."""
    if error.status == 402 or error.extra.get("upgrade"):
        return "generate/_upgrade_banner.html", {"user": await signed_in_user()}
    if error.extra.get("verify_email"):
        return "generate/_verify_email_banner.html", {"error": error}
    retry_after = error.extra.get("retry_after")
    retry_helps = bool(error.extra.get("retryable")) or error.status == 429
    charge_note = "Your credit was refunded." if error.status >= 500 else "No credit was used."
    title = ERROR_TITLES.get(error.status, "We couldn't generate an answer")
    if isinstance(cause, ServiceUnavailable):
        # Checked first: loading the user would only meet the same outage.
        title, charge_note = UNAVAILABLE_TITLE, UNAVAILABLE_NOTE
    elif error.status != 401 and is_unlimited(await signed_in_user()):
        charge_note = ""  # Pro has no credits to speak of
    return "generate/_error.html", {
        "error": error,
        "title": title,
        "retry_helps": retry_helps,
        "retry_after": round(retry_after) if isinstance(retry_after, int | float) else None,
        "charge_note": charge_note,
    }
