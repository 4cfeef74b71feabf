"""GET /api/usage against hand-counted generations, including failures and month boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest
from quart import Quart

from aigen.core.usage import month_period
from aigen.store import repository
from tests.helpers import bearer, make_user, new_api_key, signed_in

USAGE = "/api/usage"


async def add_generation(
    conn: asyncpg.Connection,
    user_id: int,
    created_at: datetime,
    status: str = "succeeded",
    tokens: tuple[int, int] | None = (0, 0),
) -> None:
    """A generation as the service would have left it, created at a chosen instant."""
    input_tokens, output_tokens = tokens if tokens is not None else (None, None)
    await conn.execute(
        "INSERT INTO generations (user_id, prompt, model, status, input_tokens, output_tokens,"
        " created_at) VALUES ($1, 'p', 'm', $2, $3, $4, $5)",
        user_id,
        status,
        input_tokens,
        output_tokens,
        created_at,
    )


async def test_signed_out_gets_401_json(client) -> None:
    response = await client.get(USAGE)
    assert response.status_code == 401
    assert await response.get_json() == {"error": "Unauthorized"}


async def test_no_generations_yet(user_client, user) -> None:
    start, end = month_period(datetime.now(UTC))
    response = await user_client.get(USAGE)
    assert response.status_code == 200
    assert await response.get_json() == {
        "plan": "FREE",
        "access": "allowed",
        "period": {
            "start": start.strftime("%Y-%m-%dT00:00:00Z"),
            "end": end.strftime("%Y-%m-%dT00:00:00Z"),
        },
        "credits": {"used": 0, "limit": 3, "remaining": 3},
        "generations": {"total": 0, "succeeded": 0, "failed": 0},
        "tokens": {"input": 0, "output": 0},
        "daily": [],
        "keys": [],
    }


async def test_counts_match_hand_counted_generations(app: Quart, db) -> None:
    ada = await make_user(db, "ada@example.com", credits_limit=10)
    other = await make_user(db, "other@example.com")
    start, end = month_period(datetime.now(UTC))
    third_day = start + timedelta(days=2)
    # Outside the period: the last microsecond of last month and the first of the next one.
    await add_generation(db, ada.id, start - timedelta(microseconds=1), tokens=(1000, 1000))
    await add_generation(db, ada.id, end, tokens=(1000, 1000))
    # Someone else's generation in the period.
    await add_generation(db, other.id, start + timedelta(hours=1), tokens=(1000, 1000))
    # Inside: day 1 has a success at the very first instant and a failure (no tokens) ...
    await add_generation(db, ada.id, start, tokens=(10, 20))
    await add_generation(db, ada.id, start + timedelta(hours=23, minutes=59), "failed", None)
    # ... day 3 two successes and one still pending.
    await add_generation(db, ada.id, third_day, tokens=(5, 7))
    await add_generation(db, ada.id, third_day + timedelta(hours=5), tokens=(1, 3))
    await add_generation(db, ada.id, third_day + timedelta(hours=6), "pending", None)
    await db.execute("UPDATE users SET credits_used = 4 WHERE id = $1", ada.id)
    async with signed_in(app, ada.id) as client:
        body = await (await client.get(USAGE)).get_json()
    assert body["credits"] == {"used": 4, "limit": 10, "remaining": 6}
    assert body["generations"] == {"total": 5, "succeeded": 3, "failed": 1}
    assert body["tokens"] == {"input": 16, "output": 30}
    assert body["daily"] == [
        {"date": start.date().isoformat(), "generations": 2, "output_tokens": 20},
        {"date": third_day.date().isoformat(), "generations": 3, "output_tokens": 10},
    ]


async def test_days_are_utc_days(app: Quart, db) -> None:
    """23:30 and 00:30 UTC are two days, whatever the session's time zone."""
    ada = await make_user(db)
    start, _ = month_period(datetime.now(UTC))
    late = start + timedelta(hours=23, minutes=30)
    await add_generation(db, ada.id, late, tokens=(1, 1))
    await add_generation(db, ada.id, late + timedelta(hours=1), tokens=(1, 2))
    async with signed_in(app, ada.id) as client:
        body = await (await client.get(USAGE)).get_json()
    assert [(day["date"], day["output_tokens"]) for day in body["daily"]] == [
        (start.date().isoformat(), 1),
        ((start + timedelta(days=1)).date().isoformat(), 2),
    ]


async def test_usage_query_ignores_the_session_time_zone(db) -> None:
    ada = await make_user(db)
    start, end = month_period(datetime.now(UTC))
    await add_generation(db, ada.id, start + timedelta(hours=23, minutes=30))
    await db.execute("SET timezone = 'Pacific/Kiritimati'")  # UTC+14
    usage = await repository.select_usage(db, ada.id, start, end)
    assert [day.date for day in usage.daily] == [start.date()]


@pytest.mark.parametrize(
    ("plan", "used", "limit", "remaining"),
    [("FREE", 5, 3, 0), ("FREE", 3, 3, 0), ("PRO", 40, 0, None)],
)
async def test_remaining_is_floored_for_free_and_null_for_pro(
    app: Quart, db, plan: str, used: int, limit: int, remaining: int | None
) -> None:
    someone = await make_user(db, credits_limit=limit, plan=plan)
    await db.execute("UPDATE users SET credits_used = $2 WHERE id = $1", someone.id, used)
    async with signed_in(app, someone.id) as client:
        body = await (await client.get(USAGE)).get_json()
    assert body["plan"] == plan
    assert body["credits"] == {"used": used, "limit": limit, "remaining": remaining}


