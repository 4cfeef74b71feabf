"""A local stand-in for the Anthropic Messages API, with faults that can be switched on at run time.

The real ``anthropic`` SDK works against it unchanged::

    with FakeAnthropicServer() as fake:                      # or: python -m aigen.dev.anthropic
        client = AsyncAnthropic(base_url=fake.base_url, api_key="anything")
        fake.set_scenario([{"type": "fail", "status": 529, "times": 2}])

``POST /v1/messages`` answers deterministic Markdown derived from the last user message and the
model, as JSON or (``"stream": true``) as Anthropic's server-sent events. Token counts use one
rule everywhere: a token is a run of word characters or one punctuation character, each with the
whitespace before it (``"Hello, world!"`` is 4 tokens); ``input_tokens`` counts the system prompt
and every turn.

Behaviors, queued by ``POST /_fake/scenario {"behaviors": [...]}`` (each with optional
``"times": n``) and consumed in order by valid /v1/messages calls:

- ``{"type": "fail", "status": 529}``: Anthropic's error JSON for the status (optional
  ``message``, ``error_code``; ``retry_after`` seconds for 429, default 1).
- ``{"type": "delay", "seconds": 3}``: sleep, then answer normally.
- ``{"type": "malformed"}``: 200 with an HTML body (``"content_type": "application/json"``
  sends truncated JSON instead; ``body`` sets the exact text).
- ``{"type": "reply", "text": "..."}``: answer this text instead (``max_tokens`` still applies).
- ``{"type": "stream_stall"}``: send the first events, then nothing for ``seconds`` (an hour).
- ``{"type": "stream_disconnect"}``: send the first events, then drop the connection.
- ``{"type": "stream_error", "status": 529}``: send the first events, then an ``error`` event.

A non-streaming call stalls or drops its connection for the stream faults. With the queue empty,
a prompt directive applies to that call: ``[fake:fail=529]``, ``[fake:delay=3]``,
``[fake:malformed]``, ``[fake:stall]``, ``[fake:disconnect]``, ``[fake:stream_error]``,
``[fake:reply=text]``. ``DELETE /_fake/scenario`` empties the queue, ``GET /_fake/requests`` lists
the calls received and ``DELETE /_fake/requests`` forgets them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import json
import re
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Blueprint, Quart, Response, current_app, g, jsonify, request

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
STATE_KEY = "fake_anthropic"
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
TOKEN_PATTERN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")
TOKENS_PER_DELTA = 4
DELTAS_BEFORE_FAULT = 2
STALL_SECONDS = 3600.0
REQUEST_LOG_LIMIT = 10_000
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
ADMIN_TIMEOUT_SECONDS = 5.0
DIRECTIVE_PATTERN = re.compile(r"\[fake:(\w+)(?:=([^\]]*))?\]")
STREAM_FAULTS = frozenset({"stream_stall", "stream_disconnect", "stream_error"})
DIRECTIVE_ALIASES = {"stall": "stream_stall", "disconnect": "stream_disconnect"}
MALFORMED_BODY = "<html><body><h1>502 Bad Gateway</h1><p>upstream hiccup</p></body></html>"
MALFORMED_JSON_BODY = '{"id": "msg_truncated", "type": "message", "content": [{"type": "te'
CODE_WORDS = frozenset({"code", "python", "function", "script", "example", "sql"})
ERRORS_BY_STATUS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error."),
    503: ("api_error", "Service unavailable."),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}
ADVICE = (
    "Start with the smallest version that works, then measure.",
    "Write the failing test first; it tells you when you are done.",
    "Prefer boring, well-known tools over clever ones.",
    "Name things for what they are for, not how they work.",
    "Keep each step reversible until you are sure.",
    "Ask who will read this next, and write for them.",
)

blueprint = Blueprint("fake_anthropic", __name__)


class FakeApiError(Exception):
    """An error answered in the Anthropic error format."""

    def __init__(self, status: int, message: str | None = None, **options: Any) -> None:
        super().__init__(message or error_type_and_message(status)[1])
        self.status = status
        self.message = message
        self.options = options


class _DropConnection(Exception):
    """Raised inside a response body to cut the connection mid-response."""


@dataclass(frozen=True)
class MessagesRequest:
    """The parts of a valid ``POST /v1/messages`` body that shape the answer."""

    model: str
    max_tokens: int
    prompt: str
    input_tokens: int
    stream: bool
    stop_sequences: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reply:
    """The answer text after stop sequences and ``max_tokens`` were applied."""

    text: str
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int


@dataclass
class FakeState:
    """Run-time state: queued behaviors and the request log (touched only on the server loop)."""

    latency_ms: int = 0
    chunk_delay_ms: int = 0
    behaviors: deque[list[Any]] = field(default_factory=deque)
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_LIMIT))

    def pop_behavior(self) -> dict[str, Any] | None:
        """Take the next queued behavior, counting down its ``times``."""
        if not self.behaviors:
            return None
        entry = self.behaviors[0]
        entry[1] -= 1
        if entry[1] <= 0:
            self.behaviors.popleft()
        return entry[0]


# --- tokens and the deterministic answer ---------------------------------------------------


def tokenize(text: str) -> list[str]:
    """Split text into tokens whose concatenation is the text itself."""
    return TOKEN_PATTERN.findall(text)


def count_tokens(text: str) -> int:
    """Count tokens the way every usage number of this fake does."""
    return len(tokenize(text))


def compose_reply(prompt: str, model: str) -> str:
    """Return the Markdown answer for a prompt: a pure function of prompt and model."""
    digest = hashlib.sha256(f"{model}\n{prompt}".encode()).hexdigest()
    words = re.findall(r"\w+", prompt)
    heading = " ".join(words[:6]) or "An empty question"
    lines = [
        f"## {heading[0].upper()}{heading[1:]}",
        "",
        f"You asked: “{_first_line(prompt)}”. This answer comes from the local fake of the "
        f"Anthropic API, so the same prompt always gets the same reply.",
        "",
        f"- The prompt has **{len(words)} words** on {prompt.count(chr(10)) + 1} line(s).",
        f"- Its longest word is `{max(words, key=len, default='-')}`.",
        f"- {ADVICE[int(digest[:8], 16) % len(ADVICE)]}",
        f"- Fingerprint `{digest[:12]}` from model `{model}`.",
    ]
    if int(digest[8], 16) % 2 == 0 or CODE_WORDS.intersection(w.lower() for w in words):
        lines += ["", "```python", "def answer() -> str:", f'    return "{digest[:12]}"', "```"]
    return "\n".join(lines)


def _first_line(prompt: str, limit: int = 120) -> str:
    first = prompt.strip().splitlines()[0] if prompt.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def finish_reply(text: str, max_tokens: int, stop_sequences: Sequence[str] = ()) -> Reply:
    """Cut the text at the first stop sequence, then at ``max_tokens``."""
    hits = [(text.find(s), s) for s in stop_sequences if s and s in text]
    stop_sequence = min(hits)[1] if hits else None
    if stop_sequence is not None:
        text = text[: text.find(stop_sequence)]
    tokens = tokenize(text)
    if len(tokens) > max_tokens:
        return Reply("".join(tokens[:max_tokens]), "max_tokens", None, max_tokens)
    stop_reason = "end_turn" if stop_sequence is None else "stop_sequence"
    return Reply(text, stop_reason, stop_sequence, len(tokens))


# --- request validation ------------------------------------------------------------------------


def parse_messages_request(body: Any) -> MessagesRequest:
    """Validate a Messages API body like Anthropic does, raising a 400 ``FakeApiError``."""
    if not isinstance(body, dict):
        raise FakeApiError(400, "Request body must be a JSON object.")
    model = _require(body, "model", str)
    max_tokens = _require(body, "max_tokens", int)
    if max_tokens < 1:
        raise FakeApiError(400, "max_tokens: Input should be greater than or equal to 1")
    turns = _parse_messages(_require(body, "messages", list))
    system = _block_text(body.get("system", ""), "system")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise FakeApiError(400, "stream: Input should be a valid boolean")
    user_texts = [text for role, text in turns if role == "user"]
    return MessagesRequest(
        model=model,
        max_tokens=max_tokens,
        prompt=user_texts[-1] if user_texts else "",
        input_tokens=count_tokens(system) + sum(count_tokens(text) for _, text in turns),
        stream=stream,
        stop_sequences=_parse_stop_sequences(body.get("stop_sequences")),
    )


def _require(body: dict[str, Any], name: str, kind: type) -> Any:
    if name not in body:
        raise FakeApiError(400, f"{name}: Field required")
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FakeApiError(400, f"{name}: Input should be a valid {kind.__name__}")
    if kind is str and not value:
        raise FakeApiError(400, f"{name}: String should have at least 1 character")
    return value


def _parse_messages(messages: list[Any]) -> list[tuple[str, str]]:
    if not messages:
        raise FakeApiError(400, "messages: at least one message is required")
    turns = []
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise FakeApiError(400, f"{where}: Input should be a valid dictionary")
        if message.get("role") not in ("user", "assistant"):
            raise FakeApiError(400, f"{where}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise FakeApiError(400, f"{where}.content: Field required")
        text = _block_text(message["content"], f"{where}.content")
        if message["role"] == "user" and not text.strip():
            raise FakeApiError(400, f"{where}: user messages must have non-empty content")
        turns.append((message["role"], text))
    return turns


def _block_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise FakeApiError(400, f"{where}: Input should be a valid string or list")
    texts = []
    for index, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise FakeApiError(400, f"{where}.{index}: only text blocks are supported by the fake")
        if not isinstance(block.get("text"), str):
            raise FakeApiError(400, f"{where}.{index}.text: Input should be a valid string")
        texts.append(block["text"])
    return "\n".join(texts)


def _parse_stop_sequences(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise FakeApiError(400, "stop_sequences: Input should be a valid list of strings")
    return tuple(value)


# --- behaviors -----------------------------------------------------------------------------


def _number(behavior: dict[str, Any], name: str, default: float) -> float:
    value = behavior.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{behavior['type']}.{name} must be a non-negative number")
    return float(value)


def _string(behavior: dict[str, Any], name: str, default: str | None) -> str | None:
    value = behavior.get(name, default)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{behavior['type']}.{name} must be a string")
    return value


def _fail_options(behavior: dict[str, Any]) -> dict[str, Any]:
    status = behavior.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError("fail.status must be an HTTP error status between 400 and 599")
    return {
        "status": status,
        "message": _string(behavior, "message", None),
        "error_code": _string(behavior, "error_code", None),
        "retry_after": _number(behavior, "retry_after", 1.0) if status == 429 else None,
    }


def _stream_error_options(behavior: dict[str, Any]) -> dict[str, Any]:
    status = behavior.get("status", 529)
    if status not in ERRORS_BY_STATUS:
        raise ValueError(f"stream_error.status must be one of {sorted(ERRORS_BY_STATUS)}")
    return {"status": status, "message": _string(behavior, "message", None)}


BEHAVIOR_OPTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "fail": _fail_options,
    "delay": lambda b: {"seconds": _number(b, "seconds", 1.0)},
    "malformed": lambda b: {
        "body": _string(b, "body", None),
        "content_type": _string(b, "content_type", "text/html; charset=utf-8"),
    },
    "reply": lambda b: {"text": _string(b, "text", None) or ""},
    "stream_stall": lambda b: {"seconds": _number(b, "seconds", STALL_SECONDS)},
    "stream_disconnect": lambda b: {},
    "stream_error": _stream_error_options,
}


def normalize_behavior(raw: Any) -> tuple[dict[str, Any], int]:
    """Validate one scenario behavior; return it with defaults filled in, and its ``times``."""
    if not isinstance(raw, dict) or raw.get("type") not in BEHAVIOR_OPTIONS:
        raise ValueError(f"behavior type must be one of {sorted(BEHAVIOR_OPTIONS)}: {raw!r}")
    times = raw.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError("times must be a positive integer")
    options = BEHAVIOR_OPTIONS[raw["type"]](raw)
    return {"type": raw["type"]} | {k: v for k, v in options.items() if v is not None}, times


def behavior_from_directive(prompt: str) -> dict[str, Any] | None:
    """Turn the first ``[fake:name=value]`` in a prompt into a behavior, if there is one."""
    match = DIRECTIVE_PATTERN.search(prompt)
    if match is None:
        return None
    kind = DIRECTIVE_ALIASES.get(match.group(1), match.group(1))
    raw: dict[str, Any] = {"type": kind}
    value = match.group(2)
    if value is not None and kind in ("fail", "stream_error"):
        raw["status"] = int(value) if value.isdigit() else value
    elif value is not None and kind in ("delay", "stream_stall"):
        raw["seconds"] = float(value) if re.fullmatch(r"\d+(\.\d+)?", value) else value
    elif value is not None and kind == "reply":
        raw["text"] = value
    try:
        return normalize_behavior(raw)[0]
    except ValueError as error:
        raise FakeApiError(400, f"fake directive {match.group(0)}: {error}") from error


# --- responses ---------------------------------------------------------------------------------


def error_type_and_message(status: int) -> tuple[str, str]:
    """Return Anthropic's error type and a typical message for an HTTP status."""
    if status in ERRORS_BY_STATUS:
        return ERRORS_BY_STATUS[status]
    return ("api_error", "Internal server error.") if status >= 500 else ERRORS_BY_STATUS[400]


