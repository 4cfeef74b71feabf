"""Streamed answers: POST /api/generate as server-sent events, over real HTTP through hypercorn,
with the local Claude's stream faults; the rows, the credits and what the upstream saw."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from hypercorn.typing import ASGIReceiveEvent, ASGISendEvent, ConnectionState, HTTPScope
from quart import Quart

from aigen.app import create_app
from aigen.core import streaming
from aigen.core.generation import CREDIT_LIMIT_MESSAGE
from aigen.dev.anthropic import FakeAnthropicServer
from aigen.store.repository import User
from aigen.web.runtime import EXTENSION_KEY
from tests.helpers import (
    GENERATE,
    auth_cookie,
    counts,
    ledger_mismatches,
    make_user,
    page_csrf_token,
    parse_sse,
    served,
    signed_in,
)

SSE = "text/event-stream"
WAIT_SECONDS = 15.0


class Live:
    """A served app and HTTP clients signed in to it."""

    def __init__(self, app: Quart, base_url: str) -> None:
        self.app = app
        self.base_url = base_url

    def client(self, user: User) -> httpx.AsyncClient:
        """An HTTP client carrying `user`'s sign-in cookie (no Origin: a script, as curl)."""
        cookies = {"aigen_auth": auth_cookie(self.app, user.id)}
        return httpx.AsyncClient(base_url=self.base_url, cookies=cookies, timeout=WAIT_SECONDS)


@pytest.fixture
async def live(app_settings: dict[str, str], db: asyncpg.Connection) -> AsyncIterator[Live]:
    """The app served by hypercorn on loopback (real HTTP, real disconnects)."""
    app = create_app(app_settings)
    async with served(app) as base_url:
        yield Live(app, base_url)


