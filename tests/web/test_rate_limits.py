"""Rate limits of generation (per user) and sign-in (per IP), on Redis and in-process."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from quart import Quart

from aigen.app import create_app
from aigen.clients.ratelimit import FallbackRateLimiter, MemoryRateLimiter
from aigen.config import IN_PROCESS_RATE_LIMITER
from aigen.core.errors import RateLimited
from aigen.web.runtime import EXTENSION_KEY, Runtime
from tests.helpers import (
    GENERATE,
    ROOT,
    TEST_REDIS_URL,
    announced_dev_defaults,
    auth_id,
    counts,
    make_user,
    signed_in,
)

HEADER_NAMES = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def runtime_of(app: Quart) -> Runtime:
    return app.extensions[EXTENSION_KEY]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@pytest.fixture
def redis_settings(app_settings: dict[str, str], redis_prefix: str) -> dict[str, str]:
    return {**app_settings, "REDIS_URL": TEST_REDIS_URL, "RATE_LIMIT_PREFIX": redis_prefix}


@asynccontextmanager
async def running(settings: dict[str, str]) -> AsyncIterator[Quart]:
    app = create_app(settings)
    async with app.test_app():
        yield app


# --- which limiter ------------------------------------------------------------------------


async def test_without_redis_url_the_in_process_limiter_is_announced(
    app_settings, db, caplog
) -> None:
    with caplog.at_level(logging.WARNING, logger="aigen.app"):
        async with running(app_settings) as app:
            assert isinstance(runtime_of(app).limiter, MemoryRateLimiter)
            assert IN_PROCESS_RATE_LIMITER in announced_dev_defaults(app)
            body = await (await app.test_client().get("/readyz")).get_json()
    assert body["rate_limiter"] == {"backend": "memory", "error": None, "failures": 0}
    assert any(IN_PROCESS_RATE_LIMITER in record.getMessage() for record in caplog.records)


async def test_with_redis_url_the_limiter_is_redis_with_a_fallback(redis_settings, db) -> None:
    async with running(redis_settings) as app:
        assert isinstance(runtime_of(app).limiter, FallbackRateLimiter)
        assert IN_PROCESS_RATE_LIMITER not in announced_dev_defaults(app)
        response = await app.test_client().get("/readyz")
    assert response.status_code == 200
    body = await response.get_json()
    assert body["status"] == "ready"
    assert body["rate_limiter"] == {"backend": "redis", "error": None, "failures": 0}


# --- generation: headers, 429, nothing charged ---------------------------------------------


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_headers_count_down_then_429_charges_nothing(
    backend, app_settings, redis_settings, db
) -> None:
    settings = redis_settings if backend == "redis" else app_settings
    user = await make_user(db, "limited@example.com", credits_limit=10)
    async with running({**settings, "RATE_LIMIT": "3/minute"}) as app:
        async with signed_in(app, user.id) as client:
            allowed = [await client.post(GENERATE, json={"prompt": f"p{i}"}) for i in range(3)]
            refused = await client.post(GENERATE, json={"prompt": "one too many"})
    # 3/minute: one slot every 20 s; each allowed hit pushes the bucket's refill 20 s further.
    for number, response in enumerate(allowed, start=1):
        assert response.status_code == 200
        assert [response.headers[name] for name in HEADER_NAMES] == [
            "3",
            str(3 - number),
            str(20 * number),
        ]
        assert "Retry-After" not in response.headers
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "20"
    assert [refused.headers[name] for name in HEADER_NAMES] == ["3", "0", "60"]
    body = await refused.get_json()
    assert body == {
        "error": "Too many requests. Please wait 20 s and try again.",
        "retry_after": 20,
    }
    assert await counts(db, user.id) == (3, {"succeeded": 3})


async def test_limits_are_per_user(app_settings, db) -> None:
    ada = await make_user(db, "ada@example.com")
    bob = await make_user(db, "bob@example.com")
    async with running({**app_settings, "RATE_LIMIT": "1/minute"}) as app:
        async with signed_in(app, ada.id) as client:
            assert (await client.post(GENERATE, json={"prompt": "a"})).status_code == 200
            assert (await client.post(GENERATE, json={"prompt": "a"})).status_code == 429
        async with signed_in(app, bob.id) as client:
            assert (await client.post(GENERATE, json={"prompt": "b"})).status_code == 200


async def test_bad_input_does_not_count_against_the_limit(app_settings, db, user) -> None:
    """400s are refused before any work (no database, no Claude), so they spend no slot."""
    async with running({**app_settings, "RATE_LIMIT": "2/minute"}) as app:
        async with signed_in(app, user.id) as client:
            for _ in range(3):
                response = await client.post(GENERATE, json={"prompt": "  "})
                assert response.status_code == 400
                assert "RateLimit-Limit" not in response.headers
            statuses = [
                (await client.post(GENERATE, json={"prompt": "ok"})).status_code for _ in range(3)
            ]
    assert statuses == [200, 200, 429]


async def test_402_and_403_count_against_the_limit(app_settings, db) -> None:
    """They reach the database (the user row is locked), so they are limited like the rest."""
    spent = await make_user(db, "spent@example.com", credits_limit=0)
    async with running({**app_settings, "RATE_LIMIT": "1/minute"}) as app:
        async with signed_in(app, spent.id) as client:
            first = await client.post(GENERATE, json={"prompt": "x"})
            second = await client.post(GENERATE, json={"prompt": "x"})
    assert (first.status_code, second.status_code) == (402, 429)
    assert first.headers["RateLimit-Remaining"] == "0"


async def test_the_service_limits_every_caller(app_settings, db, user) -> None:
    """The page route calls GenerationService.generate too: the limit lives there."""
    async with running({**app_settings, "RATE_LIMIT": "1/minute"}) as app:
        service = runtime_of(app).generations
        async with app.app_context():
            await service.generate(user.id, "first")
            with pytest.raises(RateLimited) as refused:
                await service.generate(user.id, "second")
    assert refused.value.retry_after == 60
    assert refused.value.decision.headers()["Retry-After"] == "60"
    assert await counts(db, user.id) == (1, {"succeeded": 1})


# --- sign-in: per client IP ------------------------------------------------------------------


async def test_sign_in_is_limited_per_ip(app_settings, db) -> None:
    async with running({**app_settings, "LOGIN_RATE_LIMIT": "2/minute"}) as app:
        client = app.test_client()
        first, second = [await client.get("/login") for _ in range(2)]
        refused = await client.get("/auth/callback?code=x&state=y")
        other_ip = await client.get("/login", scope_base={"client": ("192.0.2.7", 50000)})
    assert (first.status_code, second.status_code) == (302, 302)
    assert first.headers["RateLimit-Remaining"] == "1"
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "30"
    assert "Too many requests" in await refused.get_data(as_text=True)
    assert other_ip.status_code == 302


@pytest.mark.parametrize(("hops", "separate"), [("0", False), ("1", True)])
async def test_forwarded_for_is_trusted_only_with_forwarded_hops(
    app_settings, db, hops: str, separate: bool
) -> None:
    settings = {**app_settings, "LOGIN_RATE_LIMIT": "1/minute", "FORWARDED_HOPS": hops}
    async with running(settings) as app:
        client = app.test_client()
        statuses = [
            (await client.get("/login", headers={"X-Forwarded-For": ip})).status_code
            for ip in ("198.51.100.1", "198.51.100.2")
        ]
    assert statuses == ([302, 302] if separate else [302, 429])


# --- Redis failing at run time ------------------------------------------------------------


@dataclass
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, so it can be stopped."""
    port = free_port()
    server = RedisServer(f"redis://127.0.0.1:{port}/0", port)
    server.start()
    yield server
    server.stop()


