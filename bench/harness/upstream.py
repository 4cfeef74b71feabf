"""The benchmarks' lean Claude stand-in, stamping when each streamed answer's first delta left it.

    python -m bench.harness.upstream --port P [--chunk-delay-ms 20]

On a 2-core machine the stand-in's own CPU competes with the app being measured, so this is not
the development stand-in (`aigen.dev.anthropic`, a Quart app on hypercorn) but a plain
`asyncio.Protocol` on uvloop speaking HTTP/1.1 with keep-alive. It answers the same wire format
by reusing the stand-in's pure functions (`protocol`, `answers`, `scenarios`):

- `POST /v1/messages`: the stand-in's Message JSON, or with `"stream": true` its server-sent
  events (chunked), one text delta every `--chunk-delay-ms`. Of the prompt directives it
  applies `[fake:delay=SECONDS]` (latency per call), `[fake:fail=STATUS]`, `[fake:reply=TEXT]`
  and `[fake:paced=DELTAS,INTERVAL]`; any other answers 400 naming the directive. The scenario
  queue and request log (`/_fake/scenario`, `/_fake/requests`) are not served.
- `GET /_fake/health`: `{"status": "ok"}`.

It records two things:

- for every streamed answer, the monotonic time (system-wide on Linux, so comparable with the
  load generator's) at which its first `content_block_delta` was written to the socket, keyed
  by the prompt: `GET /_bench/first-deltas` returns `{prompt: [time, text of the delta]}`;
- how many /v1/messages calls are being answered now and at most since the last reset:
  `GET /_bench/in-flight` returns `{"now": n, "peak": n}`.

`DELETE` on either resets it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from http import HTTPStatus
from pathlib import Path
from typing import Any, cast

import uvloop

from aigen.dev.anthropic.answers import Reply, compose_reply, finish_reply
from aigen.dev.anthropic.protocol import (
    SSE_CONTENT_TYPE,
    FakeApiError,
    MessagesRequest,
    error_object,
    message_json,
    parse_messages_request,
    stream_head,
    stream_tail,
    text_delta,
)
from aigen.dev.anthropic.scenarios import (
    DIRECTIVE_PATTERN,
    StreamPlan,
    behavior_from_directive,
    plain_call_wait,
    plan_stream,
)
from bench.harness.services import HOST, Service, free_port, python_command, start

STAMPS_PATH = "/_bench/first-deltas"
IN_FLIGHT_PATH = "/_bench/in-flight"
HEALTH_PATH = "/_fake/health"
MESSAGES_PATH = b"/v1/messages"
DEFAULT_CHUNK_DELAY_MS = 20  # the stand-in's own command-line default
BACKLOG = 4096  # bursts of thousands of upstream connections must not be refused
MAX_HEAD_BYTES = 65536
MAX_BODY_BYTES = 32 * 1024 * 1024
# Directives this server applies; the stream faults and `malformed` need the full stand-in.
LEAN_BEHAVIORS = frozenset({None, "delay", "fail", "reply", "stream_paced"})

JSON_TYPE = b"application/json"
END_OF_HEAD = b"\r\n\r\n"
KEEP_ALIVE = b"\r\n"
CLOSE = b"connection: close\r\n\r\n"
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: " + SSE_CONTENT_TYPE.encode() + b"\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
)
LAST_CHUNK = b"0\r\n\r\n"

Behavior = dict[str, Any]  # a normalized behavior of aigen.dev.anthropic.scenarios


def prompt_of(body: bytes) -> str:
    """The last user message of a Messages API body, as plain text."""
    try:
        content = json.loads(body)["messages"][-1]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
    if isinstance(content, list):
        return "\n".join(block.get("text", "") for block in content if isinstance(block, dict))
    return content if isinstance(content, str) else ""


# --- the bytes of an answer --------------------------------------------------------------------


def status_line(status: int) -> bytes:
    """`HTTP/1.1 <status> <reason>`, with Anthropic's reason for its own 529."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Overloaded" if status == 529 else "Error"
    return f"HTTP/1.1 {status} {reason}\r\n".encode()


STATUS_LINES = {status: status_line(status) for status in (200, 400, 401, 404, 405, 413, 529)}


def request_id() -> bytes:
    """A request id shaped like Anthropic's (and the stand-in's)."""
    return b"req_01" + secrets.token_hex(11).encode()


def json_answer(status: int, data: object, *, close: bool, headers: bytes = b"") -> bytes:
    """A whole JSON response: head and body."""
    body = json.dumps(data).encode()
    line = STATUS_LINES.get(status) or status_line(status)
    length = b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
    return b"".join((line, length, headers, CLOSE if close else KEEP_ALIVE, body))


