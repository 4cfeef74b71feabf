"""All SQL of the application: small async functions taking a connection first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

MAX_ID = 2**63 - 1  # ids are bigint: a larger number names no row (and asyncpg cannot send it)
USER_COLUMNS = (
    "id, sub, email, email_verified, name, avatar_url, plan, credits_used, credits_limit,"
    " created_at, session_version, period_start, period_end, stripe_customer_id,"
    " stripe_subscription_id, stripe_event_at"
)
# The first instant of the UTC calendar month holding now(): the start of a credit period.
MONTH_START = "date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
# Another account (users.id differs) holds the same address verified; used in UPDATE users.
VERIFIED_ELSEWHERE = """EXISTS (
    SELECT 1 FROM users AS owner
    WHERE lower(owner.email) = lower(users.email) AND owner.email_verified AND owner.id <> users.id
)"""
USER_FIELDS = tuple(name.strip() for name in USER_COLUMNS.split(","))
# The user's columns beside another table's, named apart (u_id, u_email, ...).
USER_PREFIX = "u_"
USER_COLUMNS_PREFIXED = ", ".join(f"u.{name} AS {USER_PREFIX}{name}" for name in USER_FIELDS)
GENERATION_COLUMNS = (
    "id, user_id, prompt, result, status, model, input_tokens, output_tokens, error,"
    " created_at, completed_at"
)


# The statements of one generation, named so that bench/harness/pgbench.py measures these very
# ones: the reservation's lock, its charge with the insert, and the finalization.
LOCK_USER_FOR_RESERVATION = (
    f"SELECT {USER_COLUMNS}, period_end <= now() AS period_over FROM users WHERE id = $1 FOR UPDATE"
)
CHARGE_AND_INSERT_GENERATION = f"""
    WITH charged AS (
        UPDATE users SET credits_used = credits_used + 1 WHERE id = $1
        RETURNING period_start
    )
    INSERT INTO generations (user_id, prompt, model, api_key_id, credit_period)
    SELECT $1, $2, $3, $4, period_start FROM charged
    RETURNING {GENERATION_COLUMNS}
"""
FINALIZE_GENERATION = f"""
    WITH done AS (
        UPDATE generations
        SET result = $3, model = $4, input_tokens = $5, output_tokens = $6,
            status = 'succeeded', completed_at = now()
        WHERE id = $2 AND user_id = $1 AND status = 'pending'
        RETURNING {GENERATION_COLUMNS}
    )
    SELECT done.*, {USER_COLUMNS_PREFIXED} FROM done JOIN users u ON u.id = done.user_id
"""


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
    session_version: int
    period_start: datetime  # the credit period credits_used counts (a UTC month, end exclusive)
    period_end: datetime
    stripe_customer_id: str | None
    stripe_subscription_id: str | None
    stripe_event_at: datetime | None  # `created` of the last subscription event applied


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


@dataclass(frozen=True)
class LedgerEntry:
    """One user's metered counter beside the number of their generations holding a charge."""

    user_id: int
    email: str
    credits_used: int
    charged: int


@dataclass(frozen=True)
class Ledger:
    """The whole credit ledger: how many users and charges, and the users whose counts differ."""

    users: int
    charged: int
    mismatches: list[LedgerEntry]


def _user(row: asyncpg.Record | None) -> User | None:
    return None if row is None else User(**dict(row))


def _generation(row: asyncpg.Record | None) -> Generation | None:
    return None if row is None else Generation(**dict(row))


async def select_user(conn: asyncpg.Connection, user_id: int) -> User | None:
    """The user with this id."""
    row = await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)
    return _user(row)