async def test_redis_down_mid_run_falls_back_logs_counts_and_reports(
    app_settings, db, user, private_redis: RedisServer, caplog
) -> None:
    settings = {**app_settings, "REDIS_URL": private_redis.url, "RATE_LIMIT": "100/minute"}
    async with running(settings) as app:
        limiter = runtime_of(app).limiter
        assert isinstance(limiter, FallbackRateLimiter)
        async with signed_in(app, user.id) as client:
            before = await client.post(GENERATE, json={"prompt": "while Redis is up"})
            private_redis.stop()
            with caplog.at_level(logging.ERROR, logger="aigen.clients.ratelimit"):
                during = await client.post(GENERATE, json={"prompt": "while Redis is down"})
            ready_during = await client.get("/readyz")
            private_redis.start()
            after = await client.post(GENERATE, json={"prompt": "Redis is back"})
            ready_after = await client.get("/readyz")
    assert before.status_code == 200 and before.headers["RateLimit-Remaining"] == "99"
    assert during.status_code == 200
    assert limiter.failures == 1
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert errors and "rate limiter unavailable" in errors[0].getMessage()
    assert ready_during.status_code == 200
    body = await ready_during.get_json()
    assert body["status"] == "degraded"
    assert body["rate_limiter"]["backend"] == "redis"
    assert body["rate_limiter"]["failures"] == 1 and body["rate_limiter"]["error"]
    assert "rate limiter" in body["reasons"][0]
    assert after.status_code == 200 and limiter.healthy
    assert (await ready_after.get_json())["status"] == "ready"
    assert await counts(db, user.id) == (3, {"succeeded": 3})