def error_object(status: int, message: str | None = None, error_code: str | None = None) -> dict:
    """Build the ``error`` member of an Anthropic error for an HTTP status."""
    kind, default_message = error_type_and_message(status)
    error: dict[str, Any] = {"type": kind, "message": message or default_message}
    if error_code:
        error["details"] = {"error_code": error_code}
    return error


async def error_response(error: FakeApiError) -> Response:
    """Render a ``FakeApiError`` as Anthropic's error response."""
    body = error_object(error.status, error.message, error.options.get("error_code"))
    response = jsonify({"type": "error", "error": body, "request_id": g.get("request_id")})
    response.status_code = error.status
    if error.options.get("retry_after") is not None:
        response.headers["retry-after"] = f"{error.options['retry_after']:g}"
    return response


def message_json(req: MessagesRequest, reply: Reply) -> dict[str, Any]:
    """Build the non-streaming Message object."""
    return {
        "id": f"msg_01{secrets.token_hex(11)}",
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": {"input_tokens": req.input_tokens, "output_tokens": reply.output_tokens},
    }


def sse(data: dict[str, Any]) -> bytes:
    """Encode one server-sent event; like Anthropic's, its name is the data's ``type``."""
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


def text_chunks(text: str) -> Iterator[str]:
    """Split the reply into the pieces sent as ``text_delta`` events."""
    tokens = tokenize(text)
    for start in range(0, len(tokens), TOKENS_PER_DELTA):
        yield "".join(tokens[start : start + TOKENS_PER_DELTA])


