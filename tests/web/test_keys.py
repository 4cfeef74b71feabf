"""/api/keys and the /keys page: create (shown once), list (never the key), revoke, the limit."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from datetime import datetime

import pytest
from quart import Quart

from aigen.core.api_keys import MAX_ACTIVE_KEYS
from aigen.store.repository import User
from tests.helpers import KEYS, bearer, make_user, new_api_key, page_csrf_token, signed_in

HTMX = {"HX-Request": "true"}
KEY_SHAPE = re.compile(r"aig_[A-Za-z0-9_-]{32,}")


def parse_instant(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def active_keys(db, user_id: int) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL", user_id
    )


# --- POST /api/keys ------------------------------------------------------------------------------


async def test_create_answers_201_with_the_key_once(user_client, user: User, db) -> None:
    response = await user_client.post(KEYS, json={"name": "  ci  "})
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.get_json()
    assert set(body) == {"id", "name", "key", "prefix", "created_at"}
    assert body["name"] == "ci"  # trimmed
    assert KEY_SHAPE.fullmatch(body["key"])
    assert len(body["prefix"]) >= 8 and body["key"].startswith(body["prefix"])
    parse_instant(body["created_at"])
    row = await db.fetchrow("SELECT * FROM api_keys WHERE id = $1", body["id"])
    assert row["user_id"] == user.id and row["revoked_at"] is None
    secret = body["key"].removeprefix("aig_")
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).digest()


async def test_every_key_is_different(user_client) -> None:
    keys = [(await (await user_client.post(KEYS, json={"name": "k"})).get_json()) for _ in range(5)]
    assert len({body["key"] for body in keys}) == 5
    assert len({body["prefix"] for body in keys}) == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{}", "Field 'name' is required."),
        ('{"name": ""}', "Field 'name' must not be blank."),
        ('{"name": "  \\t "}', "Field 'name' must not be blank."),
        ('{"name": null}', "Field 'name' must be a string."),
        ('{"name": 7}', "Field 'name' must be a string."),
        (json.dumps({"name": "x" * 101}), "Field 'name' must be at most 100 characters."),
        ('{"name": "a\\u0000b"}', "Field 'name' must not contain control characters."),
        ('{"name": "two\\nlines"}', "Field 'name' must not contain control characters."),
        ('{"name": "\\ud800"}', "Field 'name' must be valid Unicode text."),
        ('["ci"]', "Request body must be a JSON object."),
        ("not json", "Request body must be JSON."),
    ],
)
async def test_bad_names_are_400(user_client, user: User, db, body: str, message: str) -> None:
    response = await user_client.post(KEYS, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert await response.get_json() == {"error": message}
    assert await active_keys(db, user.id) == 0


async def test_a_name_of_exactly_100_characters_is_accepted(user_client) -> None:
    name = "é" * 100  # characters, not bytes
    response = await user_client.post(KEYS, json={"name": name})
    assert response.status_code == 201
    assert (await response.get_json())["name"] == name


async def test_the_eleventh_active_key_is_409_until_one_is_revoked(
    user_client, user: User, db
) -> None:
    made = []
    for n in range(MAX_ACTIVE_KEYS):
        response = await user_client.post(KEYS, json={"name": f"k{n}"})
        assert response.status_code == 201
        made.append(await response.get_json())
    refused = await user_client.post(KEYS, json={"name": "one too many"})
    assert refused.status_code == 409
    assert set(await refused.get_json()) == {"error"}
    assert await active_keys(db, user.id) == MAX_ACTIVE_KEYS
    assert (await user_client.delete(f"{KEYS}/{made[0]['id']}")).status_code == 204
    assert (await user_client.post(KEYS, json={"name": "replacement"})).status_code == 201
    assert await active_keys(db, user.id) == MAX_ACTIVE_KEYS


async def test_parallel_creations_never_pass_the_limit(app: Quart, user: User, db) -> None:
    async with signed_in(app, user.id) as client:
        responses = await asyncio.gather(
            *(client.post(KEYS, json={"name": f"p{n}"}) for n in range(MAX_ACTIVE_KEYS + 5))
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * MAX_ACTIVE_KEYS + [409] * 5
    assert await active_keys(db, user.id) == MAX_ACTIVE_KEYS


async def test_the_limit_is_per_user(app: Quart, user: User, db) -> None:
    for n in range(MAX_ACTIVE_KEYS):
        await new_api_key(app, user.id, f"k{n}")
    other = await make_user(db, "other@example.com")
    await new_api_key(app, other.id)  # not refused because of someone else's keys


# --- GET /api/keys -------------------------------------------------------------------------------


async def test_list_shows_active_keys_newest_first_and_never_a_secret(
    app: Quart, user: User, db
) -> None:
    first = await new_api_key(app, user.id, "first")
    second = await new_api_key(app, user.id, "second")
    revoked = await new_api_key(app, user.id, "revoked")
    async with signed_in(app, user.id) as client:
        assert (await client.delete(f"{KEYS}/{revoked['id']}")).status_code == 204
        response = await client.get(KEYS)
    assert response.status_code == 200
    body = await response.get_json()
    assert body == {
        "keys": [
            {
                "id": key["id"],
                "name": key["name"],
                "prefix": key["prefix"],
                "created_at": key["created_at"],
                "last_used_at": None,
            }
            for key in (second, first)
        ]
    }
    text = await response.get_data(as_text=True)
    for key in (first, second, revoked):
        assert key["key"] not in text and key["key"][len(key["prefix"]) :] not in text


async def test_list_is_empty_for_a_new_user(user_client) -> None:
    response = await user_client.get(KEYS)
    assert await response.get_json() == {"keys": []}


# --- DELETE /api/keys/<id> -----------------------------------------------------------------------


async def test_revoke_is_204_then_404(app: Quart, user: User, db) -> None:
    key = await new_api_key(app, user.id)
    async with signed_in(app, user.id) as client:
        first = await client.delete(f"{KEYS}/{key['id']}")
        again = await client.delete(f"{KEYS}/{key['id']}")
    assert first.status_code == 204 and await first.get_data() == b""
    assert again.status_code == 404 and set(await again.get_json()) == {"error"}
    assert await db.fetchval("SELECT revoked_at FROM api_keys WHERE id = $1", key["id"])


async def test_another_users_key_is_404_and_stays_active(app: Quart, user: User, db) -> None:
    other = await make_user(db, "other@example.com")
    theirs = await new_api_key(app, other.id)
    async with signed_in(app, user.id) as client:
        response = await client.delete(f"{KEYS}/{theirs['id']}")
        listed = await (await client.get(KEYS)).get_json()
    assert response.status_code == 404
    assert listed == {"keys": []}
    assert await active_keys(db, other.id) == 1
    usage = await app.test_client().get("/api/usage", headers=bearer(theirs["key"]))
    assert usage.status_code == 200


@pytest.mark.parametrize("key_id", ["999999", "9223372036854775807", "9223372036854775808"])
async def test_missing_key_is_404(user_client, key_id: str) -> None:
    # Past bigint's range too: a 404, not a query that fails (a 500, as first written).
    assert (await user_client.delete(f"{KEYS}/{key_id}")).status_code == 404
    assert (await user_client.get(f"/keys/{key_id}/revoke")).status_code == 404


# --- a key cannot manage keys; the cookie follows today's CSRF rules -----------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", KEYS, {"name": "by a key"}), ("GET", KEYS, None), ("DELETE", "self", None)],
)
async def test_a_key_cannot_manage_keys(
    app: Quart, user: User, db, method: str, path: str, body
) -> None:
    key = await new_api_key(app, user.id)
    url = f"{KEYS}/{key['id']}" if path == "self" else path
    client = app.test_client()
    kwargs = {"json": body} if body is not None else {}
    response = await client.open(url, method=method, headers=bearer(key["key"]), **kwargs)
    assert response.status_code == 403
    assert "cannot manage API keys" in (await response.get_json())["error"]
    assert await active_keys(db, user.id) == 1


async def test_a_key_alongside_the_cookie_still_cannot_manage_keys(
    app: Quart, user: User, db
) -> None:
    key = await new_api_key(app, user.id)
    async with signed_in(app, user.id) as client:
        response = await client.post(KEYS, json={"name": "x"}, headers=bearer(key["key"]))
    assert response.status_code == 403
    assert await active_keys(db, user.id) == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "https://evil.example"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-origin"}, 201),
        ({"Origin": "http://127.0.0.1:8000"}, 201),
        ({}, 201),  # a script holding the cookie, as today for /api/generate
    ],
)
async def test_cookie_creation_follows_the_api_csrf_rule(
    user_client, user: User, db, headers, status: int
) -> None:
    response = await user_client.post(KEYS, json={"name": "ci"}, headers=headers)
    assert response.status_code == status
    assert await active_keys(db, user.id) == (1 if status == 201 else 0)


async def test_cookie_creation_with_the_page_token_goes_through(user_client) -> None:
    token = await page_csrf_token(user_client, "/keys")
    response = await user_client.post(
        KEYS,
        json={"name": "ci"},
        headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 201


# --- the /keys page (HTMX partials, and plain forms without JavaScript) --------------------------


async def test_page_lists_keys_without_their_secrets(app: Quart, user: User) -> None:
    key = await new_api_key(app, user.id, "nightly <report>")
    async with signed_in(app, user.id) as client:
        response = await client.get("/keys")
    html = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert "nightly &lt;report&gt;" in html and key["prefix"] in html
    assert key["key"] not in html
    assert 'aria-label="Revoke nightly &lt;report&gt;"' in html
    assert '<a class="nav__link" href="/keys" aria-current="page">API keys</a>' in html


async def test_htmx_create_shows_the_key_once_and_swaps_the_list(
    user_client, user: User, db
) -> None:
    token = await page_csrf_token(user_client, "/keys")
    response = await user_client.post(
        "/keys", form={"name": "laptop"}, headers={**HTMX, "X-CSRF-Token": token}
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = await response.get_data(as_text=True)
    shown = re.search(r'id="new-key-value"[^>]*value="(aig_[^"]+)"', html, re.S)
    assert shown, html
    assert "it will not be shown again" in html
    assert 'data-copy="#new-key-value"' in html
    assert re.search(r'<div id="keys"[^>]*hx-swap-oob="true"', html)
    row = await db.fetchrow("SELECT name, prefix FROM api_keys WHERE user_id = $1", user.id)
    assert row["name"] == "laptop" and shown.group(1).startswith(row["prefix"])
    again = await (await user_client.get("/keys")).get_data(as_text=True)
    assert shown.group(1) not in again and row["prefix"] in again


@pytest.mark.parametrize(
    ("name", "message"),
    [("   ", "must not be blank"), ("x" * 101, "at most 100 characters")],
)
async def test_htmx_create_with_a_bad_name_explains_and_keeps_it(
    user_client, user: User, db, name: str, message: str
) -> None:
    token = await page_csrf_token(user_client, "/keys")
    response = await user_client.post(
        "/keys", form={"name": name}, headers={**HTMX, "X-CSRF-Token": token}
    )
    html = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert message in html and 'aria-invalid="true"' in html
    assert f'value="{name}"' in html
    assert "new-key-value" not in html and "hx-swap-oob" not in html
    assert await active_keys(db, user.id) == 0


async def test_htmx_create_over_the_limit_says_so(app: Quart, user: User, db) -> None:
    for n in range(MAX_ACTIVE_KEYS):
        await new_api_key(app, user.id, f"k{n}")
    async with signed_in(app, user.id) as client:
        token = await page_csrf_token(client, "/keys")
        response = await client.post(
            "/keys", form={"name": "more"}, headers={**HTMX, "X-CSRF-Token": token}
        )
    html = await response.get_data(as_text=True)
    assert "Revoke one to create another" in html
    assert await active_keys(db, user.id) == MAX_ACTIVE_KEYS


async def test_plain_form_create_renders_the_whole_page(user_client, user: User) -> None:
    token = await page_csrf_token(user_client, "/keys")
    response = await user_client.post("/keys", form={"name": "no-js", "csrf_token": token})
    html = await response.get_data(as_text=True)
    assert response.status_code == 201
    assert "<h1>API keys</h1>" in html and 'id="new-key-value"' in html
    blank = await user_client.post("/keys", form={"name": "", "csrf_token": token})
    assert blank.status_code == 400
    assert "must not be blank" in await blank.get_data(as_text=True)


async def test_htmx_revoke_asks_first_then_revokes(app: Quart, user: User, db) -> None:
    key = await new_api_key(app, user.id, "old")
    async with signed_in(app, user.id) as client:
        token = await page_csrf_token(client, "/keys")
        ask = await client.get(f"/keys/{key['id']}/revoke", headers=HTMX)
        asked = await ask.get_data(as_text=True)
        assert asked.lstrip().startswith('<div id="keys"')
        assert "Revoke “old”?" in asked and "Revoke key" in asked
        assert await active_keys(db, user.id) == 1  # asking changes nothing
        done = await client.post(
            f"/keys/{key['id']}/revoke", headers={**HTMX, "X-CSRF-Token": token}
        )
    html = await done.get_data(as_text=True)
    assert done.status_code == 200
    assert "Key “old” was revoked" in html and "No active keys" in html
    assert await active_keys(db, user.id) == 0


async def test_plain_form_revoke_confirms_on_a_page_then_redirects(
    app: Quart, user: User, db
) -> None:
    key = await new_api_key(app, user.id)
    async with signed_in(app, user.id) as client:
        token = await page_csrf_token(client, "/keys")
        ask = await client.get(f"/keys/{key['id']}/revoke")
        assert ask.status_code == 200 and "<h1>API keys</h1>" in await ask.get_data(as_text=True)
        done = await client.post(f"/keys/{key['id']}/revoke", form={"csrf_token": token})
    assert done.status_code == 303 and done.headers["Location"] == "/keys"
    assert await active_keys(db, user.id) == 0


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_page_revoke_of_another_users_key_is_404(
    app: Quart, user: User, db, method: str
) -> None:
    other = await make_user(db, "other@example.com")
    theirs = await new_api_key(app, other.id)
    async with signed_in(app, user.id) as client:
        token = await page_csrf_token(client, "/keys")
        url, headers = f"/keys/{theirs['id']}/revoke", {"X-CSRF-Token": token}
        if method == "GET":
            response = await client.get(url, headers=headers)
        else:
            response = await client.post(url, headers=headers)
    assert response.status_code == 404
    assert await active_keys(db, other.id) == 1


async def test_dashboard_links_to_keys(user_client) -> None:
    html = await (await user_client.get("/dashboard")).get_data(as_text=True)
    assert re.search(r'<a class="button[^"]*" href="/keys">API keys</a>', html)
