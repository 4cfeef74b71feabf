"""The floor under case 1: what one generation's libraries cost alone, beside what the app costs.

CPU per generation, all measured in this run:
- the app: one worker under wrk at 16 and at 32 connections (its CPU time over the requests
  answered), and case 1's two workers when case 1 ran;
- the HTTP server and framework alone: the bare Quart app on hypercorn with `aigen serve`'s
  config (uvloop, the access log), one worker, a JSON POST in and an answer of the app's shape
  out, at 32 connections;
- the SDK call, the database statements and the rate-limit hit alone (bench/harness/floor.py).
The sum of the libraries' parts is what a generation costs before any of aigen's own code runs;
what the app costs above it is aigen's code and the interplay of all of them on one loop.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import ExitStack

from bench.cases.context import Context
from bench.cases.throughput import load_generations
from bench.harness.app import start_app
from bench.harness.bare_app import start_bare_app
from bench.harness.report import Row, number
from bench.harness.sampling import cpu_split
from bench.harness.services import ROOT, Service, child_environment, python_command

BARE_CONNECTIONS = 32
APP_CONNECTIONS = (16, 32)
FLOOR_USERS = 200
FLOOR_TIMEOUT = 300.0


async def cpu_ms_per_request(
    ctx: Context, service: Service, connections: int, cookies: bool
) -> tuple[float, float]:
    """CPU milliseconds of `service`'s workers per POST /api/generate answered, and the rate."""
    cookie_file = ctx.cookie_file("floor-cookies.txt", ctx.users) if cookies else None
    await load_generations(ctx, service, ctx.mode.warmup, cookie_file, connections, warm_up=False)
    measured = load_generations(
        ctx, service, ctx.mode.seconds, cookie_file, connections, warm_up=False
    )
    result, used = await cpu_split(service.worker_pids(), measured)
    if result.failed:
        raise RuntimeError(f"{service.name} failed {result.failed} requests: {result.errors}")
    return sum(used) / max(result.requests, 1) * 1000, result.ok_rate


async def library_parts(ctx: Context) -> dict[str, float]:
    """The SDK, database and rate-limit parts, from bench/harness/floor.py in its own process."""
    users = ",".join(str(user) for user in ctx.users[:FLOOR_USERS])
    process = await asyncio.create_subprocess_exec(
        *python_command(
            "-m",
            "bench.harness.floor",
            "--database-url",
            ctx.database_url,
            "--redis-url",
            ctx.settings.redis_url,
            "--claude-url",
            ctx.upstream.url,
            "--users",
            users,
        ),
        cwd=ROOT,
        env=child_environment(None),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    output, errors = await asyncio.wait_for(process.communicate(), FLOOR_TIMEOUT)
    if process.returncode != 0:
        raise RuntimeError(f"bench.harness.floor failed: {errors.decode(errors='replace')[-2000:]}")
    parts: dict[str, float] = json.loads(output)
    return parts


async def run(ctx: Context) -> None:
    """The floor case (its own one-worker app and bare app)."""
    app_ms: dict[int, tuple[float, float]] = {}
    with ExitStack() as stack:
        bare = start_bare_app(stack, workers=1, log_dir=ctx.folder)
        framework_ms, _ = await cpu_ms_per_request(ctx, bare, BARE_CONNECTIONS, cookies=False)
        bare.stop()
        app = start_app(stack, ctx.environment(), workers=1, log_dir=ctx.folder, name="app-floor")
        for connections in APP_CONNECTIONS:
            app_ms[connections] = await cpu_ms_per_request(ctx, app, connections, cookies=True)
    parts = {"http_server_and_framework": framework_ms, **await library_parts(ctx)}
    floor = sum(parts.values())
    best = min(cost for cost, _ in app_ms.values())
    case_1 = two_worker_cost(ctx)
    ctx.results["floor"] = {
        "libraries_cpu_ms_per_generation": {name: round(cost, 3) for name, cost in parts.items()},
        "libraries_total_cpu_ms": round(floor, 3),
        "app_one_worker_cpu_ms": {
            str(connections): {"cpu_ms": round(cost, 3), "gen_per_s": round(rate, 1)}
            for connections, (cost, rate) in app_ms.items()
        },
        "app_case_1_cpu_ms": case_1,
        "aigen_above_libraries_cpu_ms": round(best - floor, 3),
    }
    app_text = ", ".join(
        f"{number(cost, 'ms', 2)} at {connections} connections ({number(rate, 'gen/s', 0)})"
        for connections, (cost, rate) in app_ms.items()
    )
    if case_1 is not None:
        app_text += f"; 2 workers in case 1: {number(case_1, 'ms', 2)}"
    ctx.add(
        Row(
            "1 floor",
            "CPU per generation, the app (1 worker)",
            app_text,
            f"libraries alone {number(floor, 'ms', 2)}: " + parts_text(parts),
            f"aigen above them: {number(best - floor, 'ms', 2)}",
        )
    )


PART_NAMES = {
    "http_server_and_framework": "hypercorn + Quart",
    "sdk": "SDK call",
    "database": "asyncpg statements",
    "rate_limit": "Redis hit",
}


def parts_text(parts: dict[str, float]) -> str:
    """'hypercorn + Quart 0.43 ms, SDK call 0.73 ms, ...'."""
    return ", ".join(f"{PART_NAMES[name]} {number(cost, 'ms', 2)}" for name, cost in parts.items())


def two_worker_cost(ctx: Context) -> float | None:
    """CPU milliseconds per generation of case 1's two workers, when case 1 ran first."""
    throughput = ctx.results.get("1_throughput")
    if throughput is None:
        return None
    app = throughput["app"]
    return round(sum(app["worker_cpu_s"]) / max(app["requests"], 1) * 1000, 3)
