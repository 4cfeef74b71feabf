"""Case 2: what the app adds to a 200 ms upstream, at 1, 50 and 100 concurrent generations.

At 1 (printed) nothing queues: it is what one generation alone adds, the floor under the others.

The upstream's delay comes from its prompt directive `[fake:delay=0.2]`. The same load is also
sent to the upstream directly: the overhead is printed both over the nominal 200 ms and over
the upstream's own latency measured at the same concurrency. Throughput is printed beside the
ideal, concurrency / upstream latency (every request spends its time waiting on Claude).

The app is loaded twice. With every connection starting at once and an upstream whose latency
never varies, the requests stay in lockstep: each worker gets its share of the concurrency as
one burst every 200 ms, and the figures measure how long that burst queues for the CPU. With
the connections' first requests spread over one upstream latency (wrk's delay(), not timed),
they arrive as independent users would; the upstream alone is measured that way too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bench.cases.context import JSON_HEADER, MODEL, Context
from bench.cases.throughput import load_generations
from bench.harness.report import Row, number, percent, verdict
from bench.harness.stats import ratio
from bench.harness.wrk import WrkResult, run_wrk

TARGETS_MS = {50: (5.0, 25.0)}  # concurrency: (p50, p99) overhead ceilings of the issue
UPSTREAM_HEADERS = ["x-api-key: bench", "anthropic-version: 2023-06-01", JSON_HEADER]


def delayed_prompt(seconds: float) -> str:
    """A prompt the stand-in answers after `seconds`."""
    return f"Bench generation [fake:delay={seconds:g}]"


@dataclass(frozen=True)
class Measured:
    """One concurrency's runs: the upstream alone, the app in lockstep and staggered."""

    upstream: WrkResult
    lockstep: WrkResult
    staggered: WrkResult


async def measure(ctx: Context, concurrency: int) -> Measured:
    """The upstream alone, then the app, at `concurrency` connections."""
    assert ctx.app is not None
    prompt = delayed_prompt(ctx.mode.overhead_upstream)
    message = {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": prompt}],
    }
    upstream_body = ctx.write("upstream.json", json.dumps(message))
    cookies = ctx.cookie_file("cookies.txt", ctx.users)
    spread = ctx.mode.overhead_upstream
    upstream = await run_wrk(
        ctx.upstream.url + "/v1/messages",
        connections=concurrency,
        seconds=ctx.mode.seconds,
        method="POST",
        body_file=upstream_body,
        headers=UPSTREAM_HEADERS,
        stagger=spread,
    )
    app = ctx.app

    async def load(warm_up: bool, stagger: float = 0.0) -> WrkResult:
        return await load_generations(
            ctx,
            app,
            ctx.mode.seconds,
            cookies,
            concurrency,
            warm_up=warm_up,
            prompt=prompt,
            stagger=stagger,
        )

    lockstep = await load(warm_up=True)
    staggered = await load(warm_up=False, stagger=spread)
    return Measured(upstream, lockstep, staggered)


def overhead_ms(app: WrkResult, baseline_ms: float) -> dict[str, float]:
    """The app's latency percentiles minus the nominal upstream latency."""
    return {name: app.latency_ms[f"{name}_ms"] - baseline_ms for name in ("p50", "p90", "p99")}


async def run(ctx: Context) -> None:
    """Case 2, with `ctx.app`."""
    nominal_ms = ctx.mode.overhead_upstream * 1000
    for concurrency in ctx.mode.overhead_concurrency:
        measured = await measure(ctx, concurrency)
        upstream, app = measured.upstream, measured.staggered
        over_measured = {
            name: app.latency_ms[f"{name}_ms"] - upstream.latency_ms[f"{name}_ms"]
            for name in ("p50", "p99")
        }
        ideal = concurrency / ctx.mode.overhead_upstream
        ctx.results[f"2_overhead_{concurrency}"] = {
            "app": measured.lockstep.to_json(),
            "app_staggered": app.to_json(),
            "upstream_alone": upstream.to_json(),
            "overhead_over_nominal_ms": overhead_ms(measured.lockstep, nominal_ms),
            "staggered_overhead_over_nominal_ms": overhead_ms(app, nominal_ms),
            "staggered_overhead_over_upstream_alone_ms": over_measured,
            "ideal_rate_per_s": ideal,
        }
        ctx.add(*rows(ctx, concurrency, measured, over_measured, ideal))


def rows(
    ctx: Context,
    concurrency: int,
    measured: Measured,
    over_measured: dict[str, float],
    ideal: float,
) -> list[Row]:
    """The table rows of one concurrency."""
    targets = TARGETS_MS.get(concurrency)
    upstream_ms = ctx.mode.overhead_upstream * 1000
    upstream, app = measured.upstream, measured.staggered
    workers = ctx.mode.workers
    setting = f"over a {upstream_ms:.0f} ms upstream, {concurrency} concurrent, {workers} workers"
    return [
        overhead_row(
            f"{setting}, started spread over {upstream_ms:.0f} ms",
            app,
            upstream_ms,
            targets,
            f"upstream alone p50 {number(upstream.latency_ms['p50_ms'], 'ms')}, p99 "
            f"{number(upstream.latency_ms['p99_ms'], 'ms')} (app over it: p50 "
            f"+{number(over_measured['p50'], 'ms')}, p99 +{number(over_measured['p99'], 'ms')})",
        ),
        overhead_row(
            f"{setting}, all started together (lockstep)",
            measured.lockstep,
            upstream_ms,
            targets,
            f"each worker gets about {concurrency / max(workers, 1):g} requests as one burst"
            f" every {upstream_ms:.0f} ms",
        ),
        Row(
            "2 overhead",
            f"throughput at {concurrency} concurrent (spread / lockstep)",
            f"{number(app.ok_rate, 'gen/s')} / {number(measured.lockstep.ok_rate, 'gen/s')}",
            f"ideal {number(ideal, 'gen/s')} (concurrency / latency)",
            " / ".join(percent(ratio(load.ok_rate, ideal)) for load in (app, measured.lockstep)),
            verdict=errors_note(app, measured.lockstep),
        ),
    ]


def overhead_row(
    measure: str,
    app: WrkResult,
    upstream_ms: float,
    targets: tuple[float, float] | None,
    beside: str,
) -> Row:
    """One load's overhead over the nominal upstream latency, judged when it has a target."""
    over = overhead_ms(app, upstream_ms)
    met = None
    if targets is not None:
        met = over["p50"] <= targets[0] and over["p99"] <= targets[1] and not app.failed
    return Row(
        "2 overhead",
        measure,
        f"p50 +{number(over['p50'], 'ms')}, p99 +{number(over['p99'], 'ms')}",
        beside,
        "",
        f"p50 <= {targets[0]:g} ms, p99 <= {targets[1]:g} ms" if targets else "",
        verdict(met) if targets else "",
    )


def errors_note(*loads: WrkResult) -> str:
    """The errors of the loads that had any."""
    return "; ".join(f"errors {load.errors}" for load in loads if load.errors)
