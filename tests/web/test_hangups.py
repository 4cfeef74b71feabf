"""Clients hanging up at any moment of POST /api/generate: no reservation is left stranded.

Real HTTP clients against the app served by hypercorn on loopback. In each round many clients
of one user post at once, so their reservations queue on the user's row lock, and all of them
hang up together once a given number of reservations have been committed: at that moment some
clients are still queued, one is committing, others wait for Claude or read their answer.
(Hang-ups are placed by what the database shows, not by a clock, so a busy machine moves
nothing.) Once the calls that went on have settled, no generation is pending and every charged
credit belongs to a pending or succeeded generation.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from aigen.app import create_app
from aigen.dev.anthropic import FakeAnthropicServer
from tests.helpers import GENERATE, auth_cookie, doctor, make_user, served

CLIENTS = 40
ROUNDS = 3
# Calls running when their client hangs up go on; these are done well within SETTLE_SECONDS,
# a stranded reservation never is (the sweeper is minutes away).
CLAUDE_SECONDS = 0.05
SETTLE_SECONDS = 5.0
POLL_SECONDS = 0.002


async def reservations(db: asyncpg.Connection) -> int:
    """Generations committed so far (pending or finalized)."""
    return await db.fetchval("SELECT count(*) FROM generations")


async def round_of_hang_ups(
    base_url: str, cookies: dict[str, str], db: asyncpg.Connection, after: int
) -> None:
    """CLIENTS post at once; all hang up once `after` more reservations are committed."""
    start = await reservations(db)
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base_url, cookies=cookies, limits=limits) as http:
        calls = [
            asyncio.create_task(
                http.post(GENERATE, json={"prompt": f"hang up {n} [fake:delay={CLAUDE_SECONDS}]"})
            )
            for n in range(CLIENTS)
        ]
        while await reservations(db) - start < after and not all(call.done() for call in calls):
            await asyncio.sleep(POLL_SECONDS)
        for call in calls:
            call.cancel()  # httpx closes the connection of a cancelled request
        await asyncio.gather(*calls, return_exceptions=True)


async def pending_once_settled(db: asyncpg.Connection) -> int:
    """Generations still pending once every call that went on has had time to finish."""
    deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
    while True:
        pending = await db.fetchval("SELECT count(*) FROM generations WHERE status = 'pending'")
        if pending == 0 or asyncio.get_running_loop().time() > deadline:
            return pending
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("after", [1, CLIENTS // 4, CLIENTS // 2, CLIENTS * 3 // 4])
async def test_hanging_up_at_any_moment_strands_no_charge(
    app_settings: dict[str, str],
    database_url: str,
    db: asyncpg.Connection,
    fake_claude: FakeAnthropicServer,
    after: int,
) -> None:
    user = await make_user(db, "hangup@example.com", credits_limit=100_000)
    app = create_app(app_settings)
    async with served(app) as base_url:
        cookies = {"aigen_auth": auth_cookie(app, user.id)}
        for _ in range(ROUNDS):
            await round_of_hang_ups(base_url, cookies, db, after)
        pending = await pending_once_settled(db)
    assert pending == 0
    charged = await db.fetchval(
        "SELECT count(*) FROM generations WHERE status IN ('pending', 'succeeded')"
    )
    assert await db.fetchval("SELECT credits_used FROM users") == charged
    exit_code, report = await doctor(database_url)
    assert exit_code == 0, report
