"""The Claude stand-in of the benchmarks, stamping when each streamed answer's first delta left it.

    python -m bench.harness.upstream --port P [--latency-ms 0] [--chunk-delay-ms 20]

It is the development stand-in (`aigen.dev.anthropic`) unchanged, wrapped in an ASGI layer
that records two things:

- for every streamed answer, the monotonic time (system-wide on Linux, so comparable with the
  load generator's) at which its first `content_block_delta` was handed to the server, keyed
  by the prompt: `GET /_bench/first-deltas` returns `{prompt: [time, text of the delta]}`;
- how many /v1/messages calls are being answered now and at most since the last reset:
  `GET /_bench/in-flight` returns `{"now": n, "peak": n}`.

`DELETE` on either resets it. Latency per call comes from the stand-in's own prompt directive
`[fake:delay=SECONDS]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
import urllib.request
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.harness.services import HOST, Service, free_port, python_command, start

STAMPS_PATH = "/_bench/first-deltas"
IN_FLIGHT_PATH = "/_bench/in-flight"
DELTA_EVENT = b"content_block_delta"
DEFAULT_CHUNK_DELAY_MS = 20  # the stand-in's own command-line default

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[..., Awaitable[None]]
# Any ASGI app: Quart's own, narrower types do not fit this general signature.
ASGIApp = Callable[..., Awaitable[None]]


def prompt_of(body: bytes) -> str:
    """The last user message of a Messages API body, as plain text."""
    try:
        content = json.loads(body)["messages"][-1]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
    if isinstance(content, list):
        return "\n".join(block.get("text", "") for block in content if isinstance(block, dict))
    return content if isinstance(content, str) else ""


def delta_text(chunk: bytes) -> str:
    """The text of the first `content_block_delta` event in a chunk of server-sent events."""
    for line in chunk.split(b"\n"):
        if line.startswith(b"data:") and DELTA_EVENT in line:
            try:
                return json.loads(line[5:])["delta"]["text"]
            except (ValueError, KeyError, TypeError):
                return ""
    return ""


class UpstreamRecorder:
    """ASGI middleware recording first-delta times of streamed answers and calls in flight."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.stamps: dict[str, tuple[float, str]] = {}
        self.in_flight = 0
        self.peak = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else None
        if path == STAMPS_PATH:
            if scope["method"] == "DELETE":
                self.stamps.clear()
            await answer_json(send, self.stamps)
        elif path == IN_FLIGHT_PATH:
            if scope["method"] == "DELETE":
                self.peak = self.in_flight
            await answer_json(send, {"now": self.in_flight, "peak": self.peak})
        elif path == "/v1/messages":
            await self._counted_call(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _counted_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self._stamped_call(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _stamped_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        stamped = False

        async def receive_body() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
            return message

        async def send_stamping(message: Message) -> None:
            nonlocal stamped
            await send(message)
            chunk = message.get("body", b"") if message["type"] == "http.response.body" else b""
            if not stamped and DELTA_EVENT in chunk:
                stamped = True
                self.stamps[prompt_of(bytes(body))] = (time.monotonic(), delta_text(chunk))

        await self.app(scope, receive_body, send_stamping)


async def answer_json(send: Send, data: object) -> None:
    """A 200 JSON answer, straight in ASGI."""
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(data).encode()})


def upstream_call(url: str, path: str, method: str = "GET") -> Any:
    """GET (or DELETE) one of the recorder's endpoints."""
    request = urllib.request.Request(url + path, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def start_upstream(
    stack: ExitStack, *, log_dir: Path, chunk_delay_ms: int = DEFAULT_CHUNK_DELAY_MS
) -> Service:
    """Run the stamping stand-in in its own process (so it does not share the app's GIL)."""
    port = free_port()
    command = python_command(
        "-m",
        "bench.harness.upstream",
        "--port",
        str(port),
        "--chunk-delay-ms",
        str(chunk_delay_ms),
    )
    url = f"http://{HOST}:{port}"
    return start(stack, "claude", command, url=url, ready_path="/_fake/health", log_dir=log_dir)


async def serve(port: int, chunk_delay_ms: int) -> None:
    """Serve the wrapped stand-in until SIGTERM or SIGINT."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from aigen.dev.anthropic import create_fake_anthropic_app

    fake = create_fake_anthropic_app(chunk_delay_ms=chunk_delay_ms)
    config = Config()
    config.bind = [f"{HOST}:{port}"]
    config.backlog = 4096  # bursts of thousands of upstream connections must not be refused
    config.graceful_timeout = 1.0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    app = UpstreamRecorder(fake)
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def main() -> None:
    """Command line of the stamping stand-in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunk-delay-ms", type=int, default=DEFAULT_CHUNK_DELAY_MS)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.chunk_delay_ms))


if __name__ == "__main__":
    main()
