"""Time GET /api/usage's per-key figures for a user with 100,000 generations this month.

    PYTHONPATH=src python bench/usage_keys.py [postgresql://postgres@127.0.0.1:5432/postgres]

Creates (and afterwards drops) the database `aigen_bench_usage_keys`, applies the migrations and
inserts the generations: 40 % of the heavy user's made with one of 3 API keys, a neighbour with
1,000,000 (half with a key), and 50,000 of the heavy user in earlier months. Times
repository.select_usage_by_key with and without its partial index, and the whole usage report
(both queries in one snapshot) against select_usage alone. Prints figures; it is not a test.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]  # this checkout's code, also as a plain script

from aigen.core.usage import month_period  # noqa: E402
from aigen.store import repository  # noqa: E402
from bench.harness.database import scratch_connection, without_index  # noqa: E402

BENCH_DATABASE = "aigen_bench_usage_keys"
GENERATIONS = 100_000
RUNS = 50
KEY_INDEX = "generations_user_key_usage_idx"


async def main(admin_url: str) -> None:
    async with scratch_connection(admin_url, BENCH_DATABASE) as conn:
        await run(conn)


async def run(conn: asyncpg.Connection) -> None:
    start, end = month_period(datetime.now(UTC))
    user_id = await fill(conn, start, end)
    by_key = await repository.select_usage_by_key(conn, user_id, start, end)
    print(f"user {user_id}: {GENERATIONS:,} generations in {start:%Y-%m}, plus others")
    print("keys: " + ", ".join(f"{key.name}={key.generations:,}" for key in by_key))

    async def per_key() -> None:
        await repository.select_usage_by_key(conn, user_id, start, end)

    async def totals() -> None:
        await repository.select_usage(conn, user_id, start, end)

    async def report() -> None:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await repository.select_usage(conn, user_id, start, end)
            await repository.select_usage_by_key(conn, user_id, start, end)

    await timed("select_usage (totals and days)", totals)
    await timed("usage report (totals, days and keys, one snapshot)", report)
    await timed("select_usage_by_key with its partial index", per_key)
    await plan(conn, user_id, start, end)
    async with without_index(conn, KEY_INDEX):
        await timed("select_usage_by_key without it", per_key)
        await plan(conn, user_id, start, end)


async def fill(conn: asyncpg.Connection, start: datetime, end: datetime) -> int:
    """The heavy user with 3 keys, a busy neighbour with 1; created_at spread over the month."""
    ids = [
        await conn.fetchval(
            "INSERT INTO users (sub, email, email_verified, credits_limit)"
            " VALUES ($1, $1, true, 10) RETURNING id",
            f"bench{number}@example.com",
        )
        for number in range(2)
    ]
    mine = [
        (await repository.insert_api_key(conn, ids[0], name, f"aig_{name}", bytes([n]) * 32)).id
        for n, name in enumerate(("ci", "laptop", "nightly"))
    ]
    theirs = (await repository.insert_api_key(conn, ids[1], "theirs", "aig_t", b"t" * 32)).id
    span = (end - start).total_seconds()
    await conn.execute(
        """
        INSERT INTO generations (user_id, api_key_id, prompt, model, status, input_tokens,
                                 output_tokens, created_at)
        SELECT u.user_id,
               CASE WHEN g % 10 < u.keyed THEN u.keys[1 + g % array_length(u.keys, 1)] END,
               'prompt ' || g, 'model', 'succeeded', 10 + g % 90, 100 + g % 900,
               u.base + make_interval(secs => (g::float8 / u.n) * u.span)
        FROM (VALUES ($1::bigint, $3::bigint[], 4, $5::int, $6::timestamptz, $7::float8),
                     ($1, $3, 4, 50000, $6 - interval '90 days', 86400.0 * 85),
                     ($2, ARRAY[$4::bigint], 5, 1000000, $6, $7))
             AS u(user_id, keys, keyed, n, base, span),
             generate_series(0, u.n - 1) AS g
        ORDER BY 8
        """,
        ids[0],
        ids[1],
        mine,
        theirs,
        GENERATIONS,
        start,
        span,
    )
    await conn.execute("VACUUM ANALYZE generations")
    return ids[0]


async def timed(label: str, query: Callable[[], Awaitable[None]]) -> None:
    timings = []
    for _ in range(RUNS):
        began = time.perf_counter()
        await query()
        timings.append((time.perf_counter() - began) * 1000)
    timings.sort()
    print(
        f"{label}: median {statistics.median(timings):.1f} ms,"
        f" p95 {timings[int(RUNS * 0.95) - 1]:.1f} ms, min {timings[0]:.1f} ms ({RUNS} runs)"
    )


async def plan(conn: asyncpg.Connection, user_id: int, start: datetime, end: datetime) -> None:
    """The scan at the heart of select_usage_by_key."""
    rows = await conn.fetch(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT api_key_id, count(*), sum(output_tokens)"
        " FROM generations WHERE user_id = $1 AND created_at >= $2 AND created_at < $3"
        " AND api_key_id IS NOT NULL GROUP BY api_key_id",
        user_id,
        start,
        end,
    )
    for row in rows:
        if "Scan" in row[0] or "Heap Fetches" in row[0] or "Execution" in row[0]:
            print("    " + row[0].strip())


if __name__ == "__main__":
    default = "postgresql://postgres@127.0.0.1:5432/postgres"
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else default))
