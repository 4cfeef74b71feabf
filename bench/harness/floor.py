"""What the libraries of one generation cost alone: CPU per generation, each measured by itself.

    python -m bench.harness.floor --database-url U --redis-url U --claude-url U --users 1,2,...

In one process on uvloop, as a worker runs them, `CONCURRENCY` tasks repeat one part of a
generation at a time and the process's CPU time is divided by the number done:
- `sdk`: one Messages API call through aigen's ClaudeClient (the official SDK on aiohttp, as
  configured for the app) against the bench's Claude stand-in;
- `database`: the app's statements of one generation through asyncpg and aigen's pool: the
  session check (one pooled statement), the reservation (BEGIN, the lock, the charge with the
  insert, COMMIT) and the finalization (one pooled statement);
- `rate_limit`: one hit of the Redis rate limiter (EVALSHA through redis-py).
The HTTP server and framework's part is measured separately, on the bare app (bench/cases/
floor.py). It prints one JSON object: milliseconds of CPU per generation for each part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from itertools import cycle

import uvloop

from aigen.clients.claude import ClaudeClient
from aigen.clients.ratelimit import RateLimit, build_limiter
from aigen.store import repository
from aigen.store.pool import connection, create_pool
from bench.harness.pgbench import MODEL, RESULT_TEXT

CONCURRENCY = 16
PROMPT = "Bench generation"
BENCH_LIMIT = RateLimit(count=1_000_000, period=60.0)


async def cpu_ms_per_call(call: Callable[[int], Awaitable[object]], calls: int) -> float:
    """Milliseconds of this process's CPU per `call`, `CONCURRENCY` at a time (after a warm-up)."""

    async def worker(ids: range) -> None:
        for index in ids:
            await call(index)

    async def run(count: int) -> None:
        share = max(count // CONCURRENCY, 1)
        await asyncio.gather(
            *(worker(range(n * share, (n + 1) * share)) for n in range(CONCURRENCY))
        )

    await run(CONCURRENCY * 5)
    began = time.process_time()
    await run(calls)
    done = max(calls // CONCURRENCY, 1) * CONCURRENCY
    return (time.process_time() - began) / done * 1000


async def measure(args: argparse.Namespace) -> dict[str, float]:
    """CPU per generation of each part."""
    users = cycle(args.users)
    claude = ClaudeClient(
        api_key="bench",
        base_url=args.claude_url,
        model=MODEL,
        max_tokens=1024,
        timeout=30.0,
        max_connections=CONCURRENCY,
    )
    pool = await create_pool(args.database_url, CONCURRENCY)
    limiter, redis_client = build_limiter(args.redis_url, f"bench:floor:{time.time_ns()}:")
    assert redis_client is not None

    async def sdk(_: int) -> None:
        await claude.complete(PROMPT)

    async def database(_: int) -> None:
        user_id = next(users)
        async with connection(pool) as conn:
            await repository.select_user_in_current_period(conn, user_id)
        async with connection(pool) as conn, conn.transaction():
            await repository.lock_user_in_current_period(conn, user_id)
            generation = await repository.insert_charged_generation(conn, user_id, PROMPT, MODEL)
        async with connection(pool) as conn:
            await repository.update_generation_result(
                conn,
                user_id,
                generation.id,
                result=RESULT_TEXT,
                model=MODEL,
                input_tokens=4,
                output_tokens=120,
            )

    async def rate_limit(index: int) -> None:
        await limiter.hit(f"user:{index % 10_000}", BENCH_LIMIT)

    try:
        return {
            "sdk": await cpu_ms_per_call(sdk, args.calls),
            "database": await cpu_ms_per_call(database, args.calls),
            "rate_limit": await cpu_ms_per_call(rate_limit, args.calls),
        }
    finally:
        await claude.aclose()
        await pool.close()
        await redis_client.aclose()


def main() -> None:
    """Command line: print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--claude-url", required=True)
    parser.add_argument("--users", required=True, help="comma-separated user ids")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    args.users = [int(user) for user in args.users.split(",")]
    print(json.dumps(uvloop.run(measure(args))))


if __name__ == "__main__":
    main()
