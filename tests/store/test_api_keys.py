"""The api_keys table and generations.api_key_id hold their rules by themselves."""

from __future__ import annotations

import asyncpg
import pytest

from aigen.store import repository
from tests.helpers import make_user

HASH = bytes(32)


async def test_a_generation_cannot_name_another_users_key(db) -> None:
    ada = await make_user(db, "ada@example.com")
    bob = await make_user(db, "bob@example.com")
    key = await repository.insert_api_key(db, ada.id, "ci", "aig_xxxxxxxx", HASH)
    own = await repository.insert_charged_generation(db, ada.id, "p", "m", key.id)
    assert await db.fetchval("SELECT api_key_id FROM generations WHERE id = $1", own.id) == key.id
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await repository.insert_charged_generation(db, bob.id, "p", "m", key.id)


async def test_browser_generations_have_no_key(db) -> None:
    ada = await make_user(db)
    made = await repository.insert_charged_generation(db, ada.id, "p", "m")
    assert await db.fetchval("SELECT api_key_id FROM generations WHERE id = $1", made.id) is None


@pytest.mark.parametrize(("name", "secret_hash"), [("", HASH), ("x" * 101, HASH), ("ci", b"short")])
async def test_names_and_hashes_are_checked(db, name: str, secret_hash: bytes) -> None:
    ada = await make_user(db)
    with pytest.raises(asyncpg.CheckViolationError):
        await repository.insert_api_key(db, ada.id, name, "aig_xxxxxxxx", secret_hash)


async def test_one_hash_is_one_key(db) -> None:
    ada = await make_user(db)
    await repository.insert_api_key(db, ada.id, "a", "aig_xxxxxxxx", HASH)
    with pytest.raises(asyncpg.UniqueViolationError):
        await repository.insert_api_key(db, ada.id, "b", "aig_xxxxxxxx", HASH)


async def test_keys_go_with_their_account(db) -> None:
    ada = await make_user(db)
    key = await repository.insert_api_key(db, ada.id, "ci", "aig_xxxxxxxx", HASH)
    await repository.insert_charged_generation(db, ada.id, "p", "m", key.id)
    await db.execute("DELETE FROM users WHERE id = $1", ada.id)
    assert await db.fetchval("SELECT count(*) FROM api_keys") == 0
