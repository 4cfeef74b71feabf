"""All SQL of the application: small async functions taking a connection first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

USER_COLUMNS = (
    "id, sub, email, email_verified, name, avatar_url, plan, credits_used, credits_limit,"
    " created_at"
)
GENERATION_COLUMNS = (
    "id, user_id, prompt, result, status, model, input_tokens, output_tokens, error,"
    " created_at, completed_at"
)


@dataclass(frozen=True)
class User:
    """A signed-in person and their plan."""

    id: int
    sub: str
    email: str
    email_verified: bool
    name: str | None
    avatar_url: str | None
    plan: str
    credits_used: int
    credits_limit: int
    created_at: datetime


@dataclass(frozen=True)
class Generation:
    """One prompt and Claude's answer (or the reason there is none)."""

    id: int
    user_id: int
    prompt: str
    result: str | None
    status: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    error: str | None
    created_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class DailyUsage:
    """Generations created on one UTC day and the output tokens they used."""

    date: date
    generations: int
    output_tokens: int


@dataclass(frozen=True)
class Usage:
    """A user's generations created in one period, counted by status, with token sums."""

    total: int
    succeeded: int
    failed: int
    input_tokens: int
    output_tokens: int
    daily: list[DailyUsage]


def _user(row: asyncpg.Record | None) -> User | None:
    return None if row is None else User(**dict(row))


def _generation(row: asyncpg.Record | None) -> Generation | None:
    return None if row is None else Generation(**dict(row))


async def select_user(conn: asyncpg.Connection, user_id: int) -> User | None:
    """The user with this id."""
    row = await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)
    return _user(row)


async def select_user_by_email(conn: asyncpg.Connection, email: str) -> User | None:
    """The user with this e-mail address, compared case-insensitively."""
    row = await conn.fetchrow(
        f"SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1)", email
    )
    return _user(row)


async def select_users(conn: asyncpg.Connection, limit: int = 1000) -> list[User]:
    """Users, oldest first (operator listing)."""
    rows = await conn.fetch(f"SELECT {USER_COLUMNS} FROM users ORDER BY id LIMIT $1", limit)
    return [User(**dict(row)) for row in rows]


async def lock_user(conn: asyncpg.Connection, user_id: int) -> User | None:
    """The user row, locked until the end of the caller's transaction."""
    row = await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE", user_id)
    return _user(row)


async def upsert_user(
    conn: asyncpg.Connection,
    *,
    sub: str,
    email: str,
    email_verified: bool,
    name: str | None,
    avatar_url: str | None,
    credits_limit: int,
) -> User:
    """Create the user on first sign-in, else refresh their profile (plan and credits kept)."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO users (sub, email, email_verified, name, avatar_url, credits_limit)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (sub) DO UPDATE SET
            email = EXCLUDED.email,
            -- A changed address is only as verified as the provider says; its old link dies.
            email_verified = CASE WHEN lower(users.email) = lower(EXCLUDED.email)
                THEN users.email_verified OR EXCLUDED.email_verified
                ELSE EXCLUDED.email_verified END,
            verify_nonce = CASE WHEN lower(users.email) = lower(EXCLUDED.email)
                THEN users.verify_nonce END,
            verify_sent_at = CASE WHEN lower(users.email) = lower(EXCLUDED.email)
                THEN users.verify_sent_at END,
            name = EXCLUDED.name,
            avatar_url = EXCLUDED.avatar_url
        RETURNING {USER_COLUMNS}
        """,
        sub,
        email,
        email_verified,
        name,
        avatar_url,
        credits_limit,
    )
    return User(**dict(row))


async def update_user_plan(conn: asyncpg.Connection, user_id: int, plan: str) -> User | None:
    """Move the user to another plan."""
    row = await conn.fetchrow(
        f"UPDATE users SET plan = $2 WHERE id = $1 RETURNING {USER_COLUMNS}", user_id, plan
    )
    return _user(row)


