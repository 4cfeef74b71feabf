"""Time GET /api/usage's query for one user with 100,000 generations in the current month.

    PYTHONPATH=src python bench/usage.py [postgresql://postgres@127.0.0.1:5432/postgres]

Creates (and afterwards drops) the database `aigen_bench_usage` on that server, applies the
migrations, inserts the generations (plus 1,000,000 of other users and 50,000 of the same user
in earlier months), and times repository.select_usage with and without the usage index.
Prints figures; it is not a test.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]  # this checkout's code, also as a plain script

from aigen.core.usage import month_period  # noqa: E402
from aigen.store import repository  # noqa: E402
from bench.harness.database import scratch_connection, without_index  # noqa: E402

BENCH_DATABASE = "aigen_bench_usage"
GENERATIONS = 100_000
RUNS = 50
USAGE_INDEX = "generations_user_created_usage_idx"


async def main(admin_url: str) -> None:
    async with scratch_connection(admin_url, BENCH_DATABASE) as conn:
        await run(conn)


async def run(conn: asyncpg.Connection) -> None:
    start, end = month_period(datetime.now(UTC))
    user_id = await fill(conn, start, end)
    print(f"user {user_id}: {GENERATIONS:,} generations in {start:%Y-%m}, plus others")
    usage = await repository.select_usage(conn, user_id, start, end)
    print(
        f"result: total={usage.total:,} succeeded={usage.succeeded:,} failed={usage.failed:,}"
        f" input={usage.input_tokens:,} output={usage.output_tokens:,} days={len(usage.daily)}"
    )
    await report(conn, "with the usage index", user_id, start, end)
    async with without_index(conn, USAGE_INDEX):
        await report(conn, "without it (generations_user_newest_idx)", user_id, start, end)


async def fill(conn: asyncpg.Connection, start: datetime, end: datetime) -> int:
    """One heavy user and a busy neighbour; 90 % succeeded, 8 % failed, 2 % pending."""
    ids = [
        await conn.fetchval(
            "INSERT INTO users (sub, email, email_verified, credits_limit)"
            " VALUES ($1, $1, true, 10) RETURNING id",
            f"bench{number}@example.com",
        )
        for number in range(5)
    ]
    span = (end - start).total_seconds()
    await conn.execute(
        """
        INSERT INTO generations (user_id, prompt, model, status, input_tokens, output_tokens,
                                 created_at)
        SELECT u.user_id, 'prompt ' || g, 'model',
               CASE WHEN g % 50 = 0 THEN 'pending' WHEN g % 12 = 0 THEN 'failed'
                    ELSE 'succeeded' END,
               CASE WHEN g % 12 = 0 OR g % 50 = 0 THEN NULL ELSE 10 + g % 90 END,
               CASE WHEN g % 12 = 0 OR g % 50 = 0 THEN NULL ELSE 100 + g % 900 END,
               u.base + make_interval(secs => (g::float8 / u.n) * u.span)
        FROM (VALUES ($1::bigint, $3::int, $4::timestamptz, $5::float8),
                     ($1, 50000, $4 - interval '90 days', 86400.0 * 85),
                     ($2, 1000000, $4, $5)) AS u(user_id, n, base, span),
             generate_series(0, u.n - 1) AS g
        ORDER BY 7  -- stored in time order, so one user's rows are spread among the others'
        """,
        ids[0],
        ids[1],
        GENERATIONS,
        start,
        span,
    )
    await conn.execute("VACUUM ANALYZE generations")
    return ids[0]


async def report(
    conn: asyncpg.Connection, label: str, user_id: int, start: datetime, end: datetime
) -> None:
    timings = []
    for _ in range(RUNS):
        began = time.perf_counter()
        await repository.select_usage(conn, user_id, start, end)
        timings.append((time.perf_counter() - began) * 1000)
    timings.sort()
    print(
        f"{label}: median {statistics.median(timings):.1f} ms,"
        f" p95 {timings[int(RUNS * 0.95) - 1]:.1f} ms, min {timings[0]:.1f} ms ({RUNS} runs)"
    )
    # The scan at the heart of select_usage (its grouping on top is the same in both cases).
    plan = await conn.fetch(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT count(*),"
        " count(*) FILTER (WHERE status = 'failed'), sum(input_tokens), sum(output_tokens)"
        " FROM generations WHERE user_id = $1 AND created_at >= $2 AND created_at < $3",
        user_id,
        start,
        end,
    )
    for row in plan:
        if "Scan" in row[0] or "Heap Fetches" in row[0] or "Execution" in row[0]:
            print("    " + row[0].strip())


if __name__ == "__main__":
    default = "postgresql://postgres@127.0.0.1:5432/postgres"
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else default))
