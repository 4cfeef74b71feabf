"""Calls Claude through the official SDK and turns every failure into one UpstreamError."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import anthropic
import httpx2
from anthropic.types import Message

log = logging.getLogger(__name__)

# One retry helps with a passing overload; the whole call stays within the configured timeout.
MAX_RETRIES = 1
KEEPALIVE_CONNECTIONS = 20


@dataclass(frozen=True)
class Completion:
    """Claude's answer and what it cost."""

    text: str
    model: str
    input_tokens: int
    output_tokens: int
    stop_reason: str | None


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
        max_connections: int = 100,
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.timeout = timeout
        http_client = anthropic.DefaultAsyncHttpxClient(
            limits=httpx2.Limits(
                max_connections=max_connections, max_keepalive_connections=KEEPALIVE_CONNECTIONS
            )
        )
        self._sdk = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=MAX_RETRIES,
            http_client=http_client,
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

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._sdk.close()


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
    if isinstance(error, anthropic.APIStatusError):
        return _status_error(error.status_code)
    if isinstance(error, ValueError):
        # The SDK does not wrap a 200 whose JSON body is cut short (json.JSONDecodeError).
        return UpstreamError(BAD_ANSWER, "Claude returned a malformed answer.", retryable=True)
    return UpstreamError(BAD_ANSWER, "Claude returned an unexpected answer.", retryable=False)


def _status_error(status: int) -> UpstreamError:
    if status in (408, 504):
        return UpstreamError(TIMEOUT, "Claude did not answer in time.", retryable=True)
    if status == 429 or status == 529 or status >= 500:
        return UpstreamError(
            UNAVAILABLE, "Claude is overloaded or unavailable right now.", retryable=True
        )
    # 4xx from upstream means our request or credentials are wrong: retrying will not help.
    return UpstreamError(REJECTED, f"Claude rejected the request (HTTP {status}).", retryable=False)
