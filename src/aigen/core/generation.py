"""The metered generation: reserve a credit, call Claude outside any transaction, finalize.

Shared by the JSON API and the HTMX page so the credit rules exist once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from aigen.clients.claude import ClaudeClient, Completion, UpstreamError, upstream_error
from aigen.clients.ratelimit import Decision, RateLimit
from aigen.core import limits
from aigen.core.errors import (
    CreditLimitReached,
    DomainError,
    InvalidInput,
    NotSignedIn,
    UpstreamFailed,
    VerificationRequired,
)
from aigen.core.plans import Access, credits_json, generation_access
from aigen.store import repository
from aigen.store.repository import Generation, User

log = logging.getLogger(__name__)

CREDIT_LIMIT_MESSAGE = "Credit limit reached. Upgrade to Pro for unlimited generations."
VERIFY_EMAIL_MESSAGE = "Verify your e-mail address to receive free credits."
UNAUTHORIZED_MESSAGE = "Unauthorized"
TOO_LATE_MESSAGE = "Claude did not answer in time."
STALE_ERROR = "Abandoned: the server stopped before Claude answered."
STORE_ERROR = "The answer could not be stored."


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
    """Runs generations for signed-in users against one pool and one Claude client."""

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
        self._in_flight: set[asyncio.Task[GenerationOutcome]] = set()

    async def generate(
        self, user_id: int, prompt: str, *, api_key_id: int | None = None
    ) -> GenerationOutcome:
        """Rate-limit, reserve, call and finalize; domain errors for each refusal or failure.

        `api_key_id` is the key that asked (recorded on the generation); None for the browser.
        """
        decision = await self.admit(user_id)
        try:
            generation = await self.reserve(user_id, prompt, api_key_id=api_key_id)
            # Shielded so a client that disconnects mid-call does not lose the generation.
            task = asyncio.create_task(self._call_and_finalize(generation))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            outcome = await asyncio.shield(task)
        except DomainError as error:
            error.rate_limit = decision
            raise
        return GenerationOutcome(outcome.generation, outcome.user, decision)

    async def admit(self, user_id: int) -> Decision | None:
        """The per-user rate limit, checked before anything is reserved (nothing stored)."""
        if self.limiter is None or self.rate_limit is None:
            return None
        return await limits.check(self.limiter, limits.generate_key(user_id), self.rate_limit)

    async def reserve(
        self, user_id: int, prompt: str, *, api_key_id: int | None = None
    ) -> Generation:
        """Lock the user row, check the plan, insert 'pending' and charge, in one transaction.

        An ended credit period is rolled forward first, in the same transaction, so the check
        never sees a stale period and a burst at the boundary cannot spend more than the limit.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await repository.roll_credit_period(conn, user_id)
            user = await repository.lock_user(conn, user_id)
            if user is None:
                raise NotSignedIn(UNAUTHORIZED_MESSAGE)
            check_access(user)
            generation = await repository.insert_generation(
                conn, user_id, prompt, self.claude.model, api_key_id
            )
            await repository.charge_credit(conn, user_id)
            return generation

    async def _call_and_finalize(self, generation: Generation) -> GenerationOutcome:
        try:
            completion = await self.claude.complete(generation.prompt)
        except UpstreamError as error:
            await self.fail(generation, error.message)
            raise UpstreamFailed.from_client(error) from error
        except BaseException as error:
            # Cancelled at shutdown, or a bug: never leave the credit charged for nothing.
            await asyncio.shield(self.fail(generation, upstream_error(error).message))
            raise
        try:
            return await self.finalize(generation, completion)
        except UpstreamFailed:
            raise
        except BaseException:
            # The answer could not be stored (database trouble): refund rather than charge.
            log.exception("storing generation %s failed", generation.id)
            await asyncio.shield(self.fail(generation, STORE_ERROR))
            raise

    async def finalize(self, generation: Generation, completion: Completion) -> GenerationOutcome:
        """Store the answer and its usage; the second short transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            done = await repository.update_generation_result(
                conn,
                generation.user_id,
                generation.id,
                result=completion.text,
                model=completion.model,
                input_tokens=completion.input_tokens,
                output_tokens=completion.output_tokens,
            )
            user = await repository.select_user(conn, generation.user_id)
        if done is None or user is None:
            # The sweeper already failed and refunded it: the answer came too late to charge.
            raise UpstreamFailed(TOO_LATE_MESSAGE, kind=UpstreamFailed.TIMEOUT, retryable=True)
        return GenerationOutcome(done, user)

    async def fail(self, generation: Generation, error: str) -> None:
        """Mark the generation failed and refund its credit, once."""
        async with self.pool.acquire() as conn, conn.transaction():
            failed = await repository.update_generation_failed(
                conn, generation.user_id, generation.id, error
            )
            if failed is not None:
                await repository.refund_credit(conn, generation.user_id, generation.id)

    async def drain(self, timeout: float) -> None:
        """Let calls in flight finish; cancel (and so refund) what is left after `timeout`.

        Called at shutdown before the pool closes, so every reservation is finalized or refunded.
        """
        if not self._in_flight:
            return
        _, late = await asyncio.wait(set(self._in_flight), timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            log.warning("cancelled %d generation(s) still running at shutdown", len(late))
            await asyncio.wait(late)


async def sweep_stale(pool: asyncpg.Pool, older_than_seconds: float) -> int:
    """Fail and refund reservations a dead process left pending; return how many."""
    async with pool.acquire() as conn:
        swept = await repository.fail_stale_generations(conn, older_than_seconds, STALE_ERROR)
    if swept:
        log.warning("swept %d stale pending generation(s) and refunded their credits", swept)
    return swept


async def sweep_forever(pool: asyncpg.Pool, older_than_seconds: float, interval: float) -> None:
    """Sweep at start-up and then every `interval` seconds, until cancelled."""
    while True:
        try:
            await sweep_stale(pool, older_than_seconds)
        except Exception:  # a failed sweep is retried at the next interval
            log.exception("sweeping stale generations failed")
        await asyncio.sleep(interval)