def stream_head(req: MessagesRequest) -> list[bytes]:
    """Return the events that open every stream, up to the first delta."""
    message = message_json(req, Reply("", "end_turn", None, 1))
    message.update(content=[], stop_reason=None)
    block = {"type": "text", "text": ""}
    return [
        sse({"type": "message_start", "message": message}),
        sse({"type": "content_block_start", "index": 0, "content_block": block}),
        sse({"type": "ping"}),
    ]


def text_delta(chunk: str) -> bytes:
    """Encode one piece of the answer text."""
    delta = {"type": "text_delta", "text": chunk}
    return sse({"type": "content_block_delta", "index": 0, "delta": delta})


def stream_tail(reply: Reply) -> list[bytes]:
    """Return the events that close a stream after its last delta."""
    delta = {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence}
    usage = {"output_tokens": reply.output_tokens}
    return [
        sse({"type": "content_block_stop", "index": 0}),
        sse({"type": "message_delta", "delta": delta, "usage": usage}),
        sse({"type": "message_stop"}),
    ]


async def stream_events(
    req: MessagesRequest, reply: Reply, chunk_delay: float, fault: dict[str, Any] | None
) -> AsyncIterator[bytes]:
    """Yield the SSE events of one answer, breaking off where a stream fault says."""
    chunks = list(text_chunks(reply.text))
    for event in stream_head(req):
        yield event
    for index, chunk in enumerate(chunks if fault is None else chunks[:DELTAS_BEFORE_FAULT]):
        if index and chunk_delay:
            await asyncio.sleep(chunk_delay)
        yield text_delta(chunk)
    if fault is None:
        for event in stream_tail(reply):
            yield event
        return
    async for event in _stream_fault(fault):
        yield event