def error_answer(error: FakeApiError, *, close: bool) -> bytes:
    """A `FakeApiError` as Anthropic's error response, like the stand-in's `error_response`."""
    rid = request_id()
    body = error_object(error.status, error.message, error.options.get("error_code"))
    headers = b"request-id: " + rid + b"\r\n"
    if error.options.get("retry_after") is not None:
        headers += f"retry-after: {error.options['retry_after']:g}\r\n".encode()
    data = {"type": "error", "error": body, "request_id": rid.decode()}
    return json_answer(error.status, data, close=close, headers=headers)


def chunk(data: bytes) -> bytes:
    """One piece of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


# --- what a call asks for ----------------------------------------------------------------------


def parse_head(head: bytes) -> tuple[bytes, bytes, bytes, dict[bytes, bytes]]:
    """Method, path (without query), version and lower-cased headers of a request head."""
    request_line, *lines = head.split(b"\r\n")
    method, target, version = request_line.split(b" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return method, target.partition(b"?")[0], version, headers


def read_call(headers: dict[bytes, bytes], body: bytes) -> tuple[MessagesRequest, Behavior | None]:
    """Validate a call as the stand-in's `create_message` does; its behavior from the prompt."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not (headers.get(b"x-api-key") or headers.get(b"authorization")):
        raise FakeApiError(401, "x-api-key header is required")
    if not headers.get(b"anthropic-version"):
        raise FakeApiError(400, "anthropic-version: header is required")
    req = parse_messages_request(data)
    behavior = behavior_from_directive(req.prompt)
    kind = behavior["type"] if behavior else None
    if kind not in LEAN_BEHAVIORS:
        directive = DIRECTIVE_PATTERN.search(req.prompt)
        named = directive.group(0) if directive else kind
        message = f"{named} is not played by the lean bench stand-in, only by aigen.dev.anthropic"
        raise FakeApiError(400, message)
    if behavior is not None and kind == "fail":
        raise FakeApiError(**{key: value for key, value in behavior.items() if key != "type"})
    return req, behavior


def delay_of(behavior: Behavior | None) -> float:
    """Seconds a `delay` behavior holds the answer back (the stand-in's `answer` sleeps first)."""
    return behavior["seconds"] if behavior and behavior["type"] == "delay" else 0.0


# --- the server --------------------------------------------------------------------------------


class UpstreamState:
    """What the recorder saw: first-delta stamps and the calls in flight."""

    def __init__(self, chunk_delay: float = DEFAULT_CHUNK_DELAY_MS / 1000) -> None:
        self.chunk_delay = chunk_delay
        self.stamps: dict[str, tuple[float, str]] = {}
        self.in_flight = 0
        self.peak = 0

    def enter(self) -> None:
        """A /v1/messages call started."""
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def health(self) -> dict[str, str]:
        """Say the stand-in is up."""
        return {"status": "ok"}

    def first_deltas(self) -> dict[str, tuple[float, str]]:
        """The stamps of the streamed answers."""
        return self.stamps

    def clear_first_deltas(self) -> dict[str, tuple[float, str]]:
        """Forget every stamp."""
        self.stamps.clear()
        return self.stamps

    def calls(self) -> dict[str, int]:
        """Calls being answered now, and at most since the last reset."""
        return {"now": self.in_flight, "peak": self.peak}

    def reset_peak(self) -> dict[str, int]:
        """Start the peak again from the calls in flight now."""
        self.peak = self.in_flight
        return self.calls()


ROUTES: dict[tuple[bytes, bytes], Callable[[UpstreamState], object]] = {
    (b"GET", HEALTH_PATH.encode()): UpstreamState.health,
    (b"GET", STAMPS_PATH.encode()): UpstreamState.first_deltas,
    (b"DELETE", STAMPS_PATH.encode()): UpstreamState.clear_first_deltas,
    (b"GET", IN_FLIGHT_PATH.encode()): UpstreamState.calls,
    (b"DELETE", IN_FLIGHT_PATH.encode()): UpstreamState.reset_peak,
}
KNOWN_PATHS = {path for _, path in ROUTES} | {MESSAGES_PATH}


