"""POST /api/generate: every status of the contract, on real PostgreSQL and the local Claude."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from quart import Quart

from aigen.core.generation import CREDIT_LIMIT_MESSAGE
from aigen.dev.anthropic import FakeAnthropicServer
from aigen.store.repository import User
from tests.helpers import GENERATE, auth_cookie, counts, make_user, served, signed_in


async def test_signed_out_gets_401_json(client) -> None:
    response = await client.post(GENERATE, json={"prompt": "hello"})
    assert response.status_code == 401
    assert await response.get_json() == {"error": "Unauthorized"}


async def test_success_returns_result_usage_and_credits(user_client, user: User, db) -> None:
    response = await user_client.post(GENERATE, json={"prompt": "Write a haiku about Postgres"})
    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"id", "result", "usage", "credits"}
    assert "haiku about Postgres" in body["result"]
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0
    assert body["credits"] == {"plan": "FREE", "used": 1, "limit": 3}
    row = await db.fetchrow("SELECT * FROM generations WHERE id = $1", body["id"])
    assert row["status"] == "succeeded" and row["user_id"] == user.id
    assert row["result"] == body["result"]
    assert row["input_tokens"] == body["usage"]["input_tokens"]
    assert row["completed_at"] is not None and row["error"] is None


async def test_answers_are_deterministic(user_client) -> None:
    first = await (await user_client.post(GENERATE, json={"prompt": "same"})).get_json()
    second = await (await user_client.post(GENERATE, json={"prompt": "same"})).get_json()
    assert first["result"] == second["result"] and first["id"] != second["id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json at all", "Request body must be JSON."),
        ("[1, 2]", "Request body must be a JSON object."),
        ('"a string"', "Request body must be a JSON object."),
        ("{}", "Field 'prompt' is required."),
        ('{"prompt": 42}', "Field 'prompt' must be a string."),
        ('{"prompt": null}', "Field 'prompt' must be a string."),
        ('{"prompt": ["x"]}', "Field 'prompt' must be a string."),
        ('{"prompt": "   \\n\\t "}', "Field 'prompt' must not be blank."),
        (json.dumps({"prompt": "x" * 101}), "Field 'prompt' must be at most 100 characters."),
        ('{"prompt": "hi \\ud800"}', "Field 'prompt' must be valid Unicode text."),
        ("[" * 20000 + "]" * 20000, "Request body must be JSON."),
    ],
)
async def test_bad_input_is_400_and_charges_nothing(
    app_settings, db, user: User, body: str, message: str
) -> None:
    from aigen.app import create_app

    app = create_app({**app_settings, "MAX_PROMPT_CHARS": "100"})
    async with app.test_app():
        async with signed_in(app, user.id) as client:
            response = await client.post(
                GENERATE, data=body, headers={"Content-Type": "application/json"}
            )
    assert response.status_code == 400
    assert await response.get_json() == {"error": message}
    assert await counts(db, user.id) == (0, {})


async def test_prompt_of_exactly_the_limit_is_accepted(app_settings, db, user: User) -> None:
    from aigen.app import create_app

    app = create_app({**app_settings, "MAX_PROMPT_CHARS": "100"})
    async with app.test_app():
        async with signed_in(app, user.id) as client:
            response = await client.post(GENERATE, json={"prompt": "y" * 100})
    assert response.status_code == 200


async def test_credit_limit_gives_402_with_upgrade(user_client, user: User, db) -> None:
    for _ in range(3):
        assert (await user_client.post(GENERATE, json={"prompt": "hi"})).status_code == 200
    response = await user_client.post(GENERATE, json={"prompt": "one more"})
    assert response.status_code == 402
    assert await response.get_json() == {"error": CREDIT_LIMIT_MESSAGE, "upgrade": True}
    assert await counts(db, user.id) == (3, {"succeeded": 3})


async def test_pro_is_unlimited(app: Quart, db) -> None:
    pro = await make_user(db, "pro@example.com", credits_limit=0, plan="PRO")
    async with signed_in(app, pro.id) as client:
        for _ in range(4):
            response = await client.post(GENERATE, json={"prompt": "go"})
            assert response.status_code == 200
    body = await response.get_json()
    assert body["credits"] == {"plan": "PRO", "used": 4, "limit": 0}


async def test_deleted_user_with_old_cookie_is_401(app: Quart, db, user: User) -> None:
    async with signed_in(app, user.id) as client:
        await db.execute("DELETE FROM users WHERE id = $1", user.id)
        response = await client.post(GENERATE, json={"prompt": "hi"})
    assert response.status_code == 401


UPSTREAM_FAILURES = [
    # (behaviors queued on the local Claude, our timeout, our status, retryable); the client
    # retries once, so failures are queued twice.
    ([{"type": "fail", "status": 529, "times": 2}], 5, 503, True),
    ([{"type": "fail", "status": 500, "times": 2}], 5, 503, True),
    ([{"type": "fail", "status": 429, "times": 2}], 5, 503, True),
    ([{"type": "fail", "status": 400}], 5, 502, False),
    ([{"type": "fail", "status": 401}], 5, 502, False),
    ([{"type": "malformed"}], 5, 502, True),
    ([{"type": "malformed", "content_type": "application/json"}], 5, 502, True),
    ([{"type": "delay", "seconds": 3, "times": 2}], 1, 504, True),
]


@pytest.mark.parametrize(("behaviors", "timeout", "status", "retryable"), UPSTREAM_FAILURES)
async def test_upstream_failure_marks_failed_and_refunds(
    app_settings,
    db,
    user: User,
    fake_claude: FakeAnthropicServer,
    behaviors,
    timeout: int,
    status: int,
    retryable: bool,
) -> None:
    from aigen.app import create_app

    app = create_app({**app_settings, "AIGEN_UPSTREAM_TIMEOUT": str(timeout)})
    fake_claude.set_scenario(behaviors)
    async with app.test_app():
        async with signed_in(app, user.id) as client:
            response = await client.post(GENERATE, json={"prompt": "fail me"})
    assert response.status_code == status
    body = await response.get_json()
    assert set(body) == {"error", "retryable"} and body["retryable"] is retryable
    used, statuses = await counts(db, user.id)
    assert (used, statuses) == (0, {"failed": 1})
    error = await db.fetchval("SELECT error FROM generations WHERE user_id = $1", user.id)
    assert error


async def test_unreachable_upstream_is_503_and_refunded(app_settings, db, user: User) -> None:
    from aigen.app import create_app

    app = create_app({**app_settings, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/anthropic"})
    async with app.test_app():
        async with signed_in(app, user.id) as client:
            response = await client.post(GENERATE, json={"prompt": "anyone there?"})
    assert response.status_code == 503
    assert (await response.get_json())["retryable"] is True
    assert await counts(db, user.id) == (0, {"failed": 1})


async def test_one_overload_is_retried_once_transparently(
    user_client, user: User, db, fake_claude: FakeAnthropicServer
) -> None:
    fake_claude.set_scenario([{"type": "fail", "status": 529, "times": 1}])
    response = await user_client.post(GENERATE, json={"prompt": "retry me"})
    assert response.status_code == 200
    assert await counts(db, user.id) == (1, {"succeeded": 1})


async def test_parallel_burst_never_spends_more_than_the_limit(
    app_settings, db, fake_claude: FakeAnthropicServer
) -> None:
    """Invariant: limit L, N >> L parallel requests: exactly L answers 200, the rest 402."""
    from aigen.app import create_app

    limit, attempts = 5, 60
    burst_user = await make_user(db, "burst@example.com", credits_limit=limit)
    fake_claude.set_scenario([{"type": "delay", "seconds": 0.2, "times": limit}])
    app = create_app(app_settings)
    async with app.test_app():
        async with signed_in(app, burst_user.id) as client:
            responses = await asyncio.gather(
                *(client.post(GENERATE, json={"prompt": f"p{i}"}) for i in range(attempts))
            )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * limit + [402] * (attempts - limit)
    assert await counts(db, burst_user.id) == (limit, {"succeeded": limit})


async def test_real_http_disconnect_mid_call_still_finalizes(
    app_settings, db, user: User, fake_claude: FakeAnthropicServer
) -> None:
    """Over real HTTP through hypercorn: the client times out and closes; the row is kept."""
    from aigen.app import create_app

    fake_claude.set_scenario([{"type": "delay", "seconds": 1}])
    app = create_app(app_settings)
    async with served(app) as base_url:
        cookies = {"aigen_auth": auth_cookie(app, user.id)}
        async with httpx.AsyncClient(base_url=base_url, cookies=cookies) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post(
                    GENERATE,
                    json={"prompt": "hang up"},
                    headers={"Origin": base_url},
                    timeout=0.3,
                )
        for _ in range(60):
            if (await counts(db, user.id))[1] == {"succeeded": 1}:
                break
            await asyncio.sleep(0.05)
    assert await counts(db, user.id) == (1, {"succeeded": 1})


async def test_no_connection_is_held_while_claude_works(
    app_settings, db, fake_claude: FakeAnthropicServer
) -> None:
    """With 8 calls in flight on a pool of 2, no pooled connection is checked out."""
    from aigen.app import create_app
    from aigen.web.runtime import EXTENSION_KEY

    many = await make_user(db, "many@example.com", credits_limit=8)
    fake_claude.set_scenario([{"type": "delay", "seconds": 1.5, "times": 8}])
    app = create_app({**app_settings, "DB_POOL_MAX": "2"})
    async with app.test_app():
        pool = app.extensions[EXTENSION_KEY].pool
        async with signed_in(app, many.id) as client:
            calls = [
                asyncio.create_task(client.post(GENERATE, json={"prompt": f"slow {i}"}))
                for i in range(8)
            ]
            while (await counts(db, many.id))[1].get("pending", 0) < 8:
                await asyncio.sleep(0.05)
            # A committed reservation releases its connection a moment after the commit.
            for _ in range(50):
                if pool.get_size() == pool.get_idle_size():
                    break
                await asyncio.sleep(0.01)
            assert pool.get_size() == pool.get_idle_size()
            assert not any(call.done() for call in calls)  # Claude is still working on all 8
            locks = await db.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE c.relname = 'users' AND l.pid <> pg_backend_pid()"
            )
            assert locks == 0
            responses = await asyncio.gather(*calls)
    assert [response.status_code for response in responses] == [200] * 8


async def test_long_multibyte_prompt_within_the_limit_is_accepted(user_client) -> None:
    """15,000 emoji sent JSON-escaped are 180 kB: the body limit must not refuse them."""
    body = json.dumps({"prompt": "\U0001f600" * 15000})  # ensure_ascii: 12 bytes each
    response = await user_client.post(
        GENERATE, data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200


async def test_nul_in_claudes_answer_is_stored_replaced(
    user_client, user: User, db, fake_claude: FakeAnthropicServer
) -> None:
    fake_claude.set_scenario([{"type": "reply", "text": "a\u0000b"}])
    response = await user_client.post(GENERATE, json={"prompt": "nul please"})
    assert response.status_code == 200
    assert (await response.get_json())["result"] == "a\ufffdb"
    assert await counts(db, user.id) == (1, {"succeeded": 1})


async def test_answer_that_cannot_be_stored_is_refunded(
    user_client, user: User, db, fake_claude: FakeAnthropicServer
) -> None:
    """A database error while finalizing fails the row and refunds, rather than charging."""
    await db.execute(
        "ALTER TABLE generations ADD CONSTRAINT no_poison CHECK (result NOT LIKE '%POISON%')"
    )
    try:
        fake_claude.set_scenario([{"type": "reply", "text": "POISON"}])
        response = await user_client.post(GENERATE, json={"prompt": "store me"})
    finally:
        await db.execute("ALTER TABLE generations DROP CONSTRAINT no_poison")
    assert response.status_code == 500
    assert await counts(db, user.id) == (0, {"failed": 1})


async def test_shutdown_waits_for_calls_in_flight(
    app_settings, db, fake_claude: FakeAnthropicServer
) -> None:
    """Stopping the app lets a running generation finish and be stored."""
    from aigen.app import create_app
    from aigen.web.runtime import EXTENSION_KEY

    ada = await make_user(db, "late@example.com")
    fake_claude.set_scenario([{"type": "delay", "seconds": 1}])
    app = create_app(app_settings)
    async with app.test_app():
        service = app.extensions[EXTENSION_KEY].generations
        call = asyncio.create_task(service.generate(ada.id, "finish me"))
        while (await counts(db, ada.id))[1] != {"pending": 1}:
            await asyncio.sleep(0.02)
    assert call.done() and call.result().generation.status == "succeeded"
    assert await counts(db, ada.id) == (1, {"succeeded": 1})
