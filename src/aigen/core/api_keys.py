"""API keys: revocable credentials for scripts, shown once, stored only as a hash.

A key is `aig_` and 43 characters (32 random bytes, base64url). The first 12 characters are its
prefix: lists show it and sign-in finds the row by it; the SHA-256 of the secret is then compared
in constant time. 32 random bytes need no slow hash: there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg

from aigen.core.database import connection
from aigen.core.errors import Conflict, InvalidInput, NotFound, NotSignedIn
from aigen.core.usage import iso_utc
from aigen.store import repository
from aigen.store.repository import APIKey

KEY_START = "aig_"
SECRET_BYTES = 32
KEY_FORMAT = re.compile(r"aig_[A-Za-z0-9_-]{43}")
PREFIX_CHARS = 12
MAX_NAME_CHARS = 100
MAX_ACTIVE_KEYS = 10
# last_used_at is written at most this often per key, not at every request.
NOTE_USE_EVERY = 60.0

TOO_MANY_KEYS = (
    f"You have {MAX_ACTIVE_KEYS} active API keys, the most allowed. Revoke one to create another."
)
NO_SUCH_KEY = "There is no such API key."
ACCOUNT_GONE = "Unauthorized"


@dataclass(frozen=True)
class NewKey:
    """A key just created: the only moment its plaintext exists outside the caller's hands."""

    key: APIKey
    plaintext: str

    def to_json(self) -> dict[str, Any]:
        """The body of POST /api/keys's 201 answer."""
        return {
            "id": self.key.id,
            "name": self.key.name,
            "key": self.plaintext,
            "prefix": self.key.prefix,
            "created_at": iso_utc(self.key.created_at),
        }


@dataclass(frozen=True)
class KeyOwner:
    """Who a valid key speaks for, and which key it was."""

    user_id: int
    key_id: int


def key_json(key: APIKey) -> dict[str, Any]:
    """One entry of GET /api/keys: never the key itself."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": iso_utc(key.created_at),
        "last_used_at": iso_utc(key.last_used_at) if key.last_used_at else None,
    }


def validate_key_name(body: object) -> str:
    """The key's name from a request body, trimmed; InvalidInput naming what is wrong."""
    if not isinstance(body, dict):
        raise InvalidInput("Request body must be a JSON object.")
    if "name" not in body:
        raise InvalidInput("Field 'name' is required.")
    name = body["name"]
    if not isinstance(name, str):
        raise InvalidInput("Field 'name' must be a string.")
    name = name.strip()
    if not name:
        raise InvalidInput("Field 'name' must not be blank.")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput(f"Field 'name' must be at most {MAX_NAME_CHARS} characters.")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise InvalidInput("Field 'name' must not contain control characters.")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate such as "\ud800" in the JSON
        raise InvalidInput("Field 'name' must be valid Unicode text.") from error
    return name


def hash_secret(key: str) -> bytes:
    """SHA-256 of the secret part of a well-formed key."""
    return hashlib.sha256(key.removeprefix(KEY_START).encode("ascii")).digest()


def new_plaintext_key() -> str:
    """A fresh key: `aig_` and 32 bytes from the operating system's CSPRNG, base64url."""
    return KEY_START + secrets.token_urlsafe(SECRET_BYTES)


async def create_key(pool: asyncpg.Pool, user_id: int, name: str) -> NewKey:
    """Make a key for the user, unless they have MAX_ACTIVE_KEYS already (Conflict)."""
    plaintext = new_plaintext_key()
    async with connection(pool) as conn, conn.transaction():
        # The user row lock makes two creations at once count one after the other.
        if await repository.lock_user(conn, user_id) is None:
            raise NotSignedIn(ACCOUNT_GONE)
        if await repository.count_active_api_keys(conn, user_id) >= MAX_ACTIVE_KEYS:
            raise Conflict(TOO_MANY_KEYS)
        key = await repository.insert_api_key(
            conn, user_id, name, plaintext[:PREFIX_CHARS], hash_secret(plaintext)
        )
    return NewKey(key, plaintext)


async def list_keys(pool: asyncpg.Pool, user_id: int) -> list[APIKey]:
    """The user's active keys, newest first."""
    async with connection(pool) as conn:
        return await repository.select_active_api_keys(conn, user_id)


async def owned_key(pool: asyncpg.Pool, user_id: int, key_id: int) -> APIKey:
    """One of the user's active keys; someone else's, or a revoked one, is NotFound."""
    async with connection(pool) as conn:
        key = await repository.select_active_api_key(conn, user_id, key_id)
    if key is None:
        raise NotFound(NO_SUCH_KEY)
    return key


async def revoke_key(pool: asyncpg.Pool, user_id: int, key_id: int) -> APIKey:
    """Revoke one of the user's active keys at once; NotFound for any other id."""
    async with connection(pool) as conn:
        key = await repository.update_api_key_revoked(conn, user_id, key_id)
    if key is None:
        raise NotFound(NO_SUCH_KEY)
    return key


async def authenticate(pool: asyncpg.Pool, presented: str) -> KeyOwner | None:
    """The owner of a valid, active key; None for anything else. Notes its use once a minute."""
    if not KEY_FORMAT.fullmatch(presented):
        return None  # malformed: no query
    digest = hash_secret(presented)
    async with connection(pool) as conn:
        candidates = await repository.select_api_key_credentials(
            conn, presented[:PREFIX_CHARS], NOTE_USE_EVERY
        )
        matches = [c for c in candidates if hmac.compare_digest(c.secret_hash, digest)]
        if not matches:
            return None
        found = matches[0]
        if found.use_unnoted:
            await repository.update_api_key_last_used(conn, found.user_id, found.id, NOTE_USE_EVERY)
    return KeyOwner(found.user_id, found.id)
