"""Accounts: the user behind a sign-in, and the signed-in user's row for each request."""

from __future__ import annotations

import asyncpg

from aigen.clients.oidc import Identity
from aigen.core.database import connection
from aigen.core.errors import Conflict, NotSignedIn
from aigen.store import repository
from aigen.store.repository import User

ACCOUNT_GONE_MESSAGE = "Your account no longer exists. Please sign in again."
EMAIL_TAKEN_MESSAGE = "Sign-in failed: this e-mail address belongs to another account."


async def save_identity(pool: asyncpg.Pool, identity: Identity, free_credits: int) -> User:
    """Create the user on first sign-in or refresh their profile; an owned address is refused."""
    try:
        async with connection(pool) as conn:
            return await repository.upsert_user(
                conn,
                sub=identity.sub,
                email=identity.email,
                email_verified=identity.email_verified,
                name=identity.name,
                avatar_url=identity.picture,
                credits_limit=free_credits,
            )
    except asyncpg.UniqueViolationError as error:
        raise Conflict(EMAIL_TAKEN_MESSAGE) from error


async def load_user(pool: asyncpg.Pool, user_id: int) -> User:
    """The signed-in user's row in the current credit period; NotSignedIn when the account is gone.

    An ended period is rolled forward here too, so pages show this month's credits.
    """
    async with connection(pool) as conn:
        user = await repository.select_user_in_current_period(conn, user_id)
    if user is None:
        raise NotSignedIn(ACCOUNT_GONE_MESSAGE)
    return user


async def current_session_user(
    pool: asyncpg.Pool, user_id: int, session_version: int
) -> User | None:
    """The user's row (in its current credit period) when this session is still theirs: the
    account exists and the version matches."""
    async with connection(pool) as conn:
        user = await repository.select_user_in_current_period(conn, user_id)
    if user is None or user.session_version != session_version:
        return None
    return user


async def end_sessions(pool: asyncpg.Pool, user_id: int) -> None:
    """Sign the user out of every session, copies of their cookies included."""
    async with connection(pool) as conn:
        await repository.update_session_version(conn, user_id)