async def read_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """Yield each event of an SSE response as soon as its blank line arrives."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line:
            lines.append(line)
            continue
        for event in parse_sse("\n".join(lines)):
            yield event
        lines = []


@asynccontextmanager
async def streamed(
    http: httpx.AsyncClient, prompt: str, **headers: str
) -> AsyncIterator[httpx.Response]:
    """POST a streamed generation; leaving the block closes the connection if it is still open."""
    body = {"prompt": prompt, "stream": True}
    async with http.stream("POST", GENERATE, json=body, headers=headers) as response:
        yield response


async def eventually(check: Any, what: str) -> Any:
    """Poll an async check until it returns something truthy (the server finishes on its own)."""
    for _ in range(int(WAIT_SECONDS / 0.05)):
        if result := await check():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def settled_row(db: asyncpg.Connection, generation_id: int) -> asyncpg.Record:
    """The generation once it is no longer pending."""

    async def check() -> asyncpg.Record | None:
        row = await db.fetchrow("SELECT * FROM generations WHERE id = $1", generation_id)
        return row if row is not None and row["status"] != "pending" else None

    return await eventually(check, f"generation {generation_id} finalized")


async def upstream_outcome(fake: FakeAnthropicServer) -> dict[str, Any]:
    """The one logged upstream call, once its stream has ended."""

    async def check() -> dict[str, Any] | None:
        logged = fake.requests()
        return logged[-1] if logged and logged[-1]["stream_outcome"] is not None else None

    return await eventually(check, "the upstream stream ended")


def upstream_streaming(fake: FakeAnthropicServer) -> bool:
    """Whether the upstream has begun sending its stream (deltas_sent is set when it starts)."""
    logged = fake.requests()
    return bool(logged) and logged[-1]["deltas_sent"] is not None


async def json_answer(user_client: Any, prompt: str) -> dict[str, Any]:
    response = await user_client.post(GENERATE, json={"prompt": prompt})
    assert response.status_code == 200
    return await response.get_json()


# --- event order and content ---------------------------------------------------------------


async def test_stream_sends_start_every_delta_then_done(
    user_client: Any, user: User, db: asyncpg.Connection, fake_claude: FakeAnthropicServer
) -> None:
    fake_claude.set_scenario([{"type": "stream_paced", "deltas": 6, "interval": 0}])
    response = await user_client.post(GENERATE, json={"prompt": "Stream me", "stream": True})
    assert response.status_code == 200
    assert response.mimetype == SSE
    assert response.headers["Cache-Control"] == "no-store"
    assert "Content-Encoding" not in response.headers
    events = parse_sse(await response.get_data(as_text=True))
    names = [name for name, _ in events]
    assert names == ["start"] + ["delta"] * 6 + ["done"]
    (_, start), (_, done) = events[0], events[-1]
    row = await db.fetchrow("SELECT * FROM generations WHERE id = $1", start["id"])
    assert start == {"id": row["id"]}
    assert "".join(data["text"] for name, data in events if name == "delta") == row["result"]
    assert done == {
        "id": row["id"],
        "usage": {"input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"]},
        "credits": {"plan": "FREE", "used": 1, "limit": 3},
    }
    assert row["status"] == "succeeded" and row["error"] is None
    logged = fake_claude.requests()[-1]
    assert logged["stream"] is True and logged["stream_outcome"] == "completed"
    assert logged["deltas_sent"] == 6
    assert await ledger_mismatches(db) == []


async def test_done_carries_the_same_usage_as_the_json_answer(
    user_client: Any, db: asyncpg.Connection
) -> None:
    plain = await json_answer(user_client, "Same question twice")
    response = await user_client.post(
        GENERATE, json={"prompt": "Same question twice"}, headers={"Accept": SSE}
    )
    events = parse_sse(await response.get_data(as_text=True))
    done = events[-1][1]
    assert events[-1][0] == "done" and set(done) == {"id", "usage", "credits"}
    assert done["usage"] == plain["usage"]
    assert done["credits"] == {**plain["credits"], "used": 2}
    assert "".join(data["text"] for name, data in events if name == "delta") == plain["result"]


@pytest.mark.parametrize(
    ("body", "accept"),
    [
        ({"stream": False}, SSE),  # the body decides when it says
        ({}, "application/json"),
        ({}, "*/*"),
        ({"stream": None}, "*/*"),
    ],
)
async def test_json_answer_unless_streaming_is_asked_for(
    user_client: Any, body: dict[str, Any], accept: str
) -> None:
    response = await user_client.post(
        GENERATE, json={"prompt": "plain", **body}, headers={"Accept": accept}
    )
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert set(await response.get_json()) == {"id", "result", "usage", "credits"}


@pytest.mark.parametrize("value", ["yes", 1, [], {}])
async def test_stream_that_is_not_a_boolean_is_400(
    user_client: Any, user: User, db: asyncpg.Connection, value: object
) -> None:
    response = await user_client.post(GENERATE, json={"prompt": "p", "stream": value})
    assert response.status_code == 400
    assert await response.get_json() == {"error": "Field 'stream' must be true or false."}
    assert await counts(db, user.id) == (0, {})


async def test_nul_in_a_delta_is_replaced_in_the_event_and_the_row(
    user_client: Any, db: asyncpg.Connection, fake_claude: FakeAnthropicServer
) -> None:
    fake_claude.set_scenario([{"type": "reply", "text": "a\u0000b"}])
    response = await user_client.post(GENERATE, json={"prompt": "nul", "stream": True})
    events = parse_sse(await response.get_data(as_text=True))
    assert [data["text"] for name, data in events if name == "delta"] == ["a\ufffdb"]
    assert await db.fetchval("SELECT result FROM generations") == "a\ufffdb"


# --- refusals are plain JSON, never a stream ----------------------------------------------


async def test_refusals_before_the_stream_are_json(
    app_settings: dict[str, str], db: asyncpg.Connection, fake_claude: FakeAnthropicServer
) -> None:
    spent = await make_user(db, "spent@example.com", credits_limit=0)
    unverified = await make_user(db, "new@example.com", verified=False)
    limited = await make_user(db, "quick@example.com")
    app = create_app({**app_settings, "RATE_LIMIT": "1/minute"})
    async with served(app) as base_url:
        live = Live(app, base_url)
        cases: list[tuple[User | None, str, int]] = [
            (None, "hello", 401),
            (limited, "   ", 400),
            (spent, "hello", 402),
            (unverified, "hello", 403),
            (limited, "first", 200),
            (limited, "second", 429),
        ]
        for who, prompt, status in cases:
            http = live.client(who) if who else httpx.AsyncClient(base_url=base_url)
            async with http, streamed(http, prompt, Accept=SSE) as response:
                await response.aread()
            assert response.status_code == status, (who, prompt)
            if status != 200:
                assert response.headers["content-type"] == "application/json"
                assert "error" in json.loads(response.text)
        too_many = response
    assert too_many.headers["Retry-After"] and too_many.headers["RateLimit-Limit"] == "1"
    assert [logged["prompt"] for logged in fake_claude.requests()] == ["first"]
    assert await ledger_mismatches(db) == []


async def test_forged_cross_site_stream_is_403_json(live: Live, user: User) -> None:
    async with live.client(user) as http, streamed(http, "hi", Origin="https://evil.example") as r:
        await r.aread()
    assert r.status_code == 403 and r.headers["content-type"] == "application/json"


# --- as it arrives: no buffering -----------------------------------------------------------


async def test_each_delta_reaches_the_client_while_the_upstream_still_streams(
    live: Live, user: User, fake_claude: FakeAnthropicServer
) -> None:
    fake_claude.set_scenario([{"type": "stream_paced", "deltas": 3, "interval": 0.5}])
    seen_upstream: list[tuple[int, str | None]] = []
    async with live.client(user) as http, streamed(http, "one at a time") as response:
        async for name, _ in read_events(response):
            if name == "delta":
                logged = fake_claude.requests()[-1]
                seen_upstream.append((logged["deltas_sent"], logged["stream_outcome"]))
    # The k-th delta reached us once the upstream had sent it, and before it finished: nothing
    # on the way (app, hypercorn, compression) waited for more.
    assert [sent >= k for k, (sent, _) in enumerate(seen_upstream, 1)] == [True] * 3
    assert [outcome for _, outcome in seen_upstream[:2]] == [None, None]


# --- disconnects ---------------------------------------------------------------------------


async def test_disconnect_mid_stream_cancels_keeps_partial_text_and_the_charge(
    live: Live, user: User, db: asyncpg.Connection, fake_claude: FakeAnthropicServer
) -> None:
    async with live.client(user) as http:
        full = (await (await http.post(GENERATE, json={"prompt": "long one"})).aread()).decode()
    full_text = json.loads(full)["result"]
    fake_claude.clear()
    fake_claude.set_scenario([{"type": "stream_paced", "deltas": 20, "interval": 0.2}])
    received: list[str] = []
    async with live.client(user) as http, streamed(http, "long one") as response:
        async for name, data in read_events(response):
            if name == "start":
                generation_id = data["id"]
            if name == "delta":
                received.append(data["text"])
            if len(received) == 2:
                break  # leaving the block closes the connection mid-stream
    row = await settled_row(db, generation_id)
    upstream = await upstream_outcome(fake_claude)
    assert upstream["stream_outcome"] == "client_closed" and upstream["deltas_sent"] < 20
    assert row["status"] == "cancelled" and row["error"] == streaming.CLIENT_CLOSED_MESSAGE
    assert row["result"].startswith("".join(received)) and full_text.startswith(row["result"])
    assert len(row["result"]) < len(full_text)
    assert row["input_tokens"] > 0 and row["output_tokens"] >= upstream["deltas_sent"]
    assert await counts(db, user.id) == (2, {"succeeded": 1, "cancelled": 1})
    assert await ledger_mismatches(db) == []


async def test_disconnect_before_the_first_delta_refunds(
    live: Live, user: User, db: asyncpg.Connection, fake_claude: FakeAnthropicServer
) -> None:
    fake_claude.set_scenario([{"type": "stream_stall", "after": 0, "seconds": 30}])
    async with live.client(user) as http, streamed(http, "never mind") as response:
        async for name, data in read_events(response):
            assert name == "start"
            generation_id = data["id"]
            await eventually(
                lambda: asyncio.to_thread(upstream_streaming, fake_claude), "streaming"
            )
            break
    row = await settled_row(db, generation_id)
    upstream = await upstream_outcome(fake_claude)
    assert upstream["stream_outcome"] == "client_closed" and upstream["deltas_sent"] == 0
    assert row["status"] == "cancelled" and row["result"] is None
    assert await counts(db, user.id) == (0, {"cancelled": 1})
    assert await ledger_mismatches(db) == []


async def test_disconnect_while_the_head_is_sent_cancels_the_stream(
    app: Quart, user: User, db: asyncpg.Connection, fake_claude: FakeAnthropicServer
) -> None:
    """Driven through the ASGI interface: the client leaves while `http.response.start` is being
    written, so the body (whose closing used to stop the stream) never starts."""
    fake_claude.set_scenario([{"type": "stream_paced", "deltas": 20, "interval": 0.2}])
    body = json.dumps({"prompt": "never seen", "stream": True}).encode()
    head_sent = asyncio.Event()
    incoming: list[ASGIReceiveEvent] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> ASGIReceiveEvent:
        if incoming:
            return incoming.pop(0)
        await head_sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start":
            await eventually(lambda: asyncio.to_thread(upstream_streaming, fake_claude), "read")
            head_sent.set()
            await asyncio.Event().wait()  # a slow client: the head is still being written

    await app(asgi_request(app, user, GENERATE, body), receive, send)
    generation_id = await db.fetchval("SELECT id FROM generations")
    row = await settled_row(db, generation_id)
    upstream = await upstream_outcome(fake_claude)
    assert upstream["stream_outcome"] == "client_closed" and upstream["deltas_sent"] < 20
    assert row["status"] == "cancelled" and row["error"] == streaming.CLIENT_CLOSED_MESSAGE
    charged = 1 if row["result"] else 0  # output produced before the disconnect is charged
    assert await counts(db, user.id) == (charged, {"cancelled": 1})
    assert await ledger_mismatches(db) == []


def asgi_request(app: Quart, user: User, path: str, body: bytes) -> HTTPScope:
    """The ASGI scope of a signed-in script POSTing JSON (as curl would, no Origin)."""
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cookie", f"aigen_auth={auth_cookie(app, user.id)}".encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": ConnectionState({}),
        "extensions": {},
    }


# --- upstream failures mid-stream ----------------------------------------------------------

OVERLOADED = "Claude is overloaded or unavailable right now."


@pytest.mark.parametrize(
    ("behavior", "deltas", "message"),
    [
        ({"type": "stream_error", "status": 529, "after": 2}, 2, OVERLOADED),
        ({"type": "stream_error", "status": 529, "after": 0}, 0, OVERLOADED),
        ({"type": "stream_disconnect", "after": 1}, 1, "Claude is unreachable right now."),
        ({"type": "fail", "status": 529, "times": 2}, 0, OVERLOADED),  # refused at the start
    ],
)
async def test_upstream_failure_ends_with_an_error_event(
    live: Live,
    user: User,
    db: asyncpg.Connection,
    fake_claude: FakeAnthropicServer,
    behavior: dict[str, Any],
    deltas: int,
    message: str,
) -> None:
    fake_claude.set_scenario([behavior])
    async with live.client(user) as http, streamed(http, "fragile") as response:
        assert response.status_code == 200
        events = [event async for event in read_events(response)]
    assert [name for name, _ in events] == ["start"] + ["delta"] * deltas + ["error"]
    assert events[-1][1] == {"error": message, "retryable": True}
    row = await db.fetchrow("SELECT * FROM generations WHERE id = $1", events[0][1]["id"])
    assert row["status"] == "failed" and row["error"] == message
    partial = "".join(data["text"] for name, data in events if name == "delta")
    assert row["result"] == (partial or None)
    charged = 1 if deltas else 0  # output was produced: the credit stays charged
    assert await counts(db, user.id) == (charged, {"failed": 1})
    assert await ledger_mismatches(db) == []


async def test_a_stall_longer_than_the_upstream_timeout_is_a_timeout_error(
    app_settings: dict[str, str],
    user: User,
    db: asyncpg.Connection,
    fake_claude: FakeAnthropicServer,
) -> None:
    fake_claude.set_scenario([{"type": "stream_stall", "after": 1, "seconds": 30}])
    app = create_app({**app_settings, "AIGEN_UPSTREAM_TIMEOUT": "1"})
    async with served(app) as base_url:
        async with Live(app, base_url).client(user) as http, streamed(http, "slow") as response:
            events = [event async for event in read_events(response)]
    assert [name for name, _ in events] == ["start", "delta", "error"]
    assert events[-1][1] == {"error": "Claude did not answer in time.", "retryable": True}
    assert await counts(db, user.id) == (1, {"failed": 1})
    assert (await upstream_outcome(fake_claude))["stream_outcome"] == "client_closed"


# --- keep-alive ----------------------------------------------------------------------------


async def test_keep_alive_comments_while_the_upstream_is_silent(
    user_client: Any, db: asyncpg.Connection, fake_claude: FakeAnthropicServer, monkeypatch: Any
) -> None:
    monkeypatch.setattr(streaming, "KEEPALIVE_SECONDS", 0.2)
    stall = {"type": "stream_stall", "after": 1, "seconds": 1, "resume": True}
    fake_claude.set_scenario([stall])
    response = await user_client.post(GENERATE, json={"prompt": "pause", "stream": True})
    events = parse_sse(await response.get_data(as_text=True))
    names = [name for name, _ in events]
    assert names[:2] == ["start", "delta"] and names[-1] == "done"
    silence = names[2 : names.index("delta", 2)]
    assert silence and set(silence) == {"comment"}
    assert {data for name, data in events if name == "comment"} == {"keep-alive"}
    assert await db.fetchval("SELECT status FROM generations") == "succeeded"


# --- many streams --------------------------------------------------------------------------


async def test_parallel_streams_of_one_user_never_exceed_the_credits(
    live: Live, db: asyncpg.Connection, fake_claude: FakeAnthropicServer
) -> None:
    limit, attempts = 3, 10
    burst = await make_user(db, "burst@example.com", credits_limit=limit)
    paced = {"type": "stream_paced", "deltas": 3, "interval": 0.3, "times": limit}
    fake_claude.set_scenario([paced])

    async def attempt(number: int) -> tuple[int, str, list[str]]:
        async with live.client(burst) as http, streamed(http, f"burst {number}") as response:
            if response.headers["content-type"].startswith(SSE):
                return response.status_code, SSE, [name async for name, _ in read_events(response)]
            return response.status_code, json.loads(await response.aread())["error"], []

    results = await asyncio.gather(*(attempt(number) for number in range(attempts)))
    streams = [result for result in results if result[1] == SSE]
    refused = [result for result in results if result[1] != SSE]
    assert len(streams) == limit and all(names[-1] == "done" for _, _, names in streams)
    assert {(status, error) for status, error, _ in refused} == {(402, CREDIT_LIMIT_MESSAGE)}
    assert len(fake_claude.requests()) == limit
    assert await counts(db, burst.id) == (limit, {"succeeded": limit})
    assert await ledger_mismatches(db) == []


async def test_no_pooled_connection_is_held_while_streaming(
    app_settings: dict[str, str], db: asyncpg.Connection, fake_claude: FakeAnthropicServer
) -> None:
    many = await make_user(db, "many@example.com", credits_limit=4)
    fake_claude.set_scenario([{"type": "stream_paced", "deltas": 3, "interval": 0.5, "times": 4}])
    app = create_app({**app_settings, "DB_POOL_MAX": "2"})
    async with served(app) as base_url:
        pool = app.extensions[EXTENSION_KEY].pool
        first_delta = [asyncio.Event() for _ in range(4)]
        checked = asyncio.Event()

        async def one(number: int) -> list[str]:
            async with Live(app, base_url).client(many) as http:
                async with streamed(http, f"pooled {number}") as response:
                    names = []
                    async for name, _ in read_events(response):
                        names.append(name)
                        if name == "delta" and not first_delta[number].is_set():
                            first_delta[number].set()
                            await checked.wait()
                    return names

        calls = [asyncio.create_task(one(number)) for number in range(4)]
        await asyncio.gather(*(event.wait() for event in first_delta))

        # Four streams are open on a pool of two, and none of them holds a connection.
        async def pool_idle() -> bool:
            return pool.get_size() == pool.get_idle_size()

        # A committed reservation releases its connection a moment after the commit.
        await eventually(pool_idle, "no pooled connection checked out")
        checked.set()
        results = await asyncio.gather(*calls)
    assert all(names[-1] == "done" for names in results)
    assert await counts(db, many.id) == (4, {"succeeded": 4})


# --- the page's stream ---------------------------------------------------------------------


async def test_the_generate_page_streams_when_asked(
    user_client: Any, db: asyncpg.Connection
) -> None:
    token = await page_csrf_token(user_client, "/generate")
    response = await user_client.post(
        "/generate", form={"prompt": "From the page", "csrf_token": token}, headers={"Accept": SSE}
    )
    assert response.status_code == 200 and response.mimetype == SSE
    events = parse_sse(await response.get_data(as_text=True))
    assert [events[0][0], events[-1][0]] == ["start", "done"]
    assert await db.fetchval("SELECT status FROM generations") == "succeeded"


async def test_the_page_stream_answers_a_refusal_with_its_partial(
    app: Quart, db: asyncpg.Connection
) -> None:
    spent = await make_user(db, "spent@example.com", credits_limit=0)
    async with signed_in(app, spent.id) as client:
        token = await page_csrf_token(client, "/generate")
        response = await client.post(
            "/generate", form={"prompt": "more", "csrf_token": token}, headers={"Accept": SSE}
        )
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["X-Aigen-Status"] == "402"
    html = await response.get_data(as_text=True)
    assert 'id="upgrade-banner"' in html and 'hx-swap-oob="true"' in html


async def test_history_shows_a_cancelled_answer_with_its_partial_text(
    user_client: Any, user: User, db: asyncpg.Connection
) -> None:
    rows = await db.fetch(
        """
        INSERT INTO generations (user_id, prompt, model, status, result, error)
        VALUES ($1, 'p', 'm', 'cancelled', '**half** an answer', 'Stopped: the client closed'),
               ($1, 'q', 'm', 'cancelled', NULL, 'Stopped: the client closed')
        RETURNING id
        """,
        user.id,
    )
    ids = [row["id"] for row in rows]
    with_text = await (await user_client.get(f"/generations/{ids[0]}")).get_data(as_text=True)
    assert "Stopped · partial, charged" in with_text  # the list says what the credit bought (QA)
    assert "<strong>half</strong> an answer" in with_text and "used its credit" in with_text
    without = await (await user_client.get(f"/generations/{ids[1]}")).get_data(as_text=True)
    assert "Cancelled" in without and "credit was refunded" in without
    history = await (await user_client.get("/history")).get_data(as_text=True)
    assert history.count(">Cancelled<") == 1 and history.count("Stopped · partial, charged") == 1
