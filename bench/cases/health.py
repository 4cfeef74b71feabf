"""Case 3: /healthz against a bare hypercorn JSON endpoint served the same way, same workers.

The two are measured one after the other (alternating when the mode asks for several
rounds; the best round of each is kept), with the same wrk connections.
"""

from __future__ import annotations

from contextlib import ExitStack

from bench.cases.context import Context
from bench.harness.bare_app import start_bare_app
from bench.harness.report import Row, number, percent, verdict
from bench.harness.stats import ratio
from bench.harness.wrk import WrkResult, run_wrk

TARGET = 0.70


async def load(ctx: Context, url: str) -> WrkResult:
    """A warm-up, then the measured run of GETs."""
    connections = ctx.mode.health_connections
    await run_wrk(url, connections=connections, seconds=ctx.mode.warmup)
    return await run_wrk(url, connections=connections, seconds=ctx.mode.seconds)


async def run(ctx: Context) -> None:
    """Case 3, with `ctx.app` and a bare app started here."""
    assert ctx.app is not None
    ours: list[WrkResult] = []
    bare: list[WrkResult] = []
    with ExitStack() as stack:
        bare_app = start_bare_app(stack, workers=ctx.mode.workers, log_dir=ctx.folder)
        for _ in range(ctx.mode.health_rounds):
            ours.append(await load(ctx, ctx.app.url + "/healthz"))
            bare.append(await load(ctx, bare_app.url + "/healthz"))
    best_ours = max(ours, key=lambda result: result.ok_rate)
    best_bare = max(bare, key=lambda result: result.ok_rate)
    share = ratio(best_ours.ok_rate, best_bare.ok_rate)
    ctx.results["3_healthz"] = {
        "aigen": [result.to_json() for result in ours],
        "bare_hypercorn_quart": [result.to_json() for result in bare],
        "share_of_bare": share,
    }
    ctx.add(
        Row(
            "3 /healthz",
            f"aigen, {ctx.mode.workers} workers, {best_ours.connections} connections",
            number(best_ours.ok_rate, "req/s", 0),
            f"bare Quart on hypercorn {number(best_bare.ok_rate, 'req/s', 0)}",
            percent(share),
            f">= {percent(TARGET)}",
            verdict(share is not None and share >= TARGET),
        )
    )
