"""Case 1: generations per second through the app, as a share of pgbench's ceiling.

The upstream answers at once, so what is measured is the app's own cost per generation: HTTP,
sign-in, rate limit (a Redis round trip), the two transactions, the SDK call, the JSON answer.
The ceiling is pgbench running the same two transactions over the same users with 8 clients.
The two alternate for mode.rounds rounds and the best of each is kept: on shared cores a
neighbour can take the CPU away from one round, and a ratio of two figures measured minutes
apart would say more about the neighbour than about the app.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from bench.cases.context import JSON_HEADER, Context
from bench.harness.pgbench import CLIENTS, PgbenchResult, run_pgbench, write_script
from bench.harness.report import Row, number, percent, verdict
from bench.harness.sampling import cpu_split, split_text
from bench.harness.services import Service
from bench.harness.stats import ratio
from bench.harness.wrk import WrkResult, run_wrk

TARGET = 0.25
PROMPT = "Bench generation"


async def load_generations(
    ctx: Context,
    app: Service,
    seconds: float,
    cookie_file: Path | None,
    connections: int,
    *,
    warm_up: bool = True,
    prompt: str = PROMPT,
    stagger: float = 0.0,
) -> WrkResult:
    """wrk posting generations for random users (`cookie_file`): a warm-up, then the measured
    run, whose connections start spread over `stagger` seconds when it is given."""
    body = ctx.write("generate.json", ctx.generate_body(prompt))
    post = partial(
        run_wrk,
        app.url + "/api/generate",
        connections=connections,
        method="POST",
        body_file=body,
        cookie_file=cookie_file,
        headers=[JSON_HEADER],
    )
    if warm_up:
        await post(seconds=ctx.mode.warmup)
    return await post(seconds=seconds, stagger=stagger)


async def ceiling(ctx: Context, url: str, mode: str = "prepared") -> PgbenchResult:
    """pgbench's generations per second against `url`."""
    script = write_script(ctx.folder)
    return await run_pgbench(
        ctx.tools.pgbench, url, script, users=len(ctx.users), seconds=ctx.mode.seconds, mode=mode
    )


async def run(ctx: Context) -> None:
    """Case 1, with `ctx.app` (mode.workers workers)."""
    assert ctx.app is not None
    cookies = ctx.cookie_file("cookies.txt", ctx.users)
    ceilings: list[PgbenchResult] = []
    rounds: list[tuple[WrkResult, list[float]]] = []
    for _ in range(ctx.mode.rounds):
        ceilings.append(await ceiling(ctx, ctx.database_url))
        load = load_generations(
            ctx, ctx.app, ctx.mode.seconds, cookies, ctx.mode.throughput_connections
        )
        rounds.append(await cpu_split(ctx.app.worker_pids(), load))
    database = max(ceilings, key=lambda result: result.tps)
    app, split = max(rounds, key=lambda pair: pair[0].ok_rate)
    share = ratio(app.ok_rate, database.tps)
    ctx.results["1_throughput"] = {
        "app": {**app.to_json(), "worker_cpu_s": split},
        "pgbench": database.to_json(),
        "rounds": [
            {"pgbench_tps": database_round.tps, "app_gen_per_s": app_round.ok_rate}
            for database_round, (app_round, _) in zip(ceilings, rounds, strict=True)
        ],
        "share_of_ceiling": share,
    }
    ctx.add(
        Row(
            "1 throughput",
            f"/api/generate, {ctx.mode.workers} workers, {app.connections} connections",
            number(app.ok_rate, "gen/s"),
            f"pgbench {number(database.tps, 'gen/s')}"
            f" ({CLIENTS} clients, {len(ctx.users):,} users)",
            percent(share),
            f">= {percent(TARGET)}",
            verdict(share is not None and share >= TARGET and not app.failed),
        ),
        Row(
            "1 throughput",
            "latency under that load",
            f"p50 {number(app.latency_ms['p50_ms'], 'ms')}, "
            f"p99 {number(app.latency_ms['p99_ms'], 'ms')}",
            f"errors {app.errors or 'none'}; {split_text(split)}; best of {ctx.mode.rounds}"
            " rounds alternating with pgbench",
        ),
    )
