"""The Messages API wire format: request validation, Message JSON, SSE events, error objects."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from aigen.dev.anthropic.answers import Reply, count_tokens

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
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


class FakeApiError(Exception):
    """An error answered in the Anthropic error format."""

    def __init__(self, status: int, message: str | None = None, **options: Any) -> None:
        super().__init__(message or error_type_and_message(status)[1])
        self.status = status
        self.message = message
        self.options = options


@dataclass(frozen=True)
class MessagesRequest:
    """The parts of a valid ``POST /v1/messages`` body that shape the answer."""

    model: str
    max_tokens: int
    prompt: str
    input_tokens: int
    stream: bool
    stop_sequences: tuple[str, ...] = ()


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


# --- errors ------------------------------------------------------------------------------------


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


# --- answers -----------------------------------------------------------------------------------


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


def error_event(status: int, message: str | None = None) -> bytes:
    """Encode the ``error`` event that breaks off a stream already answered with 200."""
    return sse({"type": "error", "error": error_object(status, message)})
