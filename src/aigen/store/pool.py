"""The asyncpg connection pool, created at start-up and kept on the app, and the one way to use
it: `connection(pool)`, which tells "the database cannot be reached" apart from every other error.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg

log = logging.getLogger(__name__)

# What the layers above hold on to: they pass it to core and store, never query it themselves.
Pool: TypeAlias = asyncpg.Pool

# A database that does not answer must cost a request a second or two, never a hang: opening a
# connection is bounded, and so is waiting for a free one (longer: a burst may queue a moment
# for the pool, and that is load, not an outage, until it lasts).
CONNECT_TIMEOUT = 2.0
ACQUIRE_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0
# What a server that is down, restarting or unreachable looks like from asyncpg: refused or
# reset sockets and timeouts (OSError), a connection lost mid-query, a server shutting down or
# starting up, or one out of connection slots.
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


class DatabaseUnavailable(Exception):
    """The database cannot be reached now; trying again in a moment may work."""

    def __init__(self, error: BaseException) -> None:
        self.reason = f"{type(error).__name__}: {error}".rstrip(": ")
        super().__init__(self.reason)


async def create_pool(dsn: str, max_size: int) -> Pool:
    """A small pool; connections are taken only for one short unit of work."""
    return await asyncpg.create_pool(
        dsn,
        # No floor to keep: asyncpg restores one in the background and logs a traceback for
        # each failed attempt while the server is down; acquire() reconnects on demand anyway.
        min_size=0,
        max_size=max_size,
        timeout=CONNECT_TIMEOUT,
        command_timeout=COMMAND_TIMEOUT,
        server_settings={"timezone": "UTC"},
    )


@asynccontextmanager
async def connection(pool: Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for one unit of work; DatabaseUnavailable when out of reach.

    A connection that breaks while it is given back (after the work committed) is dropped by the
    pool and logged: the work is done, so the caller must not see it as a failure.
    """
    try:
        conn = await pool.acquire(timeout=ACQUIRE_TIMEOUT)
    except UNREACHABLE as error:
        raise DatabaseUnavailable(error) from error
    try:
        yield conn
    except UNREACHABLE as error:
        raise DatabaseUnavailable(error) from error
    finally:
        await _release(pool, conn)


async def _release(pool: Pool, conn: asyncpg.Connection) -> None:
    try:
        await pool.release(conn)
    except Exception as error:  # the pool has terminated it and will open a new one
        log.info("a database connection broke on release and was dropped: %s", error)
