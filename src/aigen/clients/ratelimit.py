"""Per-key rate limits (GCRA) shared by every worker process through one atomic Redis script.

GCRA keeps one number per key, the theoretical arrival time (TAT). A limit of `count` per
`period` admits one request every `interval = period / count` with a burst of `count`:
a request is allowed when `max(TAT, now) + interval - count * interval <= now`, and then the
TAT moves on by one interval. The check and the update run inside one Lua script, with Redis
`TIME` as the clock, so concurrent workers can never both spend the same slot.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

REDIS_TIMEOUT = 0.5
# A burst of thousands of requests in one process queues for these (up to REDIS_TIMEOUT).
REDIS_MAX_CONNECTIONS = 200
MAX_PERIOD = 366 * 86400.0  # keeps TAT arithmetic in microseconds exact in Lua's doubles
MICROS = 1_000_000
UNIT_SECONDS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
UNIT_NAMES: dict[float, str] = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
RATE_PATTERN = re.compile(r"\s*(\d+)\s*(?:/|\s+per\s+)\s*(\d+(?:\.\d+)?)?\s*([A-Za-z]+)\s*")
READABLE_KEY = re.compile(r"[A-Za-z0-9_.:@-]{1,100}")
REDIS_DOWN_ERRORS = (RedisError, OSError, TimeoutError)

# KEYS[1]: the TAT key.  ARGV[1]: interval in microseconds.  ARGV[2]: burst (= count).
# Returns {allowed 0|1, remaining, reset_after_us, retry_after_us}; mirrored by `gcra` below.
GCRA_SCRIPT = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl_ms))
return {1, math.floor((now - allow_at) / interval), new_tat - now, 0}
"""


@dataclass(frozen=True)
class RateLimit:
    """`count` requests per `period` seconds, with bursts of up to `count`."""

    count: int
    period: float

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"rate limit count must be a whole number >= 1, not {self.count!r}")
        if not 0 < self.period <= MAX_PERIOD:
            raise ValueError(f"rate limit period must be > 0 and <= 366 days, not {self.period!r}")
        if self.interval_us < 1:
            raise ValueError(f"rate limit {self} is finer than one request per microsecond")

    @property
    def interval_us(self) -> int:
        """Microseconds between requests at the sustained rate (GCRA's emission interval)."""
        return round(self.period * MICROS) // self.count

    def __str__(self) -> str:
        if self.period in UNIT_NAMES:
            return f"{self.count}/{UNIT_NAMES[self.period]}"
        period = int(self.period) if float(self.period).is_integer() else repr(float(self.period))
        return f"{self.count}/{period}s"


def parse_rate_limit(text: str) -> RateLimit:
    """Parse '10/minute', '100/hour', '1000/day', '5/second', '3/10s' or '10 per minute'."""
    match = RATE_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(
            f"invalid rate limit {text!r}: expected <count>/<period> such as "
            "'10/minute', '100/hour', '1000/day' or '3/10s'"
        )
    count, amount, unit = match.groups()
    if unit.lower() not in UNIT_SECONDS:
        raise ValueError(
            f"invalid rate limit {text!r}: unknown unit {unit!r} (use second, minute, hour or day)"
        )
    try:
        return RateLimit(int(count), float(amount or 1) * UNIT_SECONDS[unit.lower()])
    except ValueError as error:
        raise ValueError(f"invalid rate limit {text!r}: {error}") from None


@dataclass(frozen=True)
class Decision:
    """The outcome of one hit.

    `reset_after` is the whole seconds (rounded up) until the key's bucket is full again,
    i.e. until `remaining` would be back to `limit` if no further requests arrived.
    `retry_after` is the whole seconds (rounded up, >= 1) until a request can be allowed,
    and 0 when this one was allowed.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: int
    retry_after: int

    def headers(self) -> dict[str, str]:
        """RateLimit-* response headers, plus Retry-After when the request was refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def gcra(now: int, tat: int | None, limit: RateLimit) -> tuple[Decision, int | None]:
    """One GCRA step in microseconds: the decision and the new TAT (None when refused)."""
    interval = limit.interval_us
    tat = now if tat is None or tat < now else tat
    new_tat = tat + interval
    allow_at = new_tat - interval * limit.count
    if now < allow_at:
        return make_decision(limit, False, 0, tat - now, allow_at - now), None
    remaining = (now - allow_at) // interval
    return make_decision(limit, True, remaining, new_tat - now, 0), new_tat


def make_decision(
    limit: RateLimit, allowed: bool, remaining: int, reset_us: int, retry_us: int
) -> Decision:
    """Build a Decision from the script's microsecond results, rounding times up."""
    return Decision(
        allowed=allowed,
        limit=limit.count,
        remaining=max(0, min(limit.count, remaining)),
        reset_after=math.ceil(reset_us / MICROS),
        retry_after=0 if allowed else max(1, math.ceil(retry_us / MICROS)),
    )


def storage_key(key: str, limit: RateLimit) -> str:
    """The key's name in storage: readable when safe, hashed otherwise; one bucket per limit."""
    if READABLE_KEY.fullmatch(key) is None:
        # '#' is outside READABLE_KEY, so a hashed name cannot collide with a readable one.
        key = "#" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{limit}:{key}"