async def _stream_fault(fault: dict[str, Any]) -> AsyncIterator[bytes]:
    if fault["type"] == "stream_error":
        error = error_object(fault["status"], fault.get("message"))
        yield sse({"type": "error", "error": error})
        return
    if fault["type"] == "stream_stall":
        await asyncio.sleep(fault["seconds"])
    raise _DropConnection


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


def _state() -> FakeState:
    return current_app.extensions[STATE_KEY]


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
    behavior = _state().pop_behavior() or behavior_from_directive(req.prompt)
    entry["behavior"] = behavior["type"] if behavior else None
    if _state().latency_ms:
        await asyncio.sleep(_state().latency_ms / 1000)
    return await answer(req, behavior)


async def answer(req: MessagesRequest, behavior: dict[str, Any] | None) -> Response:
    """Produce the answer for a valid request under one behavior (or none)."""
    spec: dict[str, Any] = behavior or {}
    kind = spec["type"] if spec else None
    if kind == "fail":
        raise FakeApiError(**{key: value for key, value in spec.items() if key != "type"})
    if kind == "malformed":
        return malformed_response(spec)
    if kind == "delay":
        await asyncio.sleep(spec["seconds"])
    text = spec["text"] if kind == "reply" else compose_reply(req.prompt, req.model)
    reply = finish_reply(text, req.max_tokens, req.stop_sequences)
    fault = spec if kind in STREAM_FAULTS else None
    if req.stream:
        return stream_response(stream_events(req, reply, _state().chunk_delay_ms / 1000, fault))
    if fault is not None:
        return await _fail_plain_call(fault)
    return jsonify(message_json(req, reply))