class UpstreamProtocol(asyncio.Protocol):
    """One client connection: its requests one after the other, each answered in full."""

    def __init__(self, state: UpstreamState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: asyncio.Task[None] | asyncio.TimerHandle | None = None
        self.counted = False  # this connection's call is in state.in_flight
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        self._leave()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.pending is None:
            self._next_request()

    def _next_request(self) -> None:
        """Answer the buffered request once its head and body are all in."""
        end = self.buffer.find(END_OF_HEAD)
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                self._refuse(FakeApiError(413, "request head too large"))
            return
        try:
            method, path, version, headers = parse_head(bytes(self.buffer[:end]))
            length = int(headers.get(b"content-length", b"0"))
            if length < 0 or b"transfer-encoding" in headers:
                raise ValueError("only Content-Length request bodies are supported")
        except ValueError as error:
            self._refuse(FakeApiError(400, str(error)))
            return
        if length > MAX_BODY_BYTES:
            self._refuse(FakeApiError(413))
            return
        start = end + len(END_OF_HEAD)
        if len(self.buffer) < start + length:
            return
        body = bytes(self.buffer[start : start + length])
        del self.buffer[: start + length]
        connection = headers.get(b"connection", b"").lower()
        self.close_after = connection == b"close" or (
            version == b"HTTP/1.0" and connection != b"keep-alive"
        )
        self._route(method, path, headers, body)

    def _refuse(self, error: FakeApiError) -> None:
        """Answer a request that cannot be read, and close: what follows it is unknown."""
        self.close_after = True
        self._finish(error_answer(error, close=True))

    def _route(self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes) -> None:
        if path == MESSAGES_PATH and method == b"POST":
            self._create_message(headers, body)
        elif view := ROUTES.get((method, path)):
            self._finish(json_answer(200, view(self.state), close=self.close_after))
        else:
            status = 405 if path in KNOWN_PATHS else 404
            self._finish(error_answer(FakeApiError(status), close=self.close_after))

    def _create_message(self, headers: dict[bytes, bytes], body: bytes) -> None:
        """Answer a Messages API call as the stand-in's `answer` does, directives included."""
        self.state.enter()
        self.counted = True
        try:
            req, behavior = read_call(headers, body)
        except FakeApiError as error:
            self._finish(error_answer(error, close=self.close_after))
            return
        spec = behavior or {}
        text = spec["text"] if "text" in spec else compose_reply(req.prompt, req.model)
        reply = finish_reply(text, req.max_tokens, req.stop_sequences)
        if req.stream:
            plan = plan_stream(behavior, reply.text, self.state.chunk_delay)
            stream = self._stream(req, reply, plan, delay_of(behavior))
            self.pending = asyncio.get_running_loop().create_task(stream)
            return
        rid = b"request-id: " + request_id() + b"\r\n"
        answer = json_answer(200, message_json(req, reply), close=self.close_after, headers=rid)
        wait = delay_of(behavior) + plain_call_wait(behavior)
        if wait:
            self.pending = asyncio.get_running_loop().call_later(wait, self._finish, answer)
        else:
            self._finish(answer)

    async def _stream(
        self, req: MessagesRequest, reply: Reply, plan: StreamPlan, delay: float
    ) -> None:
        """Send the events of one answer as planned, stamping the first delta."""
        if delay:
            await asyncio.sleep(delay)
        assert self.transport is not None
        write = self.transport.write
        head = STREAM_HEAD + b"request-id: " + request_id() + b"\r\n"
        head += CLOSE if self.close_after else KEEP_ALIVE
        write(head + chunk(b"".join(stream_head(req))))
        for index, text in enumerate(plan.chunks):
            if pause := plan.pause_before(index):
                await asyncio.sleep(pause)
            write(chunk(text_delta(text)))
            if index == 0:
                self.state.stamps[req.prompt] = (time.monotonic(), text)
        self._finish(chunk(b"".join(stream_tail(reply))) + LAST_CHUNK)

    def _finish(self, data: bytes) -> None:
        """Write the rest of an answer, then close or read the next request."""
        self.pending = None
        self._leave()
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        if self.close_after:
            self.transport.close()
        elif self.buffer:
            self._next_request()

    def _leave(self) -> None:
        if self.counted:
            self.counted = False
            self.state.in_flight -= 1


async def listen(state: UpstreamState, port: int = 0) -> asyncio.Server:
    """Serve the stand-in on 127.0.0.1:`port` (0: a free one) on the running loop."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: UpstreamProtocol(state), HOST, port, backlog=BACKLOG, reuse_address=True
    )


# --- running it --------------------------------------------------------------------------------


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
    return start(stack, "claude", command, url=url, ready_path=HEALTH_PATH, log_dir=log_dir)


async def serve(port: int, chunk_delay_ms: int) -> None:
    """Serve the stand-in until SIGTERM or SIGINT."""
    server = await listen(UpstreamState(chunk_delay_ms / 1000), port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    """Command line of the stamping stand-in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunk-delay-ms", type=int, default=DEFAULT_CHUNK_DELAY_MS)
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.chunk_delay_ms))


if __name__ == "__main__":
    main()
