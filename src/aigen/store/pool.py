"""The asyncpg connection pool, created at start-up and kept on the app."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

# What the layers above hold on to: they pass it to core and store, never query it themselves.
Pool: TypeAlias = asyncpg.Pool


async def create_pool(dsn: str, max_size: int) -> Pool:
    """A small pool; connections are taken only for one short unit of work."""
    return await asyncpg.create_pool(
        dsn, min_size=1, max_size=max_size, command_timeout=30, server_settings={"timezone": "UTC"}
    )
