"""The metered generation: reserve a credit, call Claude outside any transaction, finalize.

Shared by the JSON API and the HTMX page so the credit rules exist once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from aigen.clients.claude import ClaudeClient, Completion, UpstreamError, upstream_error
from aigen.clients.ratelimit import Decision, RateLimit
from aigen.core import limits
from aigen.core.database import connection, retry_while_unavailable
from aigen.core.errors import (
    CreditLimitReached,
    DomainError,
    InvalidInput,
    NotSignedIn,
    ServiceUnavailable,
    UpstreamFailed,
    VerificationRequired,
)
from aigen.core.plans import Access, credits_json, generation_access
from aigen.store import repository
from aigen.store.repository import Generation, User

log = logging.getLogger(__name__)

T = TypeVar("T")

CREDIT_LIMIT_MESSAGE = "Credit limit reached. Upgrade to Pro for unlimited generations."
VERIFY_EMAIL_MESSAGE = "Verify your e-mail address to receive free credits."
UNAUTHORIZED_MESSAGE = "Unauthorized"
TOO_LATE_MESSAGE = "Claude did not answer in time."
STALE_ERROR = "Abandoned: the server stopped before Claude answered."
STORE_ERROR = "The answer could not be stored."
STORE_UNAVAILABLE_MESSAGE = (
    "Claude answered, but aigen could not confirm the answer was stored: it is briefly"
    " unavailable. Unless it was stored (see your history), the credit is given back;"
    " please try again in a few seconds."
)
SUCCEEDED = "succeeded"
# Storing an answer is retried this long while the database is out of reach (a restart takes
# seconds): the user waits, since Claude has answered already.
STORE_RETRY_WINDOW = 5.0
# A refund that cannot be written is retried in the background this long; then the sweeper.
SETTLE_WINDOW = 30.0
# The sweeper wakes a moment after a reservation turns stale, never in a tight loop, and
# retries soon while the database is out of reach.
SWEEP_SLACK = 0.1
MIN_SWEEP_DELAY = 0.5
SWEEP_RETRY_DELAY = 5.0


@dataclass(frozen=True)
class GenerationOutcome:
    """A finalized, successful generation, the user's credits after it and the rate decision."""

    generation: Generation
    user: User
    rate_limit: Decision | None = None

    def to_json(self) -> dict[str, Any]:
        """The body of POST /api/generate's 200 answer."""
        return {
            "id": self.generation.id,
            "result": self.generation.result,
            "usage": {
                "input_tokens": self.generation.input_tokens,
                "output_tokens": self.generation.output_tokens,
            },
            "credits": credits_json(self.user),
        }


def validate_prompt(body: object, max_chars: int) -> str:
    """The prompt from a request body, or InvalidInput naming what is wrong."""
    if not isinstance(body, dict):
        raise InvalidInput("Request body must be a JSON object.")
    if "prompt" not in body:
        raise InvalidInput("Field 'prompt' is required.")
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        raise InvalidInput("Field 'prompt' must be a string.")
    if not prompt.strip():
        raise InvalidInput("Field 'prompt' must not be blank.")
    if len(prompt) > max_chars:
        raise InvalidInput(f"Field 'prompt' must be at most {max_chars} characters.")
    if "\x00" in prompt:
        raise InvalidInput("Field 'prompt' must not contain NUL characters.")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate such as "\ud800" in the JSON
        raise InvalidInput("Field 'prompt' must be valid Unicode text.") from error
    return prompt


def check_access(user: User) -> None:
    """Raise the domain error that keeps this user from generating now, if any."""
    access = generation_access(user)
    if access is Access.VERIFY_EMAIL:
        raise VerificationRequired(VERIFY_EMAIL_MESSAGE)
    if access is Access.NO_CREDITS:
        raise CreditLimitReached(CREDIT_LIMIT_MESSAGE)


