"""What every case of the suite shares: the run's mode, database, users, processes and results."""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.app import AppSettings, app_environment
from bench.harness.report import Row
from bench.harness.services import Service

JSON_HEADER = "Content-Type: application/json"
MODEL = "claude-opus-4-5"


@dataclass(frozen=True)
class Mode:
    """Counts and durations of a run: quick (a minute or two) or full."""

    name: str
    seconds: float  # each measured load
    warmup: float  # load before each measurement, not counted
    held: int  # generations held in flight at once (case 4)
    held_upstream: float  # seconds the upstream takes in case 4
    held_ramp: float  # seconds over which case 4's requests start
    profile_seconds: float
    rounds: int  # alternate a measure and its ceiling this many times (cases 1, 3), keep the best
    users: int = 10_000
    streams: int = 100
    burst: int = 500
    credits_left: int = 10
    throughput_connections: int = 32
    health_connections: int = 64
    pro_connections: int = 64
    overhead_concurrency: tuple[int, ...] = (1, 50, 100)
    overhead_upstream: float = 0.2
    workers: int = 2
    pool: int = 10  # DB_POOL_MAX of the shared app (case 4 sets its own)


QUICK = Mode(
    "quick",
    seconds=4,
    warmup=1,
    held=300,
    held_upstream=3.0,
    held_ramp=1.0,
    profile_seconds=5,
    rounds=2,
)
FULL = Mode(
    "full",
    seconds=20,
    warmup=3,
    held=5000,
    held_upstream=20.0,
    held_ramp=15.0,
    profile_seconds=15,
    rounds=3,
)


@dataclass(frozen=True)
class Tools:
    """Paths of the external programs (None: not available, the cases needing it say so)."""

    wrk: str
    pgbench: str
    pgbouncer: str | None
    py_spy: str | None
    pyinstrument: bool


@dataclass
class Context:
    """The state of one run of the suite."""

    mode: Mode
    folder: Path  # temporary: logs, request bodies, cookie files
    profiles: Path  # bench/profiles: kept after the run
    stack: ExitStack
    admin_url: str
    settings: AppSettings
    tools: Tools
    users: list[int]
    cookies: dict[int, str]
    upstream: Service
    app: Service | None = None  # aigen with mode.workers workers, against the upstream
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # printed below the table
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        """The benchmark's own database."""
        return self.settings.database_url

    def environment(self, **extra: str) -> dict[str, str]:
        """The app's settings for this run, with `extra` settings on top."""
        return app_environment(self.settings, extra)

    def write(self, name: str, text: str) -> Path:
        """A file of the run's temporary folder (request bodies, cookie lists)."""
        path = self.folder / name
        path.write_text(text)
        return path

    def generate_body(self, prompt: str, **fields: Any) -> str:
        """The JSON body of POST /api/generate."""
        return json.dumps({"prompt": prompt, **fields})

    def cookie_file(self, name: str, user_ids: list[int]) -> Path:
        """One Cookie header value a line, for wrk."""
        return self.write(name, "\n".join(self.cookies[user] for user in user_ids) + "\n")

    def note(self, line: str) -> None:
        """A line for below the table (profiles), printed as it comes."""
        self.notes.append(line)
        print(f"  {line}", flush=True)

    def add(self, *rows: Row) -> None:
        """Rows of the results table, printed as they come."""
        for row in rows:
            self.rows.append(row)
            beside = "; ".join(part for part in (row.reference, row.ratio) if part)
            line = f"  {row.case} | {row.measure}: {row.figure}"
            line += f"  ({beside})" if beside else ""
            line += f"  target {row.target}: {row.verdict}" if row.target else ""
            line += f"  {row.verdict}" if row.verdict and not row.target else ""
            print(line, flush=True)
