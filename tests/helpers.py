"""Helpers shared by the tests (fixtures live in conftest.py; no test imports another test)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
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
from aigen.web.current_user import session_auth_id

ROOT = Path(__file__).resolve().parents[1]
# The Redis the rate-limit tests use (.ci/run sets it; a key prefix of its own per test).
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-for-production-0123456789"
GENERATE = "/api/generate"
STRIPE_WEBHOOK_SECRET = "whsec_aigen_tests"
FIRST_SESSION_VERSION = 1  # users.session_version of a new user (sql/004)
# Every setting production requires, with values that pass its checks.
PRODUCTION = {
    "AIGEN_ENV": "production",
    "SECRET_KEY": "s" * 40,
    "PUBLIC_URL": "https://aigen.example.com",
    "DATABASE_URL": "postgresql://aigen:pw@db.internal:5432/aigen?sslmode=verify-full",
    "GOOGLE_CLIENT_ID": "id.apps.googleusercontent.com",
    "GOOGLE_CLIENT_SECRET": "google-secret",
    "ANTHROPIC_API_KEY": "sk-ant-real",
    "REDIS_URL": "rediss://cache.internal:6379/0",
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


def auth_id(user_id: int, session_version: int = FIRST_SESSION_VERSION) -> str:
    """The auth id the sign-in cookie of this user carries (a new user's session by default)."""
    return session_auth_id(user_id, session_version)


def auth_cookie(app: Quart, user_id: int) -> str:
    """The value of the sign-in cookie quart-auth would set for this user."""
    return app.extensions["QUART_AUTH"][0].dump_token(auth_id(user_id), app)


def cookie_signed_with(app: Quart, key: str, user_id: int) -> str:
    """A sign-in cookie for this user signed with `key` instead of the app's own key."""
    extension = app.extensions["QUART_AUTH"][0]
    return extension.serializer_class(key, extension.salt).dumps(auth_id(user_id))


@asynccontextmanager
async def signed_in(app: Quart, user_id: int) -> AsyncIterator[TestClientProtocol]:
    """A test client of `app` carrying the session cookie of `user_id`."""
    test_client = app.test_client()
    async with authenticated_client(test_client, auth_id(user_id)):
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


KEYS = "/api/keys"


def bearer(key: str) -> dict[str, str]:
    """The Authorization header that presents an API key."""
    return {"Authorization": f"Bearer {key}"}


async def new_api_key(app: Quart, user_id: int, name: str = "ci") -> dict[str, Any]:
    """Create a key through POST /api/keys as the signed-in user; the 201 body (with the key)."""
    async with signed_in(app, user_id) as client:
        response = await client.post(KEYS, json={"name": name})
    assert response.status_code == 201, await response.get_data(as_text=True)
    body = await response.get_json()
    assert isinstance(body, dict)
    return body


async def doctor(database_url: str) -> tuple[int, str]:
    """The exit code and output of `aigen doctor` on this database (the ledger check)."""
    from aigen.cli import doctor as run_doctor  # lazily: fault tests must fail on their own

    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        exit_code = await run_doctor(database_url)
    return exit_code, output.getvalue()


@dataclass(frozen=True)
class ServeProcess:
    """`aigen serve` running in a subprocess: the supervisor process and where it answers."""

    process: asyncio.subprocess.Process
    base_url: str
    log: Path
    workers: int

    def all_running(self) -> bool:
        """Whether every worker has said it serves (hypercorn's "Running on" line)."""
        return self.log.read_text().count("Running on http") >= self.workers

    def log_tail(self) -> str:
        """The end of what the processes logged (for assertion messages)."""
        return self.log.read_text()[-3000:]


SERVE_START_SECONDS = 60.0
# What a served test app must not inherit from the environment the tests run in.
UNSERVED = ("REDIS_URL", "SMTP_URL", "PYTHONPROFILEIMPORTTIME")


@asynccontextmanager
async def serve_process(
    settings: Mapping[str, str], log: Path, *, workers: int = 1
) -> AsyncIterator[ServeProcess]:
    """`aigen serve --workers N` with these settings, ready on a free port, in a session of its
    own (a signal can reach every worker); killed, workers included, if it outlives the block."""
    from aigen.dev.oidc_provider import find_free_port

    port = find_free_port()
    environ = {key: value for key, value in os.environ.items() if key not in UNSERVED}
    command = ["-m", "aigen.cli", "serve", "--port", str(port), "--workers", str(workers)]
    with _open_log(log) as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            env={**environ, **settings},
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    served = ServeProcess(process, f"http://127.0.0.1:{port}", log, workers)
    try:
        await _until_ready(served)
        yield served
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


def _open_log(log: Path) -> io.TextIOWrapper:
    return log.open("w")


async def _until_ready(served: ServeProcess) -> None:
    deadline = asyncio.get_running_loop().time() + SERVE_START_SECONDS
    async with httpx.AsyncClient(base_url=served.base_url, timeout=1) as http:
        while asyncio.get_running_loop().time() < deadline and served.process.returncode is None:
            try:
                if (await http.get("/readyz")).status_code == 200 and served.all_running():
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"aigen serve did not become ready:\n{served.log_tail()}")


async def ledger_mismatches(conn: asyncpg.Connection) -> list[tuple[int, int, int]]:
    """(user id, credits_used, charged rows) of every user whose counter disagrees with the rows.

    The rule of `aigen doctor` (repository.select_ledger); empty when the ledger holds.
    """
    ledger = await repository.select_ledger(conn)
    return [(entry.user_id, entry.credits_used, entry.charged) for entry in ledger.mismatches]


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
