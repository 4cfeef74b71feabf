"""Streamed generations: the JSON call's admission, reservation and finalize, with Claude's text
forwarded as it arrives.

Each stream is read by a task of its own, never by the request: when the client goes away the
request is cancelled and tells the task to stop; the task closes the upstream at once and
finalizes the row as 'cancelled'. Output was produced when at least one text delta arrived: the
credit then stays charged (for a disconnect and for an upstream error mid-stream alike), and is
refunded otherwise.

The row is written as the JSON call's is: retried while the database is briefly out of reach,
then (the event sent at once) in the background, so a short outage never strands a reservation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from aigen.clients.claude import AnswerStream, Completion, UpstreamError
from aigen.clients.ratelimit import Decision
from aigen.core.database import connection
from aigen.core.errors import DomainError, InvalidInput, ServiceUnavailable, UpstreamFailed
from aigen.core.generation import GenerationOutcome, GenerationService
from aigen.store import repository
from aigen.store.repository import Generation

log = logging.getLogger(__name__)

# Read at every wait (not bound at import), so tests may shorten it.
KEEPALIVE_SECONDS = 15.0
CANCELLED = "cancelled"
FAILED = "failed"
CLIENT_CLOSED_MESSAGE = "Stopped: the client closed the stream."
SHUTDOWN_MESSAGE = "Stopped: the server shut down."
INTERNAL_ERROR_MESSAGE = "Something went wrong on our side."


@dataclass(frozen=True)
class Start:
    """The reservation committed: the generation's id."""

    name: ClassVar[str] = "start"
    id: int

    def data(self) -> dict[str, Any]:
        """The event's JSON."""
        return {"id": self.id}


@dataclass(frozen=True)
class Delta:
    """One text delta from Claude, forwarded as it arrived."""

    name: ClassVar[str] = "delta"
    text: str

    def data(self) -> dict[str, Any]:
        """The event's JSON."""
        return {"text": self.text}


@dataclass(frozen=True)
class Done:
    """The row is finalized: the same usage and credits as the JSON answer."""

    name: ClassVar[str] = "done"
    outcome: GenerationOutcome

    def data(self) -> dict[str, Any]:
        """The event's JSON."""
        answer = self.outcome.to_json()
        return {"id": answer["id"], "usage": answer["usage"], "credits": answer["credits"]}


@dataclass(frozen=True)
class Failed:
    """The stream ended without an answer to store as succeeded (instead of Done)."""

    name: ClassVar[str] = "error"
    error: str
    retryable: bool

    def data(self) -> dict[str, Any]:
        """The event's JSON."""
        return {"error": self.error, "retryable": self.retryable}


@dataclass(frozen=True)
class KeepAlive:
    """Claude has been silent for KEEPALIVE_SECONDS: something to send so proxies stay open."""


StreamEvent = Start | Delta | Done | Failed | KeepAlive


def wants_stream(body: object, accepts_event_stream: bool) -> bool:
    """Whether to stream: `"stream"` in the body decides when present, else the Accept header."""
    value = body.get("stream") if isinstance(body, dict) else None
    if value is None:
        return accepts_event_stream
    if not isinstance(value, bool):
        raise InvalidInput("Field 'stream' must be true or false.")
    return value


class _StopRequested(Exception):
    """The stream was stopped before its task began reading (nothing to cancel yet)."""