async def _fail_plain_call(fault: dict[str, Any]) -> Response:
    # A stream fault on a non-streaming call fails the way a proxy in between would.
    if fault["type"] == "stream_error":
        raise FakeApiError(fault["status"], fault.get("message"))
    if fault["type"] == "stream_stall":
        await asyncio.sleep(fault["seconds"])
    return stream_response(_dropped_body(), "application/json")


@blueprint.get("/_fake/scenario")
async def get_scenario() -> Response:
    """List the behaviors still queued, with their remaining ``times``."""
    return jsonify({"behaviors": [{**b, "times": n} for b, n in _state().behaviors]})


@blueprint.post("/_fake/scenario")
async def set_scenario() -> Response:
    """Replace the queue of behaviors applied to the next /v1/messages calls."""
    body = await request.get_json(force=True, silent=True)
    raw = body.get("behaviors") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise FakeApiError(400, 'body must be {"behaviors": [...]}')
    try:
        queue = [list(normalize_behavior(item)) for item in raw]
    except ValueError as error:
        raise FakeApiError(400, str(error)) from error
    _state().behaviors = deque(queue)
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


# --- control from tests and other processes -------------------------------------------------


class FakeAnthropicAdmin:
    """Drive a running fake (in this process or another) through its admin endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def set_scenario(self, behaviors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the queued behaviors; return the queue as the fake stored it."""
        return self._call("POST", "/_fake/scenario", {"behaviors": list(behaviors)})["behaviors"]

    def scenario(self) -> list[dict[str, Any]]:
        """Return the behaviors still queued."""
        return self._call("GET", "/_fake/scenario")["behaviors"]

    def requests(self) -> list[dict[str, Any]]:
        """Return the request log."""
        return self._call("GET", "/_fake/requests")["requests"]

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._call("DELETE", "/_fake/requests")

    def clear(self) -> None:
        """Drop queued behaviors and empty the request log."""
        self._call("DELETE", "/_fake/scenario")
        self.clear_requests()

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        call = urllib.request.Request(self.url + path, data=data, method=method)
        call.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(call, timeout=ADMIN_TIMEOUT_SECONDS) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            detail = json.load(error).get("error", {}).get("message", error.reason)
            raise ValueError(f"{method} {path}: {detail}") from None


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind and listen, so the real port is known before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def hypercorn_config(sock: socket.socket, *, loglevel: str = "INFO") -> Config:
    """Make a hypercorn config serving an already bound socket (which it takes over)."""
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.loglevel = loglevel
    config.graceful_timeout = 1.0
    return config


