"""Helpers shared by the tests (fixtures live in conftest.py; no test imports another test)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from hypercorn.asyncio import serve
from quart import Quart
from quart.typing import TestClientProtocol
from quart_auth import authenticated_client

from aigen.dev.serving import (
    LOOPBACK,
    START_TIMEOUT_SECONDS,
    hypercorn_config,
    listening_socket,
    socket_url,
)
from aigen.store import repository
from aigen.store.repository import User

ROOT = Path(__file__).resolve().parents[1]
TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-for-production-0123456789"
GENERATE = "/api/generate"
# Every setting production requires, with values that pass its checks.
PRODUCTION = {
    "AIGEN_ENV": "production",
    "SECRET_KEY": "s" * 40,
    "PUBLIC_URL": "https://aigen.example.com",
    "DATABASE_URL": "postgresql://aigen:pw@db.internal:5432/aigen",
    "GOOGLE_CLIENT_ID": "id.apps.googleusercontent.com",
    "GOOGLE_CLIENT_SECRET": "google-secret",
    "ANTHROPIC_API_KEY": "sk-ant-real",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "SMTP_URL": "smtp://mailer:pw@smtp.internal:587",
}


def server_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def recreate_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def make_user(
    conn: asyncpg.Connection,
    email: str = "ada@example.com",
    *,
    credits_limit: int = 3,
    plan: str = "FREE",
    verified: bool = True,
) -> User:
    """Insert a user directly (most tests need one without a sign-in round trip)."""
    user = await repository.upsert_user(
        conn,
        sub=f"sub-{email}",
        email=email,
        email_verified=verified,
        name=email.split("@")[0].title(),
        avatar_url=None,
        credits_limit=credits_limit,
    )
    if plan != "FREE":
        moved = await repository.update_user_plan(conn, user.id, plan)
        assert moved is not None
        return moved
    return user


async def counts(conn: asyncpg.Connection, user_id: int) -> tuple[int, dict[str, int]]:
    """credits_used and generations by status for one user."""
    used = await conn.fetchval("SELECT credits_used FROM users WHERE id = $1", user_id)
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM generations WHERE user_id = $1 GROUP BY status", user_id
    )
    return used, {row["status"]: row["n"] for row in rows}


@asynccontextmanager
async def served(app: Quart) -> AsyncIterator[str]:
    """Serve an app (start-up hooks included) with hypercorn on loopback, in the test's loop."""
    sock = listening_socket(LOOPBACK, 0)
    base_url = socket_url(sock)
    stop = asyncio.Event()
    config = hypercorn_config(sock, loglevel="WARNING")
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    try:
        # The socket listens already: the probe waits in its backlog until hypercorn serves.
        async with httpx.AsyncClient(timeout=START_TIMEOUT_SECONDS) as http:
            await http.get(base_url + "/healthz")
        yield base_url
    finally:
        stop.set()
        await server


def auth_cookie(app: Quart, user_id: int) -> str:
    """The value of the sign-in cookie quart-auth would set for this user."""
    return app.extensions["QUART_AUTH"][0].dump_token(str(user_id), app)


@asynccontextmanager
async def signed_in(app: Quart, user_id: int) -> AsyncIterator[TestClientProtocol]:
    """A test client of `app` carrying the session cookie of `user_id`."""
    test_client = app.test_client()
    async with authenticated_client(test_client, str(user_id)):
        yield test_client


CSRF_META = re.compile(r'hx-headers=\'\{"X-CSRF-Token": "([^"]+)"\}\'')


async def page_csrf_token(client: TestClientProtocol, path: str = "/pricing") -> str:
    """The CSRF token a page hands to this client's session, read from <body hx-headers>."""
    response = await client.get(path)
    match = CSRF_META.search(await response.get_data(as_text=True))
    assert match, f"no CSRF hx-headers on {path}"
    return match.group(1)


def announced_dev_defaults(app: Quart) -> tuple[str, ...]:
    """The development defaults the pages announce (the `dev_defaults` Jinja global)."""
    announced = app.jinja_env.globals["dev_defaults"]  # Jinja types its globals as object
    assert isinstance(announced, tuple)
    return announced


# A generation holds a charge while pending, once succeeded, and when a stream that produced
# output ended early (cancelled or failed with its partial text); refunded rows have no result.
CHARGED_ROW = (
    "status IN ('pending', 'succeeded')"
    " OR (status IN ('cancelled', 'failed') AND result IS NOT NULL)"
)


async def ledger_mismatches(conn: asyncpg.Connection) -> list[tuple[int, int, int]]:
    """(user id, credits_used, charged rows) of every user whose counter disagrees with the rows.

    The consistency check an operator's `aigen doctor` would run; empty when the ledger holds.
    """
    rows = await conn.fetch(
        f"""
        SELECT u.id, u.credits_used, count(g.id) FILTER (WHERE {CHARGED_ROW}) AS charged
        FROM users u LEFT JOIN generations g ON g.user_id = u.id
        GROUP BY u.id HAVING u.credits_used <> count(g.id) FILTER (WHERE {CHARGED_ROW})
        """
    )
    return [(row["id"], row["credits_used"], row["charged"]) for row in rows]


def parse_sse(body: str) -> list[tuple[str, Any]]:
    """The events of a text/event-stream body as (name, data); a comment is ("comment", text)."""
    events: list[tuple[str, Any]] = []
    for block in body.split("\n\n"):
        name, data = "message", None
        for line in block.split("\n"):
            if line.startswith(":"):
                events.append(("comment", line[1:].strip()))
            elif line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
        if data is not None:
            events.append((name, data))
    return events
