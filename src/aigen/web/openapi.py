"""The JSON API's OpenAPI 3 document at /openapi.json (quart-schema), for documentation only.

The shapes below describe what the views already answer; nothing validates requests with them,
because quart-schema's own validation errors would change the API's error bodies. Only /api/*
routes are documented (pages are not an API).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, NotRequired, TypeVar

from pydantic import ConfigDict, Field, with_config
from quart import Quart
from quart_schema import (
    APIKeySecurityScheme,
    HttpSecurityScheme,
    Info,
    OpenAPIProvider,
    QuartSchema,
    document_request,
    document_response,
)

# pydantic reads TypedDicts from typing_extensions on Python < 3.12.
from typing_extensions import TypedDict
from werkzeug.routing import Rule

V = TypeVar("V", bound=Callable[..., Any])

API_PREFIX = "/api/"
OPENAPI_PATH = "/openapi.json"
TITLE = "aigen"
VERSION = "1"
SECURITY_SCHEME = "session_cookie"
BEARER_SCHEME = "api_key"
EVENT_STREAM = "text/event-stream"
STREAM_DESCRIPTION = (
    " Streamed (`stream: true`): the events start {id}, delta {text} (one per text delta), then"
    " done {id, usage, credits} or error {error, retryable}, each as `event:` and one `data:` line"
    " of JSON, with `: keep-alive` comments while Claude is silent."
)
# One server-sent event as OpenAPI 3.1 tools read a stream: its name, and one line of JSON.
SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": ["start", "delta", "done", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}
# Answers carry exactly these fields; a request may carry more (they are ignored).
EXACT = ConfigDict(extra="forbid")

Count = Annotated[int, Field(ge=0)]


class GenerateRequest(TypedDict):
    """A prompt: not blank, at most MAX_PROMPT_CHARS characters, without NUL characters. With
    `"stream": true` (or `Accept: text/event-stream`) the 200 answer is server-sent events."""

    prompt: Annotated[str, Field(min_length=1, pattern=r"\S")]
    stream: NotRequired[bool | None]


@with_config(EXACT)
class TokenUsage(TypedDict):
    input_tokens: Count
    output_tokens: Count


@with_config(EXACT)
class Credits(TypedDict):
    plan: Literal["FREE", "PRO"]
    used: Count
    limit: Count


@with_config(EXACT)
class Generated(TypedDict):
    """Claude answered; one credit was charged."""

    id: Annotated[int, Field(ge=1)]
    result: str
    usage: TokenUsage
    credits: Credits


@with_config(EXACT)
class Error(TypedDict):
    """A readable message."""

    error: str


@with_config(EXACT)
class CreditLimitError(TypedDict):
    """A FREE user's credits are spent: upgrade to Pro."""

    error: str
    upgrade: Literal[True]


@with_config(EXACT)
class ForbiddenError(TypedDict):
    """A FREE user's address is not verified yet (verify_email), or a cross-site request."""

    error: str
    verify_email: NotRequired[Literal[True]]


@with_config(EXACT)
class RateLimitedError(TypedDict):
    """More than RATE_LIMIT generations: nothing stored or charged; see Retry-After."""

    error: str
    retry_after: Annotated[int, Field(ge=1)]


@with_config(EXACT)
class UpstreamError(TypedDict):
    """Claude could not answer; the generation is stored as failed and the credit refunded."""

    error: str
    retryable: bool


@with_config(EXACT)
class Period(TypedDict):
    start: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    end: Annotated[str, Field(json_schema_extra={"format": "date-time"})]


@with_config(EXACT)
class UsageCredits(TypedDict):
    used: Count
    limit: Count
    remaining: Count | None


@with_config(EXACT)
class GenerationCounts(TypedDict):
    total: Count
    succeeded: Count
    failed: Count


@with_config(EXACT)
class TokenTotals(TypedDict):
    input: Count
    output: Count


@with_config(EXACT)
class Day(TypedDict):
    date: Annotated[str, Field(json_schema_extra={"format": "date"})]
    generations: Count
    output_tokens: Count


@with_config(EXACT)
class KeyUsage(TypedDict):
    """What one API key made in the period (revoked keys included)."""

    id: Annotated[int, Field(ge=1)]
    name: str
    generations: Count
    output_tokens: Count


