"""PostgreSQL down, then back: readable 503s at once, no tracebacks, and nothing left unsettled.

Against a cluster the test starts and stops itself (tests/postgres_cluster.py), never the shared
server. While it is down, two generations are in flight: one whose answer arrives during the
outage (stored once the database is back) and one whose call fails during it (refunded once the
database is back).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from aigen.app import create_app
from aigen.core import generation
from aigen.core.generation import STORE_UNAVAILABLE_MESSAGE
from aigen.dev.anthropic import FakeAnthropicServer
from aigen.store.migrations import migrate
from tests.helpers import (
    GENERATE,
    counts,
    doctor,
    ledger_mismatches,
    make_user,
    page_csrf_token,
    parse_sse,
    signed_in,
)
from tests.postgres_cluster import LocalCluster

UPSTREAM_TIMEOUT = 1  # the call that fails during the outage times out after this
WAIT_SECONDS = 20.0


@pytest.fixture
async def cluster() -> AsyncIterator[LocalCluster]:
    """A migrated PostgreSQL of this test's own."""
    local = LocalCluster()
    try:
        await asyncio.to_thread(local.create)
        await migrate(local.url)
        yield local
    finally:
        await asyncio.to_thread(local.destroy)


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until the condition holds; the assertion after it says what was wanted."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while not condition() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)


def logged(caplog: pytest.LogCaptureFixture, text: str) -> Callable[[], bool]:
    return lambda: any(text in record.getMessage() for record in caplog.records)


