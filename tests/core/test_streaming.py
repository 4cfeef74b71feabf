"""The streaming service on its own: stops before reading, shutdown, a store error, events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import asyncpg
import pytest
from quart import Quart

from aigen.app import create_app
from aigen.core import streaming
from aigen.core.errors import InvalidInput
from aigen.core.generation import STORE_ERROR
from aigen.core.streaming import (
    Delta,
    Done,
    Failed,
    KeepAlive,
    Start,
    StreamEvent,
    StreamingService,
    wants_stream,
)
from aigen.dev.anthropic import FakeAnthropicServer
from aigen.store.repository import User
from aigen.web.runtime import EXTENSION_KEY
from tests.helpers import counts, ledger_mismatches


def service_of(app: Quart) -> StreamingService:
    return app.extensions[EXTENSION_KEY].streaming


async def take(events: AsyncGenerator[StreamEvent, None], count: int) -> list[StreamEvent]:
    """The next `count` events of an events() generator."""
    return [await anext(events) for _ in range(count)]


async def test_a_stream_stopped_before_its_task_ran_never_calls_claude(
    app: Quart, user: User, db: asyncpg.Connection, fake_claude: FakeAnthropicServer
) -> None:
    stream = await service_of(app).open(user.id, "never asked")
    stream.close()  # before the task had a turn on the loop
    await asyncio.gather(stream.task, return_exceptions=True)
    events = [event async for event in stream.events()]
    assert events == [Start(stream.generation.id), Failed(streaming.CLIENT_CLOSED_MESSAGE, True)]
    assert await counts(db, user.id) == (0, {"cancelled": 1})
    assert fake_claude.requests() == []
    assert await ledger_mismatches(db) == []


async def test_drain_stops_streams_still_running_as_cancelled(
    app: Quart, user: User, db: asyncpg.Connection, fake_claude: FakeAnthropicServer
) -> None:
    fake_claude.set_scenario([{"type": "stream_paced", "deltas": 50, "interval": 0.1}])
    service = service_of(app)
    stream = await service.open(user.id, "a long answer")
    events = stream.events()
    first = await take(events, 2)
    assert isinstance(first[0], Start) and isinstance(first[1], Delta)
    await service.drain(timeout=0.01)
    assert stream.task.done()
    rest = [event async for event in events if not isinstance(event, Delta | KeepAlive)]
    assert rest == [Failed(streaming.SHUTDOWN_MESSAGE, True)]
    row = await db.fetchrow("SELECT status, result, error FROM generations")
    assert row["status"] == "cancelled" and row["error"] == streaming.SHUTDOWN_MESSAGE
    assert row["result"].startswith(first[1].text)
    assert await counts(db, user.id) == (1, {"cancelled": 1})  # output produced: charged
    assert await ledger_mismatches(db) == []


async def test_shutdown_lets_a_running_stream_finish(
    app_settings: dict[str, str],
    user: User,
    db: asyncpg.Connection,
    fake_claude: FakeAnthropicServer,
) -> None:
    fake_claude.set_scenario([{"type": "stream_paced", "deltas": 4, "interval": 0.2}])
    app = create_app(app_settings)
    async with app.test_app():
        stream = await service_of(app).open(user.id, "finish me")
        await take(stream.events(), 2)
    assert stream.task.done()
    assert await counts(db, user.id) == (1, {"succeeded": 1})


async def test_an_answer_that_cannot_be_stored_is_failed_and_refunded(
    app: Quart, user: User, db: asyncpg.Connection, fake_claude: FakeAnthropicServer
) -> None:
    await db.execute(
        "ALTER TABLE generations ADD CONSTRAINT no_poison CHECK (result NOT LIKE '%POISON%')"
    )
    try:
        fake_claude.set_scenario([{"type": "reply", "text": "POISON"}])
        stream = await service_of(app).open(user.id, "store me")
        events = [event async for event in stream.events()]
    finally:
        await db.execute("ALTER TABLE generations DROP CONSTRAINT no_poison")
    assert events[-1] == Failed(streaming.INTERNAL_ERROR_MESSAGE, True)
    row = await db.fetchrow("SELECT status, result, error FROM generations")
    assert (row["status"], row["result"], row["error"]) == ("failed", None, STORE_ERROR)
    assert await counts(db, user.id) == (0, {"failed": 1})
    assert await ledger_mismatches(db) == []


async def test_done_is_the_last_event_and_matches_the_row(
    app: Quart, user: User, db: asyncpg.Connection
) -> None:
    stream = await service_of(app).open(user.id, "all of it")
    events = [event async for event in stream.events()]
    done = events[-1]
    assert isinstance(done, Done) and done.outcome.generation.status == "succeeded"
    text = "".join(event.text for event in events if isinstance(event, Delta))
    assert text == done.outcome.generation.result
    assert done.data()["credits"] == {"plan": "FREE", "used": 1, "limit": 3}


@pytest.mark.parametrize(
    ("body", "accepts", "expected"),
    [
        ({"stream": True}, False, True),
        ({"stream": False}, True, False),
        ({}, True, True),
        ({}, False, False),
        ({"stream": None}, True, True),
    ],
)
def test_wants_stream(body: dict[str, object], accepts: bool, expected: bool) -> None:
    assert wants_stream(body, accepts) is expected


def test_wants_stream_refuses_a_non_boolean() -> None:
    with pytest.raises(InvalidInput, match="'stream' must be true or false"):
        wants_stream({"stream": "true"}, False)
