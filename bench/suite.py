"""The performance suite of the issue: every target printed beside its ceiling from the same run.

    python -m bench [--quick] [--held N] [--held-upstream S] [--only 1,3,...] [--no-profile]

Figures and ratios are printed and written to bench/results.json and bench/results.md (the
table for README's Performance section); nothing is asserted. All traffic goes to 127.0.0.1
and every loop and wait is bounded.

Load generators, each in its own process: wrk with a Lua script (bench/harness/wrk.lua) for
closed-loop load over a duration (throughput and latency percentiles: cases 1, 2, 3, 6 PRO,
PgBouncer, profiles), and a small asyncio HTTP/1.1 client (bench/harness/client.py) where a
fixed number of requests must be in flight together and each outcome counts (held in flight,
the FREE burst, streaming time to first byte).

Services: PostgreSQL from BENCH_DATABASE_URL or TEST_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/postgres), where the database `aigen_bench_run` is
dropped and recreated; Redis from BENCH_REDIS_URL or TEST_REDIS_URL (keys under a prefix of
this run's own).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

from bench.cases import (
    contention,
    floor,
    health,
    held,
    overhead,
    pgbouncer,
    profile,
    streaming,
    throughput,
    usage,
)
from bench.cases.context import FULL, QUICK, Context, Mode, Tools
from bench.harness.app import AppSettings, sign_in_cookies, start_app
from bench.harness.database import (
    fresh_database,
    generation_statuses,
    seed_users,
    server_version,
)
from bench.harness.report import machine_facts, markdown_table, timestamp, write_results
from bench.harness.tools import ensure_program, venv_program, version_of
from bench.harness.upstream import start_upstream

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
LOAD_GENERATORS = (
    "wrk 4.1 with a Lua script (closed loop over a duration) for throughput and latency;"
    " an asyncio HTTP/1.1 client process for exact counts in flight (held, burst, streaming)"
)
Case = Callable[[Context], Awaitable[None]]
# In the order they run: the ones sharing the 2-worker app first, then those serving their own.
SHARED_APP_CASES: dict[str, Case] = {
    "1": throughput.run,
    "floor": floor.run,
    "3": health.run,
    "6": contention.run,
    "2": overhead.run,
    "5": streaming.run,
    "profile": profile.record_workers,
}
OWN_APP_CASES: dict[str, Case] = {
    "4": held.run,
    "pgbouncer": pgbouncer.run,
    "pyinstrument": profile.pyinstrument,
    "usage": usage.run,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, a minute or two")
    parser.add_argument("--held", type=int, help="generations held in flight in case 4")
    parser.add_argument("--held-upstream", type=float, help="upstream seconds in case 4")
    parser.add_argument("--only", help="comma-separated cases: 1-6, floor, pgbouncer, profile, ...")
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy and pyinstrument")
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of the app (default INFO)")
    return parser.parse_args(argv)


def choose_mode(args: argparse.Namespace) -> Mode:
    """QUICK or FULL, with the counts given on the command line."""
    from dataclasses import replace

    mode = QUICK if args.quick else FULL
    if args.held is not None:
        mode = replace(mode, held=args.held)
    if args.held_upstream is not None:
        mode = replace(mode, held_upstream=args.held_upstream)
    return mode


def chosen_cases(args: argparse.Namespace, mode: Mode) -> set[str]:
    """The cases to run: all (usage only in full mode), or --only, minus profiles if asked."""
    every = set(SHARED_APP_CASES) | set(OWN_APP_CASES)
    cases = (
        set(args.only.split(",")) if args.only else every - ({"usage"} if mode is QUICK else set())
    )
    unknown = cases - every
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(sorted(unknown))}")
    return cases - ({"profile", "pyinstrument"} if args.no_profile else set())


def find_tools() -> Tools:
    """wrk and pgbench are needed; the others are optional (their cases say so)."""
    wrk = ensure_program("wrk", "wrk")
    pgbench = ensure_program("pgbench", "postgresql-client")
    if wrk is None or pgbench is None:
        raise SystemExit("the suite needs wrk and pgbench (apt-get install wrk postgresql-client)")
    try:
        import pyinstrument  # noqa: F401

        has_pyinstrument = True
    except ImportError:
        has_pyinstrument = False
    return Tools(
        wrk=wrk,
        pgbench=pgbench,
        pgbouncer=ensure_program("pgbouncer", "pgbouncer"),
        py_spy=venv_program("py-spy"),
        pyinstrument=has_pyinstrument,
    )


async def prepare(
    mode: Mode, folder: Path, stack: ExitStack, tools: Tools, log_level: str
) -> Context:
    """Fresh database and users, the upstream, the sign-in cookies."""
    admin_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    admin_url = admin_url or DEFAULT_ADMIN_URL
    redis_url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL")
    database_url = await fresh_database(admin_url)
    users = await seed_users(database_url, mode.users)
    upstream = start_upstream(stack, log_dir=folder)
    settings = AppSettings(
        database_url=database_url,
        claude_url=upstream.url,
        redis_url=redis_url or DEFAULT_REDIS_URL,
        rate_limit_prefix=f"aigen:bench:{int(time.time())}:",
        data_dir=folder / "aigen-data",
        pool_max=mode.pool,
        log_level=log_level,
    )
    ctx = Context(
        mode=mode,
        folder=folder,
        profiles=BENCH_DIR / "profiles",
        stack=stack,
        admin_url=admin_url,
        settings=settings,
        tools=tools,
        users=users,
        cookies={},
        upstream=upstream,
    )
    ctx.cookies = sign_in_cookies(ctx.environment(), users)
    return ctx


async def run_cases(ctx: Context, cases: set[str]) -> None:
    """The chosen cases, the shared app started only when one of them needs it."""
    shared = [name for name in SHARED_APP_CASES if name in cases]
    if shared:
        with ExitStack() as app_stack:
            ctx.app = start_app(
                app_stack,
                ctx.environment(),
                workers=ctx.mode.workers,
                log_dir=ctx.folder,
                name="app",
            )
            for name in shared:
                await run_case(ctx, name, SHARED_APP_CASES[name])
        ctx.app = None
    for name, case in OWN_APP_CASES.items():
        if name in cases:
            await run_case(ctx, name, case)


async def run_case(ctx: Context, name: str, case: Case) -> None:
    """One case; a failure is reported and the suite goes on."""
    print(f"- case {name}", flush=True)
    began = time.monotonic()
    try:
        await case(ctx)
    except Exception as error:
        print(f"  case {name} failed: {type(error).__name__}: {error}", flush=True)
        traceback.print_exc(file=sys.stdout)
        ctx.results.setdefault("failures", {})[name] = f"{type(error).__name__}: {error}"
    print(f"  ({time.monotonic() - began:.0f} s)", flush=True)


async def suite(args: argparse.Namespace) -> int:
    """Prepare, run the cases, write and print the results."""
    mode = choose_mode(args)
    cases = chosen_cases(args, mode)
    tools = find_tools()
    print(f"aigen bench, {mode.name} mode; load: {LOAD_GENERATORS}", flush=True)
    facts = machine_facts(tool_versions(tools))
    with tempfile.TemporaryDirectory(prefix="aigen-bench-") as tmp, ExitStack() as stack:
        ctx = await prepare(mode, Path(tmp), stack, tools, args.log_level)
        facts["postgresql"] = await server_version(ctx.database_url)
        await run_cases(ctx, cases)
        await note_leftovers(ctx)
        keep_logs(ctx.folder, BENCH_DIR / "logs")
    facts["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    results = {"timestamp": timestamp(), "mode": mode.name, "load_generators": LOAD_GENERATORS}
    results |= {"machine": facts, "cases": ctx.results}
    header = table_header(mode, facts)
    table = markdown_table(ctx.rows, header, ctx.notes)
    write_results(BENCH_DIR, results, ctx.rows, table)
    print("\n" + table)
    return 0


async def note_leftovers(ctx: Context) -> None:
    """Generations the app left pending (clients cut at the end of each load)."""
    statuses = await generation_statuses(ctx.database_url)
    ctx.results["stored_generations"] = statuses
    ctx.note(
        f"Stored generations after the run: {statuses}. 'pending' ones and 'abandoned' ones"
        " (failed by the sweeper) were left behind by requests cut off when a load ended."
    )


def keep_logs(folder: Path, logs: Path) -> None:
    """Copy the processes' logs out of the run's temporary folder (bench/logs, not committed)."""
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    for log in folder.glob("*.log"):
        shutil.copy(log, logs / log.name)


def table_header(mode: Mode, facts: dict[str, object]) -> str:
    """The line above the table: when, where, how."""
    return (
        f"Measured {timestamp()[:10]} by `make bench` ({mode.name} mode) on {facts['cpus']}"
        f" shared cores ({facts['cpu_model']}), PostgreSQL {facts.get('postgresql')}, Python"
        f" {facts['python']}; load average {facts['load_average_at_start']} at start. Load: "
        f"{LOAD_GENERATORS}."
    )


def tool_versions(tools: Tools) -> dict[str, str | None]:
    """Versions of the external programs used."""
    return {
        "wrk": version_of([tools.wrk, "-v"]),
        "pgbench": version_of([tools.pgbench, "--version"]),
        "pgbouncer": version_of([tools.pgbouncer, "--version"]) if tools.pgbouncer else None,
        "py-spy": version_of([tools.py_spy, "--version"]) if tools.py_spy else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bench`."""
    return asyncio.run(suite(parse_args(argv)))
