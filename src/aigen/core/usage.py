"""GET /api/usage: the signed-in user's plan, credits and generations of the current period.

The period is the user's credit period (a UTC calendar month, or its rest after a PRO user went
back to FREE), rolled forward when the user is loaded, so the credits and the counted
generations cover the same time; its end is when the free credits renew.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from aigen.core.database import connection
from aigen.core.plans import credits_remaining, generation_access
from aigen.store import repository
from aigen.store.repository import KeyUsage, Usage, User


def month_period(now: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar month holding `now`: its first instant and the next month's (exclusive)."""
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if start.month == 12:
        return start, start.replace(year=start.year + 1, month=1)
    return start, start.replace(month=start.month + 1)


def iso_utc(instant: datetime) -> str:
    """An instant as ISO 8601 in UTC with a Z suffix."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def usage_json(user: User, usage: Usage, start: datetime, end: datetime) -> dict[str, Any]:
    """The body of GET /api/usage."""
    return {
        "plan": user.plan,
        # Whether a generation may start now, and if not what the user has to do first.
        "access": generation_access(user).value,
        "period": {"start": iso_utc(start), "end": iso_utc(end)},
        "credits": {
            "used": user.credits_used,
            "limit": user.credits_limit,
            "remaining": credits_remaining(user),
        },
        "generations": {
            "total": usage.total,
            "succeeded": usage.succeeded,
            "failed": usage.failed,
        },
        "tokens": {"input": usage.input_tokens, "output": usage.output_tokens},
        "daily": [
            {
                "date": day.date.isoformat(),
                "generations": day.generations,
                "output_tokens": day.output_tokens,
            }
            for day in usage.daily
        ],
    }


def keys_json(by_key: list[KeyUsage]) -> list[dict[str, Any]]:
    """The "keys" of GET /api/usage: what each API key made in the period."""
    return [
        {
            "id": key.id,
            "name": key.name,
            "generations": key.generations,
            "output_tokens": key.output_tokens,
        }
        for key in by_key
    ]


async def usage_report(pool: asyncpg.Pool, user: User) -> dict[str, Any]:
    """The body of GET /api/usage for the user's current credit period."""
    start, end = user.period_start, user.period_end
    # One snapshot, so the per-key figures never count a generation the totals do not.
    async with (
        connection(pool) as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        counted = await repository.select_usage(conn, user.id, start, end)
        by_key = await repository.select_usage_by_key(conn, user.id, start, end)
    return {**usage_json(user, counted, start, end), "keys": keys_json(by_key)}