async def test_with_redis_down_the_limit_still_holds_per_worker(
    app_settings, db, user, caplog
) -> None:
    """Redis unreachable: the worker's own limiter decides (15 of 15 passed a 10/minute limit)."""
    settings = {
        **app_settings,
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        "RATE_LIMIT": "10/minute",
    }
    async with running(settings) as app, signed_in(app, user.id) as client:
        await make_user_unlimited(app, user.id)
        with caplog.at_level(logging.ERROR, logger="aigen.clients.ratelimit"):
            statuses = [
                (await client.post(GENERATE, json={"prompt": f"{i}"})).status_code
                for i in range(15)
            ]
        ready = await client.get("/readyz")
    assert statuses == [200] * 10 + [429] * 5
    assert ready.status_code == 200 and (await ready.get_json())["status"] == "degraded"
    assert await counts(db, user.id) == (10, {"succeeded": 10})


async def make_user_unlimited(app: Quart, user_id: int) -> None:
    async with runtime_of(app).pool.acquire() as conn:
        await conn.execute("UPDATE users SET plan = 'PRO' WHERE id = $1", user_id)


# --- two hypercorn workers sharing one Redis ---------------------------------------------------


@dataclass
class Served:
    url: str
    log: Path
    secret_key: str


@pytest.fixture
def two_workers(
    app_settings: dict[str, str], redis_prefix: str, db, tmp_path: Path
) -> Iterator[Served]:
    """`aigen serve --workers 2` on a free port, limited to 5 generations a minute per user."""
    port = free_port()
    env = {
        **os.environ,
        **app_settings,
        "PYTHONPATH": str(ROOT / "src"),
        "REDIS_URL": TEST_REDIS_URL,
        "RATE_LIMIT_PREFIX": redis_prefix,
        "RATE_LIMIT": "5/minute",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "aigen.cli", "serve", "--workers", "2", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", process, log_path)
        yield Served(f"http://127.0.0.1:{port}", log_path, app_settings["SECRET_KEY"])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_healthy(url: str, process: subprocess.Popen, log_path: Path) -> None:
    """Until /healthz answers and both workers have logged that they are running."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"aigen serve exited:\n{log_path.read_text()}")
        try:
            healthy = httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            healthy = False
        if healthy and len(log_pids(log_path.read_text(), "Running on")) == 2:
            return
        time.sleep(0.1)
    raise TimeoutError(f"aigen serve did not become healthy:\n{log_path.read_text()}")


def auth_cookie(app_settings: dict[str, str], user_id: int) -> dict[str, str]:
    """The quart-auth cookie the served app (same SECRET_KEY) accepts for `user_id`."""
    app = create_app(app_settings)
    token = app.extensions["QUART_AUTH"][0].dump_token(auth_id(user_id), app=app)
    return {app.config["QUART_AUTH_COOKIE_NAME"]: token}


# aigen.logs.LOG_FORMAT: "<date> <time> INFO hypercorn.<logger> [<pid>] <message>"
HYPERCORN_LINE = re.compile(r"^\S+ \S+ INFO hypercorn\.\w+ \[(\d+)\] (.*)$")


def log_pids(log_text: str, needle: str) -> Counter[str]:
    """How many hypercorn log lines holding `needle` each worker PID wrote."""
    pids: Counter[str] = Counter()
    for line in log_text.splitlines():
        match = HYPERCORN_LINE.match(line)
        if match and needle in match.group(2):
            pids[match.group(1)] += 1
    return pids


async def test_limit_holds_exactly_across_two_workers(
    two_workers: Served, app_settings, db
) -> None:
    """Exactly 5 of the requests pass although both workers answered some.

    With a limiter per process, worker A answering a requests and B answering b would allow
    min(5, a) + min(5, b), which is more than 5 as soon as both answered one and a + b > 5.
    """
    user = await make_user(db, "two@example.com", credits_limit=100)
    cookies = auth_cookie(app_settings, user.id)
    # No keep-alive: every request opens its own connection, so both workers accept some.
    limits = httpx.Limits(max_keepalive_connections=0)
    responses: list[httpx.Response] = []
    served = Counter[str]()
    async with httpx.AsyncClient(
        base_url=two_workers.url, cookies=cookies, limits=limits, timeout=30
    ) as client:
        for burst in range(6):  # the kernel hands connections to either worker, unevenly
            responses += await asyncio.gather(
                *(client.post(GENERATE, json={"prompt": f"{burst}.{i}"}) for i in range(10))
            )
            await asyncio.sleep(0.2)  # let the access log lines reach the file
            served = log_pids(two_workers.log.read_text(), f"POST {GENERATE}")
            if len(served) == 2:
                break
    assert len(served) == 2, served
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 5 + [429] * (len(responses) - 5)
    for response in responses:
        assert response.headers["RateLimit-Limit"] == "5"
        if response.status_code == 429:
            retry_after = int(response.headers["Retry-After"])
            assert 0 < retry_after <= 12  # at most one interval: one slot per 12 s
            body = response.json()
            assert body == {"error": body["error"], "retry_after": retry_after}
            assert response.headers["RateLimit-Remaining"] == "0"
    assert await counts(db, user.id) == (5, {"succeeded": 5})
