"""Rate limits of the app: the limiter behind them, the 429 answer and the RateLimit-* headers.

The GCRA itself lives in ratelimit.py. quart-rate-limiter's Redis store reads and then writes
the bucket in two round trips, so two workers can both spend the same slot; our Lua script
decides in one atomic round trip.
"""

from __future__ import annotations

import logging
import math
from typing import Protocol

import redis.asyncio
from quart import Quart, Response, g, has_request_context, request
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aigen.clients.ratelimit import (
    Decision,
    FailOpenRateLimiter,
    MemoryRateLimiter,
    RateLimit,
    RedisRateLimiter,
    parse_rate_limit,
)
from aigen.config import Settings
from aigen.web.errors import APIError

log = logging.getLogger(__name__)

REDIS_TIMEOUT = 0.5
REDIS_MAX_CONNECTIONS = 50
# Messages may use {seconds} and {minutes}: how long until a request will be allowed.
RATE_LIMITED_MESSAGE = "Too many requests. Please wait {seconds} s and try again."


class Limiter(Protocol):
    async def hit(self, key: str, limit: RateLimit) -> Decision: ...


class RateLimited(APIError):
    """429 with Retry-After and the RateLimit-* headers of the refused hit."""

    def __init__(self, decision: Decision, message: str | None = None) -> None:
        seconds = decision.retry_after
        text = (message or RATE_LIMITED_MESSAGE).format(
            seconds=seconds, minutes=math.ceil(seconds / 60)
        )
        super().__init__(429, text, retry_after=seconds)
        self.headers = decision.headers()


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


def build_limiter(settings: Settings) -> tuple[Limiter, redis.asyncio.Redis | None]:
    """Redis-backed and fail-open when REDIS_URL is set, else in-process (development)."""
    if not settings.redis_url:
        return MemoryRateLimiter(), None
    client = build_redis(settings.redis_url)
    limiter = RedisRateLimiter(client, prefix=settings.rate_limit_prefix)
    return FailOpenRateLimiter(limiter, timeout=REDIS_TIMEOUT), client


async def enforce(limiter: Limiter, key: str, limit: RateLimit, message: str | None = None) -> None:
    """Count one hit on `key`; raise RateLimited when over. The headers go on the response."""
    decision = await limiter.hit(key, limit)
    if has_request_context():
        g.rate_limit = decision
    if not decision.allowed:
        raise RateLimited(decision, message)


def client_ip() -> str:
    """The client's address (already corrected by ProxyFixMiddleware when FORWARDED_HOPS > 0)."""
    return request.remote_addr or "unknown"


async def limit_sign_in() -> None:
    """Per-IP limit of /login and /auth/callback (before_request of the auth blueprint)."""
    from aigen.web.runtime import runtime

    if request.endpoint in ("auth.login", "auth.callback"):
        settings = runtime().settings
        await enforce(
            runtime().limiter, f"ip:{client_ip()}", parse_rate_limit(settings.login_rate_limit)
        )


async def add_rate_limit_headers(response: Response) -> Response:
    """RateLimit-Limit/-Remaining/-Reset on every answer of a limited route."""
    decision: Decision | None = g.get("rate_limit")
    if decision is not None:
        for name, value in decision.headers().items():
            response.headers.setdefault(name, value)
    return response


def install(app: Quart, settings: Settings) -> None:
    """Register the sign-in limit and header hooks; behind proxies, trust X-Forwarded-For."""
    app.before_request(limit_sign_in)
    app.after_request(add_rate_limit_headers)
    if settings.forwarded_hops:
        from hypercorn.middleware import ProxyFixMiddleware

        app.asgi_app = ProxyFixMiddleware(  # type: ignore[method-assign]
            app.asgi_app, mode="legacy", trusted_hops=settings.forwarded_hops
        )
