"""Monthly credit periods: an ended period rolls forward in the reservation transaction itself.

"Now" moves for real: the user's period is set in the past in the database, as it is when a
month has ended since the user last generated; nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
from quart import Quart

from aigen.core.generation import GenerationService, sweep_stale
from aigen.core.usage import month_period
from aigen.dev.anthropic import FakeAnthropicServer
from aigen.store import repository
from aigen.web.runtime import EXTENSION_KEY
from tests.helpers import GENERATE, counts, make_user, signed_in


def this_month() -> tuple[datetime, datetime]:
    return month_period(datetime.now(UTC))


async def end_the_period(db: asyncpg.Connection, user_id: int) -> datetime:
    """Make the user's period last month's (as if a month had passed); return its start."""
    return await db.fetchval(
        """
        UPDATE users SET period_start = period_start - interval '1 month',
                         period_end = period_start
        WHERE id = $1 RETURNING period_start
        """,
        user_id,
    )


async def period_of(db: asyncpg.Connection, user_id: int) -> tuple[datetime, datetime]:
    row = await db.fetchrow("SELECT period_start, period_end FROM users WHERE id = $1", user_id)
    return row["period_start"], row["period_end"]


def service(app: Quart) -> GenerationService:
    return app.extensions[EXTENSION_KEY].generations


async def test_new_users_start_in_the_current_month(db) -> None:
    ada = await make_user(db)
    assert (ada.period_start, ada.period_end) == this_month()


async def test_burst_at_the_boundary_rolls_once_and_never_spends_over_the_limit(
    app_settings, db, fake_claude: FakeAnthropicServer
) -> None:
    from aigen.app import create_app

    limit, attempts = 4, 40
    spent = await make_user(db, "spent@example.com", credits_limit=limit)
    await db.execute("UPDATE users SET credits_used = $2 WHERE id = $1", spent.id, limit)
    last_month = await end_the_period(db, spent.id)
    fake_claude.set_scenario([{"type": "delay", "seconds": 0.2, "times": limit}])
    app = create_app(app_settings)
    async with app.test_app(), signed_in(app, spent.id) as client:
        responses = await asyncio.gather(
            *(client.post(GENERATE, json={"prompt": f"p{i}"}) for i in range(attempts))
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * limit + [402] * (attempts - limit)
    assert await counts(db, spent.id) == (limit, {"succeeded": limit})
    assert await period_of(db, spent.id) == this_month()
    charged = await db.fetch("SELECT DISTINCT credit_period FROM generations")
    assert [row["credit_period"] for row in charged] == [this_month()[0]]
    assert last_month < this_month()[0]


async def test_refund_of_last_months_reservation_leaves_this_months_credits(app, db) -> None:
    ada = await make_user(db, credits_limit=3)
    old = await service(app).reserve(ada.id, "reserved before the month ended")
    last_month = await end_the_period(db, ada.id)
    await db.execute("UPDATE generations SET credit_period = $1 WHERE id = $2", last_month, old.id)
    new = await service(app).reserve(ada.id, "the first of this month")
    assert await counts(db, ada.id) == (1, {"pending": 2})  # rolled to 0, then charged once

    await service(app).fail(old, "Claude did not answer")
    assert await counts(db, ada.id) == (1, {"pending": 1, "failed": 1})
    await service(app).fail(new, "Claude did not answer")
    assert await counts(db, ada.id) == (0, {"failed": 2})


async def test_sweeper_refunds_only_the_current_period(app, db) -> None:
    ada = await make_user(db, credits_limit=3)
    old = await service(app).reserve(ada.id, "abandoned last month")
    last_month = await end_the_period(db, ada.id)
    await db.execute("UPDATE generations SET credit_period = $1 WHERE id = $2", last_month, old.id)
    await service(app).reserve(ada.id, "abandoned this month")
    await db.execute("UPDATE generations SET created_at = now() - interval '1 hour'")
    pool = app.extensions[EXTENSION_KEY].pool
    assert await sweep_stale(pool, older_than_seconds=600) == 2
    assert await counts(db, ada.id) == (0, {"failed": 2})


async def test_pages_and_usage_show_the_new_period_once_the_old_one_ended(app: Quart, db) -> None:
    spent = await make_user(db, "spent@example.com", credits_limit=3)
    await db.execute("UPDATE users SET credits_used = 3 WHERE id = $1", spent.id)
    await end_the_period(db, spent.id)
    start, end = this_month()
    async with signed_in(app, spent.id) as client:
        body = await (await client.get("/api/usage")).get_json()
        html = await (await client.get("/generate")).get_data(as_text=True)
    assert body["credits"] == {"used": 0, "limit": 3, "remaining": 3}
    assert body["period"] == {
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": end.isoformat().replace("+00:00", "Z"),
    }
    assert "3 credits left" in html and "upgrade-banner" not in html
    assert f'Credits renew on <time datetime="{end:%Y-%m-%d}T00:00:00Z">' in html


async def test_roll_is_a_no_op_inside_the_period(db) -> None:
    ada = await make_user(db)
    await db.execute("UPDATE users SET credits_used = 2 WHERE id = $1", ada.id)
    assert await repository.roll_credit_period(db, ada.id) is False
    assert await counts(db, ada.id) == (2, {})
    await end_the_period(db, ada.id)
    assert await repository.roll_credit_period(db, ada.id) is True
    assert await counts(db, ada.id) == (0, {})
    assert await period_of(db, ada.id) == this_month()
