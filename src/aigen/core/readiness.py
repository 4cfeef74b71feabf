"""Whether this process can serve: the database answers and every migration is applied."""

from __future__ import annotations

import asyncio

import asyncpg

from aigen.store.migrations import load_migrations, pending_migrations

READY_TIMEOUT = 3.0


async def database_problems(pool: asyncpg.Pool | None) -> list[str]:
    """What keeps the database from serving, or [] when it is ready."""
    if pool is None:
        return ["database: not connected yet"]
    try:
        async with asyncio.timeout(READY_TIMEOUT), pool.acquire() as conn:
            pending = await pending_migrations(conn, load_migrations())
    except Exception as error:  # any failure means not ready
        return [f"database: {type(error).__name__}: {error}"]
    if pending:
        return [f"database: migrations not applied: {pending}"]
    return []
