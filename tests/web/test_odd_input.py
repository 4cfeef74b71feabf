"""Input that is not text or not a number: a clear 400 or 404, never a 500."""

from __future__ import annotations

import pytest

from aigen.store.repository import User
from tests.helpers import GENERATE, counts

PROMPT = '{"prompt": "hi"}'


@pytest.mark.parametrize(
    "body",
    [
        b'{"prompt": "hi \xff"}',  # not UTF-8
        b'{"prompt": "\xed\xa0\x80"}',  # an encoded lone surrogate: not UTF-8 either
        PROMPT.encode("utf-16"),  # with its byte-order mark
        PROMPT.encode("utf-16-le"),
        PROMPT.encode("utf-32"),
    ],
    ids=["latin-1 byte", "encoded surrogate", "utf-16", "utf-16-le", "utf-32"],
)
async def test_a_body_that_is_not_utf8_json_is_400(user_client, db, user: User, body: bytes):
    response = await user_client.post(
        GENERATE, data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert set(await response.get_json()) == {"error"}
    assert await counts(db, user.id) == (0, {})


@pytest.mark.parametrize(
    "generation_id", ["9223372036854775808", "99999999999999999999", "1" + "0" * 40]
)
async def test_an_id_beyond_64_bits_is_404(user_client, generation_id: str) -> None:
    assert (await user_client.get(f"/generations/{generation_id}")).status_code == 404


@pytest.mark.parametrize(
    "cursor",
    [
        "1.9223372036854775808",
        "1.99999999999999999999",
        "99999999999999999999999.1",
        "1.١٢",  # Arabic-Indic digits are digits to str.isdigit(), not to us
    ],
)
async def test_a_cursor_beyond_64_bits_is_400(user_client, cursor: str) -> None:
    response = await user_client.get("/history", query_string={"before": cursor})
    assert response.status_code == 400
    assert "malformed" in await response.get_data(as_text=True)
