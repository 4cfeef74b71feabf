"""`Authorization: Bearer <key>` on /api/generate and /api/usage: the key's owner, charged and
limited as in the browser; bad keys are 401 and change nothing; no CSRF proof for a key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from aigen.app import create_app
from aigen.core.generation import CREDIT_LIMIT_MESSAGE
from aigen.dev.anthropic import FakeAnthropicServer
from aigen.store.repository import User
from tests.helpers import (
    GENERATE,
    KEYS,
    bearer,
    counts,
    make_user,
    new_api_key,
    page_csrf_token,
    parse_sse,
    signed_in,
)

USAGE = "/api/usage"
# The ways to call /api/generate: the JSON answer, and the stream ("stream": true).
MODES = ["json", "stream"]
UNAUTHORIZED = {"error": "Unauthorized"}


async def generate(
    client: Client, prompt: str, mode: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST /api/generate in `mode`: the status and the final JSON (the answer or the error)."""
    if mode == "json":
        response = await client.post(GENERATE, json={"prompt": prompt}, headers=headers or {})
        body = await response.get_json()
        assert isinstance(body, dict)
        return response.status_code, body
    if mode == "stream":
        payload = {"prompt": prompt, "stream": True}
        response = await client.post(GENERATE, json=payload, headers=headers or {})
        if response.mimetype != "text/event-stream":  # refused before the stream: plain JSON
            refusal = await response.get_json()
            assert isinstance(refusal, dict)
            return response.status_code, refusal
        return response.status_code, streamed_answer(await response.get_data(as_text=True))
    raise AssertionError(f"unknown mode {mode}")


def streamed_answer(body: str) -> dict[str, Any]:
    """The JSON answer's fields, put together from a stream's events (or its error event's)."""
    events = parse_sse(body)
    names = [name for name, _ in events if name != "comment"]
    assert names[0] == "start" and names[-1] in ("done", "error"), names
    if names[-1] == "error":  # the stream began (200) and Claude failed: {"error", "retryable"}
        error: dict[str, Any] = events[-1][1]
        return error
    done = events[-1][1]
    text = "".join(data["text"] for name, data in events if name == "delta")
    return {"id": done["id"], "result": text, "usage": done["usage"], "credits": done["credits"]}


async def generations(db) -> list[tuple[int, int | None]]:
    """(user_id, api_key_id) of every generation, oldest first."""
    rows = await db.fetch("SELECT user_id, api_key_id FROM generations ORDER BY id")
    return [(row["user_id"], row["api_key_id"]) for row in rows]


# --- a key speaks for its owner ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_key_generates_as_its_owner_and_is_recorded(
    app: Quart, user: User, db, mode: str
) -> None:
    key = await new_api_key(app, user.id)
    status, body = await generate(app.test_client(), "Write a haiku", mode, bearer(key["key"]))
    assert status == 200
    assert set(body) == {"id", "result", "usage", "credits"}
    assert body["credits"] == {"plan": "FREE", "used": 1, "limit": 3}
    assert await counts(db, user.id) == (1, {"succeeded": 1})
    assert await generations(db) == [(user.id, key["id"])]


@pytest.mark.parametrize("mode", MODES)
async def test_key_and_browser_get_the_same_answers(app: Quart, user: User, db, mode: str) -> None:
    key = await new_api_key(app, user.id)
    async with signed_in(app, user.id) as browser:
        by_cookie = await generate(browser, "same prompt", mode)
    by_key = await generate(app.test_client(), "same prompt", mode, bearer(key["key"]))
    assert by_cookie[0] == by_key[0] == 200
    assert by_cookie[1]["result"] == by_key[1]["result"]
    assert by_key[1]["credits"]["used"] == by_cookie[1]["credits"]["used"] + 1
    assert await generations(db) == [(user.id, None), (user.id, key["id"])]


@pytest.mark.parametrize("mode", MODES)
async def test_a_key_meets_the_same_credit_limit(app: Quart, db, mode: str) -> None:
    owner = await make_user(db, "one@example.com", credits_limit=1)
    key = await new_api_key(app, owner.id)
    client = app.test_client()
    assert (await generate(client, "first", mode, bearer(key["key"])))[0] == 200
    status, body = await generate(client, "second", mode, bearer(key["key"]))
    assert (status, body) == (402, {"error": CREDIT_LIMIT_MESSAGE, "upgrade": True})
    assert await counts(db, owner.id) == (1, {"succeeded": 1})