class GenerationStream:
    """One reserved generation whose answer streams: iterate `events()` once, `close()` after."""

    def __init__(
        self, generations: GenerationService, generation: Generation, rate_limit: Decision | None
    ) -> None:
        self.generation = generation
        self.rate_limit = rate_limit
        self._generations = generations
        self._queue: asyncio.Queue[StreamEvent] = asyncio.Queue()
        self._reading = True  # only reading the upstream can be stopped; storing is not
        self._running = False
        self._stop_message: str | None = None
        self.task = asyncio.create_task(self._run())

    async def events(self) -> AsyncGenerator[StreamEvent, None]:
        """Start, the deltas, then Done or Failed; KeepAlive whenever Claude is silent."""
        yield Start(self.generation.id)
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    event = await self._queue.get()
            except TimeoutError:
                yield KeepAlive()
                continue
            yield event
            if isinstance(event, Done | Failed):
                return

    def close(self) -> None:
        """The client went away: stop reading Claude now (nothing happens once it has ended)."""
        self._stop(CLIENT_CLOSED_MESSAGE)

    def shut_down(self) -> None:
        """The server is stopping: stop reading Claude now."""
        self._stop(SHUTDOWN_MESSAGE)

    def _stop(self, message: str) -> None:
        if not self._reading or self._stop_message is not None:
            return
        self._stop_message = message
        if self._running:
            self.task.cancel()

    async def _run(self) -> None:
        final: StreamEvent = Failed(INTERNAL_ERROR_MESSAGE, retryable=True)
        try:
            final = await self._produce()
        except asyncio.CancelledError:
            final = Failed(self._stop_message or SHUTDOWN_MESSAGE, retryable=True)
            raise
        except _StopRequested:
            final = Failed(self._stop_message or CLIENT_CLOSED_MESSAGE, retryable=True)
        except Exception:
            log.exception("streamed generation %s could not be finalized", self.generation.id)
        finally:
            self._queue.put_nowait(final)

    async def _produce(self) -> Done | Failed:
        answer = self._generations.claude.stream(self.generation.prompt)
        try:
            completion = await self._read(answer)
        except UpstreamError as error:
            await self._end_early(answer, FAILED, error.message)
            return Failed(error.message, error.retryable)
        except (asyncio.CancelledError, _StopRequested):
            # Shielded: a second cancellation (shutdown) must not leave the row pending.
            await asyncio.shield(self._end_early(answer, CANCELLED, self._stop_message or ""))
            raise
        except Exception:
            log.exception("streamed generation %s broke off", self.generation.id)
            await self._end_early(answer, FAILED, INTERNAL_ERROR_MESSAGE)
            return Failed(INTERNAL_ERROR_MESSAGE, retryable=True)
        return await self._finalize(completion)

    async def _read(self, answer: AnswerStream) -> Completion:
        """Forward every text delta; leaving `async with` closes the upstream connection."""
        self._running = True
        try:
            if self._stop_message is not None:
                raise _StopRequested
            async with answer:
                async for text in answer:
                    self._queue.put_nowait(Delta(text))
                return await answer.completion()
        finally:
            self._reading = False

    async def _finalize(self, completion: Completion) -> Done | Failed:
        """Store as the JSON call does: when the answer cannot be stored it is refunded."""
        try:
            return Done(await self._generations.store(self.generation, completion))
        except UpstreamFailed as error:  # the sweeper failed and refunded it first
            return Failed(error.message, error.retryable)
        except ServiceUnavailable as error:  # refunded in the background once it is back
            log.warning("streamed generation %s not stored: %s", self.generation.id, error.reason)
            return Failed(error.message, retryable=True)
        except Exception:  # logged and refunded by store()
            return Failed(INTERNAL_ERROR_MESSAGE, retryable=True)

    async def _end_early(self, answer: AnswerStream, status: str, error: str) -> None:
        """Store what arrived and the tokens used; refund unless output was produced.

        The upstream reports the final output count only at the end: for a stream cut short,
        each text delta received counts as at least one token (a lower bound).
        """
        produced = bool(answer.parts)
        input_tokens, output_tokens = answer.usage()
        if produced:
            output_tokens = max(output_tokens or 0, len(answer.parts))
        stop = partial(
            self._store_stopped,
            status=status,
            result=answer.text if produced else None,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            error=error,
        )
        generation_id = self.generation.id
        await self._generations.write_soon(stop, f"storing {status} generation {generation_id}")
        log.info(
            "streamed generation %s %s after %d delta(s)", generation_id, status, len(answer.parts)
        )

    async def _store_stopped(
        self,
        *,
        status: str,
        result: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        error: str,
    ) -> bool:
        """One transaction: the row stopped with what arrived, refunded when nothing did; False
        when it was no longer pending (so a retry after a lost COMMIT refunds nothing twice)."""
        generation = self.generation
        async with connection(self._generations.pool) as conn, conn.transaction():
            stopped = await repository.update_generation_stopped(
                conn,
                generation.user_id,
                generation.id,
                status=status,
                result=result,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                error=error,
            )
            if stopped is not None and result is None:
                await repository.refund_credit(conn, generation.user_id, generation.id)
        return stopped is not None


class StreamingService:
    """Opens streamed generations on GenerationService's admit, reserve and finalize."""

    def __init__(self, generations: GenerationService) -> None:
        self.generations = generations
        self._open: set[GenerationStream] = set()

    async def open(
        self, user_id: int, prompt: str, *, api_key_id: int | None = None
    ) -> GenerationStream:
        """Rate-limit and reserve (refusals are domain errors, before any event), then stream.

        `api_key_id` is the key that asked (recorded on the generation); None for the browser.
        """
        decision = await self.generations.admit(user_id)
        try:
            generation = await self.generations.reserve(user_id, prompt, api_key_id=api_key_id)
        except DomainError as error:
            error.rate_limit = decision
            raise
        stream = GenerationStream(self.generations, generation, decision)
        self._open.add(stream)
        stream.task.add_done_callback(lambda _: self._open.discard(stream))
        return stream

    async def drain(self, timeout: float) -> None:
        """Let streams finish; after `timeout`, stop the rest (each is stored as 'cancelled')."""
        if not self._open:
            return
        _, late = await asyncio.wait({stream.task for stream in self._open}, timeout=timeout)
        for stream in list(self._open):
            if stream.task in late:
                stream.shut_down()
        if late:
            log.warning("stopped %d stream(s) still running at shutdown", len(late))
            await asyncio.wait(late)
