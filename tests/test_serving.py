"""`aigen serve` as real processes: stopped gracefully with several workers, or killed outright.

Each test runs the command in a subprocess against the test database and the local Claude,
sends real HTTP requests, and ends with `aigen doctor` finding the ledger balanced.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import asyncpg
import httpx
import pytest

from aigen.app import create_app
from aigen.core.generation import STALE_ERROR
from aigen.dev.anthropic import FakeAnthropicServer
from tests.helpers import (
    GENERATE,
    auth_cookie,
    counts,
    doctor,
    make_user,
    serve_process,
)

# Six generations, one outlasting the others by far: the worker that holds it is still answering
# long after the other worker has answered all it had and exited.
CALL_SECONDS = [0.2, 0.2, 0.2, 0.2, 0.2, 2.5]
STOP_SECONDS = 60.0
KILLED_CALL_SECONDS = 3.0
UPSTREAM_TIMEOUT = 1


async def until_pending(db: asyncpg.Connection, expected: int) -> None:
    """Wait (bounded) until `expected` generations are reserved and not finalized yet."""
    deadline = asyncio.get_running_loop().time() + STOP_SECONDS
    query = "SELECT count(*) FROM generations WHERE status = 'pending'"
    while await db.fetchval(query) < expected:
        assert asyncio.get_running_loop().time() < deadline, f"{expected} never pending"
        await asyncio.sleep(0.02)


async def generate_alone(base_url: str, cookies: dict[str, str], prompt: str) -> httpx.Response:
    """One generation on a connection of its own, closed once answered: a worker whose answers
    are all sent has nothing left open and may exit before the others."""
    async with httpx.AsyncClient(base_url=base_url, cookies=cookies, timeout=STOP_SECONDS) as http:
        return await http.post(GENERATE, json={"prompt": prompt})


def send_stop(pid: int, how: str) -> None:
    """The supervisor alone gets SIGINT (as it would SIGTERM from a process manager); platforms
    such as Heroku or systemd send SIGTERM to every process of the group."""
    if how == "SIGTERM to every process":
        os.killpg(pid, signal.SIGTERM)
    else:
        os.kill(pid, signal.SIGINT)


@pytest.mark.parametrize("how", ["SIGINT to the supervisor", "SIGTERM to every process"])
async def test_stopping_two_workers_answers_every_generation_in_flight(
    app_settings: dict[str, str],
    database_url: str,
    db: asyncpg.Connection,
    fake_claude: FakeAnthropicServer,
    tmp_path: Path,
    how: str,
) -> None:
    user = await make_user(db, "stop@example.com", credits_limit=100)
    fake_claude.set_scenario([{"type": "delay", "seconds": s} for s in CALL_SECONDS])
    cookies = {"aigen_auth": auth_cookie(create_app(app_settings), user.id)}
    async with serve_process(app_settings, tmp_path / "serve.log", workers=2) as server:
        calls = [
            asyncio.create_task(generate_alone(server.base_url, cookies, f"in flight {n}"))
            for n in range(len(CALL_SECONDS))
        ]
        await until_pending(db, len(CALL_SECONDS))
        send_stop(server.process.pid, how)
        responses = await asyncio.gather(*calls, return_exceptions=True)
        exit_code = await asyncio.wait_for(server.process.wait(), STOP_SECONDS)
    statuses = [getattr(response, "status_code", repr(response)) for response in responses]
    assert statuses == [200] * len(CALL_SECONDS), server.log_tail()
    assert exit_code == 0, server.log_tail()
    assert await counts(db, user.id) == (len(CALL_SECONDS), {"succeeded": len(CALL_SECONDS)})
    exit_code, report = await doctor(database_url)
    assert exit_code == 0, report


async def test_charges_of_a_killed_process_come_back_within_the_window(
    app_settings: dict[str, str],
    database_url: str,
    db: asyncpg.Connection,
    fake_claude: FakeAnthropicServer,
    tmp_path: Path,
) -> None:
    """SIGKILL mid-call, then a new process: the reservation is failed and refunded within
    AIGEN_UPSTREAM_TIMEOUT + 60 s (README, Operations), with the sweep interval left at its
    default of 60 s: the window must not depend on it (a short interval hid the old 150-210 s)."""
    settings = {**app_settings, "AIGEN_UPSTREAM_TIMEOUT": str(UPSTREAM_TIMEOUT)}
    user = await make_user(db, "killed@example.com")
    fake_claude.set_scenario([{"type": "delay", "seconds": KILLED_CALL_SECONDS}])
    cookies = {"aigen_auth": auth_cookie(create_app(settings), user.id)}
    async with serve_process(settings, tmp_path / "killed.log") as server:
        async with httpx.AsyncClient(base_url=server.base_url, cookies=cookies) as http:
            call = asyncio.create_task(http.post(GENERATE, json={"prompt": "killed mid-call"}))
            await until_pending(db, 1)
            os.killpg(server.process.pid, signal.SIGKILL)  # the supervisor and its worker
            deadline = asyncio.get_running_loop().time() + UPSTREAM_TIMEOUT + 60
            with pytest.raises(httpx.TransportError):
                await call
    assert await counts(db, user.id) == (1, {"pending": 1})  # what the dead process left

    async with serve_process(settings, tmp_path / "next.log") as server:
        while (await counts(db, user.id))[1] == {"pending": 1}:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
    assert await counts(db, user.id) == (0, {"failed": 1}), server.log_tail()
    assert await db.fetchval("SELECT error FROM generations") == STALE_ERROR
    exit_code, report = await doctor(database_url)
    assert exit_code == 0, report