async def select_user_by_email(conn: asyncpg.Connection, email: str) -> User | None:
    """The user with this e-mail address (case-insensitive): its verified owner if there is one.

    Unverified claims to an address may be several; a verified one is unique.
    """
    row = await conn.fetchrow(
        f"""
        SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1)
        ORDER BY email_verified DESC, id LIMIT 1
        """,
        email,
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


async def lock_user_in_current_period(conn: asyncpg.Connection, user_id: int) -> User | None:
    """The user row locked until the end of the caller's transaction, its credit period current.

    One round trip in the usual case; an ended period (once a month) is rolled forward by a
    second statement on the row already locked, so a burst at the boundary rolls it once.
    """
    row = await conn.fetchrow(LOCK_USER_FOR_RESERVATION, user_id)
    if row is None:
        return None
    if row["period_over"]:
        await roll_credit_period(conn, user_id)
        return await select_user(conn, user_id)
    return User(**{name: value for name, value in row.items() if name != "period_over"})


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


async def update_session_version(conn: asyncpg.Connection, user_id: int) -> None:
    """End every session of the user: cookies carrying an older version stop working."""
    await conn.execute(
        "UPDATE users SET session_version = session_version + 1 WHERE id = $1", user_id
    )


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


async def roll_credit_period(conn: asyncpg.Connection, user_id: int) -> bool:
    """Move an ended credit period to the current month with nothing used; True if it moved.

    The UPDATE locks the row; a second transaction waiting on it re-reads the row and finds the
    period current, so a burst at the boundary resets the counter once.
    """
    status = await conn.execute(
        f"""
        UPDATE users SET period_start = {MONTH_START},
                         period_end = {MONTH_START} + interval '1 month',
                         credits_used = 0
        WHERE id = $1 AND period_end <= now()
        """,
        user_id,
    )
    return status == "UPDATE 1"


async def select_user_in_current_period(conn: asyncpg.Connection, user_id: int) -> User | None:
    """The user row with an ended credit period rolled forward first, in one round trip.

    The outer SELECT sees the row as it was before the UPDATE (one snapshot per statement), so
    the rolled row is taken from RETURNING and the stored one only when nothing rolled.
    """
    row = await conn.fetchrow(
        f"""
        WITH rolled AS (
            UPDATE users SET period_start = {MONTH_START},
                             period_end = {MONTH_START} + interval '1 month',
                             credits_used = 0
            WHERE id = $1 AND period_end <= now()
            RETURNING {USER_COLUMNS}
        )
        SELECT {USER_COLUMNS} FROM rolled
        UNION ALL
        SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND NOT EXISTS (SELECT FROM rolled)
        """,
        user_id,
    )
    return _user(row)


async def refund_credit(conn: asyncpg.Connection, user_id: int, generation_id: int) -> None:
    """Give back the credit of a generation that failed, if it was charged to the current period."""
    await conn.execute(
        """
        UPDATE users SET credits_used = GREATEST(users.credits_used - 1, 0)
        FROM generations
        WHERE users.id = $1 AND generations.id = $2 AND generations.user_id = $1
          AND (generations.credit_period IS NULL
               OR generations.credit_period = users.period_start)
        """,
        user_id,
        generation_id,
    )


async def insert_charged_generation(
    conn: asyncpg.Connection,
    user_id: int,
    prompt: str,
    model: str,
    api_key_id: int | None = None,
) -> Generation:
    """Spend one credit and record the reservation as 'pending', charged to the user's current
    credit period, with the API key that asked for it (None: the browser); one statement."""
    row = await conn.fetchrow(CHARGE_AND_INSERT_GENERATION, user_id, prompt, model, api_key_id)
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
) -> tuple[Generation, User] | None:
    """Finalize a pending generation as 'succeeded', with the user's row for the answer's
    credits; one statement (atomic on its own). None if it is no longer pending."""
    row = await conn.fetchrow(
        FINALIZE_GENERATION,
        user_id,
        generation_id,
        result,
        model,
        input_tokens,
        output_tokens,
    )
    if row is None:
        return None
    values = dict(row)
    user = User(**{name: values.pop(USER_PREFIX + name) for name in USER_FIELDS})
    return Generation(**values), user


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
    Credits charged to an earlier period are not given back to the current one.
    """
    return await conn.fetchval(
        """
        WITH stale AS (
            UPDATE generations SET status = 'failed', error = $2, completed_at = now()
            WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)
            RETURNING user_id, credit_period
        ), refunds AS (
            SELECT stale.user_id, count(*) AS n FROM stale JOIN users ON users.id = stale.user_id
            WHERE stale.credit_period IS NULL OR stale.credit_period = users.period_start
            GROUP BY stale.user_id
        ), refunded AS (
            UPDATE users SET credits_used = GREATEST(users.credits_used - refunds.n, 0)
            FROM refunds WHERE users.id = refunds.user_id
        )
        SELECT count(*)::integer FROM stale
        """,
        older_than_seconds,
        error,
    )


async def select_seconds_until_stale(
    conn: asyncpg.Connection, older_than_seconds: float
) -> float | None:
    """Seconds until the oldest pending reservation is older than the cut-off (negative when
    one is already), or None when nothing is pending. One probe of generations_pending_idx."""
    return await conn.fetchval(
        """
        SELECT extract(epoch FROM min(created_at) + make_interval(secs => $1) - now())::float8
        FROM generations WHERE status = 'pending'
        """,
        older_than_seconds,
    )


async def select_ledger(conn: asyncpg.Connection) -> Ledger:
    """Every user's credits_used checked against the generations that hold a charge.

    The ledger rule, written here and nowhere else: a generation holds a charge while it is
    'pending', once it 'succeeded', and when a stream that produced output ended early
    ('cancelled' or 'failed' with its partial text); a refunded one has no result. credits_used
    counts the user's current credit period only, so it must equal the generations holding a
    charge in that period (one without a period counts as the current one's, as its refund
    does).
    """
    rows = await conn.fetch(
        """
        WITH per_user AS (
            SELECT u.id, u.email, u.credits_used,
                   count(g.id) FILTER (
                       WHERE (g.status IN ('pending', 'succeeded')
                              OR (g.status IN ('cancelled', 'failed') AND g.result IS NOT NULL))
                         AND coalesce(g.credit_period, u.period_start) = u.period_start
                   )::integer AS charged
            FROM users u LEFT JOIN generations g ON g.user_id = u.id
            GROUP BY u.id
        ), totals AS (
            SELECT count(*)::integer AS users, coalesce(sum(charged), 0)::integer AS charges
            FROM per_user
        )
        SELECT t.users, t.charges, p.id, p.email, p.credits_used, p.charged
        FROM totals t LEFT JOIN per_user p ON p.credits_used <> p.charged
        ORDER BY p.id
        """
    )
    mismatches = [
        LedgerEntry(row["id"], row["email"], row["credits_used"], row["charged"])
        for row in rows
        if row["id"] is not None
    ]
    return Ledger(users=rows[0]["users"], charged=rows[0]["charges"], mismatches=mismatches)


async def update_verification_sent(
    conn: asyncpg.Connection, user_id: int, nonce: str, *, unless_sent_within: float | None = None
) -> str | None:
    """Store the nonce of a new verification link; the address to send it to, or None.

    None when the user is verified already, when another account verified the address (its
    owner gets no links for someone else's account), or when `unless_sent_within` seconds
    have not passed since the last link (the check and the update are one statement, so two
    sign-ins at once send one link).
    """
    return await conn.fetchval(
        f"""
        UPDATE users SET verify_nonce = $2, verify_sent_at = now()
        WHERE id = $1 AND NOT email_verified AND NOT {VERIFIED_ELSEWHERE}
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
    """Mark the address verified and use up the pending link; None if another account has it.

    Two accounts verifying one address at the same instant: the unique index refuses the
    second with UniqueViolationError.
    """
    row = await conn.fetchrow(
        f"""
        UPDATE users SET email_verified = true, verify_nonce = NULL
        WHERE id = $1 AND NOT {VERIFIED_ELSEWHERE}
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


async def lock_user_by_stripe_customer(conn: asyncpg.Connection, customer_id: str) -> User | None:
    """The user paying through this Stripe customer, locked until the end of the transaction."""
    row = await conn.fetchrow(
        f"SELECT {USER_COLUMNS} FROM users WHERE stripe_customer_id = $1 FOR UPDATE", customer_id
    )
    return _user(row)


async def update_user_stripe_customer(
    conn: asyncpg.Connection, user_id: int, customer_id: str
) -> str | None:
    """Give the user this Stripe customer unless they have one; the one they have now."""
    return await conn.fetchval(
        """
        UPDATE users SET stripe_customer_id = coalesce(stripe_customer_id, $2)
        WHERE id = $1
        RETURNING stripe_customer_id
        """,
        user_id,
        customer_id,
    )


async def replace_user_stripe_customer(
    conn: asyncpg.Connection, user_id: int, missing: str | None, customer_id: str
) -> User | None:
    """Put a new Stripe customer in place of one Stripe no longer knows (unless another request
    replaced it first: then the row as that left it)."""
    row = await conn.fetchrow(
        f"""
        UPDATE users SET stripe_customer_id = CASE
            WHEN stripe_customer_id IS NOT DISTINCT FROM $2 THEN $3 ELSE stripe_customer_id END
        WHERE id = $1
        RETURNING {USER_COLUMNS}
        """,
        user_id,
        missing,
        customer_id,
    )
    return _user(row)


async def insert_stripe_event(
    conn: asyncpg.Connection, event_id: str, event_type: str, created: datetime
) -> bool:
    """Record a Stripe event as applied; False when it was recorded before (a replay)."""
    status = await conn.execute(
        """
        INSERT INTO stripe_events (id, type, created) VALUES ($1, $2, $3)
        ON CONFLICT (id) DO NOTHING
        """,
        event_id,
        event_type,
        created,
    )
    return status == "INSERT 0 1"


async def update_user_subscription(
    conn: asyncpg.Connection,
    user_id: int,
    *,
    plan: str,
    customer_id: str | None,
    subscription_id: str | None,
    event_at: datetime,
    restart_period: bool = False,
) -> User | None:
    """Set the plan a subscription event asks for, with the ids and time of that event.

    `restart_period` starts a credit period now with nothing used (a PRO user back on FREE):
    generations charged before belong to the period that ends here. Its end stays, unless that
    has passed, when the period is the current month as `roll_credit_period` would make it.
    """
    row = await conn.fetchrow(
        f"""
        UPDATE users SET plan = $2,
                         stripe_customer_id = coalesce($3, stripe_customer_id),
                         stripe_subscription_id = coalesce($4, stripe_subscription_id),
                         stripe_event_at = $5,
                         period_start = CASE WHEN $6 THEN now() ELSE period_start END,
                         period_end = CASE WHEN $6 AND period_end <= now()
                                           THEN {MONTH_START} + interval '1 month'
                                           ELSE period_end END,
                         credits_used = CASE WHEN $6 THEN 0 ELSE credits_used END
        WHERE id = $1
        RETURNING {USER_COLUMNS}
        """,
        user_id,
        plan,
        customer_id,
        subscription_id,
        event_at,
        restart_period,
    )
    return _user(row)


# --- API keys ------------------------------------------------------------------------------------

API_KEY_COLUMNS = "id, user_id, name, prefix, created_at, last_used_at"


@dataclass(frozen=True)
class APIKey:
    """A user's API key as lists show it: never the secret, nor its hash."""

    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class APIKeyCredential:
    """What checking a presented key needs: whose it is, its hash, and whether to note its use."""

    id: int
    user_id: int
    secret_hash: bytes
    use_unnoted: bool


@dataclass(frozen=True)
class KeyUsage:
    """Generations one API key made in a period, and the output tokens they used."""

    id: int
    name: str
    generations: int
    output_tokens: int


async def count_active_api_keys(conn: asyncpg.Connection, user_id: int) -> int:
    """How many keys the user has that are not revoked."""
    return await conn.fetchval(
        "SELECT count(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL", user_id
    )


async def insert_api_key(
    conn: asyncpg.Connection, user_id: int, name: str, prefix: str, secret_hash: bytes
) -> APIKey:
    """Store a new key by its prefix and the hash of its secret."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO api_keys (user_id, name, prefix, secret_hash) VALUES ($1, $2, $3, $4)
        RETURNING {API_KEY_COLUMNS}
        """,
        user_id,
        name,
        prefix,
        secret_hash,
    )
    return APIKey(**dict(row))


async def select_active_api_keys(conn: asyncpg.Connection, user_id: int) -> list[APIKey]:
    """The user's keys that are not revoked, newest first."""
    rows = await conn.fetch(
        f"""
        SELECT {API_KEY_COLUMNS} FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL
        ORDER BY created_at DESC, id DESC
        """,
        user_id,
    )
    return [APIKey(**dict(row)) for row in rows]


async def select_active_api_key(
    conn: asyncpg.Connection, user_id: int, key_id: int
) -> APIKey | None:
    """One of the user's keys that is not revoked."""
    row = await conn.fetchrow(
        f"""
        SELECT {API_KEY_COLUMNS} FROM api_keys
        WHERE id = $2 AND user_id = $1 AND revoked_at IS NULL
        """,
        user_id,
        key_id,
    )
    return None if row is None else APIKey(**dict(row))


async def update_api_key_revoked(
    conn: asyncpg.Connection, user_id: int, key_id: int
) -> APIKey | None:
    """Revoke one of the user's active keys; None if there is no such key."""
    row = await conn.fetchrow(
        f"""
        UPDATE api_keys SET revoked_at = now()
        WHERE id = $2 AND user_id = $1 AND revoked_at IS NULL
        RETURNING {API_KEY_COLUMNS}
        """,
        user_id,
        key_id,
    )
    return None if row is None else APIKey(**dict(row))


async def select_api_key_credentials(
    conn: asyncpg.Connection, prefix: str, note_use_every: float
) -> list[APIKeyCredential]:
    """Active keys with this prefix (almost always one), for checking a presented key.

    Not scoped by user: the key is how the user is found. `use_unnoted` is true when
    last_used_at is older than `note_use_every` seconds (or unset).
    """
    rows = await conn.fetch(
        """
        SELECT id, user_id, secret_hash,
               (last_used_at IS NULL
                OR last_used_at < now() - make_interval(secs => $2)) AS use_unnoted
        FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL
        """,
        prefix,
        note_use_every,
    )
    return [APIKeyCredential(**dict(row)) for row in rows]


async def update_api_key_last_used(
    conn: asyncpg.Connection, user_id: int, key_id: int, note_use_every: float
) -> None:
    """Set last_used_at to now unless it was set less than `note_use_every` seconds ago.

    The condition is repeated here so that workers seeing the same stale value write once.
    """
    await conn.execute(
        """
        UPDATE api_keys SET last_used_at = now()
        WHERE id = $2 AND user_id = $1
          AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $3))
        """,
        user_id,
        key_id,
        note_use_every,
    )


async def select_usage_by_key(
    conn: asyncpg.Connection, user_id: int, start: datetime, end: datetime
) -> list[KeyUsage]:
    """Per API key (revoked ones too), generations created in [start, end) and output tokens.

    Only keys that made generations in the period, oldest key first; an index-only scan of
    generations_user_key_usage_idx, which holds only generations made with a key.
    """
    rows = await conn.fetch(
        """
        WITH per_key AS (
            SELECT api_key_id, count(*) AS generations,
                   coalesce(sum(output_tokens), 0)::bigint AS output_tokens
            FROM generations
            WHERE user_id = $1 AND created_at >= $2 AND created_at < $3
              AND api_key_id IS NOT NULL
            GROUP BY api_key_id
        )
        SELECT api_keys.id, api_keys.name, per_key.generations, per_key.output_tokens
        FROM per_key JOIN api_keys ON api_keys.id = per_key.api_key_id
        WHERE api_keys.user_id = $1
        ORDER BY api_keys.id
        """,
        user_id,
        start,
        end,
    )
    return [KeyUsage(**dict(row)) for row in rows]