def _ignore_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # Python 3.11 logs each connection hypercorn cancels after its graceful timeout as an error.
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


async def serve_app(
    app: Quart, config: Config, shutdown_trigger: Callable[[], Awaitable[Any]] | None = None
) -> None:
    """Serve the app with hypercorn until the trigger fires (or SIGINT/SIGTERM without one)."""
    asyncio.get_running_loop().set_exception_handler(_ignore_cancelled)
    await serve(app, config, shutdown_trigger=shutdown_trigger)


class FakeAnthropicServer:
    """Serve the fake with hypercorn on 127.0.0.1 in a daemon thread with its own event loop."""

    def __init__(self, *, port: int = 0, latency_ms: int = 0, chunk_delay_ms: int = 0) -> None:
        self.app = create_fake_anthropic_app(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms)
        self.app.before_serving(self._mark_ready)
        self._requested_port = port
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:40123``."""
        if self._port is None:
            raise RuntimeError("FakeAnthropicServer is not started")
        return f"http://{DEFAULT_HOST}:{self._port}"

    @property
    def base_url(self) -> str:
        """What to pass as the SDK's ``base_url`` (or ``ANTHROPIC_BASE_URL``)."""
        return self.url

    @property
    def admin(self) -> FakeAnthropicAdmin:
        """An admin client bound to this server."""
        return FakeAnthropicAdmin(self.url)

    def start(self) -> FakeAnthropicServer:
        """Start serving; return once requests are answered."""
        sock = listening_socket(DEFAULT_HOST, self._requested_port)
        self._port = sock.getsockname()[1]
        config = hypercorn_config(sock, loglevel="WARNING")
        self._thread = threading.Thread(
            target=self._run, args=(config,), name=f"fake-anthropic-{self._port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_SECONDS) or self._error is not None:
            raise RuntimeError("fake Anthropic server failed to start") from self._error
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._loop is not None and self._shutdown is not None:
            self._loop.call_soon_threadsafe(self._shutdown.set)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)
        self._thread = None
        self._loop = None
        self._shutdown = None

    def set_scenario(self, behaviors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the queued behaviors (see ``POST /_fake/scenario``)."""
        return self.admin.set_scenario(behaviors)

    def clear(self) -> None:
        """Drop queued behaviors and empty the request log."""
        self.admin.clear()

    def requests(self) -> list[dict[str, Any]]:
        """Return the request log."""
        return self.admin.requests()

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _mark_ready(self) -> None:
        self._ready.set()

    def _run(self, config: Config) -> None:
        try:
            asyncio.run(self._serve(config))
        except BaseException as error:  # reported to start(); a daemon thread has no one else
            self._error = error
        finally:
            self._ready.set()

    async def _serve(self, config: Config) -> None:
        self._loop = asyncio.get_running_loop()
        self._shutdown = asyncio.Event()
        await serve_app(self.app, config, self._shutdown.wait)


# --- command line ----------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Tell whether a host name or address only accepts local connections."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line of ``python -m aigen.dev.anthropic``."""
    parser = argparse.ArgumentParser(
        prog="python -m aigen.dev.anthropic",
        description="Local fake of the Anthropic Messages API.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--latency-ms", type=int, default=0, help="delay before every answer")
    parser.add_argument("--chunk-delay-ms", type=int, default=20, help="delay between deltas")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback host")
    args = parser.parse_args(argv)
    if not (args.allow_remote or is_loopback(args.host)):
        parser.error(f"refusing to listen on {args.host}: pass --allow-remote to mean it")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake until interrupted."""
    args = parse_args(argv)
    app = create_fake_anthropic_app(latency_ms=args.latency_ms, chunk_delay_ms=args.chunk_delay_ms)
    sock = listening_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    print(f"Fake Anthropic API on {url} (ANTHROPIC_BASE_URL={url})", flush=True)
    asyncio.run(serve_app(app, hypercorn_config(sock)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
