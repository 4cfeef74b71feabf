"""The app under test: its settings, `aigen serve --workers N`, sign-in cookies for its users."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import auth_cookie

from bench.harness.services import HOST, Service, free_port, python_command, start

SECRET = "bench-secret-key-bench-secret-key-0123456789"
COOKIE_NAME = "aigen_auth"
# Far above what any run reaches: the limiter still does its Redis round trip per generation.
RATE_LIMIT = "1000000/second"
# On SIGTERM the app lets generations in flight finish (AIGEN_UPSTREAM_TIMEOUT, default 120 s,
# plus its margins): killing it sooner would leave pending rows for the next app's sweeper.
STOP_TIMEOUT = 160.0


@dataclass(frozen=True)
class AppSettings:
    """What a benchmark changes between the app instances it serves."""

    database_url: str
    claude_url: str
    redis_url: str
    rate_limit_prefix: str
    data_dir: Path
    pool_max: int = 10
    log_level: str = "INFO"


def app_environment(settings: AppSettings, extra: Mapping[str, str] | None = None) -> dict:
    """Settings of the served app: every service configured, so no development stand-in starts."""
    return {
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": SECRET,
        "ANTHROPIC_API_KEY": "bench",
        "ANTHROPIC_BASE_URL": settings.claude_url,
        "GOOGLE_CLIENT_ID": "bench",
        "GOOGLE_CLIENT_SECRET": "bench",
        "OIDC_DISCOVERY_URL": "http://127.0.0.1:9/none",
        "DB_POOL_MAX": str(settings.pool_max),
        "REDIS_URL": settings.redis_url,
        "RATE_LIMIT": RATE_LIMIT,
        "RATE_LIMIT_PREFIX": settings.rate_limit_prefix,
        "AIGEN_DATA_DIR": str(settings.data_dir),
        "AIGEN_DEV_DEFAULTS": "",
        "LOG_LEVEL": settings.log_level,
        **(extra or {}),
    }


def start_app(
    stack: ExitStack, environment: Mapping[str, str], *, workers: int, log_dir: Path, name: str
) -> Service:
    """`aigen serve --host 127.0.0.1 --port P --workers N`, as in production; ready on /readyz."""
    port = free_port()
    command = python_command(
        "-m", "aigen.cli", "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)
    )
    return start(
        stack,
        name,
        command,
        url=f"http://{HOST}:{port}",
        ready_path="/readyz",
        log_dir=log_dir,
        environment=environment,
        stop_timeout=STOP_TIMEOUT,
    )


def sign_in_cookies(environment: Mapping[str, str], user_ids: Iterable[int]) -> dict[int, str]:
    """The `Cookie` header value the served app accepts for each user (quart-auth's token)."""
    from aigen.app import create_app

    logging.getLogger("aigen").setLevel(logging.ERROR)  # create_app announces its defaults
    app = create_app(dict(environment))  # only to sign tokens with the app's own serializer
    return {user: f"{COOKIE_NAME}={auth_cookie(app, user)}" for user in user_ids}
