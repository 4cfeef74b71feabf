"""Scale-out: two `aigen serve` processes share one PostgreSQL through PgBouncer and one Redis.

PgBouncer runs in transaction pooling mode with 3 server connections for the 2 x 10 pooled
client connections of the apps, so a reservation's transaction and the next statement of the
same client connection really do reach different server connections.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import httpx
import pytest

from aigen.app import create_app
from aigen.dev.anthropic import FakeAnthropicServer
from aigen.dev.serving import LOOPBACK, find_free_port
from tests.helpers import GENERATE, ROOT, TEST_REDIS_URL, auth_cookie, counts, make_user
from tests.pgbouncer import Bouncer, running_pgbouncer

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
LIMIT = 5
BURST = 40
REQUEST_TIMEOUT_SECONDS = 60.0
FAILING_PROMPT = "[fake:fail=400] refused upstream"


@pytest.fixture
def bouncer(database_url: str) -> Iterator[Bouncer]:
    """PgBouncer in front of the test server."""
    with running_pgbouncer(database_url) as running:
        yield running


@pytest.fixture
def two_apps(
    app_settings: dict[str, str],
    bouncer: Bouncer,
    database_url: str,
    redis_prefix: str,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> Iterator[list[str]]:
    """Two `aigen serve` processes through PgBouncer; the first migrates past it, directly."""
    shared = {
        **app_settings,
        "DATABASE_URL": bouncer.url(database_url),
        "DATABASE_PGBOUNCER": "1",
        "REDIS_URL": TEST_REDIS_URL,
        "RATE_LIMIT_PREFIX": redis_prefix,
    }
    with ExitStack() as stack:
        starting = [
            start_app(stack, {**shared, "DATABASE_DIRECT_URL": database_url}, tmp_path / "a.log"),
            start_app(stack, shared, tmp_path / "b.log"),
        ]
        for url, process, log in starting:  # both start at once; each is awaited in turn
            _wait_ready(url, process, log)
        yield [url for url, _, _ in starting]


def start_app(
    stack: ExitStack, settings: dict[str, str], log: Path
) -> tuple[str, subprocess.Popen[bytes], Path]:
    """Start `aigen serve` as a process of its own, stopped when the stack closes."""
    port = find_free_port()
    environ = {key: value for key, value in os.environ.items() if not key.startswith("DATABASE_")}
    environ.update(settings, PYTHONPATH=str(ROOT / "src"))
    command = [sys.executable, "-m", "aigen.cli", "serve", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env=environ,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.callback(_stop, process)
    return f"http://{LOOPBACK}:{port}", process, log


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"aigen serve did not become ready:\n{log.read_text()[-3000:]}")


async def generate_everywhere(
    urls: list[str], cookies: dict[str, str], prompts: list[str]
) -> list[httpx.Response]:
    """POST each prompt at once, the apps taking turns."""
    async with httpx.AsyncClient(cookies=cookies, timeout=REQUEST_TIMEOUT_SECONDS) as http:
        return await asyncio.gather(
            *(
                http.post(urls[index % len(urls)] + GENERATE, json={"prompt": prompt})
                for index, prompt in enumerate(prompts)
            )
        )


async def unbalanced_users(db: asyncpg.Connection) -> list[asyncpg.Record]:
    """Users whose credits_used differs from their charged generations (pending or succeeded)."""
    return await db.fetch(
        """
        SELECT u.id, u.credits_used, count(g.id) AS charged FROM users u
        LEFT JOIN generations g ON g.user_id = u.id AND g.status IN ('pending', 'succeeded')
        GROUP BY u.id HAVING u.credits_used <> count(g.id)
        """
    )


def cookies_for(app_settings: dict[str, str], user_id: int) -> dict[str, str]:
    """The sign-in cookie both apps accept (they share SECRET_KEY)."""
    return {"aigen_auth": auth_cookie(create_app(app_settings), user_id)}


async def test_a_burst_on_one_user_across_two_apps_never_passes_the_limit(
    two_apps: list[str],
    app_settings: dict[str, str],
    bouncer: Bouncer,
    database_url: str,
    db: asyncpg.Connection,
    fake_claude: FakeAnthropicServer,
) -> None:
    """40 requests at once, half to each app: exactly 5 are served, 35 refused with 402."""
    user = await make_user(db, "burst@example.com", credits_limit=LIMIT)
    fake_claude.set_scenario([{"type": "delay", "seconds": 0.2, "times": LIMIT}])
    cookies = cookies_for(app_settings, user.id)
    responses = await generate_everywhere(two_apps, cookies, [f"p{i}" for i in range(BURST)])
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * LIMIT + [402] * (BURST - LIMIT)
    assert await counts(db, user.id) == (LIMIT, {"succeeded": LIMIT})
    assert await unbalanced_users(db) == []
    assert bouncer.logins(database_url.rsplit("/", 1)[1]) >= 2  # both apps came through it


async def test_reserve_call_finalize_and_refund_through_pgbouncer_keep_the_ledger(
    two_apps: list[str], app_settings: dict[str, str], db: asyncpg.Connection
) -> None:
    """Users generate at once on both apps, some calls refused upstream; each credit is right."""
    free = await make_user(db, "free@example.com", credits_limit=100)
    pro = await make_user(db, "pro@example.com", plan="PRO")
    prompts = [FAILING_PROMPT if i % 4 == 0 else f"prompt {i}" for i in range(24)]
    results = await asyncio.gather(
        *(
            generate_everywhere(two_apps, cookies_for(app_settings, user.id), prompts)
            for user in (free, pro)
        )
    )
    for user, responses in zip((free, pro), results, strict=True):
        statuses = [response.status_code for response in responses]
        assert statuses == [502 if prompt == FAILING_PROMPT else 200 for prompt in prompts]
        assert responses[1].json()["result"]
        assert await counts(db, user.id) == (18, {"succeeded": 18, "failed": 6})
    assert await unbalanced_users(db) == []
