"""The service around the Claude call: the sweeper for abandoned reservations, prompt checks."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from aigen.core.errors import InvalidInput, UpstreamFailed
from aigen.core.generation import (
    MIN_SWEEP_DELAY,
    STALE_ERROR,
    next_sweep_in,
    sweep_stale,
    validate_prompt,
)
from aigen.store.pool import create_pool
from aigen.web.runtime import EXTENSION_KEY
from tests.helpers import make_user


async def reserve_abandoned(db, user_id: int, age_seconds: int) -> int:
    """What a process that died mid-call leaves behind: a pending row and a charged credit."""
    generation_id = await db.fetchval(
        "INSERT INTO generations (user_id, prompt, model, created_at)"
        " VALUES ($1, 'lost', 'm', now() - make_interval(secs => $2)) RETURNING id",
        user_id,
        age_seconds,
    )
    await db.execute("UPDATE users SET credits_used = credits_used + 1 WHERE id = $1", user_id)
    return generation_id


async def test_sweeper_fails_and_refunds_only_stale_reservations(database_url: str, db) -> None:
    """A pool of its own: a running app's start-up sweep would race with these rows."""
    ada = await make_user(db, "ada@example.com")
    bob = await make_user(db, "bob@example.com")
    old_ada = await reserve_abandoned(db, ada.id, 3600)
    old_bob_1 = await reserve_abandoned(db, bob.id, 3600)
    old_bob_2 = await reserve_abandoned(db, bob.id, 7200)
    fresh = await reserve_abandoned(db, ada.id, 1)

    pool = await create_pool(database_url, max_size=2)
    assert await sweep_stale(pool, older_than_seconds=600) == 3

    statuses = dict(await db.fetch("SELECT id, status FROM generations"))
    assert statuses == {
        old_ada: "failed",
        old_bob_1: "failed",
        old_bob_2: "failed",
        fresh: "pending",
    }
    errors = await db.fetch("SELECT DISTINCT error FROM generations WHERE status = 'failed'")
    assert [row["error"] for row in errors] == [STALE_ERROR]
    used = dict(await db.fetch("SELECT email, credits_used FROM users"))
    assert used == {"ada@example.com": 1, "bob@example.com": 0}
    assert await sweep_stale(pool, older_than_seconds=600) == 0
    await pool.close()


async def test_sweeper_runs_at_start_up(app_settings, db) -> None:
    from aigen.app import create_app

    ada = await make_user(db, "ada@example.com")
    abandoned = await reserve_abandoned(db, ada.id, 3600)
    app = create_app({**app_settings, "AIGEN_UPSTREAM_TIMEOUT": "5"})
    async with app.test_app():
        for _ in range(50):
            status = await db.fetchval("SELECT status FROM generations WHERE id = $1", abandoned)
            if status != "pending":
                break
            await asyncio.sleep(0.05)
    assert status == "failed"
    assert await db.fetchval("SELECT credits_used FROM users WHERE id = $1", ada.id) == 0


async def test_late_answer_after_the_sweep_is_not_charged(app, db, fake_claude) -> None:
    """If the sweeper already refunded a reservation, a late answer is not stored or charged."""
    ada = await make_user(db, "ada@example.com")
    service = app.extensions[EXTENSION_KEY].generations
    fake_claude.set_scenario([{"type": "delay", "seconds": 1.0}])
    call = asyncio.create_task(service.generate(ada.id, "slow"))
    # Polled rather than slept: on a loaded machine the reservation may take a while.
    for _ in range(200):
        if await db.fetchval("SELECT count(*) FROM generations WHERE status = 'pending'"):
            break
        await asyncio.sleep(0.01)
    await db.execute("UPDATE generations SET created_at = now() - interval '1 hour'")
    assert await sweep_stale(app.extensions[EXTENSION_KEY].pool, 600) == 1
    with pytest.raises(UpstreamFailed) as raised:
        await call
    assert raised.value.kind == UpstreamFailed.TIMEOUT
    row = await db.fetchrow("SELECT status, result FROM generations")
    assert (row["status"], row["result"]) == ("failed", None)
    assert await db.fetchval("SELECT credits_used FROM users") == 0


async def test_the_sweeper_wakes_when_the_oldest_reservation_turns_stale(app, db) -> None:
    """Not a whole interval later: a reservation 4 s old, stale after 10 s, is due in 6 s."""
    pool = app.extensions[EXTENSION_KEY].pool
    assert await next_sweep_in(pool, older_than_seconds=10, interval=60) == 60  # none pending
    ada = await make_user(db, "ada@example.com")
    await reserve_abandoned(db, ada.id, 4)
    await reserve_abandoned(db, ada.id, 1)
    assert 5 < await next_sweep_in(pool, older_than_seconds=10, interval=60) <= 6.1
    assert await next_sweep_in(pool, older_than_seconds=10, interval=3) == 3
    await reserve_abandoned(db, ada.id, 3600)  # overdue (swept at the next run): soon, not at once
    assert await next_sweep_in(pool, older_than_seconds=10, interval=60) == MIN_SWEEP_DELAY


@pytest.mark.parametrize("prompt", ["a", "  spaced  ", "ünïcødé ✓", "x" * 50])
def test_valid_prompts_are_returned_unchanged(prompt: str) -> None:
    assert validate_prompt({"prompt": prompt}, 50) == prompt


def test_nul_characters_are_refused() -> None:
    with pytest.raises(InvalidInput):
        validate_prompt({"prompt": "a\x00b"}, 50)


async def test_drain_cancels_what_outlives_it_and_refunds(app, db, fake_claude) -> None:
    """At shutdown, a call still running after the drain time is cancelled and refunded."""
    ada = await make_user(db, "ada@example.com")
    service = app.extensions[EXTENSION_KEY].generations
    fake_claude.set_scenario([{"type": "delay", "seconds": 3}])
    call = asyncio.create_task(service.generate(ada.id, "too slow"))
    while await db.fetchval("SELECT count(*) FROM generations") == 0:
        await asyncio.sleep(0.02)
    await service.drain(0.2)
    with pytest.raises(asyncio.CancelledError):
        await call
    row = await db.fetchrow("SELECT status, error FROM generations")
    assert row["status"] == "failed" and row["error"]
    assert await db.fetchval("SELECT credits_used FROM users") == 0


async def test_connection_breaking_on_release_after_the_commit_loses_nothing(
    database_url: str, db, fake_claude
) -> None:
    """Each connection dies as the pool takes it back, after the work committed: the reservation
    is still called and finalized, and charged once (it used to stay pending, charged)."""
    from aigen.clients.claude import ClaudeClient
    from aigen.core.generation import GenerationService
    from tests.helpers import counts

    async def die_on_release(conn: asyncpg.Connection) -> None:
        await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    ada = await make_user(db, "ada@example.com")
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=2, reset=die_on_release)
    claude = ClaudeClient(
        api_key="test-key",
        base_url=fake_claude.base_url,
        model="m",
        max_tokens=64,
        timeout=5,
        max_connections=10,
    )
    try:
        outcome = await GenerationService(pool, claude).generate(ada.id, "hello")
    finally:
        await claude.aclose()
        await pool.close()
    assert outcome.generation.status == "succeeded"
    assert await counts(db, ada.id) == (1, {"succeeded": 1})
