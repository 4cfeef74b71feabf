"""The asyncpg connection pool, created at start-up and kept on the app."""

from __future__ import annotations

import asyncpg


async def create_pool(dsn: str, max_size: int) -> asyncpg.Pool:
    """A small pool; connections are taken only for one short unit of work."""
    return await asyncpg.create_pool(
        dsn, min_size=1, max_size=max_size, command_timeout=30, server_settings={"timezone": "UTC"}
    )