@pytest.mark.parametrize("mode", MODES)
async def test_a_key_of_an_unverified_user_gets_the_same_403(app: Quart, db, mode: str) -> None:
    owner = await make_user(db, "new@example.com", verified=False)
    key = await new_api_key(app, owner.id)
    status, body = await generate(app.test_client(), "hi", mode, bearer(key["key"]))
    assert status == 403 and body["verify_email"] is True
    assert await counts(db, owner.id) == (0, {})


@pytest.mark.parametrize("mode", MODES)
async def test_a_failed_call_through_a_key_is_refunded(
    app: Quart, user: User, db, fake_claude: FakeAnthropicServer, mode: str
) -> None:
    key = await new_api_key(app, user.id)
    fake_claude.set_scenario([{"type": "fail", "status": 400}])
    status, body = await generate(app.test_client(), "fail", mode, bearer(key["key"]))
    # A stream has begun (200) when Claude refuses: its error event says so instead.
    assert status == (502 if mode == "json" else 200) and body["retryable"] is False
    assert await counts(db, user.id) == (0, {"failed": 1})
    assert await generations(db) == [(user.id, key["id"])]


async def test_usage_through_a_key_is_the_owners(app: Quart, user: User, db) -> None:
    key = await new_api_key(app, user.id)
    async with signed_in(app, user.id) as browser:
        await browser.post(GENERATE, json={"prompt": "from the browser"})
        by_cookie = await (await browser.get(USAGE)).get_json()
    response = await app.test_client().get(USAGE, headers=bearer(key["key"]))
    assert response.status_code == 200
    assert await response.get_json() == by_cookie
    assert by_cookie["generations"]["total"] == 1 and by_cookie["keys"] == []


async def test_the_scheme_name_is_case_insensitive(app: Quart, user: User) -> None:
    key = await new_api_key(app, user.id)
    headers = {"Authorization": f"bearer {key['key']}"}
    assert (await app.test_client().get(USAGE, headers=headers)).status_code == 200


# --- bad keys: 401, WWW-Authenticate, nothing stored or charged ----------------------------------


def forged_keys(real: str, prefix: str) -> dict[str, str]:
    """Keys that must not work, by what is wrong with them."""
    return {
        "random, well-formed": "aig_" + "A" * 43,
        "the real prefix, another secret": prefix + "B" * (len(real) - len(prefix)),
        "one character changed": real[:-1] + ("A" if real[-1] != "A" else "B"),
        "one character more": real + "A",
        "one character less": real[:-1],
        "another product's prefix": "sk_" + real[3:],
        "only the prefix": prefix,
        "only the secret": real.removeprefix("aig_"),
        "empty": "",
        "two words": real + " extra",
        "not ascii": real[:-1] + "é",
    }


@pytest.mark.parametrize(
    "case",
    [
        "random, well-formed",
        "the real prefix, another secret",
        "one character changed",
        "one character more",
        "one character less",
        "another product's prefix",
        "only the prefix",
        "only the secret",
        "empty",
        "two words",
        "not ascii",
    ],
)
@pytest.mark.parametrize("mode", MODES)
async def test_forged_and_malformed_keys_are_401(
    app: Quart, user: User, db, fake_claude: FakeAnthropicServer, case: str, mode: str
) -> None:
    key = await new_api_key(app, user.id)
    forged = forged_keys(key["key"], key["prefix"])[case]
    client = app.test_client()
    status, body = await generate(client, "hi", mode, {"Authorization": f"Bearer {forged}"})
    assert (status, body) == (401, UNAUTHORIZED)
    usage = await client.get(USAGE, headers={"Authorization": f"Bearer {forged}"})
    assert usage.status_code == 401 and usage.headers["WWW-Authenticate"] == "Bearer"
    assert await counts(db, user.id) == (0, {})
    assert fake_claude.requests() == []


