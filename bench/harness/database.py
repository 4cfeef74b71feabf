"""The benchmark's own database: recreated, migrated, and filled with users directly in SQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from tests.helpers import recreate_database, with_database

from aigen.store.migrations import migrate

BENCH_DATABASE = "aigen_bench_run"
# Enough that no run of the suite spends a FREE user's credits by accident.
PLENTY = 1_000_000_000


async def fresh_database(admin_url: str, name: str = BENCH_DATABASE) -> str:
    """Drop and recreate `name` on the server of `admin_url`, migrate it, return its URL."""
    await recreate_database(admin_url, name)
    url = with_database(admin_url, name)
    await migrate(url)
    return url


@asynccontextmanager
async def scratch_connection(admin_url: str, name: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection (in UTC) to a fresh, migrated database `name`, dropped afterwards."""
    url = await fresh_database(admin_url, name)
    try:
        conn = await asyncpg.connect(url, server_settings={"timezone": "UTC"})
        try:
            yield conn
        finally:
            await conn.close()
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


class _Undo(Exception):
    """Raised to roll a temporary schema change back."""


@asynccontextmanager
async def without_index(conn: asyncpg.Connection, index: str) -> AsyncIterator[None]:
    """Run the block with `index` dropped inside a transaction that is then rolled back."""
    try:
        async with conn.transaction():
            await conn.execute(f"DROP INDEX {index}")
            yield
            raise _Undo
    except _Undo:
        pass


async def seed_users(url: str, count: int) -> list[int]:
    """`count` verified FREE users with credits to spare, inserted in one statement."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "INSERT INTO users (sub, email, email_verified, credits_limit)"
            " SELECT 'bench-' || n, 'bench' || n || '@example.com', true, $2"
            " FROM generate_series(1, $1) AS n RETURNING id",
            count,
            PLENTY,
        )
        return [row["id"] for row in rows]
    finally:
        await conn.close()


async def add_user(url: str, name: str, *, plan: str, credits_limit: int, credits_used: int) -> int:
    """One verified user with the given plan and credits; its id."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(
            "INSERT INTO users (sub, email, email_verified, plan, credits_limit, credits_used)"
            " VALUES ($1, $1 || '@example.com', true, $2, $3, $4) RETURNING id",
            name,
            plan,
            credits_limit,
            credits_used,
        )
    finally:
        await conn.close()


async def user_counts(url: str, user_id: int) -> dict[str, int]:
    """A user's credits and generations by status, as stored."""
    conn = await asyncpg.connect(url)
    try:
        user = await conn.fetchrow(
            "SELECT credits_used, credits_limit FROM users WHERE id = $1", user_id
        )
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM generations WHERE user_id = $1 GROUP BY status",
            user_id,
        )
    finally:
        await conn.close()
    return {**dict(user), **{row["status"]: row["n"] for row in rows}}


async def generation_statuses(url: str) -> dict[str, int]:
    """Stored generations by status, and how many the sweeper failed as abandoned."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM generations GROUP BY status")
        abandoned = await conn.fetchval(
            "SELECT count(*) FROM generations WHERE error LIKE 'Abandoned%'"
        )
    finally:
        await conn.close()
    return {**{row["status"]: row["n"] for row in rows}, "abandoned": abandoned}


async def server_version(url: str) -> str:
    """PostgreSQL's version string."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
