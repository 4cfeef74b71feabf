"""Local stand-ins started by the CLI in development when a service is not configured.

Each one is announced in the log and listed in AIGEN_DEV_DEFAULTS so pages show the
"development mode" badge; production never gets here (config validation refuses it).
"""

from __future__ import annotations

import logging
import secrets
import warnings
from contextlib import ExitStack
from typing import TypedDict

from aigen.config import EMBEDDED_POSTGRES, LOCAL_CLAUDE, LOCAL_SIGN_IN, LOCAL_STRIPE, Settings

log = logging.getLogger(__name__)

LOCAL_CLIENT_ID = "aigen-local"
LOCAL_CLIENT_SECRET = "aigen-local-secret"
WEBHOOK_PATH = "/billing/webhook"


class DevUser(TypedDict):
    """An account known to the local sign-in provider."""

    sub: str
    email: str
    email_verified: bool
    name: str


# Typed on the local provider's authorize page; a verified address so free credits work at once.
DEV_USERS: tuple[DevUser, ...] = (
    {
        "sub": "dev@example.com",
        "email": "dev@example.com",
        "email_verified": True,
        "name": "Dev User",
    },
    {
        "sub": "unverified@example.com",
        "email": "unverified@example.com",
        "email_verified": False,
        "name": "Unverified User",
    },
)


def start_dev_peers(
    settings: Settings, stack: ExitStack, *, database_only: bool = False
) -> dict[str, str]:
    """Start what development lacks; return the environment variables that point at them."""
    if settings.is_production:
        return {}  # load_settings already refused production with anything missing
    missing = settings.missing_services()
    if database_only:
        missing = [name for name in missing if name == EMBEDDED_POSTGRES]
    environ: dict[str, str] = {}
    if EMBEDDED_POSTGRES in missing:
        environ["DATABASE_URL"] = _embedded_postgres(settings, stack)
    if LOCAL_SIGN_IN in missing:
        environ.update(_local_sign_in(stack))
    if LOCAL_CLAUDE in missing:
        environ["ANTHROPIC_BASE_URL"] = _local_claude(stack)
    if LOCAL_STRIPE in missing:
        environ.update(_local_stripe(settings, stack))
    if missing and not database_only:
        environ["AIGEN_DEV_DEFAULTS"] = ",".join([*settings.dev_defaults, *missing])
    return environ


def _embedded_postgres(settings: Settings, stack: ExitStack) -> str:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers); it falls back correctly.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres

    folder = (settings.data_dir / "postgres").resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(folder)
    # The server stops when the last handle is cleaned up: keep it until the stack closes.
    stack.callback(server.cleanup)
    uri = server.get_uri()
    log.warning(
        "development mode: DATABASE_URL is unset, using the %s in %s", EMBEDDED_POSTGRES, folder
    )
    return uri


def _local_sign_in(stack: ExitStack) -> dict[str, str]:
    from aigen.dev.oidc_provider import LocalOIDCProvider

    provider = stack.enter_context(LocalOIDCProvider())
    for user in DEV_USERS:
        provider.set_user(
            user["sub"],
            email=user["email"],
            email_verified=user["email_verified"],
            name=user["name"],
        )
    log.warning(
        "development mode: GOOGLE_CLIENT_ID is unset, signing in through the %s at %s"
        " (type any e-mail address; %s is pre-verified)",
        LOCAL_SIGN_IN,
        provider.url,
        DEV_USERS[0]["email"],
    )
    return {
        "OIDC_DISCOVERY_URL": provider.discovery_url,
        "GOOGLE_CLIENT_ID": LOCAL_CLIENT_ID,
        "GOOGLE_CLIENT_SECRET": LOCAL_CLIENT_SECRET,
    }


def _local_claude(stack: ExitStack) -> str:
    from aigen.dev.anthropic import FakeAnthropicServer

    server = stack.enter_context(FakeAnthropicServer(latency_ms=400, chunk_delay_ms=30))
    log.warning(
        "development mode: ANTHROPIC_API_KEY is unset, answering with the %s at %s"
        " (deterministic answers; prompts with [fake:fail=529] or [fake:delay=5] simulate faults)",
        LOCAL_CLAUDE,
        server.url,
    )
    return server.base_url


def _local_stripe(settings: Settings, stack: ExitStack) -> dict[str, str]:
    from aigen.dev.stripe import DEFAULT_PRICE_ID, FakeStripeServer

    webhook_url = settings.public_url.rstrip("/") + WEBHOOK_PATH
    secret = "whsec_" + secrets.token_hex(16)  # a fresh one per run: only this app can verify
    server = stack.enter_context(FakeStripeServer(webhook_url=webhook_url, webhook_secret=secret))
    log.warning(
        "development mode: STRIPE_SECRET_KEY is unset, billing through the %s at %s"
        " (its pay page accepts any e-mail, no money moves; events go to %s)",
        LOCAL_STRIPE,
        server.url,
        webhook_url,
    )
    return {
        "STRIPE_SECRET_KEY": server.api_key,
        "STRIPE_PRICE_ID": DEFAULT_PRICE_ID,
        "STRIPE_WEBHOOK_SECRET": secret,
        "STRIPE_API_BASE": server.api_base,
    }
