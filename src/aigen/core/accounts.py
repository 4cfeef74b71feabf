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
    """The signed-in user's row; NotSignedIn when the account is gone."""
    async with connection(pool) as conn:
        user = await repository.select_user(conn, user_id)
    if user is None:
        raise NotSignedIn(ACCOUNT_GONE_MESSAGE)
    return user
