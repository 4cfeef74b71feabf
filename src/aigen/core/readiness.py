"""Whether this process can serve: the database answers and every migration is applied."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from aigen.store.migrations import load_migrations, pending_migrations

log = logging.getLogger(__name__)

READY_TIMEOUT = 3.0
# /readyz is public: it names what fails, never its address nor its error (both go to the log).
DATABASE_UNAVAILABLE = "database: unavailable"


async def database_problems(pool: asyncpg.Pool | None) -> list[str]:
    """What keeps the database from serving, or [] when it is ready."""
    if pool is None:
        return ["database: not connected yet"]
    try:
        async with asyncio.timeout(READY_TIMEOUT), pool.acquire() as conn:
            pending = await pending_migrations(conn, load_migrations())
    except Exception as error:  # any failure means not ready
        log.warning("readiness: the database is unavailable: %s: %s", type(error).__name__, error)
        return [DATABASE_UNAVAILABLE]
    if pending:
        return [f"database: migrations not applied: {pending}"]
    return []