@with_config(EXACT)
class UsageReport(TypedDict):
    """The user's plan, credits and this period's generations (UTC; `end` is exclusive and is
    when the free credits renew)."""

    plan: Literal["FREE", "PRO"]
    access: Annotated[
        Literal["allowed", "verify_email", "no_credits"],
        Field(
            description="Whether a generation may start now: `verify_email` until a FREE"
            " user's address is verified, `no_credits` once the period's credits are spent."
        ),
    ]
    period: Period
    credits: UsageCredits
    generations: GenerationCounts
    tokens: TokenTotals
    daily: list[Day]
    keys: list[KeyUsage]


Instant = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class KeyName(TypedDict):
    """A name for the key: not blank, at most 100 characters."""

    name: Annotated[str, Field(min_length=1, max_length=100)]


@with_config(EXACT)
class CreatedKey(TypedDict):
    """The new key: `key` is shown this once and never again."""

    id: Annotated[int, Field(ge=1)]
    name: str
    key: Annotated[str, Field(pattern=r"^aig_")]
    prefix: str
    created_at: Instant


@with_config(EXACT)
class ListedKey(TypedDict):
    id: Annotated[int, Field(ge=1)]
    name: str
    prefix: str
    created_at: Instant
    last_used_at: Instant | None


@with_config(EXACT)
class KeyList(TypedDict):
    """The user's active keys, newest first (never the key itself)."""

    keys: list[ListedKey]


@with_config(EXACT)
class NoContent(TypedDict):
    """204: no body (the document drops its content)."""


# Every status each route answers, with its body (web/errors.py and the README's API tables).
NOT_JSON = (Error, 415)
TOO_LARGE = (Error, 413)
GENERATE_RESPONSES = (
    (Generated, 200),
    (Error, 400),
    (Error, 401),
    (CreditLimitError, 402),
    (ForbiddenError, 403),
    TOO_LARGE,
    NOT_JSON,
    (RateLimitedError, 429),
    (UpstreamError, 502),
    (UpstreamError, 503),
    (UpstreamError, 504),
)
USAGE_RESPONSES = ((UsageReport, 200), (Error, 401), TOO_LARGE, NOT_JSON)
# /api/keys take the browser's session only: a bearer key gets 403.
CREATE_KEY_RESPONSES = (
    (CreatedKey, 201),
    (Error, 400),
    (Error, 401),
    (Error, 403),
    (Error, 409),
    TOO_LARGE,
    NOT_JSON,
)
LIST_KEYS_RESPONSES = ((KeyList, 200), (Error, 401), (Error, 403), TOO_LARGE, NOT_JSON)
REVOKE_KEY_RESPONSES = (
    (NoContent, 204),
    (Error, 401),
    (Error, 403),
    (Error, 404),
    TOO_LARGE,
    NOT_JSON,
)


def documented(
    responses: Iterable[tuple[type, int]], request: type | None = None
) -> Callable[[V], V]:
    """Describe a view's request body and every status it answers (no validation)."""

    def decorate(view: V) -> V:
        if request is not None:
            view = document_request(request)(view)
        for model, status in responses:
            view = document_response(model, status)(view)
        return view

    return decorate


class APIDocument(OpenAPIProvider):
    """quart-schema's document, limited to the JSON API."""

    def generate_rules(self) -> Iterable[Rule]:
        """The /api/* routes only."""
        return (rule for rule in super().generate_rules() if rule.rule.startswith(API_PREFIX))

    def build_response_object(
        self, model: type[Any], headers_model: type[Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """As quart-schema builds it, but a 204 (NoContent) has no content at all."""
        if model is NoContent:
            return {"description": NoContent.__doc__ or ""}, {}
        response, definitions = super().build_response_object(model, headers_model)
        if model is Generated:
            response["content"][EVENT_STREAM] = {"schema": SSE_EVENT_SCHEMA}
            response["description"] += STREAM_DESCRIPTION
        return response, definitions


def init_app(app: Quart) -> None:
    """Serve /openapi.json (no documentation UI: the CSP allows no third-party script)."""
    QuartSchema(
        app,
        openapi_path=OPENAPI_PATH,
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        info=Info(title=TITLE, version=VERSION),
        security_schemes={
            SECURITY_SCHEME: APIKeySecurityScheme(
                name=app.config["QUART_AUTH_COOKIE_NAME"], in_="cookie"
            ),
            BEARER_SCHEME: HttpSecurityScheme(scheme="bearer"),
        },
        security=[{SECURITY_SCHEME: []}, {BEARER_SCHEME: []}],
        openapi_provider_class=APIDocument,
    )
