"""The database ceiling of one generation: pgbench running the app's own two transactions.

One pgbench "transaction" of the script is one generation: the reservation (lock the user;
charge and insert the pending row, in one transaction) and the finalization (store the answer
and read the user back, one statement), with the very statements of aigen.store.repository.
Its tps is therefore the most generations per second this PostgreSQL can store with these
clients, whatever the app does.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from aigen.store.repository import (
    CHARGE_AND_INSERT_GENERATION,
    FINALIZE_GENERATION,
    LOCK_USER_FOR_RESERVATION,
)

CLIENTS = 8
THREADS = 2
MODEL = "claude-opus-4-5"
# About the size of the stand-in's answers, so the row written is the app's.
RESULT_TEXT = "x" * 600


def _pgbench(sql: str, *values: str) -> str:
    """One of the app's statements for a pgbench script: $n become values, on one line."""
    for number, value in reversed(list(enumerate(values, start=1))):
        sql = sql.replace(f"${number}", value)
    return " ".join(sql.split())


SCRIPT = "\n".join(
    (
        "\\set uid random(1, :users)",
        "BEGIN;",
        _pgbench(LOCK_USER_FOR_RESERVATION, ":uid") + ";",
        _pgbench(CHARGE_AND_INSERT_GENERATION, ":uid", "'Bench generation'", f"'{MODEL}'", "NULL")
        + " \\gset g_",
        "COMMIT;",
        _pgbench(FINALIZE_GENERATION, ":uid", ":g_id", f"'{RESULT_TEXT}'", f"'{MODEL}'", "4", "120")
        + ";",
        "",
    )
)
TPS = re.compile(r"^tps = ([\d.]+)", re.MULTILINE)
LATENCY = re.compile(r"^latency average = ([\d.]+) ms", re.MULTILINE)
FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)
EXTRA_WAIT = 60.0


@dataclass(frozen=True)
class PgbenchResult:
    """What one pgbench run measured."""

    mode: str
    clients: int
    seconds: float
    tps: float
    latency_ms: float
    failed: int

    def to_json(self) -> dict[str, object]:
        """The figures as results.json stores them."""
        return {
            "protocol": self.mode,
            "clients": self.clients,
            "seconds": self.seconds,
            "generations_per_s": round(self.tps, 1),
            "latency_avg_ms": self.latency_ms,
            "failed": self.failed,
        }


def write_script(folder: Path) -> Path:
    """The custom script, written where pgbench can read it."""
    path = folder / "generation.sql"
    path.write_text(SCRIPT)
    return path


async def run_pgbench(
    pgbench: str,
    url: str,
    script: Path,
    *,
    users: int,
    seconds: float,
    mode: str = "prepared",
    clients: int = CLIENTS,
) -> PgbenchResult:
    """Run the script with `clients` connections for `seconds` (`-M mode`)."""
    command = [pgbench, "-n", "-M", mode, "-c", str(clients), "-j", str(min(THREADS, clients))]
    command += ["-T", str(max(round(seconds), 1)), "-D", f"users={users}", "-f", str(script), url]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), seconds + EXTRA_WAIT)
    text = output.decode(errors="replace")
    tps, latency, failed = TPS.search(text), LATENCY.search(text), FAILED.search(text)
    if process.returncode != 0 or tps is None:
        raise RuntimeError(f"pgbench failed:\n{text[-2000:]}")
    return PgbenchResult(
        mode=mode,
        clients=clients,
        seconds=seconds,
        tps=float(tps.group(1)),
        latency_ms=float(latency.group(1)) if latency else float("nan"),
        failed=int(failed.group(1)) if failed else 0,
    )
