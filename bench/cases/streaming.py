"""Case 5: time-to-first-byte overhead of streamed generations, at 100 concurrent streams.

For each stream: the moment the app's first body chunk carrying the answer's first text
reached the client, minus the moment the upstream handed that first `content_block_delta` to
its server (both on the system-wide monotonic clock). The upstream stamps are keyed by prompt,
so every stream has a prompt of its own. A chunk "carries the first text" when it contains the
first delta's text (plain or JSON-escaped); if none does, the first chunk with a `data:` line
is used and counted as a fallback.

Until `POST /api/generate` with {"stream": true} answers text/event-stream, this prints
"not available" and measures nothing.
"""

from __future__ import annotations

import json
from typing import Any

from bench.cases.context import Context
from bench.harness.client import drive
from bench.harness.report import Row, number
from bench.harness.services import HOST
from bench.harness.stats import latency_summary
from bench.harness.upstream import STAMPS_PATH, upstream_call

EVENT_STREAM = "text/event-stream"
KEEP_CHUNKS = 64
STREAM_TIMEOUT = 120.0


def spec(ctx: Context, prompts: list[str]) -> dict[str, Any]:
    """One streaming request per prompt, each signed in as a different user, all at once."""
    assert ctx.app is not None
    users = ctx.users[: len(prompts)]
    requests = [
        {"headers": {"Cookie": ctx.cookies[user]}, "body": ctx.generate_body(prompt, stream=True)}
        for user, prompt in zip(users, prompts, strict=True)
    ]
    port = int(ctx.app.url.rsplit(":", 1)[1])
    return {
        "host": HOST,
        "port": port,
        "path": "/api/generate",
        "requests": requests,
        "timeout": STREAM_TIMEOUT,
        "keep_chunks": KEEP_CHUNKS,
    }


def first_text_at(chunks: list[list[Any]], text: str) -> tuple[float | None, bool]:
    """When the chunk carrying `text` arrived; (time, True) if found by the data: fallback."""
    escaped = json.dumps(text)[1:-1]
    for at, chunk in chunks:
        if text and (text in chunk or escaped in chunk):
            return at, False
    for at, chunk in chunks:
        if "data:" in chunk:
            return at, True
    return None, False


async def run(ctx: Context) -> None:
    """Case 5, with `ctx.app`."""
    probe = await drive(spec(ctx, ["Bench stream probe"]))
    content_type = probe["results"][0]["content_type"] or str(probe["results"][0]["error"])
    if not content_type.startswith(EVENT_STREAM):
        ctx.results["5_streaming"] = {"available": False, "app_answered": content_type}
        ctx.add(Row("5 streaming", "time to first byte", "not available", f"app: {content_type}"))
        return
    upstream_call(ctx.upstream.url, STAMPS_PATH, "DELETE")
    prompts = [f"Bench stream {number} of {ctx.mode.streams}" for number in range(ctx.mode.streams)]
    outcome = await drive(spec(ctx, prompts))
    stamps: dict[str, list[Any]] = upstream_call(ctx.upstream.url, STAMPS_PATH)
    overheads, fallbacks, unmatched = [], 0, 0
    for prompt, result in zip(prompts, outcome["results"], strict=True):
        stamp = stamps.get(prompt)
        at, fallback = first_text_at(result["chunks"], stamp[1]) if stamp else (None, False)
        if stamp is None or at is None:
            unmatched += 1
            continue
        fallbacks += fallback
        overheads.append(at - stamp[0])
    report(ctx, outcome, overheads, fallbacks, unmatched)


def report(
    ctx: Context, outcome: dict[str, Any], overheads: list[float], fallbacks: int, unmatched: int
) -> None:
    """Results and table row of the streaming case."""
    summary = latency_summary(overheads)
    statuses: dict[str, int] = {}
    for result in outcome["results"]:
        key = str(result["status"] or result["error"])
        statuses[key] = statuses.get(key, 0) + 1
    ctx.results["5_streaming"] = {
        "available": True,
        "streams": ctx.mode.streams,
        "ttfb_overhead": summary,
        "statuses": statuses,
        "matched_by_data_fallback": fallbacks,
        "unmatched": unmatched,
        "peak_in_flight": outcome["peak_in_flight"],
    }
    ctx.add(
        Row(
            "5 streaming",
            f"time-to-first-byte overhead, {ctx.mode.streams} concurrent streams",
            f"p50 {number(summary.get('p50_ms'), 'ms')}, p99 {number(summary.get('p99_ms'), 'ms')}",
            f"first app byte minus first upstream delta; statuses {statuses}",
            verdict=f"{unmatched} unmatched" if unmatched else "",
        )
    )
