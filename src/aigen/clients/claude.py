"""Calls Claude through the official SDK and turns every failure into one UpstreamError."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anthropic
import httpx2
from anthropic.lib.streaming import AsyncMessageStream, AsyncMessageStreamManager
from anthropic.types import Message
from opentelemetry import trace

log = logging.getLogger(__name__)

# One retry helps with a passing overload; the whole call stays within the configured timeout.
MAX_RETRIES = 1


@dataclass(frozen=True)
class Completion:
    """Claude's answer and what it cost."""

    text: str
    model: str
    input_tokens: int
    output_tokens: int
    stop_reason: str | None


# An error event inside a stream arrives on a 200 response: its type says what the status was.
STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

TIMEOUT = "timeout"
UNAVAILABLE = "unavailable"
BAD_ANSWER = "bad_answer"
REJECTED = "rejected"


class UpstreamError(Exception):
    """Claude could not answer; `kind` says how (TIMEOUT, UNAVAILABLE, BAD_ANSWER, REJECTED)."""

    def __init__(self, kind: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable


class ClaudeClient:
    """A thin wrapper over AsyncAnthropic with our model, limits and error mapping."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        model: str,
        max_tokens: int,
        timeout: float,
        max_connections: int,
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.timeout = timeout
        # The SDK's aiohttp transport: the same SDK and wire format at about half the CPU per
        # call of its default httpx transport (bench/README.md). Every connection is kept alive
        # (one closed after each call would be opened again, a TLS handshake to Anthropic), and
        # calls beyond the limit queue, not fail.
        http_client = anthropic.DefaultAioHttpClient(
            limits=httpx2.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            )
        )
        self._sdk = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=MAX_RETRIES,
            http_client=http_client,
            open_telemetry=sdk_tracing(trace.get_tracer_provider()),
        )

    async def complete(self, prompt: str) -> Completion:
        """Send one user prompt and return the answer, or raise UpstreamError."""
        try:
            async with asyncio.timeout(self.timeout):
                message = await self._sdk.messages.create(
                    model=self.model,
                    max_tokens=self.max_tokens,
                    messages=[{"role": "user", "content": prompt}],
                )
        except Exception as error:
            raise upstream_error(error) from error
        return completion_from(message)

    def stream(self, prompt: str) -> AnswerStream:
        """Stream the answer to one user prompt (use with `async with`, then `async for`)."""

        def open_stream() -> AsyncMessageStreamManager[Any]:
            return self._sdk.messages.stream(
                model=self.model,
                max_tokens=self.max_tokens,
                messages=[{"role": "user", "content": prompt}],
            )

        return AnswerStream(open_stream, self.timeout)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._sdk.close()


def end_of_life(model: str) -> str | None:
    """When the installed SDK says `model` reaches end of life (e.g. "January 22nd, 2027"), or None.

    The SDK warns at every call with a DeprecationWarning, which Python hides outside tests and
    `__main__`, so an operator would never see it; the app logs it at start-up instead. The table
    lives in a private module of the SDK: read defensively, a newer SDK may move it.
    """
    try:
        from anthropic._data import DEPRECATED_MODELS
    except ImportError:
        return None
    retires = DEPRECATED_MODELS.get(model)
    return retires if isinstance(retires, str) else None


def sdk_tracing(provider: trace.TracerProvider) -> Literal[False] | None:
    """The SDK's `open_telemetry` option: False (no spans) while OpenTelemetry is not set up in
    this process, None (the SDK's default, and its ANTHROPIC_OPEN_TELEMETRY* variables) once it is.

    The SDK builds a span with its attributes for every call even when nothing records it, about
    a tenth of a call's CPU (README, Performance). Without a tracer provider set up, as by
    `opentelemetry-instrument aigen serve`, the global one is only a proxy.
    """
    return False if isinstance(provider, trace.ProxyTracerProvider) else None


class AnswerStream:
    """One streamed answer: `async for text in answer` gives its text deltas as they arrive.

    What arrived so far stays readable when the stream breaks off (`text`, `usage()`). Leaving
    the `async with` closes the HTTP response, so the upstream sees the connection end at once.
    Every failure is an UpstreamError; the whole stream is bounded by the client's timeout.
    """

    def __init__(
        self, open_stream: Callable[[], AsyncMessageStreamManager[Any]], timeout: float
    ) -> None:
        # The request is made on entering: a stream given up before that never calls Claude.
        self._open_stream = open_stream
        self._manager: AsyncMessageStreamManager[Any] | None = None
        self._timeout = timeout
        self._deadline = 0.0
        self._stream: AsyncMessageStream[Any] | None = None
        self._started = False  # message_start arrived: the usage snapshot exists
        self.parts: list[str] = []

    async def __aenter__(self) -> AnswerStream:
        self._deadline = asyncio.get_running_loop().time() + self._timeout
        self._manager = self._open_stream()
        try:
            async with asyncio.timeout_at(self._deadline):
                self._stream = await self._manager.__aenter__()
        except Exception as error:
            raise upstream_error(error) from error
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._manager is not None:
            await self._manager.__aexit__(None, None, None)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._text_deltas()

    async def _text_deltas(self) -> AsyncIterator[str]:
        if self._stream is None:
            raise RuntimeError("AnswerStream is iterated outside `async with`")
        while True:
            try:
                async with asyncio.timeout_at(self._deadline):
                    event = await anext(self._stream)
            except StopAsyncIteration:
                return
            except Exception as error:
                raise upstream_error(error) from error
            if event.type == "message_start":
                self._started = True
            elif event.type == "text" and event.text:
                # PostgreSQL text cannot hold NUL (as in completion_from).
                text = event.text.replace("\x00", "\ufffd")
                self.parts.append(text)
                yield text

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self.parts)

    def usage(self) -> tuple[int | None, int | None]:
        """Input and output tokens the upstream reported so far (None before it said any)."""
        if self._stream is None or not self._started:
            return None, None
        usage = self._stream.current_message_snapshot.usage
        return usage.input_tokens, usage.output_tokens

    async def completion(self) -> Completion:
        """The whole answer once the deltas are exhausted, validated as complete() does."""
        if self._stream is None:
            raise RuntimeError("AnswerStream.completion() is called outside `async with`")
        try:
            message = await self._stream.get_final_message()
        except Exception as error:
            raise upstream_error(error) from error
        return completion_from(message)


def completion_from(message: object) -> Completion:
    """Validate the SDK's answer; anything but a text message is a bad upstream answer."""
    if not isinstance(message, Message):
        log.warning("upstream answered something that is not a message: %s", type(message))
        raise UpstreamError(BAD_ANSWER, "Claude returned a malformed answer.", retryable=True)
    text = "".join(block.text for block in message.content if block.type == "text")
    # PostgreSQL text cannot hold NUL; a stray one must not cost the user the answer.
    text = text.replace("\x00", "\ufffd")
    if not text:
        raise UpstreamError(BAD_ANSWER, "Claude returned an empty answer.", retryable=True)
    return Completion(
        text=text,
        model=message.model,
        input_tokens=message.usage.input_tokens,
        output_tokens=message.usage.output_tokens,
        stop_reason=message.stop_reason,
    )


def upstream_error(error: BaseException) -> UpstreamError:
    """Map an SDK or transport exception to how the call failed."""
    log.warning("upstream call failed: %s: %s", type(error).__name__, error)
    if isinstance(error, UpstreamError):
        return error
    if isinstance(error, anthropic.APITimeoutError | TimeoutError | httpx2.TimeoutException):
        return UpstreamError(TIMEOUT, "Claude did not answer in time.", retryable=True)
    if isinstance(error, anthropic.APIConnectionError | httpx2.TransportError):
        return UpstreamError(UNAVAILABLE, "Claude is unreachable right now.", retryable=True)
    if isinstance(error, anthropic.APIStatusError) and error.status_code < 400:
        return _status_error(_stream_error_status(error.body))
    if isinstance(error, anthropic.APIStatusError):
        return _status_error(error.status_code)
    if isinstance(error, ValueError):
        # The SDK does not wrap a 200 whose JSON body is cut short (json.JSONDecodeError).
        return UpstreamError(BAD_ANSWER, "Claude returned a malformed answer.", retryable=True)
    return UpstreamError(BAD_ANSWER, "Claude returned an unexpected answer.", retryable=False)


def _stream_error_status(body: object) -> int:
    """The status an error event of a stream stands for (an unknown type counts as a 500)."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return STREAM_ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500


def _status_error(status: int) -> UpstreamError:
    if status in (408, 504):
        return UpstreamError(TIMEOUT, "Claude did not answer in time.", retryable=True)
    if status == 429 or status == 529 or status >= 500:
        return UpstreamError(
            UNAVAILABLE, "Claude is overloaded or unavailable right now.", retryable=True
        )
    # 4xx from upstream means our request or credentials are wrong: retrying will not help.
    return UpstreamError(REJECTED, f"Claude rejected the request (HTTP {status}).", retryable=False)
