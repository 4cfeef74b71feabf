"""Reading wrk's figures (the line wrk.lua's done() prints)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from bench.harness.wrk import parse_wrk_output, run_wrk

WRK_TEXT = """\
Running 5s test @ http://127.0.0.1:1234/healthz
  1 threads and 64 connections
Requests/sec:   1989.92
WRK_JSON {"requests": 10000, "duration_us": 5000000, "bytes": 7720622, "connect": 0, \
"read": 2, "write": 0, "status": 30, "timeout": 1, "p50_us": 12782, "p90_us": 29129, \
"p99_us": 69393, "max_us": 117167, "mean_us": 17446.3}
"""


def test_figures_are_read_from_the_marker_line() -> None:
    result = parse_wrk_output(WRK_TEXT, connections=64)
    assert result.requests == 10000 and result.seconds == 5.0
    assert result.rate == 2000.0
    assert result.ok_rate == (10000 - 30) / 5.0
    assert result.errors == {"read": 2, "status": 30, "timeout": 1}
    assert result.failed == 33
    assert result.latency_ms["p50_ms"] == 12.782
    assert result.latency_ms["p99_ms"] == 69.393
    assert result.to_json()["connections"] == 64


def test_output_without_figures_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no figures"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n", 1)


async def first_request_spread(*, stagger: float, connections: int = 20) -> tuple[float, float]:
    """How far apart the connections' first requests reached a server, and wrk's p99 (s)."""
    loop = asyncio.get_running_loop()
    firsts: list[float] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        while await reader.readuntil(b"\r\n\r\n"):
            if first:
                firsts.append(loop.time())
                first = False
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await answer(reader, writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await run_wrk(
            f"http://127.0.0.1:{port}/", connections=connections, seconds=1, stagger=stagger
        )
    assert len(firsts) == connections and result.requests > connections
    return max(firsts) - min(firsts), result.latency_ms["p99_ms"] / 1000


async def test_stagger_spreads_the_first_requests_and_is_not_timed() -> None:
    together, _ = await first_request_spread(stagger=0)
    spread, p99 = await first_request_spread(stagger=0.6)
    assert together < 0.15
    # 20 draws from 0..600 ms: a range under 250 ms has a chance below one in 10^6.
    assert spread > 0.25
    assert p99 < 0.25  # the wait before a first request is not in its latency
