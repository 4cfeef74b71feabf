"""The database ceiling of one generation: pgbench running the app's own two transactions.

One pgbench "transaction" of the script is one generation: the reservation (lock the user,
insert the pending row, charge) and the finalization (store the answer, read the user back),
with the statements and column lists of aigen.store.repository. Its tps is therefore the most
generations per second this PostgreSQL can store with these clients, whatever the app does.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from aigen.store.repository import GENERATION_COLUMNS, USER_COLUMNS

CLIENTS = 8
THREADS = 2
MODEL = "claude-opus-4-5"
# About the size of the stand-in's answers, so the row written is the app's.
RESULT_TEXT = "x" * 600
SCRIPT = f"""\
\\set uid random(1, :users)
BEGIN;
SELECT {USER_COLUMNS} FROM users WHERE id = :uid FOR UPDATE;
INSERT INTO generations (user_id, prompt, model) VALUES (:uid, 'Bench generation', '{MODEL}') \
RETURNING {GENERATION_COLUMNS} \\gset g_
UPDATE users SET credits_used = credits_used + 1 WHERE id = :uid RETURNING {USER_COLUMNS};
COMMIT;
BEGIN;
UPDATE generations SET result = '{RESULT_TEXT}', model = '{MODEL}', input_tokens = 4, \
output_tokens = 120, status = 'succeeded', completed_at = now() \
WHERE id = :g_id AND user_id = :uid AND status = 'pending' RETURNING {GENERATION_COLUMNS};
SELECT {USER_COLUMNS} FROM users WHERE id = :uid;
COMMIT;
"""
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