async def test_the_401_names_the_bearer_scheme(app: Quart, user: User) -> None:
    response = await app.test_client().post(
        GENERATE, json={"prompt": "hi"}, headers=bearer("aig_" + "x" * 43)
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert await response.get_json() == UNAUTHORIZED


@pytest.mark.parametrize("mode", MODES)
async def test_a_revoked_key_is_401_at_once(app: Quart, user: User, db, mode: str) -> None:
    key = await new_api_key(app, user.id)
    client = app.test_client()
    assert (await generate(client, "before", mode, bearer(key["key"])))[0] == 200
    async with signed_in(app, user.id) as browser:
        assert (await browser.delete(f"{KEYS}/{key['id']}")).status_code == 204
    assert await generate(client, "after", mode, bearer(key["key"])) == (401, UNAUTHORIZED)
    assert (await client.get(USAGE, headers=bearer(key["key"]))).status_code == 401
    assert await counts(db, user.id) == (1, {"succeeded": 1})


async def test_a_key_dies_with_its_account(app: Quart, user: User, db) -> None:
    key = await new_api_key(app, user.id)
    await db.execute("DELETE FROM users WHERE id = $1", user.id)
    response = await app.test_client().get(USAGE, headers=bearer(key["key"]))
    assert response.status_code == 401


@pytest.mark.parametrize("presented", ["aig_" + "C" * 43, "", "garbage"])
async def test_a_bad_key_never_falls_back_to_the_cookie(
    app: Quart, user: User, db, presented: str
) -> None:
    async with signed_in(app, user.id) as browser:
        response = await browser.post(
            GENERATE, json={"prompt": "hi"}, headers={"Authorization": f"Bearer {presented}"}
        )
        usage = await browser.get(USAGE, headers={"Authorization": f"Bearer {presented}"})
    assert response.status_code == usage.status_code == 401
    assert await counts(db, user.id) == (0, {})


async def test_other_authorization_schemes_are_not_keys(app: Quart, user: User, db) -> None:
    # A proxy's Basic credentials are not ours: the cookie still decides.
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert (await app.test_client().get(USAGE, headers=basic)).status_code == 401
    async with signed_in(app, user.id) as browser:
        assert (await browser.get(USAGE, headers=basic)).status_code == 200


# --- one user's key never touches another user ---------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_key_with_someone_elses_cookie_acts_for_the_key_owner(
    app: Quart, user: User, db, mode: str
) -> None:
    other = await make_user(db, "other@example.com")
    theirs = await new_api_key(app, other.id)
    async with signed_in(app, user.id) as browser:
        status, body = await generate(browser, "whose?", mode, bearer(theirs["key"]))
        mine = await (await browser.get(USAGE)).get_json()
    assert status == 200
    assert await counts(db, other.id) == (1, {"succeeded": 1})
    assert await counts(db, user.id) == (0, {})
    assert mine["generations"]["total"] == 0 and mine["keys"] == []
    assert await generations(db) == [(other.id, theirs["id"])]


async def test_two_users_keys_stay_apart(app: Quart, user: User, db) -> None:
    other = await make_user(db, "other@example.com")
    mine = await new_api_key(app, user.id, "mine")
    theirs = await new_api_key(app, other.id, "theirs")
    client = app.test_client()
    await client.post(GENERATE, json={"prompt": "a"}, headers=bearer(mine["key"]))
    await client.post(GENERATE, json={"prompt": "b"}, headers=bearer(theirs["key"]))
    await client.post(GENERATE, json={"prompt": "c"}, headers=bearer(theirs["key"]))
    my_usage = await (await client.get(USAGE, headers=bearer(mine["key"]))).get_json()
    their_usage = await (await client.get(USAGE, headers=bearer(theirs["key"]))).get_json()
    assert [(k["id"], k["generations"]) for k in my_usage["keys"]] == [(mine["id"], 1)]
    assert [(k["id"], k["generations"]) for k in their_usage["keys"]] == [(theirs["id"], 2)]
    assert await counts(db, user.id) == (1, {"succeeded": 1})
    assert await counts(db, other.id) == (2, {"succeeded": 2})


# --- CSRF: the cookie keeps its rules; a key needs no proof of origin ----------------------------

