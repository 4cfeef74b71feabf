"""API keys at rest: only a hash is kept, no table and no log holds a key, keys are unguessable."""

from __future__ import annotations

import hashlib
import logging
import re

import asyncpg
import pytest
from quart import Quart

from aigen.core.api_keys import PREFIX_CHARS, authenticate, hash_secret, new_plaintext_key
from aigen.store.repository import User
from tests.helpers import GENERATE, bearer, make_user, new_api_key, page_csrf_token, signed_in


async def every_row_as_text(db: asyncpg.Connection) -> str:
    """Every row of every table of the schema, each column as PostgreSQL writes it as text."""
    tables = await db.fetch(
        "SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public'"
    )
    assert {"api_keys", "generations", "users"} <= {table["name"] for table in tables}
    dumped: list[str] = []
    for table in tables:
        rows = await db.fetch(f"SELECT t::text AS row FROM {table['name']} t")
        dumped.extend(row["row"] for row in rows)
    return "\n".join(dumped)


async def test_no_table_and_no_log_holds_a_key(
    app: Quart, user: User, db, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    by_api = await new_api_key(app, user.id, "by the api")
    async with signed_in(app, user.id) as browser:
        token = await page_csrf_token(browser, "/keys")
        page = await browser.post(
            "/keys", form={"name": "by the page"}, headers={"X-CSRF-Token": token}
        )
        assert page.status_code == 201
    shown = re.search(r'id="new-key-value"[^>]*value="(aig_[^"]+)"', await page.get_data(True))
    assert shown
    keys = [by_api["key"], shown.group(1)]
    async with signed_in(app, user.id) as browser:
        listed = (await (await browser.get("/api/keys")).get_json())["keys"]
    assert len(listed) == 2
    client = app.test_client()
    for key in keys:
        response = await client.post(GENERATE, json={"prompt": "hi"}, headers=bearer(key))
        assert response.status_code == 200
        assert (await client.get("/api/usage", headers=bearer(key))).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL") == 2
    everything = await every_row_as_text(db)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for key in keys:
        secret = key.removeprefix("aig_")
        for text in (everything, logged):
            assert key not in text and secret not in text
            assert secret[PREFIX_CHARS:] not in text  # not even the part lists do not show
        assert hash_secret(key).hex() in everything  # what is stored instead: the hash


def test_new_keys_are_aig_and_43_random_base64url_characters() -> None:
    keys = {new_plaintext_key() for _ in range(1000)}
    assert len(keys) == 1000
    for key in keys:
        assert key.startswith("aig_") and len(key) == 47
        assert set(key[4:]) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
    # Every position of the secret takes many values (a constant would show as one); the last
    # character carries the 4 bits left of 256 (42 x 6 = 252), so it takes 16.
    for position in range(4, 46):
        assert len({key[position] for key in keys}) > 40
    assert len({key[46] for key in keys}) == 16


def test_the_hash_is_sha256_of_the_secret() -> None:
    key = new_plaintext_key()
    assert hash_secret(key) == hashlib.sha256(key[4:].encode()).digest()


async def test_authenticate_finds_the_owner_and_key(app: Quart, user: User, db) -> None:
    other = await make_user(db, "other@example.com")
    mine = await new_api_key(app, user.id)
    theirs = await new_api_key(app, other.id)
    pool = app.extensions["aigen"].pool
    owner = await authenticate(pool, mine["key"])
    assert owner is not None and (owner.user_id, owner.key_id) == (user.id, mine["id"])
    owner = await authenticate(pool, theirs["key"])
    assert owner is not None and (owner.user_id, owner.key_id) == (other.id, theirs["id"])
    assert await authenticate(pool, mine["key"][:-1] + "?") is None
