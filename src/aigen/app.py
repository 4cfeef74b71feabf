"""The application factory."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import asyncpg
from quart import Quart
from quart_auth import QuartAuth

from aigen.clients.claude import ClaudeClient, end_of_life
from aigen.clients.mail import BackgroundMailer, Mailer, OutboxMailer, SMTPMailer, parse_smtp_url
from aigen.clients.oidc import OIDCClient
from aigen.clients.ratelimit import build_limiter
from aigen.clients.stripe import PriceCache, StripeBilling
from aigen.config import (
    IN_PROCESS_RATE_LIMITER,
    LOCAL_OUTBOX,
    ConfigError,
    Settings,
    load_settings,
)
from aigen.core.generation import GenerationService, sweep_forever
from aigen.core.streaming import StreamingService
from aigen.core.verification import VerificationService
from aigen.logs import configure_logging
from aigen.paths import STATIC_DIR, TEMPLATES_DIR
from aigen.secret_key import development_secret_key
from aigen.store.migrations import load_migrations, pending_migrations
from aigen.store.pool import create_pool
from aigen.web import (
    api,
    auth,
    billing,
    csrf,
    current_user,
    generate,
    health,
    json_only,
    keys,
    openapi,
    pages,
    rate_limits,
    security_headers,
    templating,
    verification,
)
from aigen.web.errors import register_error_handlers
from aigen.web.runtime import EXTENSION_KEY, Runtime

log = logging.getLogger(__name__)

SESSION_DAYS = 30
AUTH_COOKIE = "aigen_auth"
SESSION_COOKIE = "aigen_session"
HOST_COOKIE_PREFIX = "__Host-"
DRAIN_MARGIN = 5.0
# Used only when no ANTHROPIC_API_KEY is configured and the local server answers instead.
LOCAL_API_KEY = "local-development-key"
# Stripe's hosted Checkout and customer portal pages.
STRIPE_PAGE_ORIGINS = ("https://checkout.stripe.com", "https://billing.stripe.com")


def create_app(overrides: Mapping[str, str] | None = None) -> Quart:
    """Build the app from the environment, with `overrides` taking precedence (tests)."""
    settings = load_settings({**os.environ, **(overrides or {})})
    configure_logging(settings.log_level)
    if not settings.secret_key:  # development only: production refuses to start without it
        settings = replace(settings, secret_key=development_secret_key(settings.data_dir))
    if not settings.database_url:
        raise ConfigError(
            "DATABASE_URL is not set: run the app with `aigen serve`, which starts the embedded"
            " PostgreSQL in development, or set DATABASE_URL"
        )
    app = Quart(
        __name__,
        template_folder=str(TEMPLATES_DIR),
        static_folder=str(STATIC_DIR),
        static_url_path="/static",
    )
    _configure(app, settings)
    app.extensions[EXTENSION_KEY] = Runtime(settings=settings)
    QuartAuth(app)
    json_only.init_app(app)  # the first before_request hook: 415 before anything else
    current_user.init_app(app)  # then the session, before CSRF and the views
    for module in (health, auth, api, pages, generate, verification, billing, keys):
        app.register_blueprint(module.blueprint)
    csrf.init_app(app, settings.public_url)
    security_headers.init_app(
        app, production=settings.is_production, form_targets=_stripe_page_origins(settings)
    )
    templating.init_app(app)
    register_error_handlers(app)
    openapi.init_app(app)
    rate_limits.init_app(app, settings.forwarded_hops)
    app.before_serving(_start)
    app.after_serving(_stop)
    dev_defaults = (*settings.dev_defaults, *settings.in_process_defaults())
    app.jinja_env.globals.update(dev_defaults=dev_defaults, settings=settings)
    _announce_defaults(settings)
    return app


def _configure(app: Quart, settings: Settings) -> None:
    # Browsers keep a __Host- cookie only when Secure, for this host alone (no Domain), Path=/.
    cookie_prefix = HOST_COOKIE_PREFIX if settings.is_production else ""
    app.config.update(
        SECRET_KEY=settings.required_secret_key,
        # Up to 12 bytes a character (a JSON-escaped surrogate pair); validate_prompt counts the
        # characters, this only stops bodies no valid prompt could need.
        MAX_CONTENT_LENGTH=settings.max_prompt_chars * 12 + 64 * 1024,
        QUART_AUTH_COOKIE_SECURE=settings.is_production,
        QUART_AUTH_COOKIE_SAMESITE="Lax",
        QUART_AUTH_COOKIE_HTTP_ONLY=True,
        QUART_AUTH_COOKIE_NAME=cookie_prefix + AUTH_COOKIE,
        QUART_AUTH_DURATION=SESSION_DAYS * 24 * 3600,
        SESSION_COOKIE_NAME=cookie_prefix + SESSION_COOKIE,
        SESSION_COOKIE_SECURE=settings.is_production,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        TEMPLATES_AUTO_RELOAD=not settings.is_production,
    )


def _stripe_page_origins(settings: Settings) -> tuple[str, ...]:
    """Where the billing forms' redirects lead: Stripe's hosted pages, or the stand-in's."""
    if not settings.billing_enabled:
        return ()
    if settings.stripe_api_base:
        return (csrf.origin_of(settings.stripe_api_base),)
    return STRIPE_PAGE_ORIGINS


