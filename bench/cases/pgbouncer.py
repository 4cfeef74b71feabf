"""Throughput through PgBouncer (transaction pooling) beside direct connections.

pgbench's ceiling is measured both ways with the extended protocol (PgBouncer before 1.21
cannot keep prepared statements across transactions). Case 1 runs through PgBouncer only once
the app accepts `DATABASE_PGBOUNCER=1`; until then this prints "pgbouncer: not supported yet".
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack

from tests.pgbouncer import running_pgbouncer

from bench.cases.context import Context
from bench.cases.throughput import ceiling, load_generations
from bench.harness.app import start_app
from bench.harness.report import Row, number, percent
from bench.harness.stats import ratio

SETTING = "DATABASE_PGBOUNCER"
# Server connections PgBouncer keeps for the bench database (pgbench's 8 clients and two
# workers' pools share them), and clients it lets in.
POOL_SIZE = 20
MAX_CLIENTS = 10_000


def app_accepts(environment: Mapping[str, str], name: str, value: str) -> bool:
    """Whether the app's settings change when `name=value` is added (unknown names change none)."""
    from aigen.config import ConfigError, load_settings

    try:
        return load_settings({**environment, name: value}) != load_settings(environment)
    except ConfigError:
        return False


async def run(ctx: Context) -> None:
    """PgBouncer's figures beside the direct ones."""
    if ctx.tools.pgbouncer is None:
        ctx.add(Row("pgbouncer", "throughput", "pgbouncer is not installed"))
        return
    supported = app_accepts(ctx.environment(), SETTING, "1")
    results: dict[str, object] = {"app_supports_" + SETTING: supported}
    direct = await ceiling(ctx, ctx.database_url, mode="extended")
    with running_pgbouncer(ctx.admin_url, pool_size=POOL_SIZE, max_clients=MAX_CLIENTS) as bouncer:
        bouncer_url = bouncer.url(ctx.database_url)
        bounced = await ceiling(ctx, bouncer_url, mode="extended")
        results["pgbench_direct"] = direct.to_json()
        results["pgbench_through_pgbouncer"] = bounced.to_json()
        ctx.add(
            Row(
                "pgbouncer",
                "pgbench ceiling through PgBouncer (extended protocol)",
                number(bounced.tps, "gen/s"),
                f"direct {number(direct.tps, 'gen/s')}",
                percent(ratio(bounced.tps, direct.tps)),
            )
        )
        if supported:
            await app_through(ctx, bouncer_url, results)
        else:
            print("  pgbouncer: not supported yet", flush=True)
            ctx.add(Row("pgbouncer", "/api/generate through PgBouncer", "not supported yet"))
    ctx.results["pgbouncer"] = results


async def app_through(ctx: Context, bouncer_url: str, results: dict[str, object]) -> None:
    """Case 1 with the app's connections going through PgBouncer."""
    environment = ctx.environment(DATABASE_URL=bouncer_url, **{SETTING: "1"})
    with ExitStack() as stack:
        app = start_app(
            stack, environment, workers=ctx.mode.workers, log_dir=ctx.folder, name="app-pgbouncer"
        )
        cookies = ctx.cookie_file("cookies.txt", ctx.users)
        result = await load_generations(
            ctx, app, ctx.mode.seconds, cookies, ctx.mode.throughput_connections
        )
    direct = ctx.results.get("1_throughput", {}).get("app", {}).get("ok_rate_per_s")
    results["app_through_pgbouncer"] = result.to_json()
    ctx.add(
        Row(
            "pgbouncer",
            f"/api/generate through PgBouncer, {ctx.mode.workers} workers",
            number(result.ok_rate, "gen/s"),
            f"direct (case 1) {number(direct, 'gen/s')}",
            percent(ratio(result.ok_rate, direct)),
        )
    )
