"""The pgbench ceiling runs the app's own two transactions: its SQL must fit the schema."""

from __future__ import annotations

import re

import asyncpg
from bench.harness.pgbench import SCRIPT

from tests.helpers import counts, make_user

VARIABLE = re.compile(r":(uid|g_id)\b")


async def run_script_once(conn: asyncpg.Connection, user_id: int) -> None:
    """Run the script's statements the way pgbench would, with :uid = user_id."""
    values = {"uid": str(user_id)}
    statements = [line for line in SCRIPT.splitlines() if line and not line.startswith("\\set")]
    for statement in statements:
        sql, _, gset = statement.partition("\\gset")
        row = await conn.fetchrow(VARIABLE.sub(lambda match: values[match[1]], sql))
        if gset:
            values["g_id"] = str(row["id"])


async def test_script_reserves_and_finalizes_one_generation(db: asyncpg.Connection) -> None:
    user = await make_user(db, credits_limit=5)
    await run_script_once(db, user.id)
    assert await counts(db, user.id) == (1, {"succeeded": 1})