async def update_user_credits_limit(
    conn: asyncpg.Connection, user_id: int, credits_limit: int
) -> User | None:
    """Change how many credits a FREE user may spend."""
    row = await conn.fetchrow(
        f"UPDATE users SET credits_limit = $2 WHERE id = $1 RETURNING {USER_COLUMNS}",
        user_id,
        credits_limit,
    )
    return _user(row)


async def charge_credit(conn: asyncpg.Connection, user_id: int) -> User:
    """Spend one credit (inside the reservation transaction)."""
    row = await conn.fetchrow(
        f"UPDATE users SET credits_used = credits_used + 1 WHERE id = $1 RETURNING {USER_COLUMNS}",
        user_id,
    )
    return User(**dict(row))


async def refund_credit(conn: asyncpg.Connection, user_id: int) -> None:
    """Give back the credit of a generation that failed."""
    await conn.execute(
        "UPDATE users SET credits_used = GREATEST(credits_used - 1, 0) WHERE id = $1", user_id
    )


async def insert_generation(
    conn: asyncpg.Connection, user_id: int, prompt: str, model: str
) -> Generation:
    """Record a reservation as 'pending'."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO generations (user_id, prompt, model) VALUES ($1, $2, $3)
        RETURNING {GENERATION_COLUMNS}
        """,
        user_id,
        prompt,
        model,
    )
    return Generation(**dict(row))


async def update_generation_result(
    conn: asyncpg.Connection,
    user_id: int,
    generation_id: int,
    *,
    result: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
) -> Generation | None:
    """Finalize a pending generation as 'succeeded'; None if it is no longer pending."""
    row = await conn.fetchrow(
        f"""
        UPDATE generations
        SET result = $3, model = $4, input_tokens = $5, output_tokens = $6,
            status = 'succeeded', completed_at = now()
        WHERE id = $2 AND user_id = $1 AND status = 'pending'
        RETURNING {GENERATION_COLUMNS}
        """,
        user_id,
        generation_id,
        result,
        model,
        input_tokens,
        output_tokens,
    )
    return _generation(row)


async def update_generation_failed(
    conn: asyncpg.Connection, user_id: int, generation_id: int, error: str
) -> Generation | None:
    """Finalize a pending generation as 'failed'; None if it is no longer pending."""
    row = await conn.fetchrow(
        f"""
        UPDATE generations SET status = 'failed', error = $3, completed_at = now()
        WHERE id = $2 AND user_id = $1 AND status = 'pending'
        RETURNING {GENERATION_COLUMNS}
        """,
        user_id,
        generation_id,
        error,
    )
    return _generation(row)


async def update_generation_stopped(
    conn: asyncpg.Connection,
    user_id: int,
    generation_id: int,
    *,
    status: str,
    result: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    error: str,
) -> Generation | None:
    """Finalize a pending stream that ended early ('failed' or 'cancelled') with what it produced.

    None if the generation is no longer pending.
    """
    row = await conn.fetchrow(
        f"""
        UPDATE generations
        SET status = $3, result = $4, input_tokens = $5, output_tokens = $6, error = $7,
            completed_at = now()
        WHERE id = $2 AND user_id = $1 AND status = 'pending'
        RETURNING {GENERATION_COLUMNS}
        """,
        user_id,
        generation_id,
        status,
        result,
        input_tokens,
        output_tokens,
        error,
    )
    return _generation(row)


async def select_generation(
    conn: asyncpg.Connection, user_id: int, generation_id: int
) -> Generation | None:
    """One of the user's generations."""
    row = await conn.fetchrow(
        f"SELECT {GENERATION_COLUMNS} FROM generations WHERE id = $2 AND user_id = $1",
        user_id,
        generation_id,
    )
    return _generation(row)


