"""Closed-loop HTTP load with wrk (a C load generator in its own process) and its figures."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("wrk.lua")
MARKER = "WRK_JSON "
THREADS = 1  # one wrk thread drives tens of thousands of requests/s: leave the cores to the app
EXTRA_WAIT = 60.0


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    connections: int
    seconds: float
    requests: int
    errors: dict[str, int]
    latency_ms: dict[str, float]

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok_rate(self) -> float:
        """Requests per second answered below 400 (wrk counts the others as status errors)."""
        ok = self.requests - self.errors.get("status", 0)
        return ok / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        """Requests answered with a status >= 400, plus socket errors and timeouts."""
        return sum(self.errors.values())

    def to_json(self) -> dict[str, object]:
        """The figures as results.json stores them."""
        return {
            "connections": self.connections,
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "rate_per_s": round(self.rate, 1),
            "ok_rate_per_s": round(self.ok_rate, 1),
            "errors": self.errors,
            "latency_ms": {name: round(value, 3) for name, value in self.latency_ms.items()},
        }


async def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    method: str = "GET",
    body_file: Path | None = None,
    cookie_file: Path | None = None,
    headers: Sequence[str] = (),
    timeout: float = 30.0,
    stagger: float = 0.0,
) -> WrkResult:
    """Keep `connections` requests in flight against `url` for `seconds`; return the figures.

    With `stagger` (seconds), each connection's first request waits a random part of it, so
    the connections start spread out rather than all at once.
    """
    command = [
        wrk_binary(),
        f"-t{min(THREADS, connections)}",
        f"-c{connections}",
        f"-d{max(round(seconds), 1)}s",
        f"--timeout={max(round(timeout), 1)}s",
        "-s",
        str(SCRIPT),
    ]
    for header in headers:
        command += ["-H", header]
    command += [url, "--", method, str(body_file) if body_file else "-"]
    command.append(str(cookie_file) if cookie_file is not None else "-")
    if stagger > 0:
        command += [str(round(stagger * 1000)), str(connections)]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), seconds + timeout + EXTRA_WAIT)
    return parse_wrk_output(output.decode(errors="replace"), connections)


def parse_wrk_output(text: str, connections: int) -> WrkResult:
    """Read the WRK_JSON line that wrk.lua's done() prints."""
    for line in text.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            break
    else:
        raise RuntimeError(f"wrk printed no figures:\n{text[-2000:]}")
    errors = {name: data[name] for name in ("connect", "read", "write", "status", "timeout")}
    latency = {
        f"{name}_ms": data[f"{name}_us"] / 1000 for name in ("p50", "p90", "p99", "max", "mean")
    }
    return WrkResult(
        connections=connections,
        seconds=data["duration_us"] / 1e6,
        requests=data["requests"],
        errors={name: count for name, count in errors.items() if count},
        latency_ms=latency,
    )


def wrk_binary() -> str:
    """The wrk executable (Debian's `wrk` package)."""
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    return found
