"""A user's generations: the newest few, keyset pages of all of them, and one by id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from aigen.core.database import connection
from aigen.core.errors import InvalidInput, NotFound
from aigen.store import repository
from aigen.store.repository import Generation

RECENT_COUNT = 5
HISTORY_PAGE_SIZE = 20
MALFORMED_CURSOR = "This history link is malformed. Start again from the newest."
NO_SUCH_GENERATION = "There is no such generation in your history."
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class HistoryPage:
    """One page of generations, newest first, and the cursor of the next page if any."""

    generations: list[Generation]
    is_first_page: bool
    next_cursor: str | None


def encode_cursor(generation: Generation) -> str:
    """The keyset cursor after `generation`: microseconds since the epoch and the id."""
    micros = (generation.created_at - EPOCH) // MICROSECOND
    return f"{micros}.{generation.id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Parse a cursor made by encode_cursor; InvalidInput when it is not one."""
    micros, _, generation_id = cursor.partition(".")
    try:
        if not (_is_number(micros) and _is_number(generation_id)):
            raise ValueError(cursor)
        if int(generation_id) > repository.MAX_ID:
            raise OverflowError(cursor)
        return EPOCH + int(micros) * MICROSECOND, int(generation_id)
    except (ValueError, OverflowError) as error:
        raise InvalidInput(MALFORMED_CURSOR) from error


def _is_number(text: str) -> bool:
    """ASCII digits only (str.isdigit also takes other scripts' digits and superscripts)."""
    return text.isascii() and text.isdigit()


async def recent_generations(pool: asyncpg.Pool, user_id: int) -> list[Generation]:
    """The user's newest generations, for the dashboard."""
    async with connection(pool) as conn:
        return await repository.select_generations(conn, user_id, limit=RECENT_COUNT)


async def history_page(pool: asyncpg.Pool, user_id: int, cursor: str | None) -> HistoryPage:
    """A page of the user's generations after `cursor` (none: the newest); no OFFSET."""
    before = decode_cursor(cursor) if cursor else None
    async with connection(pool) as conn:
        rows = await repository.select_generations(
            conn, user_id, limit=HISTORY_PAGE_SIZE + 1, before=before
        )
    generations = rows[:HISTORY_PAGE_SIZE]
    more = len(rows) > HISTORY_PAGE_SIZE
    return HistoryPage(
        generations=generations,
        is_first_page=before is None,
        next_cursor=encode_cursor(generations[-1]) if more else None,
    )


async def owned_generation(pool: asyncpg.Pool, user_id: int, generation_id: int) -> Generation:
    """One of the user's generations; someone else's is as absent as a missing one."""
    if generation_id > repository.MAX_ID:
        raise NotFound(NO_SUCH_GENERATION)
    async with connection(pool) as conn:
        generation = await repository.select_generation(conn, user_id, generation_id)
    if generation is None:
        raise NotFound(NO_SUCH_GENERATION)
    return generation
