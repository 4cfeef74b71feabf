"""Units of work on the database, with "it cannot be reached" turned into ServiceUnavailable.

Every rule that reads or writes goes through `connection(pool)`, so a database that is down or
restarting gives the user a readable, retryable 503 (one log line), never a 500 and a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg

from aigen.core.errors import ServiceUnavailable
from aigen.store import pool as store_pool
from aigen.store.pool import DatabaseUnavailable, Pool

T = TypeVar("T")

log = logging.getLogger(__name__)

DATABASE_DOWN_MESSAGE = "aigen is briefly unavailable. Please try again in a few seconds."
FIRST_RETRY_DELAY = 0.1
MAX_RETRY_DELAY = 1.0


@asynccontextmanager
async def connection(pool: Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for one short unit of work; ServiceUnavailable when out of reach."""
    try:
        async with store_pool.connection(pool) as conn:
            yield conn
    except DatabaseUnavailable as error:
        raise ServiceUnavailable(DATABASE_DOWN_MESSAGE, reason=error.reason) from error


async def retry_while_unavailable(
    attempt: Callable[[], Awaitable[T]], window: float, what: str
) -> T:
    """Run `attempt`, again after a growing pause while it raises ServiceUnavailable, for up to
    `window` seconds; then the last ServiceUnavailable is raised. `what` names it in the log
    (one line when the first attempt fails, not one per attempt)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + window
    delay = FIRST_RETRY_DELAY
    while True:
        try:
            return await attempt()
        except ServiceUnavailable as error:
            if loop.time() + delay > deadline:
                raise
            if delay == FIRST_RETRY_DELAY:
                log.warning(
                    "%s: database unavailable (%s); retrying for up to %g s",
                    what,
                    error.reason,
                    window,
                )
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RETRY_DELAY)
