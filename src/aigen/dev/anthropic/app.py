"""The fake's Quart app: ``POST /v1/messages``, the ``/_fake`` admin routes, and the request log."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from quart import Blueprint, Quart, Response, current_app, g, jsonify, request

from aigen.dev.anthropic.answers import Reply, compose_reply, finish_reply
from aigen.dev.anthropic.protocol import (
    SSE_CONTENT_TYPE,
    FakeApiError,
    MessagesRequest,
    error_event,
    error_object,
    message_json,
    parse_messages_request,
    stream_head,
    stream_tail,
    text_delta,
)
from aigen.dev.anthropic.scenarios import (
    MALFORMED_BODY,
    MALFORMED_JSON_BODY,
    STREAM_FAULTS,
    BehaviorQueue,
    StreamPlan,
    behavior_from_directive,
    plain_call_wait,
    plan_stream,
)

STATE_KEY = "fake_anthropic"
REQUEST_LOG_LIMIT = 10_000
COMPLETED, CLIENT_CLOSED, FAULT = "completed", "client_closed", "fault"

blueprint = Blueprint("fake_anthropic", __name__)


class _DropConnection(Exception):
    """Raised inside a response body to cut the connection mid-response."""


@dataclass
class FakeState:
    """Run-time state: queued behaviors and the request log (touched only on the server loop)."""

    latency_ms: int = 0
    chunk_delay_ms: int = 0
    behaviors: BehaviorQueue = field(default_factory=BehaviorQueue)
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_LIMIT))


def _state() -> FakeState:
    return current_app.extensions[STATE_KEY]


# --- responses ---------------------------------------------------------------------------------


async def error_response(error: FakeApiError) -> Response:
    """Render a ``FakeApiError`` as Anthropic's error response."""
    body = error_object(error.status, error.message, error.options.get("error_code"))
    response = jsonify({"type": "error", "error": body, "request_id": g.get("request_id")})
    response.status_code = error.status
    if error.options.get("retry_after") is not None:
        response.headers["retry-after"] = f"{error.options['retry_after']:g}"
    return response


async def stream_events(
    req: MessagesRequest, reply: Reply, plan: StreamPlan, entry: dict[str, Any]
) -> AsyncIterator[bytes]:
    """Yield the SSE events of one answer as planned; record in ``entry`` how the stream ended.

    Quart cancels the body when the client disconnects, or closes it at a ``yield``.
    """
    entry["deltas_sent"] = 0
    outcome: str | None = None
    try:
        for event in stream_head(req):
            yield event
        async for event in _deltas(plan, 0, plan.fault_at, entry):
            yield event
        fault = plan.fault
        if fault is not None and fault["type"] == "stream_stall":
            await asyncio.sleep(fault["seconds"])
        if fault is not None and not fault.get("resume"):
            outcome = FAULT
            yield _final_fault_event(fault)
            return
        async for event in _deltas(plan, plan.fault_at, len(plan.chunks), entry):
            yield event
        for event in stream_tail(reply):
            yield event
        outcome = COMPLETED
    except (asyncio.CancelledError, GeneratorExit):
        outcome = outcome or CLIENT_CLOSED
        raise
    finally:
        entry["stream_outcome"] = outcome


async def _deltas(
    plan: StreamPlan, start: int, stop: int, entry: dict[str, Any]
) -> AsyncIterator[bytes]:
    for index in range(start, stop):
        if pause := plan.pause_before(index):
            await asyncio.sleep(pause)
        yield text_delta(plan.chunks[index])
        entry["deltas_sent"] += 1  # counted once the server took the event


def _final_fault_event(fault: dict[str, Any]) -> bytes:
    if fault["type"] != "stream_error":
        raise _DropConnection
    return error_event(fault["status"], fault.get("message"))


def stream_response(body: AsyncIterator[bytes], content_type: str = SSE_CONTENT_TYPE) -> Response:
    """Wrap a body produced over time in a response that is sent as it comes."""
    response = current_app.response_class(body, content_type=content_type)
    response.headers["cache-control"] = "no-cache"
    return response


async def _dropped_body() -> AsyncIterator[bytes]:
    raise _DropConnection
    yield b""  # pragma: no cover - makes this an async generator


def malformed_response(behavior: dict[str, Any]) -> Response:
    """Answer 200 with a body that is not the Message JSON the client expects."""
    is_json = "json" in behavior["content_type"]
    body = behavior.get("body") or (MALFORMED_JSON_BODY if is_json else MALFORMED_BODY)
    return current_app.response_class(body, status=200, content_type=behavior["content_type"])


# --- views -----------------------------------------------------------------------------------


def _log_request(body: Any) -> dict[str, Any]:
    fields = body if isinstance(body, dict) else {}
    messages = fields.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else {}
    content = last.get("content") if isinstance(last, dict) else None
    entry = {
        "id": g.request_id,
        "method": request.method,
        "path": request.path,
        "model": fields.get("model"),
        "prompt": content if isinstance(content, str) else None,
        "stream": fields.get("stream") is True,
        "max_tokens": fields.get("max_tokens"),
        "behavior": None,
        "time": time.time(),
        "stream_outcome": None,
        "deltas_sent": None,
    }
    _state().log.append(entry)
    return entry


