"""The asyncpg connection pool, created at start-up and kept on the app.

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

from typing import Any, TypeAlias

import asyncpg

# What the layers above hold on to: they pass it to core and store, never query it themselves.
Pool: TypeAlias = asyncpg.Pool

SESSION_SETTINGS = {"timezone": "UTC"}
COMMAND_TIMEOUT = 30.0


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without a reset: behind transaction pooling there is no session of ours to reset.

    asyncpg rolls back a transaction left open before calling this.
    """


TRANSACTION_POOLING: dict[str, Any] = {"statement_cache_size": 0, "reset": _keep_session}


async def create_pool(dsn: str, max_size: int, *, pgbouncer: bool = False) -> Pool:
    """A small pool; connections are taken only for one short unit of work."""
    return await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        command_timeout=COMMAND_TIMEOUT,
        server_settings=SESSION_SETTINGS,
        **(TRANSACTION_POOLING if pgbouncer else {}),
    )


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection for a one-off task (migrations, operator commands), direct or bounced.

    Without a statement cache: a handful of statements gain nothing from it, and its named
    statements would break behind PgBouncer's transaction pooling.
    """
    return await asyncpg.connect(dsn, statement_cache_size=0, server_settings=SESSION_SETTINGS)
