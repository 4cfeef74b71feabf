"""Throughput and overhead of POST /api/generate at one concurrency and one upstream latency.

    python -m bench.generate [--concurrency 60] [--latency-ms 250] [--seconds 20]
                             [--workers 2] [--pool 10]

Case 2 of the suite (bench/cases/overhead.py) at the parameters given: the app runs as
`aigen serve --workers N`, the Claude stand-in in its own process, wrk in its own. It prints
the ideal throughput (concurrency / latency: every request spends its time waiting on Claude),
the ratio achieved, and the overhead over Claude's latency (nominal, and as measured against
the stand-in alone at the same concurrency). Figures only; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]  # this checkout's code, also as a plain script

from bench.cases import overhead  # noqa: E402
from bench.cases.context import FULL  # noqa: E402
from bench.harness.app import start_app  # noqa: E402
from bench.suite import find_tools, prepare  # noqa: E402


async def run(args: argparse.Namespace) -> None:
    """Prepare a run with these parameters, serve the app, measure."""
    mode = replace(
        FULL,
        seconds=args.seconds,
        overhead_upstream=args.latency_ms / 1000,
        overhead_concurrency=(args.concurrency,),
        workers=args.workers,
        pool=args.pool,
        users=max(args.concurrency * 10, 100),
    )
    tools = find_tools()
    with tempfile.TemporaryDirectory(prefix="aigen-bench-") as folder, ExitStack() as stack:
        ctx = await prepare(mode, Path(folder), stack, tools, args.log_level)
        ctx.app = start_app(
            stack, ctx.environment(), workers=mode.workers, log_dir=ctx.folder, name="app"
        )
        await overhead.run(ctx)


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=60)
    parser.add_argument("--latency-ms", type=int, default=250)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--log-level", default="INFO")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