class RedisRateLimiter:
    """GCRA shared by all processes: one EVALSHA round trip per hit, Redis TIME as the clock."""

    def __init__(self, redis: redis.asyncio.Redis, *, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        # redis-py's Script sends EVALSHA and falls back to SCRIPT LOAD on NOSCRIPT.
        self._script = redis.register_script(GCRA_SCRIPT)

    async def hit(self, key: str, limit: RateLimit) -> Decision:
        """Count one request against `key` (e.g. 'user:42') and decide whether to allow it."""
        result = await self._script(
            keys=[self.prefix + storage_key(key, limit)],
            args=[limit.interval_us, limit.count],
            client=self.redis,
        )
        allowed, remaining, reset_us, retry_us = (int(value) for value in result)
        return make_decision(limit, bool(allowed), remaining, reset_us, retry_us)


class MemoryRateLimiter:
    """The same GCRA inside one process, for development without Redis.

    `hit` never awaits between reading and writing a TAT, so concurrent tasks on the event
    loop cannot interleave there and no lock is needed.
    """

    def __init__(self, *, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock_ns = clock_ns
        self._tats: dict[tuple[RateLimit, str], int] = {}
        self._sweep_at = 1024

    async def hit(self, key: str, limit: RateLimit) -> Decision:
        """Count one request against `key` and decide whether to allow it."""
        now = self._clock_ns() // 1000
        decision, new_tat = gcra(now, self._tats.get((limit, key)), limit)
        if new_tat is not None:
            self._tats[(limit, key)] = new_tat
            self._sweep(now)
        return decision

    def _sweep(self, now: int) -> None:
        # Amortised O(1): forget full buckets whenever the table has doubled since last time.
        if len(self._tats) < self._sweep_at:
            return
        self._tats = {bucket: tat for bucket, tat in self._tats.items() if tat > now}
        self._sweep_at = max(1024, 2 * len(self._tats))


class FallbackRateLimiter:
    """Wraps a RedisRateLimiter so that a Redis outage falls back to this process's own limiter.

    During an outage each worker limits on its own (MemoryRateLimiter): a user may get up to
    one allowance per worker, never an unlimited number. `failures` counts hits decided by the
    fallback; `healthy` and `last_error` describe the most recent hit. An ERROR is logged when
    an outage starts and then at most every `log_every` seconds; `timeout` bounds how long a
    hit may wait for Redis (including redis-py's own retries) before the fallback decides.
    """

    def __init__(
        self, limiter: RedisRateLimiter, *, timeout: float = 0.5, log_every: float = 60.0
    ) -> None:
        self.limiter = limiter
        self.fallback = MemoryRateLimiter()
        self.timeout = timeout
        self.log_every = log_every
        self.failures = 0
        self.healthy = True
        self.last_error: str | None = None
        self._outage_failures = 0
        self._last_logged = -math.inf

    async def hit(self, key: str, limit: RateLimit) -> Decision:
        """Like RedisRateLimiter.hit; while Redis is unavailable, this process's limiter decides."""
        try:
            async with asyncio.timeout(self.timeout):
                decision = await self.limiter.hit(key, limit)
        except REDIS_DOWN_ERRORS as error:
            self._record_failure(error)
            return await self.fallback.hit(key, limit)
        if not self.healthy:
            logger.warning("rate limiter recovered after %d failed hits", self._outage_failures)
            self.healthy = True
            self._outage_failures = 0
        return decision

    async def ping(self) -> str | None:
        """None when Redis answers within `timeout`, else why not (for /readyz)."""
        try:
            async with asyncio.timeout(self.timeout):
                await self.limiter.redis.ping()
        except REDIS_DOWN_ERRORS as error:
            return self._describe(error)
        return None

    def _record_failure(self, error: BaseException) -> None:
        self.failures += 1
        self._outage_failures += 1
        self.last_error = self._describe(error)
        now = time.monotonic()
        if self.healthy or now - self._last_logged >= self.log_every:
            logger.error(
                "rate limiter unavailable, limiting per worker process (%d failed hits in this "
                "outage, %d in total): %s",
                self._outage_failures,
                self.failures,
                self.last_error,
            )
            self._last_logged = now
        self.healthy = False

    def _describe(self, error: BaseException) -> str:
        if isinstance(error, TimeoutError) and not str(error):
            return f"no answer from Redis within {self.timeout:g} s"
        return f"{type(error).__name__}: {error}"


def build_redis(url: str) -> redis.asyncio.Redis:
    """A client that gives up quickly: a blocking pool (a full pool waits, it does not raise)."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=REDIS_TIMEOUT,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), 1),
    )
    return redis.asyncio.Redis.from_pool(pool)


def build_limiter(
    redis_url: str | None, prefix: str
) -> tuple[MemoryRateLimiter | FallbackRateLimiter, redis.asyncio.Redis | None]:
    """Redis-backed (in-process while Redis is down) with a Redis URL, else in-process."""
    if not redis_url:
        return MemoryRateLimiter(), None
    client = build_redis(redis_url)
    limiter = RedisRateLimiter(client, prefix=prefix)
    return FallbackRateLimiter(limiter, timeout=REDIS_TIMEOUT), client
