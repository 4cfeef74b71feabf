"""The upstream recorder counts the calls it is answering (case 4's "upstream calls at once")."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bench.harness.upstream import IN_FLIGHT_PATH, UpstreamRecorder


class HeldApp:
    """An ASGI app whose /v1/messages answers only once released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(app: UpstreamRecorder, path: str, method: str = "GET") -> list[dict[str, Any]]:
    """One request through the ASGI interface; the messages sent back."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b'{"messages": []}', "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": method}, receive, send)
    return sent


async def until_entered(held: HeldApp, count: int) -> None:
    """Let the calls reach the held app (a bounded number of loop turns)."""
    for _ in range(1000):
        if held.entered >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"only {held.entered} of {count} calls arrived")


async def in_flight(app: UpstreamRecorder, method: str = "GET") -> dict[str, int]:
    return json.loads((await call(app, IN_FLIGHT_PATH, method))[-1]["body"])


async def test_calls_in_flight_and_their_peak() -> None:
    held = HeldApp()
    recorder = UpstreamRecorder(held)
    calls = [asyncio.create_task(call(recorder, "/v1/messages", "POST")) for _ in range(3)]
    await until_entered(held, 3)
    assert await in_flight(recorder) == {"now": 3, "peak": 3}
    held.release.set()
    await asyncio.gather(*calls)
    assert await in_flight(recorder) == {"now": 0, "peak": 3}
    assert await in_flight(recorder, "DELETE") == {"now": 0, "peak": 0}


async def test_a_cancelled_call_leaves_the_count() -> None:
    held = HeldApp()
    recorder = UpstreamRecorder(held)
    task = asyncio.create_task(call(recorder, "/v1/messages", "POST"))
    await until_entered(held, 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await in_flight(recorder) == {"now": 0, "peak": 1}
