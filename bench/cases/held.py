"""Case 4: thousands of generations held in flight by one process with a pool of 10.

One worker, DB_POOL_MAX=10, an upstream taking mode.held_upstream seconds (20 in full mode),
mode.held generations (5,000 in full mode) from as many users, started over mode.held_ramp
seconds so the listen backlog is not what is measured. Sampled beside the load: connections to
the database (pg_stat_activity) and the worker's RSS (/proc). From the upstream itself: how many
calls it was answering at once.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack
from typing import Any

import asyncpg

from bench.cases.context import Context
from bench.cases.overhead import delayed_prompt
from bench.harness.app import start_app
from bench.harness.client import drive
from bench.harness.database import BENCH_DATABASE
from bench.harness.report import Row, number, verdict
from bench.harness.sampling import PeakSampler, connections_of, rss_of
from bench.harness.services import HOST
from bench.harness.stats import latency_summary
from bench.harness.upstream import IN_FLIGHT_PATH, upstream_call

POOL = 10
RSS_LIMIT_MB = 250.0
UPSTREAM_TIMEOUT = 120.0  # the app's default AIGEN_UPSTREAM_TIMEOUT
CLIENT_MARGIN = 30.0


def held_spec(ctx: Context, port: int) -> dict[str, Any]:
    """mode.held generations, one per user (users reused only past 10,000)."""
    count = ctx.mode.held
    prompt = delayed_prompt(ctx.mode.held_upstream)
    requests = [
        {
            "headers": {"Cookie": ctx.cookies[ctx.users[index % len(ctx.users)]]},
            "body": ctx.generate_body(f"{prompt} #{index}"),
        }
        for index in range(count)
    ]
    return {
        "host": HOST,
        "port": port,
        "path": "/api/generate",
        "requests": requests,
        "ramp_seconds": ctx.mode.held_ramp,
        "timeout": UPSTREAM_TIMEOUT + CLIENT_MARGIN,
    }


async def run(ctx: Context) -> None:
    """Case 4, with an app of its own (one worker)."""
    with ExitStack() as stack:
        app = start_app(
            stack,
            # As an operator holding this many calls would: a connection to Claude for each.
            ctx.environment(
                DB_POOL_MAX=str(POOL), AIGEN_UPSTREAM_CONNECTIONS=str(max(ctx.mode.held, 1000))
            ),
            workers=1,
            log_dir=ctx.folder,
            name="app-held",
        )
        upstream_call(ctx.upstream.url, IN_FLIGHT_PATH, "DELETE")
        worker = app.worker_pids()
        sampler_conn = await asyncpg.connect(ctx.admin_url)
        try:
            async with (
                PeakSampler(connections_of(sampler_conn, BENCH_DATABASE)) as connections,
                PeakSampler(rss_of(worker)) as rss,
            ):
                outcome = await drive(held_spec(ctx, int(app.url.rsplit(":", 1)[1])))
        finally:
            await sampler_conn.close()
        upstream_calls = upstream_call(ctx.upstream.url, IN_FLIGHT_PATH)["peak"]
    report(ctx, outcome, connections, rss, upstream_calls)


def report(
    ctx: Context,
    outcome: dict[str, Any],
    connections: PeakSampler,
    rss: PeakSampler,
    upstream_calls: int,
) -> None:
    """Results and table rows of case 4."""
    results = outcome["results"]
    statuses = Counter(str(item["status"] or item["error"]) for item in results)
    latency = latency_summary([item["seconds"] for item in results])
    errors = len(results) - statuses.get("200", 0)
    p99_limit_ms = (ctx.mode.held_upstream + 1) * 1000
    ctx.results["4_held_in_flight"] = {
        "generations": ctx.mode.held,
        "upstream_seconds": ctx.mode.held_upstream,
        "ramp_seconds": ctx.mode.held_ramp,
        "statuses": dict(statuses),
        "latency": latency,
        "peak_in_flight_client": outcome["peak_in_flight"],
        "peak_upstream_calls_in_flight": upstream_calls,
        "peak_postgres_connections": connections.peak,
        "rss_mb": {"at_start": rss.first, "peak": rss.peak},
        "samples": {"connections": connections.samples, "rss": rss.samples},
        "wall_seconds": outcome["wall_seconds"],
    }
    label = f"{ctx.mode.held:,} held, 1 worker, pool {POOL}, {ctx.mode.held_upstream:g} s upstream"
    label += f", started over {ctx.mode.held_ramp:g} s"
    # What one more generation in flight costs in memory: for sizing, beside the target.
    per_generation_kb = (rss.peak - rss.first) * 1000 / max(outcome["peak_in_flight"], 1)
    ctx.results["4_held_in_flight"]["rss_kb_per_generation_in_flight"] = round(per_generation_kb)
    ctx.add(
        Row(
            "4 held in flight",
            label,
            f"{errors} errors, p99 {number(latency.get('p99_ms', 0) / 1000, 's', 2)}",
            f"statuses {dict(statuses)}; {outcome['peak_in_flight']:,} in flight at once, "
            f"{upstream_calls:,} upstream calls at once",
            "",
            f"0 errors, p99 <= {p99_limit_ms / 1000:g} s",
            verdict(errors == 0 and latency.get("p99_ms", float("inf")) <= p99_limit_ms),
        ),
        Row(
            "4 held in flight",
            "peak PostgreSQL connections (pg_stat_activity)",
            number(connections.peak, "", 0),
            f"pool {POOL}",
            target=f"<= {POOL}",
            verdict=verdict(connections.peak <= POOL),
        ),
        Row(
            "4 held in flight",
            "peak RSS of the worker (/proc)",
            number(rss.peak, "MB"),
            f"{number(rss.first, 'MB')} before the load; {per_generation_kb:,.0f} KB per"
            " generation in flight",
            target=f"<= {RSS_LIMIT_MB:g} MB",
            verdict=verdict(rss.peak <= RSS_LIMIT_MB),
        ),
    )
