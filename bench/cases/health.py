"""Case 3: /healthz against a bare hypercorn JSON endpoint served the same way, same workers.

The two are measured one after the other, alternating for mode.rounds rounds, and the
best round of each is kept: on shared cores a round can lose its CPU to a neighbour. Each
round also records how the CPU split between the workers (hypercorn's workers accept from one
socket, so wrk's keep-alive connections may not be shared evenly).
"""

from __future__ import annotations

from contextlib import ExitStack

from bench.cases.context import Context
from bench.harness.bare_app import start_bare_app
from bench.harness.report import Row, number, percent, verdict
from bench.harness.sampling import cpu_split, split_text
from bench.harness.services import Service
from bench.harness.stats import ratio
from bench.harness.wrk import WrkResult, run_wrk

TARGET = 0.70


async def load(ctx: Context, service: Service) -> tuple[WrkResult, list[float]]:
    """A warm-up, then the measured run of GETs; with the CPU seconds each worker used."""
    connections, url = ctx.mode.health_connections, service.url + "/healthz"
    await run_wrk(url, connections=connections, seconds=ctx.mode.warmup)
    work = run_wrk(url, connections=connections, seconds=ctx.mode.seconds)
    return await cpu_split(service.worker_pids(), work)


async def run(ctx: Context) -> None:
    """Case 3, with `ctx.app` and a bare app started here."""
    assert ctx.app is not None
    ours: list[tuple[WrkResult, list[float]]] = []
    bare: list[tuple[WrkResult, list[float]]] = []
    with ExitStack() as stack:
        bare_app = start_bare_app(stack, workers=ctx.mode.workers, log_dir=ctx.folder)
        for _ in range(ctx.mode.rounds):
            ours.append(await load(ctx, ctx.app))
            bare.append(await load(ctx, bare_app))
    best_ours, ours_split = max(ours, key=lambda pair: pair[0].ok_rate)
    best_bare, bare_split = max(bare, key=lambda pair: pair[0].ok_rate)
    share = ratio(best_ours.ok_rate, best_bare.ok_rate)
    ctx.results["3_healthz"] = {
        "aigen": [{**result.to_json(), "worker_cpu_s": split} for result, split in ours],
        "bare_hypercorn_quart": [
            {**result.to_json(), "worker_cpu_s": split} for result, split in bare
        ],
        "share_of_bare": share,
    }
    ctx.add(
        Row(
            "3 /healthz",
            f"aigen, {ctx.mode.workers} workers, {best_ours.connections} connections",
            f"{number(best_ours.ok_rate, 'req/s', 0)} ({split_text(ours_split)})",
            f"bare Quart on hypercorn {number(best_bare.ok_rate, 'req/s', 0)}"
            f" ({split_text(bare_split)})",
            percent(share),
            f">= {percent(TARGET)}",
            verdict(share is not None and share >= TARGET),
        )
    )
