"""GET /api/usage's query for a user with 100,000 generations: bench/usage.py, in full mode."""

from __future__ import annotations

import asyncio

from bench.cases.context import Context
from bench.harness.report import Row
from bench.harness.services import ROOT, child_environment, python_command

TIMEOUT = 900.0


async def run(ctx: Context) -> None:
    """Run bench/usage.py against the run's PostgreSQL server; keep what it prints."""
    process = await asyncio.create_subprocess_exec(
        *python_command(str(ROOT / "bench" / "usage.py"), ctx.admin_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=child_environment(),
        cwd=ROOT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
    lines = output.decode(errors="replace").strip().splitlines()
    ctx.results["usage"] = {"returncode": process.returncode, "printed": lines}
    for line in lines:
        if line.startswith(("with", "without")):
            label, _, figures = line.partition(":")
            ctx.add(
                Row("usage", f"/api/usage query, 100,000 generations, {label}", figures.strip())
            )