def _check_headers() -> None:
    if not (request.headers.get("x-api-key") or request.headers.get("authorization")):
        raise FakeApiError(401, "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        raise FakeApiError(400, "anthropic-version: header is required")


@blueprint.post("/v1/messages")
async def create_message() -> Response:
    """Answer a Messages API call, applying the next queued behavior or a prompt directive."""
    body = await request.get_json(force=True, silent=True)
    entry = _log_request(body)
    _check_headers()
    req = parse_messages_request(body)
    entry["prompt"] = req.prompt
    behavior = _state().behaviors.pop() or behavior_from_directive(req.prompt)
    entry["behavior"] = behavior["type"] if behavior else None
    if _state().latency_ms:
        await asyncio.sleep(_state().latency_ms / 1000)
    return await answer(req, behavior, entry)


async def answer(
    req: MessagesRequest, behavior: dict[str, Any] | None, entry: dict[str, Any]
) -> Response:
    """Produce the answer for a valid request under one behavior (or none)."""
    spec: dict[str, Any] = behavior or {}
    kind = spec.get("type")
    if kind == "fail":
        raise FakeApiError(**{key: value for key, value in spec.items() if key != "type"})
    if kind == "malformed":
        return malformed_response(spec)
    if kind == "delay":
        await asyncio.sleep(spec["seconds"])
    text = spec["text"] if "text" in spec else compose_reply(req.prompt, req.model)
    reply = finish_reply(text, req.max_tokens, req.stop_sequences)
    if req.stream:
        plan = plan_stream(behavior, reply.text, _state().chunk_delay_ms / 1000)
        return stream_response(stream_events(req, reply, plan, entry))
    await asyncio.sleep(plain_call_wait(behavior))
    if kind in STREAM_FAULTS and not spec.get("resume"):
        return _fail_plain_call(spec)
    return jsonify(message_json(req, reply))


def _fail_plain_call(fault: dict[str, Any]) -> Response:
    # A stream fault on a non-streaming call fails the way a proxy in between would.
    if fault["type"] == "stream_error":
        raise FakeApiError(fault["status"], fault.get("message"))
    return stream_response(_dropped_body(), "application/json")


@blueprint.get("/_fake/scenario")
async def get_scenario() -> Response:
    """List the behaviors still queued, with their remaining ``times``."""
    return jsonify({"behaviors": _state().behaviors.listing()})


@blueprint.post("/_fake/scenario")
async def set_scenario() -> Response:
    """Replace the queue of behaviors applied to the next /v1/messages calls."""
    body = await request.get_json(force=True, silent=True)
    raw = body.get("behaviors") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise FakeApiError(400, 'body must be {"behaviors": [...]}')
    try:
        _state().behaviors.replace(raw)
    except ValueError as error:
        raise FakeApiError(400, str(error)) from error
    return await get_scenario()


@blueprint.delete("/_fake/scenario")
async def clear_scenario() -> Response:
    """Drop every queued behavior."""
    _state().behaviors.clear()
    return await get_scenario()


@blueprint.get("/_fake/requests")
async def list_requests() -> Response:
    """Return the log of /v1/messages calls, oldest first."""
    return jsonify({"requests": list(_state().log)})


@blueprint.delete("/_fake/requests")
async def clear_requests() -> Response:
    """Empty the request log."""
    _state().log.clear()
    return jsonify({"requests": []})


@blueprint.get("/_fake/health")
async def health() -> Response:
    """Say the fake is up."""
    return jsonify({"status": "ok"})


# --- the app -----------------------------------------------------------------------------------


async def _assign_request_id() -> None:
    g.request_id = f"req_01{secrets.token_hex(11)}"


async def _add_request_id(response: Response) -> Response:
    response.headers["request-id"] = g.get("request_id") or "req_unknown"
    return response


async def _http_error(error: Exception) -> Response:
    status = getattr(error, "code", 500) or 500
    return await error_response(FakeApiError(status, getattr(error, "description", None)))


class _DropConnectionMiddleware:
    """Let a response end without its final chunk, so hypercorn closes the socket mid-body."""

    def __init__(self, asgi_app: Callable[..., Awaitable[None]]) -> None:
        self.asgi_app = asgi_app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.asgi_app(scope, receive, send)
        except _DropConnection:
            pass


def create_fake_anthropic_app(*, latency_ms: int = 0, chunk_delay_ms: int = 0) -> Quart:
    """Create the fake Anthropic API app."""
    app = Quart(__name__)
    app.config["RESPONSE_TIMEOUT"] = None  # stalled streams must outlive Quart's 60 s default
    app.extensions[STATE_KEY] = FakeState(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms)
    app.register_blueprint(blueprint)
    app.before_request(_assign_request_id)
    app.after_request(_add_request_id)
    app.register_error_handler(FakeApiError, error_response)
    for status in (404, 405, 413):
        app.register_error_handler(status, _http_error)
    app.asgi_app = _DropConnectionMiddleware(app.asgi_app)  # type: ignore[method-assign]
    return app
