"""The pool, the one-off connections and migrations through PgBouncer in transaction pooling mode.

PgBouncer here has 3 server connections for every client, so consecutive transactions of one
client land on different server connections, as they do in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from aigen.store import repository
from aigen.store.migrations import MIGRATION_LOCK_ID, load_migrations, migrate, pending_migrations
from aigen.store.pool import connect, create_pool
from tests.helpers import make_user
from tests.pgbouncer import Bouncer, running_pgbouncer

ROUNDS = 200
# Any zone far from UTC: a session that falls back to the database default shows it at once.
DATABASE_ZONE = "Pacific/Auckland"


@pytest.fixture(scope="module")
def bouncer(database_url: str) -> Iterator[Bouncer]:
    """PgBouncer in front of the test server, for this module."""
    with running_pgbouncer(database_url) as running:
        yield running


async def test_many_statements_on_many_connections_through_pgbouncer(
    bouncer: Bouncer, database_url: str, db: asyncpg.Connection
) -> None:
    """Parameterised statements, from 10 client connections over 3 server connections."""
    user = await make_user(db, credits_limit=ROUNDS)
    pool = await create_pool(bouncer.url(database_url), 10, pgbouncer=True)
    try:

        async def reserve(round_: int) -> int:
            async with pool.acquire() as conn, conn.transaction():
                locked = await repository.lock_user_in_current_period(conn, user.id)
                assert locked is not None
                generation = await repository.insert_charged_generation(
                    conn, user.id, f"p{round_}", "m"
                )
                return generation.id

        ids = await asyncio.gather(*(reserve(round_) for round_ in range(ROUNDS)))
    finally:
        await pool.close()
    assert len(set(ids)) == ROUNDS
    assert await db.fetchval("SELECT credits_used FROM users WHERE id = $1", user.id) == ROUNDS
    assert bouncer.logins(database_url.rsplit("/", 1)[1]) >= 10


async def test_sessions_stay_in_utc_through_pgbouncer(
    bouncer: Bouncer, empty_database: str
) -> None:
    """Every transaction runs in UTC, although the database's own default is another zone.

    asyncpg's default release (RESET ALL) made PgBouncer adopt the database default for the
    client: from the second round on, transactions ran in Pacific/Auckland.
    """
    admin = await asyncpg.connect(empty_database)
    name = empty_database.rsplit("/", 1)[1]
    await admin.execute(f"ALTER DATABASE \"{name}\" SET timezone = '{DATABASE_ZONE}'")
    await admin.close()
    pool = await create_pool(bouncer.url(empty_database), 10, pgbouncer=True)
    try:

        async def zone_and_day_start() -> tuple[str, str]:
            async with pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    "SELECT current_setting('TimeZone') AS zone,"
                    " date_trunc('day', '2025-01-01 06:00:00+00'::timestamptz)::text AS start"
                )
                assert row is not None
                return row["zone"], row["start"]

        seen = set()
        for _ in range(5):
            seen |= set(await asyncio.gather(*(zone_and_day_start() for _ in range(40))))
    finally:
        await pool.close()
    assert seen == {("UTC", "2025-01-01 00:00:00+00")}
    direct = await asyncpg.connect(empty_database)  # the database default itself is untouched
    assert await direct.fetchval("SHOW timezone") == DATABASE_ZONE
    await direct.close()


async def test_concurrent_migrations_through_pgbouncer_apply_each_file_once(
    bouncer: Bouncer, empty_database: str
) -> None:
    """Four migrators at once, each through PgBouncer; no advisory lock is left behind."""
    bounced = bouncer.url(empty_database)
    results = await asyncio.gather(*(migrate(bounced) for _ in range(4)))
    every = [migration.version for migration in load_migrations()]
    assert sorted(version for result in results for version in result) == every
    assert await migrate(bounced) == []
    conn = await connect(bounced)
    try:
        assert await pending_migrations(conn, load_migrations()) == []
        held = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1",
            MIGRATION_LOCK_ID,
        )
        assert held == 0
    finally:
        await conn.close()
