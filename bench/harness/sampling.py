"""Samplers run beside a load: PostgreSQL connections (pg_stat_activity) and RSS (/proc)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import asyncpg

INTERVAL = 0.1
PAGE_KB = 1024
T = TypeVar("T")


class PeakSampler:
    """Calls `measure` every INTERVAL seconds in a task, keeping the first and the peak value."""

    def __init__(self, measure: Callable[[], Awaitable[float]]) -> None:
        self.measure = measure
        self.first: float | None = None
        self.peak: float = 0.0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PeakSampler:
        self.first = await self.measure()
        self.peak = self.first
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            value = await self.measure()
            self.samples += 1
            self.peak = max(self.peak, value)


def connections_of(conn: asyncpg.Connection, database: str) -> Callable[[], Awaitable[float]]:
    """Backends connected to `database`, not counting the sampler's own."""

    async def measure() -> float:
        return await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )

    return measure


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (VmRSS of /proc/PID/status); 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / PAGE_KB
    except OSError:
        pass
    return 0.0


def rss_of(pids: Sequence[int]) -> Callable[[], Awaitable[float]]:
    """The largest RSS among `pids`, in MB."""

    async def measure() -> float:
        return max((rss_mb(pid) for pid in pids), default=0.0)

    return measure


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_split(pids: Sequence[int], work: Awaitable[T]) -> tuple[T, list[float]]:
    """Await `work`; return its result and the CPU seconds each of `pids` used meanwhile."""
    before = [cpu_seconds(pid) for pid in pids]
    result = await work
    used = [round(cpu_seconds(pid) - spent, 2) for pid, spent in zip(pids, before, strict=True)]
    return result, used


def split_text(used: Sequence[float]) -> str:
    """'workers' CPU 97 % / 3 %': how evenly the workers shared the load."""
    total = sum(used)
    if not total:
        return "workers' CPU unknown"
    return "workers' CPU " + " / ".join(f"{part / total:.0%}" for part in used)