async def test_outage_answers_503_and_recovers_without_a_restart(
    app_settings: dict[str, str],
    cluster: LocalCluster,
    fake_claude: FakeAnthropicServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = await asyncpg.connect(cluster.url)
    user = await make_user(watch, credits_limit=10)
    settings = {
        **app_settings,
        "DATABASE_URL": cluster.url,
        "AIGEN_UPSTREAM_TIMEOUT": str(UPSTREAM_TIMEOUT),
    }
    app = create_app(settings)
    async with app.test_app(), signed_in(app, user.id) as client:
        assert (await client.post(GENERATE, json={"prompt": "before"})).status_code == 200
        htmx = {"HX-Request": "true", "X-CSRF-Token": await page_csrf_token(client, "/generate")}
        # The first call answers during the outage, the second times out during it.
        fake_claude.set_scenario(
            [{"type": "delay", "seconds": 0.3}, {"type": "delay", "seconds": 30, "times": 2}]
        )
        answered = asyncio.create_task(client.post(GENERATE, json={"prompt": "answered"}))
        await _until_pending(watch, 1)
        timed_out = asyncio.create_task(client.post(GENERATE, json={"prompt": "timed out"}))
        await _until_pending(watch, 2)
        await watch.close()
        await cluster.stop()
        caplog.clear()
        caplog.set_level(logging.INFO)

        refused = await client.post(GENERATE, json={"prompt": "while down"})
        page = await client.get("/dashboard")
        partial = await client.post("/generate", form={"prompt": "form"}, headers=htmx)
        ready = await client.get("/readyz")
        await eventually(logged(caplog, "storing generation"))
        await eventually(logged(caplog, "refunding generation"))
        outage_records = list(caplog.records)
        await cluster.start()

        late_answer = await answered
        timeout_answer = await timed_out
        fake_claude.set_scenario([])
        after = await client.post(GENERATE, json={"prompt": "after"})
        conn = await asyncpg.connect(cluster.url)
        try:
            settled = await _settled_counts(conn, user.id)
        finally:
            await conn.close()

    assert refused.status_code == 503
    assert await refused.get_json() == {
        "error": "aigen is briefly unavailable. Please try again in a few seconds.",
        "retryable": True,
    }
    assert refused.headers["Retry-After"] == "2"
    assert page.status_code == 503
    assert "briefly unavailable" in await page.get_data(as_text=True)
    assert ready.status_code == 503
    partial_html = await partial.get_data(as_text=True)
    # The session check meets the outage first: the readable message, as a partial htmx swaps.
    assert "aigen is briefly unavailable" in partial_html and 'data-status="503"' in partial_html
    # One line per refused request, and no traceback at all while the database was down.
    refusals = [r.getMessage() for r in outage_records if ": 503, " in r.getMessage()]
    assert [line.split(" (")[0] for line in refusals] == [
        f"POST {GENERATE}: 503, database unavailable",
        "GET /dashboard: 503, database unavailable",
        "POST /generate: 503, database unavailable",
    ]
    assert not [record for record in outage_records if record.exc_info]
    # The answer that came during the outage was stored once the database was back; the
    # call that failed during it was refunded; the pool serves again without a restart.
    assert late_answer.status_code == 200
    assert timeout_answer.status_code == 504
    assert after.status_code == 200
    assert settled == (3, {"succeeded": 3, "failed": 1})
    assert await doctor(cluster.url) == (
        0,
        "ledger OK: 1 user(s), 3 generation(s) holding a charge\n",
    )


async def test_a_stream_finished_during_a_brief_outage_is_stored_once_back(
    app_settings: dict[str, str],
    cluster: LocalCluster,
    fake_claude: FakeAnthropicServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # However slowly the cluster restarts here, the stream keeps retrying until it is back.
    monkeypatch.setattr(generation, "STORE_RETRY_WINDOW", WAIT_SECONDS)
    watch = await asyncpg.connect(cluster.url)
    user = await make_user(watch, credits_limit=10)
    app = create_app({**app_settings, "DATABASE_URL": cluster.url})
    fake_claude.set_scenario([{"type": "stream_paced", "deltas": 10, "interval": 0.3}])
    async with app.test_app(), signed_in(app, user.id) as client:
        body = {"prompt": "delivered", "stream": True}
        answer = asyncio.create_task(client.post(GENERATE, json=body))
        await _until_pending(watch, 1)
        await watch.close()
        await cluster.stop()
        caplog.clear()
        caplog.set_level(logging.INFO)
        await eventually(logged(caplog, "storing generation"))  # the answer met the outage
        outage_records = list(caplog.records)
        await cluster.start()
        events = parse_sse(await (await answer).get_data(as_text=True))
        conn = await asyncpg.connect(cluster.url)
        try:
            settled = await _settled_counts(conn, user.id)
            row = await conn.fetchrow("SELECT status, result FROM generations")
            mismatches = await ledger_mismatches(conn)
        finally:
            await conn.close()
    assert [events[0][0], events[-1][0]] == ["start", "done"]
    assert row["result"] == "".join(data["text"] for name, data in events if name == "delta")
    assert settled == (1, {"succeeded": 1})
    assert mismatches == []
    assert not [record for record in outage_records if record.exc_info]


async def test_streams_ended_during_a_longer_outage_are_settled_once_back(
    app_settings: dict[str, str],
    cluster: LocalCluster,
    fake_claude: FakeAnthropicServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One stream's answer arrives and one's upstream drops mid-stream, while the database stays
    down longer than they wait for it: each ends at once, its row written once it is back."""
    monkeypatch.setattr(generation, "STORE_RETRY_WINDOW", 0.2)
    watch = await asyncpg.connect(cluster.url)
    user = await make_user(watch, credits_limit=10)
    app = create_app({**app_settings, "DATABASE_URL": cluster.url})
    fake_claude.set_scenario(
        [
            {"type": "stream_paced", "deltas": 10, "interval": 0.3},
            {"type": "stream_stall", "after": 2, "seconds": 2},  # then the connection drops
        ]
    )
    async with app.test_app(), signed_in(app, user.id) as client:
        answered = asyncio.create_task(
            client.post(GENERATE, json={"prompt": "answered", "stream": True})
        )
        await _until_pending(watch, 1)
        dropped = asyncio.create_task(
            client.post(GENERATE, json={"prompt": "dropped", "stream": True})
        )
        await _until_pending(watch, 2)
        await watch.close()
        await cluster.stop()
        caplog.clear()
        caplog.set_level(logging.INFO)
        answered_events = parse_sse(await (await answered).get_data(as_text=True))
        dropped_events = parse_sse(await (await dropped).get_data(as_text=True))
        outage_records = list(caplog.records)
        await cluster.start()
        conn = await asyncpg.connect(cluster.url)
        try:
            settled = await _settled_counts(conn, user.id)
            rows = await conn.fetch("SELECT prompt, status, result FROM generations ORDER BY id")
            mismatches = await ledger_mismatches(conn)
        finally:
            await conn.close()
    assert answered_events[-1] == ("error", {"error": STORE_UNAVAILABLE_MESSAGE, "retryable": True})
    assert [name for name, _ in dropped_events] == ["start", "delta", "delta", "error"]
    partial = "".join(data["text"] for name, data in dropped_events if name == "delta")
    # The stored answer is refunded as the JSON call's is; the partial one keeps its charge.
    assert [tuple(row) for row in rows] == [
        ("answered", "failed", None),
        ("dropped", "failed", partial),
    ]
    assert settled == (1, {"failed": 2})
    assert mismatches == []
    assert not [record for record in outage_records if record.exc_info]


async def _until_pending(conn: asyncpg.Connection, expected: int) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    query = "SELECT count(*) FROM generations WHERE status = 'pending'"
    while await conn.fetchval(query) < expected:
        assert asyncio.get_running_loop().time() < deadline, f"{expected} never pending"
        await asyncio.sleep(0.01)


async def _settled_counts(conn: asyncpg.Connection, user_id: int) -> tuple[int, dict[str, int]]:
    """credits_used and statuses once nothing is pending (the refund comes a moment later)."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while True:
        used, statuses = await counts(conn, user_id)
        if "pending" not in statuses or asyncio.get_running_loop().time() > deadline:
            return used, statuses
        await asyncio.sleep(0.05)