CROSS_SITE = [
    {"Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
]


@pytest.mark.parametrize("headers", CROSS_SITE)
@pytest.mark.parametrize("mode", MODES)
async def test_a_key_is_accepted_whatever_its_origin(
    app: Quart, user: User, db, headers: dict[str, str], mode: str
) -> None:
    key = await new_api_key(app, user.id)
    status, _ = await generate(app.test_client(), "hi", mode, {**headers, **bearer(key["key"])})
    assert status == 200
    assert await counts(db, user.id) == (1, {"succeeded": 1})


@pytest.mark.parametrize("headers", CROSS_SITE)
@pytest.mark.parametrize("mode", MODES)
async def test_a_key_alongside_the_cookie_needs_no_csrf_proof(
    app: Quart, user: User, db, headers: dict[str, str], mode: str
) -> None:
    key = await new_api_key(app, user.id)
    async with signed_in(app, user.id) as browser:
        refused, _ = await generate(browser, "cookie only", mode, headers)
        accepted, _ = await generate(
            browser, "with the key", mode, {**headers, **bearer(key["key"])}
        )
    assert (refused, accepted) == (403, 200)
    assert await generations(db) == [(user.id, key["id"])]


async def test_a_key_does_not_excuse_a_page_form_from_csrf(app: Quart, user: User, db) -> None:
    key = await new_api_key(app, user.id)
    async with signed_in(app, user.id) as browser:
        await page_csrf_token(browser)
        response = await browser.post(
            "/generate", form={"prompt": "forged"}, headers=bearer(key["key"])
        )
    assert response.status_code == 403
    assert await counts(db, user.id) == (0, {})


async def test_a_key_does_not_open_the_pages(app: Quart, user: User) -> None:
    key = await new_api_key(app, user.id)
    response = await app.test_client().get("/dashboard", headers=bearer(key["key"]))
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


# --- the same rate limit per user ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_key_and_browser_share_the_users_rate_limit(
    app_settings: dict[str, str], db, user: User, mode: str
) -> None:
    app = create_app({**app_settings, "RATE_LIMIT": "2/minute"})
    async with app.test_app():
        key = await new_api_key(app, user.id)
        async with signed_in(app, user.id) as browser:
            assert (await generate(browser, "one", mode))[0] == 200
        client = app.test_client()
        assert (await generate(client, "two", mode, bearer(key["key"])))[0] == 200
        status, body = await generate(client, "three", mode, bearer(key["key"]))
        other = await make_user(db, "other@example.com")
        other_key = await new_api_key(app, other.id)
        their_status, _ = await generate(client, "theirs", mode, bearer(other_key["key"]))
    assert status == 429 and body["retry_after"] >= 1
    assert their_status == 200  # per user, not per key or per address
    assert await counts(db, user.id) == (2, {"succeeded": 2})


# --- last_used_at: at most one write a minute ----------------------------------------------------


async def key_row(db, key_id: int) -> tuple[datetime | None, int]:
    """last_used_at and the row version (xmin changes with every write of the row)."""
    row = await db.fetchrow(
        "SELECT last_used_at, xmin::text::bigint AS version FROM api_keys WHERE id = $1", key_id
    )
    return row["last_used_at"], row["version"]


async def test_last_used_at_is_written_at_most_once_a_minute(app: Quart, user: User, db) -> None:
    key = await new_api_key(app, user.id)
    client = app.test_client()
    never, _ = await key_row(db, key["id"])
    assert never is None
    assert (await client.get(USAGE, headers=bearer(key["key"]))).status_code == 200
    first, version = await key_row(db, key["id"])
    assert first is not None
    for _ in range(3):
        await client.get(USAGE, headers=bearer(key["key"]))
        await client.post(GENERATE, json={"prompt": "hi"}, headers=bearer(key["key"]))
    assert await key_row(db, key["id"]) == (first, version)  # no write at all
    # A minute and a bit later (moved back rather than waited for):
    await db.execute(
        "UPDATE api_keys SET last_used_at = last_used_at - interval '61 seconds' WHERE id = $1",
        key["id"],
    )
    aged, aged_version = await key_row(db, key["id"])
    await client.get(USAGE, headers=bearer(key["key"]))
    noted, noted_version = await key_row(db, key["id"])
    assert noted is not None and aged is not None
    assert noted > aged and noted_version != aged_version
    async with signed_in(app, user.id) as browser:
        listed = (await (await browser.get(KEYS)).get_json())["keys"][0]
    assert listed["last_used_at"] is not None
