"""Exact-count load in its own process: N requests at once, each on its own connection.

    python -m bench.harness.client < spec.json > results.json

wrk keeps connections busy for a duration; the held-in-flight, burst and streaming cases need
instead a fixed number of requests all in flight together and the outcome of each one. This is
a small HTTP/1.1 client on asyncio streams (no HTTP library: it must stay cheap at thousands of
connections). The spec: {"host", "port", "path", "requests": [{"headers", "body"}],
"ramp_seconds", "timeout", "keep_chunks"}. Request i starts at i * ramp_seconds / N; each
result has its status, seconds, error, content type and, with keep_chunks, the monotonic time
and text of its first body chunks (the streaming case compares them with the upstream's).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

READ_SIZE = 65536
KEPT_BYTES = 16384
EXTRA_WAIT = 60.0


@dataclass
class Outcome:
    """One request as the client saw it."""

    status: int | None = None
    seconds: float = 0.0
    error: str | None = None
    content_type: str = ""
    started: float = 0.0
    chunks: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class InFlight:
    """How many requests are between their first byte sent and their last byte read."""

    now: int = 0
    peak: int = 0

    def enter(self) -> None:
        """A request started."""
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        """A request ended."""
        self.now -= 1


def encode_request(host: str, port: int, path: str, headers: dict[str, str], body: str) -> bytes:
    """A POST with a JSON body that asks the server to close the connection afterwards."""
    payload = body.encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(payload)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + payload


def parse_head(head: bytes) -> tuple[int, str]:
    """Status and Content-Type of a response head."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            return status, value.strip()
    return status, ""


async def exchange(
    host: str, port: int, raw: bytes, outcome: Outcome, keep_chunks: int, flight: InFlight
) -> None:
    """Send one request and read the whole answer (until the server closes)."""
    reader, writer = await asyncio.open_connection(host, port)
    flight.enter()
    try:
        writer.write(raw)
        outcome.status, outcome.content_type = parse_head(await reader.readuntil(b"\r\n\r\n"))
        kept = 0
        while chunk := await reader.read(READ_SIZE):
            if len(outcome.chunks) < keep_chunks and kept < KEPT_BYTES:
                outcome.chunks.append((time.monotonic(), chunk.decode("utf-8", "replace")))
                kept += len(chunk)
    finally:
        flight.leave()
        writer.close()


async def one(spec: dict[str, Any], index: int, start_at: float, flight: InFlight) -> Outcome:
    """Request `index` of the spec, started at its slot of the ramp."""
    await asyncio.sleep(max(start_at - time.monotonic(), 0))
    item = spec["requests"][index]
    raw = encode_request(
        spec["host"], spec["port"], spec["path"], item.get("headers", {}), item["body"]
    )
    outcome = Outcome(started=time.monotonic())
    try:
        async with asyncio.timeout(spec["timeout"]):
            await exchange(spec["host"], spec["port"], raw, outcome, spec["keep_chunks"], flight)
    except TimeoutError:
        outcome.error = "timeout"
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
        outcome.error = type(error).__name__
    outcome.seconds = time.monotonic() - outcome.started
    return outcome


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Every request of the spec; the outcomes in order, the peak in flight and the wall time."""
    count = len(spec["requests"])
    began = time.monotonic()
    step = spec.get("ramp_seconds", 0.0) / max(count, 1)
    flight = InFlight()
    outcomes = await asyncio.gather(
        *(one(spec, index, began + index * step, flight) for index in range(count))
    )
    return {
        "results": [asdict(outcome) for outcome in outcomes],
        "peak_in_flight": flight.peak,
        "wall_seconds": time.monotonic() - began,
    }


async def drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Run this client in a process of its own on `spec`; return what it measured."""
    from bench.harness.services import ROOT, child_environment, python_command

    process = await asyncio.create_subprocess_exec(
        *python_command("-m", "bench.harness.client"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_environment(),
        cwd=ROOT,
    )
    limit = spec.get("ramp_seconds", 0.0) + spec["timeout"] + EXTRA_WAIT
    output, errors = await asyncio.wait_for(process.communicate(json.dumps(spec).encode()), limit)
    if process.returncode != 0:
        raise RuntimeError(f"the load client failed:\n{errors.decode(errors='replace')[-2000:]}")
    return json.loads(output)


def main() -> None:
    """Read the spec from stdin, write the results to stdout."""
    spec = json.load(sys.stdin)
    spec.setdefault("keep_chunks", 0)
    json.dump(asyncio.run(run(spec)), sys.stdout)


if __name__ == "__main__":
    main()
