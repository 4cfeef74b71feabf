"""The `aigen` command: serve, migrate, manage users and check the credit ledger."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import socket
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING

import asyncpg

from aigen.config import ConfigError, Settings, load_settings
from aigen.core.plans import PLANS
from aigen.logs import configure_logging
from aigen.store import repository
from aigen.store.migrations import migrate
from aigen.store.pool import connect

if TYPE_CHECKING:
    from hypercorn.config import Config

log = logging.getLogger("aigen")


def build_parser() -> argparse.ArgumentParser:
    """The command line, with one sub-command per operator task."""
    parser = argparse.ArgumentParser(prog="aigen", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the app with hypercorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=_positive_int, default=1)
    commands.add_parser("migrate", help="apply pending SQL migrations")
    commands.add_parser(
        "doctor", help="check every user's credits against their generations (exit 1 if off)"
    )
    users = commands.add_parser("users", help="list users or change their plan").add_subparsers(
        dest="users_command", required=True
    )
    users.add_parser("list", help="list users with plan and credits")
    set_plan = users.add_parser("set-plan", help="move a user to FREE or PRO")
    set_plan.add_argument("email")
    set_plan.add_argument("plan", type=str.upper, choices=PLANS)
    set_limit = users.add_parser("set-limit", help="set a user's credit limit")
    set_limit.add_argument("email")
    set_limit.add_argument("limit", type=_non_negative_int)
    return parser


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"aigen: configuration error:\n{error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "serve" and port_is_taken(args.host, args.port):
        print(
            f"aigen: port {args.port} on {args.host} is already in use: stop what uses it, or"
            f" pick another port with `make run PORT={args.port + 1}`"
            f" (`aigen serve --port {args.port + 1}`)",
            file=sys.stderr,
        )
        return 2
    with ExitStack() as stack:
        if not settings.is_production:
            if args.command == "serve":
                os.environ.update(_development_public_url(args.host, args.port))
                # Read again before the stand-ins start: the Stripe stand-in posts its webhooks
                # to PUBLIC_URL (it went to :8000 whatever port `make run PORT=` served).
                settings = load_settings()
            os.environ.update(_start_stand_ins(settings, stack, serving=args.command == "serve"))
            settings = load_settings()
        if args.command == "serve":
            return serve(settings, args.host, args.port, args.workers)
        if args.command == "migrate":
            applied = asyncio.run(migrate(settings.migration_database_url))
            print(f"applied {len(applied)} migration(s)" if applied else "database is up to date")
            return 0
        if args.command == "doctor":
            return asyncio.run(doctor(settings.required_database_url))
        return asyncio.run(manage_users(settings, args))


def _development_public_url(host: str, port: int) -> dict[str, str]:
    """Without PUBLIC_URL, development's address is the one served (`make run PORT=8001`): the
    sign-in callback and the Stripe stand-in's webhooks must come back to this very port."""
    if os.environ.get("PUBLIC_URL", "").strip():
        return {}
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return {"PUBLIC_URL": f"http://{shown}:{port}"}


def port_is_taken(host: str, port: int) -> bool:
    """Whether something already listens on host:port (checked before anything is started)."""
    family, kind, protocol, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as hypercorn binds
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _start_stand_ins(settings: Settings, stack: ExitStack, *, serving: bool) -> dict[str, str]:
    """Development only: start what is not configured (imported lazily, never in production)."""
    from aigen.dev.launcher import start_dev_peers

    return start_dev_peers(settings, stack, database_only=not serving)


def serve(settings: Settings, host: str, port: int, workers: int) -> int:
    """Migrate (past PgBouncer if DATABASE_DIRECT_URL is set), then run hypercorn workers."""
    from aigen.serving import run_workers

    asyncio.run(migrate(settings.migration_database_url))
    config = hypercorn_config(settings, host, port, workers)
    log.info("serving on http://%s:%d with %d worker(s)", host, port, workers)
    return run_workers(config)


async def doctor(database_url: str) -> int:
    """`aigen doctor`: list each user whose credits_used differs from the generations holding a
    charge (exit 1), or print a one-line summary (exit 0)."""
    conn = await connect(database_url)
    try:
        ledger = await repository.select_ledger(conn)
    finally:
        await conn.close()
    for entry in ledger.mismatches:
        print(
            f"user {entry.user_id} {entry.email}: credits_used {entry.credits_used},"
            f" generations holding a charge {entry.charged}"
        )
    if ledger.mismatches:
        print(
            f"aigen doctor: {len(ledger.mismatches)} of {ledger.users} user(s) have a credit"
            " count that does not match their generations",
            file=sys.stderr,
        )
        return 1
    print(f"ledger OK: {ledger.users} user(s), {ledger.charged} generation(s) holding a charge")
    return 0


def hypercorn_config(settings: Settings, host: str, port: int, workers: int) -> Config:
    """How `aigen serve` runs hypercorn."""
    from hypercorn.config import Config

    from aigen.access_log import ACCESS_LOG_FORMAT, EscapingLogger

    config = Config()
    config.application_path = "aigen.app:create_app()"
    config.bind = [f"{host}:{port}"]
    config.workers = workers
    # Bursts of thousands of connections must queue, not be reset (the kernel caps it at
    # net.core.somaxconn).
    config.backlog = 4096
    # uvloop's event loop: less CPU per request than asyncio's own (make bench measures it).
    config.worker_class = "uvloop"
    # Through our logging set-up (one line each, escaped), and without query strings or
    # referrers: OAuth codes and e-mail verification tokens travel in URLs.
    config.accesslog = logging.getLogger("hypercorn.access")
    config.errorlog = logging.getLogger("hypercorn.error")
    config.access_log_format = ACCESS_LOG_FORMAT
    config.logger_class = EscapingLogger
    # Let requests waiting on Claude finish on shutdown (each is bounded by the upstream timeout).
    config.graceful_timeout = settings.upstream_timeout + 5
    config.shutdown_timeout = settings.upstream_timeout + 30
    return config


async def manage_users(settings: Settings, args: argparse.Namespace) -> int:
    """The `aigen users ...` sub-commands."""
    conn = await connect(settings.required_database_url)
    try:
        if args.users_command == "list":
            for listed in await repository.select_users(conn):
                print(_user_line(listed))
            return 0
        user = await repository.select_user_by_email(conn, args.email)
        if user is not None:
            user = await _update_user(conn, user.id, args)
        if user is None:
            print(f"aigen: no user with e-mail {args.email}", file=sys.stderr)
            return 1
        print(_user_line(user))
        return 0
    finally:
        await conn.close()


async def _update_user(
    conn: asyncpg.Connection, user_id: int, args: argparse.Namespace
) -> repository.User | None:
    """Apply `users set-plan` or `users set-limit`; None when the user is gone meanwhile."""
    if args.users_command == "set-plan":
        return await repository.update_user_plan(conn, user_id, args.plan)
    return await repository.update_user_credits_limit(conn, user_id, args.limit)


def _user_line(user: repository.User) -> str:
    verified = "verified" if user.email_verified else "unverified"
    return (
        f"{user.id}\t{user.email}\t{verified}\t{user.plan}\t"
        f"{user.credits_used}/{user.credits_limit}\t{user.created_at:%Y-%m-%d}"
    )


if __name__ == "__main__":
    sys.exit(main())
