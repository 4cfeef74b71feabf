"""CSRF: a forged state-changing request carrying our cookies gets 403 and changes nothing."""

from __future__ import annotations

import pytest
from quart import Quart
from quart_auth import authenticated_client

from aigen.store.repository import User
from tests.helpers import auth_id, make_user, page_csrf_token, signed_in

PUBLIC_ORIGIN = "http://127.0.0.1:8000"  # PUBLIC_URL of the test settings
HTMX = {"HX-Request": "true"}


async def state(db, user_id: int) -> tuple[int, int]:
    """credits_used and the number of generations: what a forgery must not change."""
    used = await db.fetchval("SELECT credits_used FROM users WHERE id = $1", user_id)
    return used, await db.fetchval("SELECT count(*) FROM generations")


@pytest.mark.parametrize(
    ("headers", "form"),
    [
        ({}, {"prompt": "forged"}),
        ({"X-CSRF-Token": "guessed"}, {"prompt": "forged"}),
        ({}, {"prompt": "forged", "csrf_token": ""}),
        ({"Origin": PUBLIC_ORIGIN, "Sec-Fetch-Site": "same-origin"}, {"prompt": "forged"}),
    ],
)
async def test_page_post_without_the_sessions_token_is_403(
    user_client, user: User, db, fake_claude, headers, form
) -> None:
    await page_csrf_token(user_client)  # the session has a token; the forger does not know it
    response = await user_client.post("/generate", form=form, headers=headers)
    assert response.status_code == 403
    assert "did not come from an aigen page" in await response.get_data(as_text=True)
    assert await state(db, user.id) == (0, 0)
    assert fake_claude.requests() == []


async def test_htmx_post_without_token_gets_a_readable_partial(user_client, user, db) -> None:
    response = await user_client.post("/generate", form={"prompt": "x"}, headers=HTMX)
    assert response.status_code == 200 and response.headers["X-Aigen-Status"] == "403"
    assert "Reload the page" in await response.get_data(as_text=True)
    assert await state(db, user.id) == (0, 0)


@pytest.mark.parametrize("where", ["header", "form"])
async def test_page_post_with_the_token_goes_through(user_client, user, db, where) -> None:
    token = await page_csrf_token(user_client)
    if where == "header":
        response = await user_client.post(
            "/generate", form={"prompt": "hi"}, headers={**HTMX, "X-CSRF-Token": token}
        )
    else:
        response = await user_client.post("/generate", form={"prompt": "hi", "csrf_token": token})
    assert response.status_code == 200
    assert await state(db, user.id) == (1, 1)


async def test_token_from_before_sign_in_is_worthless_after(app: Quart, user: User, db) -> None:
    client = app.test_client()
    before = await page_csrf_token(client)  # signed out: a session and a token exist
    async with authenticated_client(client, auth_id(user.id)):
        response = await client.post(
            "/generate", form={"prompt": "hi"}, headers={"X-CSRF-Token": before}
        )
        assert response.status_code == 403
        after = await page_csrf_token(client)
        assert after != before
        response = await client.post(
            "/generate", form={"prompt": "hi"}, headers={"X-CSRF-Token": after}
        )
        assert response.status_code == 200


async def test_one_users_token_does_not_work_for_another(app: Quart, user: User, db) -> None:
    other = await make_user(db, "other@example.com")
    async with signed_in(app, user.id) as mine:
        token = await page_csrf_token(mine)
    async with signed_in(app, other.id) as theirs:
        await page_csrf_token(theirs)
        response = await theirs.post(
            "/generate", form={"prompt": "hi"}, headers={"X-CSRF-Token": token}
        )
    assert response.status_code == 403
    assert await state(db, other.id) == (0, 0)


async def test_logout_needs_the_token(user_client) -> None:
    token = await page_csrf_token(user_client)
    refused = await user_client.post("/logout")
    assert refused.status_code == 403
    assert (await user_client.get("/dashboard")).status_code == 200  # still signed in
    done = await user_client.post("/logout", form={"csrf_token": token})
    assert done.status_code == 302 and done.headers["Location"] == "/"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:8001"},
        {"Origin": "http://localhost.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": PUBLIC_ORIGIN},
        {"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": "guessed"},
    ],
)
async def test_cross_site_api_call_is_403_and_changes_nothing(
    user_client, user, db, fake_claude, headers
) -> None:
    response = await user_client.post("/api/generate", json={"prompt": "forged"}, headers=headers)
    assert response.status_code == 403
    assert "did not come from an aigen page" in (await response.get_json())["error"]
    assert await state(db, user.id) == (0, 0)
    assert fake_claude.requests() == []


async def test_cross_site_text_plain_form_forging_json_is_refused(user_client, user, db) -> None:
    # <form enctype="text/plain"> can smuggle a JSON-looking body without a CORS preflight;
    # /api/* refuses any body that is not JSON with 415 before the CSRF check (json_only.py).
    response = await user_client.post(
        "/api/generate",
        data='{"prompt": "forged", "x": "="}',
        headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
    )
    assert response.status_code == 415
    assert await state(db, user.id) == (0, 0)


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": PUBLIC_ORIGIN},
        {"Origin": PUBLIC_ORIGIN.upper()},
        {"Origin": "http://localhost"},  # the host the request was sent to (test client's Host)
        {},  # a script (curl, an SDK): no browser sends a cross-site POST without both
    ],
)
async def test_same_origin_or_scripted_api_call_goes_through(
    user_client, user, db, headers
) -> None:
    response = await user_client.post("/api/generate", json={"prompt": "hi"}, headers=headers)
    assert response.status_code == 200
    assert await state(db, user.id) == (1, 1)


async def test_api_call_with_the_page_token_goes_through_whatever_the_origin(
    user_client, user, db
) -> None:
    token = await page_csrf_token(user_client)
    response = await user_client.post(
        "/api/generate",
        json={"prompt": "hi"},
        headers={"X-CSRF-Token": token, "Origin": "http://localhost:8000"},
    )
    assert response.status_code == 200


async def test_requests_without_our_cookies_are_not_csrf_checked(client, db) -> None:
    # No cookie, no authority to borrow: the usual sign-in answers apply, not 403.
    api = await client.post("/api/generate", json={"prompt": "hi"}, headers={"Origin": "https://x"})
    page = await client.post("/generate", form={"prompt": "hi"})
    assert api.status_code == 401
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")


async def test_safe_methods_are_never_blocked(user_client) -> None:
    response = await user_client.get("/dashboard", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200
