"""The asyncpg connection pool, created at start-up and kept on the app, and the one way to use
it: `connection(pool)`, which tells "the database cannot be reached" apart from every other error.

Through PgBouncer in transaction pooling mode (`DATABASE_PGBOUNCER=1`), one client connection
reaches a different server connection at each transaction, so nothing may rely on the session:
- no named prepared statements: asyncpg's statement cache is off. Queries with arguments still
  use the unnamed statement, whose Parse, Bind and Execute asyncpg sends before any Sync, so
  PgBouncer keeps them on one server connection;
- no session reset on release: asyncpg's default (`RESET ALL`, `pg_advisory_unlock_all()` ...)
  would run on whatever server connection comes next, and PgBouncer would take the server's
  default time zone from it as this client's wish (seen with PgBouncer 1.18: later transactions
  ran in the database's time zone instead of UTC);
- the time zone still comes from the startup packet: PgBouncer tracks `TimeZone` per client and
  sets it on each server connection it hands over (never list it in ignore_startup_parameters);
- work that needs one server connection for several statements runs in a transaction.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg

log = logging.getLogger(__name__)

# What the layers above hold on to: they pass it to core and store, never query it themselves.
Pool: TypeAlias = asyncpg.Pool

SESSION_SETTINGS = {"timezone": "UTC"}
# A database that does not answer must cost a request a second or two, never a hang: opening a
# connection is bounded (a refused one fails at once). Waiting for a free pooled connection is
# load, not an outage: thousands of generations held in flight by one process queue here for
# their two short transactions (measured: 5,000 on a pool of 10), so it is bounded generously.
CONNECT_TIMEOUT = 2.0
ACQUIRE_TIMEOUT = 30.0
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


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without a reset query: the app never changes session state (no SET, no LISTEN,
    no session advisory lock), and behind transaction pooling there is no session of ours.

    asyncpg still rolls back a transaction left open before calling this; the default reset
    (`RESET ALL`, `pg_advisory_unlock_all()`, ...) would cost a round trip at every release.
    """


TRANSACTION_POOLING: dict[str, Any] = {"statement_cache_size": 0}


async def create_pool(dsn: str, max_size: int, *, pgbouncer: bool = False) -> Pool:
    """A small pool; connections are taken only for one short unit of work."""
    return await asyncpg.create_pool(
        dsn,
        # No floor to keep: asyncpg restores one in the background and logs a traceback for
        # each failed attempt while the server is down; acquire() reconnects on demand anyway.
        min_size=0,
        max_size=max_size,
        timeout=CONNECT_TIMEOUT,
        command_timeout=COMMAND_TIMEOUT,
        server_settings=SESSION_SETTINGS,
        reset=_keep_session,
        **(TRANSACTION_POOLING if pgbouncer else {}),
    )


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection for a one-off task (migrations, operator commands), direct or bounced.

    Without a statement cache: a handful of statements gain nothing from it, and its named
    statements would break behind PgBouncer's transaction pooling.
    """
    return await asyncpg.connect(
        dsn, statement_cache_size=0, server_settings=SESSION_SETTINGS, timeout=CONNECT_TIMEOUT
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
