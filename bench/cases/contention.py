"""Case 6: contention on one user's row.

- One PRO user, 64 connections posting generations back to back: every reservation waits on
  the same row lock. Printed beside case 1 (the same load spread over 10,000 users).
- One FREE user with a few credits left under a burst of 500 requests at once: exactly the
  credits left must succeed, the rest get 402, and the stored counts must agree.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.cases.context import Context
from bench.cases.throughput import load_generations
from bench.harness.client import drive
from bench.harness.database import add_user, user_counts
from bench.harness.report import Row, number, percent, verdict
from bench.harness.services import HOST
from bench.harness.stats import latency_summary, ratio

FREE_LIMIT = 100
BURST_TIMEOUT = 120.0


async def run(ctx: Context) -> None:
    """Case 6, with `ctx.app`."""
    await one_pro_user(ctx)
    await free_burst(ctx)


async def one_pro_user(ctx: Context) -> None:
    """64 connections, one PRO user."""
    assert ctx.app is not None
    user = await add_user(
        ctx.database_url, "bench-pro", plan="PRO", credits_limit=0, credits_used=0
    )
    ctx.cookies |= _cookies(ctx, [user])
    cookies = ctx.cookie_file("pro.txt", [user])
    result = await load_generations(
        ctx, ctx.app, ctx.mode.seconds, cookies, ctx.mode.pro_connections
    )
    spread = ctx.results.get("1_throughput", {}).get("app", {}).get("ok_rate_per_s")
    share = ratio(result.ok_rate, spread)
    ctx.results["6_one_pro_user"] = {"app": result.to_json(), "share_of_case_1": share}
    ctx.add(
        Row(
            "6 contention",
            f"one PRO user, {result.connections} concurrent",
            f"{number(result.ok_rate, 'gen/s')}, p50 {number(result.latency_ms['p50_ms'], 'ms')},"
            f" p99 {number(result.latency_ms['p99_ms'], 'ms')}",
            f"case 1 (users spread) {number(spread, 'gen/s')}",
            percent(share),
            verdict=f"errors {result.errors}" if result.errors else "",
        )
    )


async def free_burst(ctx: Context) -> None:
    """500 requests at once from a FREE user with `credits_left` credits."""
    assert ctx.app is not None
    left = ctx.mode.credits_left
    user = await add_user(
        ctx.database_url,
        "bench-free",
        plan="FREE",
        credits_limit=FREE_LIMIT,
        credits_used=FREE_LIMIT - left,
    )
    cookie = _cookies(ctx, [user])[user]
    body = ctx.generate_body("Bench burst")
    spec: dict[str, Any] = {
        "host": HOST,
        "port": int(ctx.app.url.rsplit(":", 1)[1]),
        "path": "/api/generate",
        "requests": [{"headers": {"Cookie": cookie}, "body": body}] * ctx.mode.burst,
        "timeout": BURST_TIMEOUT,
    }
    outcome = await drive(spec)
    statuses = Counter(str(item["status"] or item["error"]) for item in outcome["results"])
    stored = await user_counts(ctx.database_url, user)
    exact = statuses.get("200", 0) == left and stored.get("succeeded", 0) == left
    exact = exact and stored["credits_used"] == FREE_LIMIT
    latencies = [item["seconds"] for item in outcome["results"] if item["status"]]
    ctx.results["6_free_burst"] = {
        "burst": ctx.mode.burst,
        "credits_left": left,
        "statuses": dict(statuses),
        "stored": stored,
        "latency": latency_summary(latencies),
        "peak_in_flight": outcome["peak_in_flight"],
    }
    ctx.add(
        Row(
            "6 contention",
            f"FREE user with {left} credits left, burst of {ctx.mode.burst}",
            f"{statuses.get('200', 0)} got 200, {statuses.get('402', 0)} got 402"
            + _others(statuses),
            f"credits left {left}; stored: {stored.get('succeeded', 0)} succeeded,"
            f" credits_used {stored['credits_used']}/{FREE_LIMIT}",
            target=f"exactly {left}",
            verdict=verdict(exact),
        )
    )


def _others(statuses: Counter[str]) -> str:
    rest = {key: count for key, count in statuses.items() if key not in ("200", "402")}
    return f", others {rest}" if rest else ""


def _cookies(ctx: Context, users: list[int]) -> dict[int, str]:
    from bench.harness.app import sign_in_cookies

    return sign_in_cookies(ctx.environment(), users)
