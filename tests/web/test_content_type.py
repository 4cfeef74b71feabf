"""/api/* takes JSON only: any other body is 415 before anything else (sign-in, CSRF, limits)."""

from __future__ import annotations

import pytest
from quart import Quart

from aigen.store.repository import User
from tests.helpers import GENERATE, counts, signed_in

BODY = b'{"prompt": "hello"}'


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",  # what an old browser's cross-site form may send, without Origin
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        None,
    ],
)
async def test_a_body_that_is_not_json_is_415_and_does_nothing(
    app: Quart, db, user: User, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    async with signed_in(app, user.id) as client:
        response = await client.post(GENERATE, data=BODY, headers=headers)
    assert response.status_code == 415
    body = await response.get_json()
    assert set(body) == {"error"} and "application/json" in body["error"]
    assert await counts(db, user.id) == (0, {})


async def test_415_comes_before_sign_in(client) -> None:
    response = await client.post(GENERATE, data=BODY, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
async def test_json_is_accepted(user_client, content_type: str) -> None:
    response = await user_client.post(GENERATE, data=BODY, headers={"Content-Type": content_type})
    assert response.status_code == 200


async def test_requests_without_a_body_are_untouched(user_client) -> None:
    assert (await user_client.get("/api/usage")).status_code == 200
    empty = await user_client.post(GENERATE, headers={"Content-Type": "text/plain"})
    assert empty.status_code == 400  # no body: the JSON check says what is wrong


async def test_pages_still_take_forms(user_client) -> None:
    from tests.helpers import page_csrf_token

    token = await page_csrf_token(user_client)
    response = await user_client.post("/generate", form={"prompt": "hi", "csrf_token": token})
    assert response.status_code == 200