async def test_generations_through_the_api_show_up(user_client, user, db) -> None:
    assert (await user_client.post("/api/generate", json={"prompt": "count me"})).status_code == 200
    body = await (await user_client.get(USAGE)).get_json()
    row = await db.fetchrow("SELECT input_tokens, output_tokens FROM generations")
    assert body["generations"] == {"total": 1, "succeeded": 1, "failed": 0}
    assert body["tokens"] == {"input": row["input_tokens"], "output": row["output_tokens"]}
    assert body["daily"] == [
        {
            "date": datetime.now(UTC).date().isoformat(),
            "generations": 1,
            "output_tokens": row["output_tokens"],
        }
    ]


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        (datetime(2025, 6, 15, 12, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC),
         datetime(2025, 7, 1, tzinfo=UTC)),
        (datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
         datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
        (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC),
         datetime(2026, 2, 1, tzinfo=UTC)),
        # 1 February 01:00 in UTC+3 is still 31 January 22:00 UTC.
        (datetime(2026, 2, 1, 1, tzinfo=timezone(timedelta(hours=3))),
         datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_month_period_is_the_utc_calendar_month(
    now: datetime, start: datetime, end: datetime
) -> None:
    assert month_period(now) == (start, end)


async def test_keys_count_what_each_key_made_in_the_period(app: Quart, db) -> None:
    ada = await make_user(db, "ada@example.com", credits_limit=10)
    other = await make_user(db, "other@example.com")
    start, end = month_period(datetime.now(UTC))
    ci = await repository.insert_api_key(db, ada.id, "ci", "aig_ci______", b"c" * 32)
    old = await repository.insert_api_key(db, ada.id, "old", "aig_old_____", b"o" * 32)
    await repository.insert_api_key(db, ada.id, "idle", "aig_idle____", b"i" * 32)
    theirs = await repository.insert_api_key(db, other.id, "theirs", "aig_theirs__", b"t" * 32)

    async def made_with(user_id: int, key_id: int | None, at: datetime, tokens: int | None) -> None:
        status = "succeeded" if tokens is not None else "failed"
        await db.execute(
            "INSERT INTO generations (user_id, api_key_id, prompt, model, status, output_tokens,"
            " created_at) VALUES ($1, $2, 'p', 'm', $3, $4, $5)",
            user_id,
            key_id,
            status,
            tokens,
            at,
        )

    await made_with(ada.id, ci.id, start, 7)
    await made_with(ada.id, ci.id, start + timedelta(days=1), None)  # failed: counted, no tokens
    await made_with(ada.id, ci.id, start - timedelta(microseconds=1), 1000)  # last month
    await made_with(ada.id, ci.id, end, 1000)  # next month
    await made_with(ada.id, old.id, start + timedelta(hours=2), 5)
    await made_with(ada.id, None, start + timedelta(hours=3), 11)  # the browser
    await made_with(other.id, theirs.id, start + timedelta(hours=4), 13)
    await repository.update_api_key_revoked(db, ada.id, old.id)  # revoked: still reported
    async with signed_in(app, ada.id) as client:
        body = await (await client.get(USAGE)).get_json()
    assert body["keys"] == [
        {"id": ci.id, "name": "ci", "generations": 2, "output_tokens": 7},
        {"id": old.id, "name": "old", "generations": 1, "output_tokens": 5},
    ]
    assert body["generations"]["total"] == 4 and body["tokens"]["output"] == 23


async def test_generations_through_a_key_show_up_under_it(app: Quart, user, db) -> None:
    key = await new_api_key(app, user.id, "script")
    client = app.test_client()
    response = await client.post("/api/generate", json={"prompt": "hi"}, headers=bearer(key["key"]))
    assert response.status_code == 200
    tokens = (await response.get_json())["usage"]["output_tokens"]
    body = await (await client.get(USAGE, headers=bearer(key["key"]))).get_json()
    assert body["keys"] == [
        {"id": key["id"], "name": "script", "generations": 1, "output_tokens": tokens}
    ]


@pytest.mark.parametrize(
    ("verified", "plan", "used", "access", "remaining"),
    [
        (True, "FREE", 2, "allowed", 1),
        (False, "FREE", 0, "verify_email", 3),  # the credits wait for the address, not spent
        (True, "FREE", 3, "no_credits", 0),
        (False, "PRO", 50, "allowed", None),  # PRO pays: neither verification nor credits limit
    ],
)
async def test_access_says_whether_a_generation_may_start_now(
    app: Quart, db, verified: bool, plan: str, used: int, access: str, remaining: int | None
) -> None:
    """The same rule as POST /api/generate's 402 and 403 (core/plans.generation_access)."""
    user = await make_user(db, "access@example.com", verified=verified, plan=plan)
    await db.execute("UPDATE users SET credits_used = $2 WHERE id = $1", user.id, used)
    async with signed_in(app, user.id) as client:
        body = await (await client.get(USAGE)).get_json()
        generated = await client.post("/api/generate", json={"prompt": "may I?"})
    assert body["access"] == access
    assert body["credits"]["remaining"] == remaining
    expected_status = {"allowed": 200, "verify_email": 403, "no_credits": 402}[access]
    assert generated.status_code == expected_status