class GenerationService:
    """Runs generations for signed-in users against one pool and one Claude client.

    Once a request is admitted, its reservation, call and finalization run in a task of their
    own that the request only waits on (shielded): a client that hangs up, even between the
    reservation's COMMIT and the call, cannot leave a credit charged for nothing. Whatever
    breaks after the reservation is committed, the generation is finalized or refunded; while
    the database is out of reach that is retried, and the sweeper is the last resort.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        claude: ClaudeClient,
        *,
        limiter: limits.Limiter | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.pool = pool
        self.claude = claude
        self.limiter = limiter
        self.rate_limit = rate_limit
        # Generations and background refunds still running (drained at shutdown).
        self._in_flight: set[asyncio.Task[Any]] = set()

    async def generate(
        self, user_id: int, prompt: str, *, api_key_id: int | None = None
    ) -> GenerationOutcome:
        """Rate-limit, reserve, call and finalize; domain errors for each refusal or failure.

        `api_key_id` is the key that asked (recorded on the generation); None for the browser.
        """
        decision = await self.admit(user_id)
        work = self._spawn(self._reserve_and_call(user_id, prompt, api_key_id))
        try:
            outcome = await asyncio.shield(work)
        except DomainError as error:
            error.rate_limit = decision
            raise
        except asyncio.CancelledError:
            work.add_done_callback(_report_unawaited)  # the client is gone; the work goes on
            raise
        return GenerationOutcome(outcome.generation, outcome.user, decision)

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    async def admit(self, user_id: int) -> Decision | None:
        """The per-user rate limit, checked before anything is reserved (nothing stored)."""
        if self.limiter is None or self.rate_limit is None:
            return None
        return await limits.check(self.limiter, limits.generate_key(user_id), self.rate_limit)

    async def _reserve_and_call(
        self, user_id: int, prompt: str, api_key_id: int | None
    ) -> GenerationOutcome:
        generation = await self.reserve(user_id, prompt, api_key_id=api_key_id)
        return await self._call_and_finalize(generation)

    async def reserve(
        self, user_id: int, prompt: str, *, api_key_id: int | None = None
    ) -> Generation:
        """Lock the user row, check the plan, charge and insert 'pending', in one transaction.

        An ended credit period is rolled forward under the lock, before the check, so the check
        never sees a stale period and a burst at the boundary cannot spend more than the limit.
        Four round trips: BEGIN, the lock, the charge with the insert, COMMIT.
        """
        inserted: Generation | None = None
        try:
            async with connection(self.pool) as conn, conn.transaction():
                user = await repository.lock_user_in_current_period(conn, user_id)
                if user is None:
                    raise NotSignedIn(UNAUTHORIZED_MESSAGE)
                check_access(user)
                inserted = generation = await repository.insert_charged_generation(
                    conn, user_id, prompt, self.claude.model, api_key_id
                )
        except BaseException:
            if inserted is not None:
                # The COMMIT may have been applied without our hearing back (connection lost,
                # cancelled): refund it if it was. Nothing happens when it was rolled back.
                self._settle_later(inserted, STORE_ERROR)
            raise
        return generation

    async def _call_and_finalize(self, generation: Generation) -> GenerationOutcome:
        try:
            completion = await self.claude.complete(generation.prompt)
        except UpstreamError as error:
            await self._refund(generation, error.message)
            raise UpstreamFailed.from_client(error) from error
        except BaseException as error:
            # Cancelled at shutdown, or a bug: never leave the credit charged for nothing.
            await asyncio.shield(self._refund(generation, upstream_error(error).message))
            raise
        return await self.store(generation, completion)

    async def store(self, generation: Generation, completion: Completion) -> GenerationOutcome:
        """Finalize, retried while the database is briefly out of reach; else refund (in the
        background while it stays out of reach) and raise."""
        try:
            return await retry_while_unavailable(
                lambda: self.finalize(generation, completion),
                STORE_RETRY_WINDOW,
                f"storing generation {generation.id}",
            )
        except UpstreamFailed:
            raise
        except ServiceUnavailable as error:
            self._settle_later(generation, STORE_ERROR)
            raise ServiceUnavailable(STORE_UNAVAILABLE_MESSAGE, reason=error.reason) from error
        except asyncio.CancelledError:
            await asyncio.shield(self._refund(generation, STORE_ERROR))
            raise
        except Exception:
            # The answer could not be stored (database trouble): refund rather than charge.
            log.exception("storing generation %s failed", generation.id)
            await asyncio.shield(self._refund(generation, STORE_ERROR))
            raise

    async def finalize(self, generation: Generation, completion: Completion) -> GenerationOutcome:
        """Store the answer and its usage: one statement, the user's credits read with it."""
        async with connection(self.pool) as conn:
            stored = await repository.update_generation_result(
                conn,
                generation.user_id,
                generation.id,
                result=completion.text,
                model=completion.model,
                input_tokens=completion.input_tokens,
                output_tokens=completion.output_tokens,
            )
            if stored is None:
                # Stored already by an attempt whose COMMIT was applied but never acknowledged?
                done = await repository.select_generation(conn, generation.user_id, generation.id)
                user = await repository.select_user(conn, generation.user_id)
            else:
                done, user = stored
        if done is None or done.status != SUCCEEDED or user is None:
            # The sweeper already failed and refunded it: the answer came too late to charge.
            raise UpstreamFailed(TOO_LATE_MESSAGE, kind=UpstreamFailed.TIMEOUT, retryable=True)
        return GenerationOutcome(done, user)

    async def fail(self, generation: Generation, error: str) -> bool:
        """Mark the generation failed and refund its credit, once; False if it was not pending."""
        async with connection(self.pool) as conn, conn.transaction():
            failed = await repository.update_generation_failed(
                conn, generation.user_id, generation.id, error
            )
            if failed is not None:
                await repository.refund_credit(conn, generation.user_id, generation.id)
        return failed is not None

    async def _refund(self, generation: Generation, error: str) -> None:
        """Fail and refund now, or in the background while the database is out of reach."""
        try:
            await self.fail(generation, error)
        except ServiceUnavailable:
            self._settle_later(generation, error)

    def _settle_later(self, generation: Generation, error: str) -> None:
        self.settle_later(
            lambda: self.fail(generation, error), f"refunding generation {generation.id}"
        )

    async def write_soon(self, write: Callable[[], Awaitable[bool]], what: str) -> bool:
        """Run `write`, retried while the database is briefly out of reach; when it stays out
        of reach, go on retrying in the background and return False. `what` names it in logs."""
        try:
            await retry_while_unavailable(write, STORE_RETRY_WINDOW, what)
        except ServiceUnavailable as unavailable:
            log.warning(
                "%s: database still unavailable (%s); retrying in the background",
                what,
                unavailable.reason,
            )
            self.settle_later(write, what)
            return False
        return True

    def settle_later(self, write: Callable[[], Awaitable[bool]], what: str) -> None:
        """Run `write` in the background, retried while the database is out of reach (drained at
        shutdown); after SETTLE_WINDOW, the sweeper fails and refunds the generation."""
        self._spawn(self._settle(write, what))

    async def _settle(self, write: Callable[[], Awaitable[bool]], what: str) -> None:
        try:
            written = await retry_while_unavailable(write, SETTLE_WINDOW, what)
        except ServiceUnavailable as unavailable:
            log.warning(
                "%s: not written (%s); the sweeper will fail and refund it",
                what,
                unavailable.reason,
            )
            return
        except Exception:  # nobody awaits this task: say it here
            log.exception("%s failed; the sweeper will fail and refund it", what)
            return
        if written:
            log.info("%s: written once the database answered", what)

    async def drain(self, timeout: float) -> None:
        """Let calls in flight finish; cancel (and so refund) what is left after `timeout`.

        Called at shutdown before the pool closes, so every reservation is finalized or refunded.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A generation that fails while draining may start a background refund: wait for it too.
        while self._in_flight and loop.time() < deadline:
            await asyncio.wait(set(self._in_flight), timeout=deadline - loop.time())
        late = set(self._in_flight)
        for task in late:
            task.cancel()
        if late:
            log.warning("cancelled %d generation(s) still running at shutdown", len(late))
            await asyncio.wait(late)


def _report_unawaited(work: asyncio.Task[Any]) -> None:
    """How the generation of a client that hung up ended: refusals need no word, bugs do."""
    if work.cancelled():
        return
    error = work.exception()  # retrieved here, so asyncio does not report it at exit
    if error is not None and not isinstance(error, DomainError):
        log.error("generation of a client that hung up failed", exc_info=error)


async def sweep_stale(pool: asyncpg.Pool, older_than_seconds: float) -> int:
    """Fail and refund reservations a dead process left pending; return how many."""
    async with connection(pool) as conn:
        swept = await repository.fail_stale_generations(conn, older_than_seconds, STALE_ERROR)
    if swept:
        log.warning("swept %d stale pending generation(s) and refunded their credits", swept)
    return swept


async def next_sweep_in(pool: asyncpg.Pool, older_than_seconds: float, interval: float) -> float:
    """Seconds until the oldest pending reservation turns stale, at most `interval`."""
    async with connection(pool) as conn:
        until_stale = await repository.select_seconds_until_stale(conn, older_than_seconds)
    if until_stale is None:
        return interval
    return min(interval, max(until_stale + SWEEP_SLACK, MIN_SWEEP_DELAY))


async def sweep_forever(pool: asyncpg.Pool, older_than_seconds: float, interval: float) -> None:
    """Sweep at start-up, then whenever a reservation turns stale (at least every `interval`
    seconds), until cancelled: a dead process's reservations are refunded `older_than_seconds`
    after they were made, whatever the interval, while any instance runs."""
    while True:
        delay = interval
        try:
            await sweep_stale(pool, older_than_seconds)
            delay = await next_sweep_in(pool, older_than_seconds, interval)
        except ServiceUnavailable as error:
            log.warning("sweeping stale generations: database unavailable (%s)", error.reason)
            delay = min(interval, SWEEP_RETRY_DELAY)
        except Exception:  # a failed sweep is retried at the next interval
            log.exception("sweeping stale generations failed")
        await asyncio.sleep(delay)
