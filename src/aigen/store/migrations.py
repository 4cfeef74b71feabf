"""The numbered plain-SQL migrations in sql/, applied once under an advisory lock.

Each file runs in one transaction, directly or through PgBouncer (transaction pooling): a file
must not need a session of its own (SET LOCAL, never SET; no CREATE INDEX CONCURRENTLY).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from aigen.paths import SQL_DIR
from aigen.store.pool import connect

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every process migrating this database.
MIGRATION_LOCK_ID = 0x61696765  # "aige"
CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY, name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)
IS_APPLIED = "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)"
RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str


def load_migrations(folder: Path = SQL_DIR) -> list[Migration]:
    """The migrations in order of their number prefix (001_name.sql)."""
    migrations = []
    for path in sorted(folder.glob("*.sql")):
        number, _, name = path.stem.partition("_")
        migrations.append(Migration(int(number), name, path.read_text(encoding="utf-8")))
    return sorted(migrations, key=lambda migration: migration.version)


async def apply_migrations(conn: asyncpg.Connection, migrations: list[Migration]) -> list[int]:
    """Apply the migrations not yet recorded, one transaction each; return the versions applied.

    The advisory lock is taken per transaction, not per session, so that it also holds through
    PgBouncer's transaction pooling, where one session's statements may reach several server
    connections (and a session lock could be released on the wrong one, or never).
    """
    pending = set(await pending_migrations(conn, migrations))
    applied = []
    for migration in migrations:
        if migration.version in pending and await _apply(conn, migration):
            log.info("applied migration %03d_%s", migration.version, migration.name)
            applied.append(migration.version)
    return applied


async def _apply(conn: asyncpg.Connection, migration: Migration) -> bool:
    """Apply one migration under the lock; False when another process applied it meanwhile."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        if await conn.fetchval(IS_APPLIED, migration.version):
            return False
        await conn.execute(migration.sql)
        await conn.execute(RECORD_MIGRATION, migration.version, migration.name)
    return True


async def pending_migrations(conn: asyncpg.Connection, migrations: list[Migration]) -> list[int]:
    """Versions not applied yet (used by /readyz)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done = set()
    if exists:
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
    return [migration.version for migration in migrations if migration.version not in done]


async def migrate(dsn: str) -> list[int]:
    """Connect once and apply pending migrations (used by `aigen migrate` and start-up)."""
    conn = await connect(dsn)
    try:
        return await apply_migrations(conn, load_migrations())
    finally:
        await conn.close()
