import asyncio
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from redis.asyncio.connection import _AsyncHiredisParser

from aigen.clients.ratelimit import (
    Decision,
    FallbackRateLimiter,
    MemoryRateLimiter,
    RateLimit,
    RedisRateLimiter,
    build_redis,
    parse_rate_limit,
)

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
Limiter = RedisRateLimiter | MemoryRateLimiter

# Each worker connects, says "ready", waits for "go" on stdin, then fires all its hits at once.
WORKER = """
import asyncio, sys
import redis.asyncio
from aigen.clients.ratelimit import RedisRateLimiter, parse_rate_limit

async def main(url, prefix, hits):
    client = redis.asyncio.Redis.from_url(url, max_connections=hits)
    limiter = RedisRateLimiter(client, prefix=prefix)
    await client.ping()
    print("ready", flush=True)
    sys.stdin.readline()
    limit = parse_rate_limit("20/minute")
    decisions = await asyncio.gather(*(limiter.hit("user:1", limit) for _ in range(hits)))
    print(sum(decision.allowed for decision in decisions), flush=True)
    await client.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


class FakeClock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += round(seconds * 1_000_000_000)


@pytest.fixture
def prefix() -> str:
    return f"test:aigen:ratelimit:{uuid.uuid4().hex}:"


@pytest.fixture
async def redis_client(prefix: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    yield client
    async for key in client.scan_iter(match=prefix + "*"):
        await client.delete(key)
    await client.aclose()


@pytest.fixture(params=["redis", "memory"])
async def limiter(
    request: pytest.FixtureRequest, redis_client: redis.asyncio.Redis, prefix: str
) -> Limiter:
    if request.param == "memory":
        return MemoryRateLimiter()
    return RedisRateLimiter(redis_client, prefix=prefix)


@pytest.fixture
async def redis_limiter(redis_client: redis.asyncio.Redis, prefix: str) -> RedisRateLimiter:
    return RedisRateLimiter(redis_client, prefix=prefix)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10/minute", RateLimit(10, 60)),
        ("5/second", RateLimit(5, 1)),
        ("100/hour", RateLimit(100, 3600)),
        ("1000/day", RateLimit(1000, 86400)),
        ("3/10s", RateLimit(3, 10)),
        (" 3 / 10 seconds ", RateLimit(3, 10)),
        ("10 per minute", RateLimit(10, 60)),
        ("7/2h", RateLimit(7, 7200)),
        ("2/1.5s", RateLimit(2, 1.5)),
        ("1/DAY", RateLimit(1, 86400)),
    ],
)
def test_parse_rate_limit(text: str, expected: RateLimit) -> None:
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize(
    ("limit", "text"),
    [
        (RateLimit(10, 60), "10/minute"),
        (RateLimit(5, 1), "5/second"),
        (RateLimit(1000, 86400.0), "1000/day"),
        (RateLimit(3, 10), "3/10s"),
        (RateLimit(2, 1.5), "2/1.5s"),
    ],
)
def test_rate_limit_str_round_trips(limit: RateLimit, text: str) -> None:
    assert str(limit) == text
    assert parse_rate_limit(text) == limit


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10",
        "/minute",
        "minute",
        "ten/minute",
        "0/minute",
        "-1/minute",
        "1.5/minute",
        "10/",
        "10//minute",
        "10/fortnight",
        "10/ms",
        "10/0s",
        "10/-5s",
        "10/minute/extra",
        "10/400days",
        "10000000/second",
        "10/minute; DROP TABLE users",
    ],
)
def test_parse_rate_limit_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid rate limit"):
        parse_rate_limit(text)


@pytest.mark.parametrize(
    ("count", "period"), [(0, 60), (True, 60), (1.5, 60), (1, 0), (1, -1), (1, float("nan"))]
)
def test_rate_limit_rejects_bad_values(count: int, period: float) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        RateLimit(count, period)


def test_decision_headers() -> None:
    assert Decision(True, 20, 19, 3, 0).headers() == {
        "RateLimit-Limit": "20",
        "RateLimit-Remaining": "19",
        "RateLimit-Reset": "3",
    }
    assert Decision(False, 20, 0, 60, 3).headers() == {
        "RateLimit-Limit": "20",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "60",
        "Retry-After": "3",
    }


async def test_allows_count_then_refuses(limiter: Limiter) -> None:
    limit = parse_rate_limit("20/minute")
    decisions = [await limiter.hit("user:42", limit) for _ in range(20)]
    assert all(decision.allowed for decision in decisions)
    assert [decision.remaining for decision in decisions] == list(range(19, -1, -1))
    assert decisions[0] == Decision(True, 20, 19, 3, 0)  # one interval (60 s / 20) to refill
    assert decisions[-1].reset_after == 60
    refused = await limiter.hit("user:42", limit)
    assert refused == Decision(False, 20, 0, 60, 3)
    assert refused.headers()["Retry-After"] == "3"


async def test_refills_one_request_per_interval(limiter: Limiter) -> None:
    limit = parse_rate_limit("5/1s")
    for _ in range(5):
        assert (await limiter.hit("user:1", limit)).allowed
    refused = await limiter.hit("user:1", limit)
    assert (refused.allowed, refused.retry_after, refused.reset_after) == (False, 1, 1)
    await asyncio.sleep(0.25)  # one interval is 0.2 s
    refilled = await limiter.hit("user:1", limit)
    assert (refilled.allowed, refilled.remaining) == (True, 0)
    assert not (await limiter.hit("user:1", limit)).allowed


async def test_bucket_is_full_again_after_reset(limiter: Limiter) -> None:
    limit = parse_rate_limit("4/0.4s")
    for _ in range(4):
        await limiter.hit("user:1", limit)
    await asyncio.sleep(0.45)
    decisions = [await limiter.hit("user:1", limit) for _ in range(5)]
    assert [decision.allowed for decision in decisions] == [True] * 4 + [False]


async def test_keys_and_limits_have_separate_buckets(limiter: Limiter) -> None:
    per_minute = parse_rate_limit("1/minute")
    assert (await limiter.hit("user:1", per_minute)).allowed
    assert not (await limiter.hit("user:1", per_minute)).allowed
    assert (await limiter.hit("user:2", per_minute)).allowed
    assert (await limiter.hit("user:1", parse_rate_limit("1/hour"))).allowed


async def test_concurrent_hits_in_one_process(limiter: Limiter) -> None:
    limit = parse_rate_limit("20/minute")
    decisions = await asyncio.gather(*(limiter.hit("user:1", limit) for _ in range(100)))
    assert sum(decision.allowed for decision in decisions) == 20
    assert sorted(decision.remaining for decision in decisions if decision.allowed) == list(
        range(20)
    )


async def test_redis_key_expires_with_tat(
    redis_limiter: RedisRateLimiter, redis_client: redis.asyncio.Redis, prefix: str
) -> None:
    await redis_limiter.hit("user:42", parse_rate_limit("20/minute"))
    ttl = await redis_client.pttl(f"{prefix}20/minute:user:42")
    assert 2_900 <= ttl <= 3_000  # the TAT is one interval (3 s) ahead
    for _ in range(3):
        await redis_limiter.hit("user:42", parse_rate_limit("20/minute"))
    assert 11_900 <= await redis_client.pttl(f"{prefix}20/minute:user:42") <= 12_000


@pytest.mark.parametrize("key", ["ip:1.2.3.4\r\nFLUSHALL", "email:a b@example.com", "x" * 200])
async def test_redis_key_hashes_unsafe_input(
    redis_limiter: RedisRateLimiter, redis_client: redis.asyncio.Redis, prefix: str, key: str
) -> None:
    assert (await redis_limiter.hit(key, parse_rate_limit("1/minute"))).allowed
    assert not (await redis_limiter.hit(key, parse_rate_limit("1/minute"))).allowed
    [stored] = [name.decode() async for name in redis_client.scan_iter(match=prefix + "*")]
    assert stored.startswith(f"{prefix}1/minute:#")
    assert len(stored) == len(prefix) + len("1/minute:#") + 64


async def test_atomic_across_processes(redis_client: redis.asyncio.Redis, prefix: str) -> None:
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER, REDIS_URL, prefix, "50",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]  # fmt: skip
    for worker in workers:
        assert worker.stdout is not None
        assert await asyncio.wait_for(worker.stdout.readline(), 10) == b"ready\n"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(b"go\n")
    outputs = [await asyncio.wait_for(worker.communicate(), 10) for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 4
    assert sum(int(stdout) for stdout, _ in outputs) == 20


async def test_memory_limiter_with_uneven_interval() -> None:
    clock = FakeClock()
    limiter, limit = MemoryRateLimiter(clock_ns=clock), RateLimit(3, 1)  # 333_333 µs apart
    assert [(await limiter.hit("k", limit)).remaining for _ in range(3)] == [2, 1, 0]
    assert await limiter.hit("k", limit) == Decision(False, 3, 0, 1, 1)
    clock.advance(0.333_332)
    assert not (await limiter.hit("k", limit)).allowed
    clock.advance(0.000_001)
    assert await limiter.hit("k", limit) == Decision(True, 3, 0, 1, 0)


async def test_memory_limiter_forgets_full_buckets() -> None:
    clock = FakeClock()
    limiter, limit = MemoryRateLimiter(clock_ns=clock), parse_rate_limit("5/minute")
    for batch in range(20):
        for number in range(1000):
            await limiter.hit(f"user:{batch}:{number}", limit)
        clock.advance(13)  # one hit's TAT (12 s) has passed for every key so far
    assert len(limiter._tats) <= 4096  # not 20_000


async def test_the_process_limits_on_its_own_when_redis_is_down(
    redis_client: redis.asyncio.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aigen.clients.ratelimit")
    down = redis.asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    fallback = FallbackRateLimiter(RedisRateLimiter(down, prefix=prefix), timeout=0.3)
    limit = parse_rate_limit("1/minute")
    started = time.monotonic()
    decisions = [await fallback.hit("user:1", limit) for _ in range(3)]
    assert time.monotonic() - started < 2  # bounded by `timeout`, not redis-py's retries
    assert [decision.allowed for decision in decisions] == [True, False, False]
    assert (fallback.failures, fallback.healthy) == (3, False)
    assert fallback.last_error
    assert await fallback.ping()
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1  # once per outage, not once per request
    assert fallback.last_error in errors[0].getMessage()

    fallback.limiter.redis = redis_client
    assert await fallback.ping() is None
    assert (await fallback.hit("user:1", limit)).allowed
    assert not (await fallback.hit("user:1", limit)).allowed  # limiting again
    assert (fallback.failures, fallback.healthy) == (3, True)
    assert "recovered after 3 failed hits" in caplog.records[-1].getMessage()
    await down.aclose()


async def test_fallback_logs_again_after_log_every(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aigen.clients.ratelimit")
    down = redis.asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    fallback = FallbackRateLimiter(
        RedisRateLimiter(down, prefix=prefix), timeout=0.05, log_every=0.5
    )
    for _ in range(2):
        await fallback.hit("user:1", parse_rate_limit("1/minute"))
    assert len(caplog.records) == 1
    await asyncio.sleep(0.5)
    await fallback.hit("user:1", parse_rate_limit("1/minute"))
    assert len(caplog.records) == 2
    assert "3 failed hits in this outage" in caplog.records[-1].getMessage()
    await down.aclose()


async def test_the_apps_redis_client_parses_replies_with_hiredis() -> None:
    # redis[hiredis]: its C parser costs about a quarter less CPU per hit than the Python one.
    client = build_redis(REDIS_URL)
    try:
        assert await client.ping()
        connection = await client.connection_pool.get_connection()
        try:
            assert isinstance(connection._parser, _AsyncHiredisParser)
        finally:
            await client.connection_pool.release(connection)
    finally:
        await client.aclose()
