"""Migrations: from an empty database, re-run, and concurrently, under the advisory lock."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from aigen.store.migrations import apply_migrations, load_migrations, migrate, pending_migrations


def test_migrations_are_numbered_in_order() -> None:
    versions = [migration.version for migration in load_migrations()]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert versions[0] == 1


async def test_migrate_from_empty_then_rerun_is_a_no_op(empty_database: str) -> None:
    every = [migration.version for migration in load_migrations()]
    assert await migrate(empty_database) == every
    assert await migrate(empty_database) == []
    conn = await asyncpg.connect(empty_database)
    try:
        assert await pending_migrations(conn, load_migrations()) == []
        recorded = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [row["version"] for row in recorded] == every
        tables = {row["tablename"] for row in await conn.fetch("SELECT tablename FROM pg_tables")}
        assert {"users", "generations", "schema_migrations"} <= tables
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(empty_database: str) -> None:
    results = await asyncio.gather(*(migrate(empty_database) for _ in range(4)))
    applied = sorted(version for result in results for version in result)
    assert applied == [migration.version for migration in load_migrations()]


async def test_pending_migrations_on_an_empty_database(empty_database: str) -> None:
    conn = await asyncpg.connect(empty_database)
    try:
        assert await pending_migrations(conn, load_migrations()) == [
            migration.version for migration in load_migrations()
        ]
        assert await apply_migrations(conn, []) == []
    finally:
        await conn.close()


async def test_a_verified_email_is_unique_case_insensitively(db) -> None:
    insert = "INSERT INTO users (sub, email, email_verified) VALUES ($1, $2, $3)"
    await db.execute(insert, "a", "Same@Example.com", True)
    await db.execute(insert, "b", "same@example.COM", False)  # an unverified claim: its own row
    await db.execute(insert, "c", "SAME@example.com", False)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(insert, "d", "same@example.COM", True)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute("UPDATE users SET email_verified = true WHERE sub = 'b'")


async def test_credits_used_can_never_go_negative(db) -> None:
    await db.execute("INSERT INTO users (sub, email) VALUES ('a', 'a@example.com')")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE users SET credits_used = -1")
