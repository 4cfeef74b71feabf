"""Where a generation's CPU goes: py-spy on a loaded worker, and pyinstrument in process.

Both run under case 1's load (upstream answering at once), after the measured cases, so the
profilers never touch a figure of the table. Files go to bench/profiles/ (not committed):
pyspy-worker.txt (collapsed stacks; `flamegraph.pl` or speedscope read them) and
pyinstrument.txt / .html. The summary (shares of busy samples in our code, and the app's CPU
per generation, so each share also reads as milliseconds per generation) goes to results.json
and below the table in results.md.
"""

from __future__ import annotations

import asyncio
import signal
from contextlib import ExitStack
from typing import Any

from bench.cases.context import Context
from bench.cases.throughput import load_generations
from bench.harness.profiled_app import start_profiled_app
from bench.harness.profiling import read_collapsed, record, summarise
from bench.harness.sampling import cpu_seconds

SHOWN = 8
SETTLE = 1.0  # seconds of load before py-spy attaches


async def record_workers(ctx: Context) -> None:
    """py-spy on one worker of the shared app while wrk loads both."""
    assert ctx.app is not None
    if ctx.tools.py_spy is None:
        ctx.note("py-spy: not installed (pip install py-spy)")
        return
    ctx.profiles.mkdir(exist_ok=True)
    workers = ctx.app.worker_pids()
    output = ctx.profiles / "pyspy-worker.txt"
    cookies = ctx.cookie_file("cookies.txt", ctx.users)
    seconds, connections = ctx.mode.profile_seconds, ctx.mode.throughput_connections
    await load_generations(ctx, ctx.app, ctx.mode.warmup, cookies, connections, warm_up=False)
    cpu_before = [cpu_seconds(pid) for pid in workers]
    load = asyncio.create_task(
        load_generations(ctx, ctx.app, seconds + 2 * SETTLE, cookies, connections, warm_up=False)
    )
    await asyncio.sleep(SETTLE)
    # The connections may all sit on one worker (they share one listening socket): profile it.
    busiest = max(workers, key=lambda pid: cpu_seconds(pid) - cpu_before[workers.index(pid)])
    said = await record(ctx.tools.py_spy, busiest, seconds, output)
    result = await load
    cpu = sum(cpu_seconds(pid) for pid in workers) - sum(cpu_before)
    generations = result.requests - result.errors.get("status", 0)
    per_generation = cpu / generations * 1000 if generations else None
    summary = summarise(read_collapsed(output)) if output.exists() else {"error": said}
    ctx.results["profile_py_spy"] = {
        "app_cpu_ms_per_generation": per_generation,
        "generations": generations,
        "how": "CPU time of all workers (/proc) over the load / generations answered; shares are"
        " of one worker's busy py-spy samples",
        **summary,
    }
    note_hot_spots(ctx, summary, per_generation)


def note_hot_spots(ctx: Context, summary: dict[str, Any], per_generation: float | None) -> None:
    """The profile's lines below the table: shares, and ms per generation where known."""

    def cost(share: float) -> str:
        return f"{share:.1%}" + (f" = {share * per_generation:.2f} ms" if per_generation else "")

    cpu = f"{per_generation:.2f} ms" if per_generation else "unknown"
    ctx.note(f"py-spy, one worker under case 1's load: app CPU per generation {cpu}")
    if "outside_our_code" in summary:
        ctx.note(
            f"- outside our code (server, framework, loop): {cost(summary['outside_our_code'])}"
        )
    ctx.note("- our functions, inclusive:")
    for entry in summary.get("our_functions_inclusive", [])[:SHOWN]:
        ctx.note(f"  - {entry['where']}: {cost(entry['share'])}")
    ctx.note("- where our code hands over (deepest aigen frame -> what it calls):")
    for entry in summary.get("our_calls_into", [])[:SHOWN]:
        ctx.note(f"  - {entry['where']}: {cost(entry['share'])}")


async def pyinstrument(ctx: Context) -> None:
    """The app in one process under pyinstrument while wrk loads it."""
    if not ctx.tools.pyinstrument:
        ctx.note("pyinstrument: not installed (pip install pyinstrument)")
        return
    connections = ctx.mode.throughput_connections
    with ExitStack() as stack:
        app = start_profiled_app(stack, ctx.environment(), output=ctx.profiles, log_dir=ctx.folder)
        cookies = ctx.cookie_file("cookies.txt", ctx.users)
        await load_generations(ctx, app, ctx.mode.warmup, cookies, connections, warm_up=False)
        app.process.send_signal(signal.SIGUSR1)
        result = await load_generations(
            ctx, app, ctx.mode.profile_seconds, cookies, connections, warm_up=False
        )
        app.stop()
    text = ctx.profiles / "pyinstrument.txt"
    ctx.results["profile_pyinstrument"] = {
        "load": result.to_json(),
        "output": "bench/profiles/pyinstrument.txt" if text.exists() else None,
    }
    ctx.note(
        f"pyinstrument, one in-process worker, {result.requests} generations:"
        f" bench/profiles/{text.name if text.exists() else '(no output)'} and .html"
    )
