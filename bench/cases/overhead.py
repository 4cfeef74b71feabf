"""Case 2: what the app adds to a 200 ms upstream, at 50 and 100 concurrent generations.

The upstream's delay comes from its prompt directive `[fake:delay=0.2]`. The same load is also
sent to the upstream directly: the overhead is printed both over the nominal 200 ms and over
the upstream's own latency measured at the same concurrency. Throughput is printed beside the
ideal, concurrency / upstream latency (every request spends its time waiting on Claude).
"""

from __future__ import annotations

import json

from bench.cases.context import JSON_HEADER, MODEL, Context
from bench.harness.report import Row, number, percent, verdict
from bench.harness.stats import ratio
from bench.harness.wrk import WrkResult, run_wrk

TARGETS_MS = {50: (5.0, 25.0)}  # concurrency: (p50, p99) overhead ceilings of the issue
UPSTREAM_HEADERS = ["x-api-key: bench", "anthropic-version: 2023-06-01", JSON_HEADER]


def delayed_prompt(seconds: float) -> str:
    """A prompt the stand-in answers after `seconds`."""
    return f"Bench generation [fake:delay={seconds:g}]"


async def measure(ctx: Context, concurrency: int) -> tuple[WrkResult, WrkResult]:
    """The upstream alone, then the app, at `concurrency` connections."""
    assert ctx.app is not None
    prompt = delayed_prompt(ctx.mode.overhead_upstream)
    message = {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": prompt}],
    }
    upstream_body = ctx.write("upstream.json", json.dumps(message))
    app_body = ctx.write("delayed.json", ctx.generate_body(prompt))
    cookies = ctx.cookie_file("cookies.txt", ctx.users)
    upstream = await run_wrk(
        ctx.upstream.url + "/v1/messages",
        connections=concurrency,
        seconds=ctx.mode.seconds,
        method="POST",
        body_file=upstream_body,
        headers=UPSTREAM_HEADERS,
    )
    options = {"method": "POST", "body_file": app_body, "cookie_file": cookies}
    options["headers"] = [JSON_HEADER]
    url = ctx.app.url + "/api/generate"
    await run_wrk(url, connections=concurrency, seconds=ctx.mode.warmup, **options)
    app = await run_wrk(url, connections=concurrency, seconds=ctx.mode.seconds, **options)
    return upstream, app


async def run(ctx: Context) -> None:
    """Case 2, with `ctx.app`."""
    nominal_ms = ctx.mode.overhead_upstream * 1000
    for concurrency in ctx.mode.overhead_concurrency:
        upstream, app = await measure(ctx, concurrency)
        over = {name: app.latency_ms[f"{name}_ms"] - nominal_ms for name in ("p50", "p90", "p99")}
        over_measured = {
            name: app.latency_ms[f"{name}_ms"] - upstream.latency_ms[f"{name}_ms"]
            for name in ("p50", "p99")
        }
        ideal = concurrency / ctx.mode.overhead_upstream
        ctx.results[f"2_overhead_{concurrency}"] = {
            "app": app.to_json(),
            "upstream_alone": upstream.to_json(),
            "overhead_over_nominal_ms": over,
            "overhead_over_upstream_alone_ms": over_measured,
            "ideal_rate_per_s": ideal,
        }
        ctx.add(*rows(ctx, concurrency, app, upstream, over, over_measured, ideal))


def rows(
    ctx: Context,
    concurrency: int,
    app: WrkResult,
    upstream: WrkResult,
    over: dict[str, float],
    over_measured: dict[str, float],
    ideal: float,
) -> list[Row]:
    """The table rows of one concurrency."""
    targets = TARGETS_MS.get(concurrency)
    met = None
    if targets is not None:
        met = over["p50"] <= targets[0] and over["p99"] <= targets[1] and not app.failed
    upstream_ms = ctx.mode.overhead_upstream * 1000
    return [
        Row(
            "2 overhead",
            f"over a {upstream_ms:.0f} ms upstream, {concurrency} concurrent, "
            f"{ctx.mode.workers} workers",
            f"p50 +{number(over['p50'], 'ms')}, p99 +{number(over['p99'], 'ms')}",
            f"upstream alone p50 {number(upstream.latency_ms['p50_ms'], 'ms')}, p99 "
            f"{number(upstream.latency_ms['p99_ms'], 'ms')} (app over it: p50 "
            f"+{number(over_measured['p50'], 'ms')}, p99 +{number(over_measured['p99'], 'ms')})",
            "",
            f"p50 <= {targets[0]:g} ms, p99 <= {targets[1]:g} ms" if targets else "",
            verdict(met) if targets else "",
        ),
        Row(
            "2 overhead",
            f"throughput at {concurrency} concurrent",
            number(app.ok_rate, "gen/s"),
            f"ideal {number(ideal, 'gen/s')} (concurrency / latency)",
            percent(ratio(app.ok_rate, ideal)),
            verdict=f"errors {app.errors}" if app.errors else "",
        ),
    ]