async def select_generations(
    conn: asyncpg.Connection,
    user_id: int,
    *,
    limit: int,
    before: tuple[datetime, int] | None = None,
) -> list[Generation]:
    """The user's generations newest first, after the keyset cursor (created_at, id) if given."""
    if before is None:
        rows = await conn.fetch(
            f"""
            SELECT {GENERATION_COLUMNS} FROM generations WHERE user_id = $1
            ORDER BY created_at DESC, id DESC LIMIT $2
            """,
            user_id,
            limit,
        )
    else:
        rows = await conn.fetch(
            f"""
            SELECT {GENERATION_COLUMNS} FROM generations
            WHERE user_id = $1 AND (created_at, id) < ($3, $4)
            ORDER BY created_at DESC, id DESC LIMIT $2
            """,
            user_id,
            limit,
            before[0],
            before[1],
        )
    return [Generation(**dict(row)) for row in rows]


async def fail_stale_generations(
    conn: asyncpg.Connection, older_than_seconds: float, error: str
) -> int:
    """Fail every reservation pending longer than the cut-off and refund it; return how many.

    This is the one statement not scoped by user: it repairs what dead processes left behind.
    """
    return await conn.fetchval(
        """
        WITH stale AS (
            UPDATE generations SET status = 'failed', error = $2, completed_at = now()
            WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)
            RETURNING user_id
        ), refunds AS (
            SELECT user_id, count(*) AS n FROM stale GROUP BY user_id
        ), refunded AS (
            UPDATE users SET credits_used = GREATEST(users.credits_used - refunds.n, 0)
            FROM refunds WHERE users.id = refunds.user_id
            RETURNING refunds.n
        )
        SELECT coalesce(sum(n), 0)::integer FROM refunded
        """,
        older_than_seconds,
        error,
    )


async def update_verification_sent(
    conn: asyncpg.Connection, user_id: int, nonce: str, *, unless_sent_within: float | None = None
) -> str | None:
    """Store the nonce of a new verification link; the address to send it to, or None.

    None when the user is verified already, or when `unless_sent_within` seconds have not
    passed since the last link (the check and the update are one statement, so two sign-ins
    at once send one link).
    """
    return await conn.fetchval(
        """
        UPDATE users SET verify_nonce = $2, verify_sent_at = now()
        WHERE id = $1 AND NOT email_verified
          AND ($3::float8 IS NULL OR verify_sent_at IS NULL
               OR verify_sent_at < now() - make_interval(secs => $3::float8))
        RETURNING email
        """,
        user_id,
        nonce,
        unless_sent_within,
    )


async def select_verification_nonce(conn: asyncpg.Connection, user_id: int) -> str | None:
    """The nonce of the user's one usable verification link, if any."""
    return await conn.fetchval("SELECT verify_nonce FROM users WHERE id = $1", user_id)


async def update_email_verified(conn: asyncpg.Connection, user_id: int) -> User | None:
    """Mark the address verified and use up the pending link."""
    row = await conn.fetchrow(
        f"""
        UPDATE users SET email_verified = true, verify_nonce = NULL WHERE id = $1
        RETURNING {USER_COLUMNS}
        """,
        user_id,
    )
    return _user(row)


async def select_usage(
    conn: asyncpg.Connection, user_id: int, start: datetime, end: datetime
) -> Usage:
    """Counts and token sums of the generations created in [start, end), in total and per day.

    One index-only range scan of generations_user_created_usage_idx: the empty grouping set
    gives the totals row (day IS NULL), the others one row per UTC day that has generations.
    """
    rows = await conn.fetch(
        """
        WITH period AS (
            SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
                   status, input_tokens, output_tokens
            FROM generations
            WHERE user_id = $1 AND created_at >= $2 AND created_at < $3
        )
        SELECT day,
               count(*) AS total,
               count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               coalesce(sum(input_tokens), 0)::bigint AS input_tokens,
               coalesce(sum(output_tokens), 0)::bigint AS output_tokens
        FROM period
        GROUP BY GROUPING SETS ((day), ())
        ORDER BY day NULLS FIRST
        """,
        user_id,
        start,
        end,
    )
    totals, days = rows[0], rows[1:]
    return Usage(
        total=totals["total"],
        succeeded=totals["succeeded"],
        failed=totals["failed"],
        input_tokens=totals["input_tokens"],
        output_tokens=totals["output_tokens"],
        daily=[DailyUsage(row["day"], row["total"], row["output_tokens"]) for row in days],
    )