def _announce_defaults(settings: Settings) -> None:
    for name in settings.dev_defaults:
        log.warning("development mode: using the %s", name)
    if not settings.redis_url:
        log.warning(
            "development mode: REDIS_URL is unset, using the %s (limits are per process)",
            IN_PROCESS_RATE_LIMITER,
        )
    if not settings.smtp_url:
        log.warning(
            "development mode: SMTP_URL is unset, mail goes to the %s in %s (links to the log)",
            LOCAL_OUTBOX,
            _outbox(settings).resolve(),
        )
    if settings.is_production and not settings.billing_enabled:
        log.warning(
            "STRIPE_SECRET_KEY, STRIPE_PRICE_ID and STRIPE_WEBHOOK_SECRET are unset: upgrades to"
            " Pro are closed (the pricing page says so%s)",
            f" and names {settings.support_email}" if settings.support_email else "",
        )
    retires = end_of_life(settings.model)
    if retires is not None:
        log.warning(
            "AIGEN_MODEL %s reaches end of life on %s (the anthropic SDK's list of deprecated"
            " models): set AIGEN_MODEL to a current model before then",
            settings.model,
            retires,
        )
    if settings.is_production and not settings.forwarded_hops:
        log.warning(
            "FORWARDED_HOPS is 0: the sign-in rate limit keys on the connecting address; behind"
            " a load balancer or router that is the proxy's, so set FORWARDED_HOPS"
        )


def _outbox(settings: Settings) -> Path:
    return settings.data_dir / "outbox"


def _mailer(settings: Settings) -> Mailer:
    if settings.smtp_url:
        return SMTPMailer(parse_smtp_url(settings.smtp_url), settings.mail_from)
    return OutboxMailer(_outbox(settings), settings.mail_from)


async def _start() -> None:
    """Open the pool, check the schema, build clients and services, start the sweeper."""
    from quart import current_app

    runtime: Runtime = current_app.extensions[EXTENSION_KEY]
    settings = runtime.settings
    runtime.pool = await create_pool(
        settings.required_database_url,
        settings.db_pool_max,
        pgbouncer=settings.database_pgbouncer,
    )
    await _require_migrated(runtime.pool)
    runtime.claude = ClaudeClient(
        api_key=settings.anthropic_api_key or LOCAL_API_KEY,
        base_url=settings.anthropic_base_url,
        model=settings.model,
        max_tokens=settings.max_tokens,
        timeout=settings.upstream_timeout,
        max_connections=settings.upstream_connections,
    )
    runtime.limiter, runtime.redis = build_limiter(settings.redis_url, settings.rate_limit_prefix)
    runtime.mailer = BackgroundMailer(_mailer(settings))
    runtime.generations = GenerationService(
        runtime.pool, runtime.claude, limiter=runtime.limiter, rate_limit=settings.rate_limit
    )
    runtime.streaming = StreamingService(runtime.generations)
    runtime.verification = VerificationService(
        runtime.pool,
        runtime.mailer,
        runtime.limiter,
        secret_key=settings.required_secret_key,
        public_url=settings.public_url,
        log_links=not settings.is_production and not settings.smtp_url,
    )
    runtime.oidc = OIDCClient(
        discovery_url=settings.oidc_discovery_url,
        client_id=settings.google_client_id or "",
        client_secret=settings.google_client_secret or "",
        redirect_uri=settings.redirect_uri,
    )
    sweeper = sweep_forever(runtime.pool, settings.stale_after, settings.sweep_interval)
    runtime.background.add(asyncio.create_task(sweeper))
    _start_billing(runtime)


def _start_billing(runtime: Runtime) -> None:
    """Stripe's client (made in the serving loop, which its HTTP client belongs to) and the
    price, read in the background so that start-up never waits on Stripe."""
    settings = runtime.settings
    if not settings.billing_enabled:
        return
    runtime.billing = StripeBilling(
        secret_key=settings.stripe_secret_key or "",
        price_id=settings.stripe_price_id or "",
        webhook_secret=settings.stripe_webhook_secret or "",
        api_base=settings.stripe_api_base,
    )
    runtime.prices = PriceCache(runtime.billing)
    runtime.background.add(asyncio.create_task(runtime.prices.refresh_forever()))


async def _require_migrated(pool: asyncpg.Pool) -> None:
    """Workers only check the schema: `aigen serve` and `aigen migrate` apply migrations once."""
    async with pool.acquire() as conn:
        pending = await pending_migrations(conn, load_migrations())
    if pending:
        await pool.close()
        raise ConfigError(f"migrations {pending} are not applied: run `aigen migrate` first")


async def _ended(task: asyncio.Task[None]) -> None:
    """Wait for a cancelled background task; an error it ended with is logged, so that one
    crashed task never keeps the shutdown from draining calls and closing the pool."""
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("background task %s had failed", task.get_name())


async def _stop() -> None:
    """Let calls in flight finish, then close everything opened in _start."""
    from quart import current_app

    runtime: Runtime = current_app.extensions[EXTENSION_KEY]
    for task in runtime.background:
        task.cancel()
    for task in runtime.background:
        await _ended(task)
    # Each service is unset when _start failed before creating it.
    streaming: StreamingService | None = getattr(runtime, "streaming", None)
    if streaming is not None:
        # Streams are bounded by the upstream timeout too; what is left is stored as cancelled.
        await streaming.drain(runtime.settings.upstream_timeout + DRAIN_MARGIN)
    generations: GenerationService | None = getattr(runtime, "generations", None)
    if generations is not None:
        # A call is bounded by the upstream timeout: wait that long, then cancel and refund.
        await generations.drain(runtime.settings.upstream_timeout + DRAIN_MARGIN)
    mailer: BackgroundMailer | None = getattr(runtime, "mailer", None)
    if mailer is not None:
        await mailer.drain()
    if runtime.redis is not None:
        await runtime.redis.aclose()
    for name in ("claude", "oidc", "billing"):
        client: ClaudeClient | OIDCClient | StripeBilling | None = getattr(runtime, name, None)
        if client is not None:
            await client.aclose()
    pool: asyncpg.Pool | None = getattr(runtime, "pool", None)
    if pool is not None:
        await pool.close()
