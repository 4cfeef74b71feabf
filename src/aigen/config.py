"""Settings parsed once from the environment (12-factor) and validated at start-up."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, overload
from urllib.parse import parse_qs, urlsplit

from aigen.clients.mail import parse_smtp_url
from aigen.clients.ratelimit import RateLimit, parse_rate_limit

GOOGLE_DISCOVERY_URL = "https://accounts.google.com/.well-known/openid-configuration"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENVIRONMENTS = ("development", "production")
FLAG_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
DATABASE_SCHEMES = ("postgresql", "postgres")
TLS_SSLMODES = ("require", "verify-ca", "verify-full")
STALE_MARGIN = 30.0

# Names of the local stand-ins; `aigen serve` lists the ones it started in AIGEN_DEV_DEFAULTS.
EMBEDDED_POSTGRES = "embedded PostgreSQL"
LOCAL_SIGN_IN = "local sign-in provider"
LOCAL_CLAUDE = "local Claude-compatible server"
IN_PROCESS_RATE_LIMITER = "in-process rate limiter"
LOCAL_OUTBOX = "local mail outbox"
LOCAL_STRIPE = "local Stripe-compatible server"
STRIPE_SETTINGS = ("STRIPE_SECRET_KEY", "STRIPE_PRICE_ID", "STRIPE_WEBHOOK_SECRET")

T = TypeVar("T")


class ConfigError(Exception):
    """One or more settings are missing or malformed; the message names each of them."""


@dataclass(frozen=True)
class Settings:
    """Every setting of the application, typed and validated."""

    env: str = "development"
    # None: development makes its own key in data_dir (aigen/secret_key.py), never a fixed one.
    secret_key: str | None = field(default=None, repr=False)
    public_url: str = "http://127.0.0.1:8000"
    database_url: str | None = field(default=None, repr=False)
    # DATABASE_URL leads to PgBouncer in transaction pooling mode (see store/pool.py).
    database_pgbouncer: bool = False
    # Past PgBouncer, straight to PostgreSQL: migrations go there when it is set.
    database_direct_url: str | None = field(default=None, repr=False)
    db_pool_max: int = 10
    google_client_id: str | None = None
    google_client_secret: str | None = field(default=None, repr=False)
    oidc_discovery_url: str = GOOGLE_DISCOVERY_URL
    anthropic_api_key: str | None = field(default=None, repr=False)
    anthropic_base_url: str | None = None
    model: str = "claude-opus-4-5"
    max_tokens: int = 1024
    upstream_timeout: float = 120.0
    upstream_connections: int = 1000
    free_credits: int = 10
    max_prompt_chars: int = 20000
    redis_url: str | None = field(default=None, repr=False)
    rate_limit: RateLimit = RateLimit(10, 60.0)
    login_rate_limit: RateLimit = RateLimit(20, 60.0)
    rate_limit_prefix: str = "aigen:ratelimit:"
    forwarded_hops: int = 0
    smtp_url: str | None = field(default=None, repr=False)
    mail_from: str = "aigen <no-reply@localhost>"
    data_dir: Path = Path(".aigen")
    sweep_interval: float = 60.0
    log_level: str = "INFO"
    dev_defaults: tuple[str, ...] = field(default_factory=tuple)
    stripe_secret_key: str | None = field(default=None, repr=False)
    stripe_price_id: str | None = None
    stripe_webhook_secret: str | None = field(default=None, repr=False)
    stripe_api_base: str | None = None
    support_email: str | None = None

    @property
    def billing_enabled(self) -> bool:
        """Whether upgrades go through Stripe (all three STRIPE_* settings are set)."""
        return bool(self.stripe_secret_key and self.stripe_price_id and self.stripe_webhook_secret)

    @property
    def is_production(self) -> bool:
        """True when running for real users."""
        return self.env == "production"

    @property
    def redirect_uri(self) -> str:
        """The OAuth redirect URI registered with the identity provider."""
        return self.public_url.rstrip("/") + "/auth/callback"

    @property
    def required_database_url(self) -> str:
        """DATABASE_URL, for code that runs only once it is set (create_app checks it)."""
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set")
        return self.database_url

    @property
    def migration_database_url(self) -> str:
        """Where migrations run: DATABASE_DIRECT_URL when set, else DATABASE_URL."""
        return self.database_direct_url or self.required_database_url

    @property
    def required_secret_key(self) -> str:
        """SECRET_KEY, for code that runs only once it is set (create_app makes sure of it)."""
        if not self.secret_key:
            raise ConfigError("SECRET_KEY is not set")
        return self.secret_key

    @property
    def stale_after(self) -> float:
        """Age after which a pending generation is taken as abandoned by a dead process.

        A live call ends within the upstream timeout (asyncio.timeout around it); the margin,
        as long again but at most STALE_MARGIN, covers storing the answer. Refunds of a killed
        process thus come within AIGEN_UPSTREAM_TIMEOUT + 30 s (README, Operations).
        """
        return self.upstream_timeout + min(self.upstream_timeout, STALE_MARGIN)

    def missing_services(self) -> list[str]:
        """The local stand-ins development needs because their setting is unset."""
        missing = []
        if not self.database_url:
            missing.append(EMBEDDED_POSTGRES)
        if not self.google_client_id:
            missing.append(LOCAL_SIGN_IN)
        if not self.anthropic_api_key:
            missing.append(LOCAL_CLAUDE)
        if not self.billing_enabled and not self.is_production:
            missing.append(LOCAL_STRIPE)  # production may run without billing: upgrades closed
        return missing

    def in_process_defaults(self) -> list[str]:
        """The development defaults the app itself uses because their setting is unset."""
        defaults = []
        if not self.redis_url:
            defaults.append(IN_PROCESS_RATE_LIMITER)
        if not self.smtp_url:
            defaults.append(LOCAL_OUTBOX)
        return defaults


class _Reader:
    """Reads typed values from an environment mapping, collecting one error per bad value."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.errors: list[str] = []

    @overload
    def text(self, name: str, default: None = None) -> str | None: ...

    @overload
    def text(self, name: str, default: str) -> str: ...

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or default

    def parsed(
        self, name: str, default: T, parse: Callable[[str], T], expected: str, *, show: bool = True
    ) -> T:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError as error:
            # URLs may carry passwords: name the setting and the problem, never echo the value.
            shown = f"{name}={raw!r}" if show else name
            detail = f" ({error})" if not show and str(error) and str(error) != raw else ""
            self.errors.append(f"{shown} is not valid: expected {expected}{detail}")
            return default

    def positive_int(self, name: str, default: int, minimum: int = 1) -> int:
        def parse(raw: str) -> int:
            value = int(raw)
            if value < minimum:
                raise ValueError(raw)
            return value

        return self.parsed(name, default, parse, f"a whole number >= {minimum}")

    def positive_float(self, name: str, default: float) -> float:
        def parse(raw: str) -> float:
            value = float(raw)
            if not value > 0:
                raise ValueError(raw)
            return value

        return self.parsed(name, default, parse, "a number of seconds > 0")

    def flag(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            if raw.lower() not in FLAG_VALUES:
                raise ValueError(raw)
            return FLAG_VALUES[raw.lower()]

        return self.parsed(name, default, parse, "1 or 0")

    @overload
    def url(self, name: str, default: None, schemes: tuple[str, ...]) -> str | None: ...

    @overload
    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str: ...

    def url(self, name: str, default: str | None, schemes: tuple[str, ...]) -> str | None:
        def parse(raw: str) -> str:
            parts = urlsplit(raw)
            if parts.scheme not in schemes or not (parts.netloc or parts.query):
                raise ValueError(raw)
            return raw

        expected = "a URL starting with " + " or ".join(f"{scheme}://" for scheme in schemes)
        return self.parsed(name, default, parse, expected, show=False)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate settings; raise ConfigError naming every bad value."""
    read = _Reader(os.environ if environ is None else environ)
    env = read.text("AIGEN_ENV", Settings.env)
    if env not in ENVIRONMENTS:
        read.errors.append(f"AIGEN_ENV={env!r} is not valid: expected development or production")
    default = Settings()
    settings = Settings(
        env=env if env in ENVIRONMENTS else default.env,
        secret_key=read.text("SECRET_KEY"),
        public_url=read.url("PUBLIC_URL", default.public_url, ("http", "https")).rstrip("/"),
        database_url=read.url("DATABASE_URL", None, DATABASE_SCHEMES),
        database_pgbouncer=read.flag("DATABASE_PGBOUNCER", default.database_pgbouncer),
        database_direct_url=read.url("DATABASE_DIRECT_URL", None, DATABASE_SCHEMES),
        db_pool_max=read.positive_int("DB_POOL_MAX", default.db_pool_max, minimum=2),
        google_client_id=read.text("GOOGLE_CLIENT_ID"),
        google_client_secret=read.text("GOOGLE_CLIENT_SECRET"),
        oidc_discovery_url=read.url(
            "OIDC_DISCOVERY_URL", default.oidc_discovery_url, ("http", "https")
        ),
        anthropic_api_key=read.text("ANTHROPIC_API_KEY"),
        anthropic_base_url=read.url("ANTHROPIC_BASE_URL", None, ("http", "https")),
        model=read.text("AIGEN_MODEL", default.model),
        max_tokens=read.positive_int("AIGEN_MAX_TOKENS", default.max_tokens),
        upstream_timeout=read.positive_float("AIGEN_UPSTREAM_TIMEOUT", default.upstream_timeout),
        upstream_connections=read.positive_int(
            "AIGEN_UPSTREAM_CONNECTIONS", default.upstream_connections
        ),
        free_credits=read.positive_int("FREE_CREDITS", default.free_credits, minimum=0),
        max_prompt_chars=read.positive_int("MAX_PROMPT_CHARS", default.max_prompt_chars),
        redis_url=read.url("REDIS_URL", None, ("redis", "rediss", "unix")),
        rate_limit=_rate_limit(read, "RATE_LIMIT", default.rate_limit),
        login_rate_limit=_rate_limit(read, "LOGIN_RATE_LIMIT", default.login_rate_limit),
        rate_limit_prefix=read.text("RATE_LIMIT_PREFIX", default.rate_limit_prefix),
        forwarded_hops=read.positive_int("FORWARDED_HOPS", default.forwarded_hops, minimum=0),
        smtp_url=_smtp_url(read),
        mail_from=read.text("MAIL_FROM", default.mail_from),
        data_dir=Path(read.text("AIGEN_DATA_DIR", str(default.data_dir))),
        sweep_interval=read.positive_float("AIGEN_SWEEP_INTERVAL", default.sweep_interval),
        log_level=_log_level(read, default.log_level),
        dev_defaults=_dev_defaults(read),
        stripe_secret_key=read.text("STRIPE_SECRET_KEY"),
        stripe_price_id=read.text("STRIPE_PRICE_ID"),
        stripe_webhook_secret=read.text("STRIPE_WEBHOOK_SECRET"),
        stripe_api_base=read.url("STRIPE_API_BASE", None, ("http", "https")),
        support_email=_support_email(read),
    )
    _check_consistency(settings, read.errors)
    if read.errors:
        raise ConfigError("\n".join(read.errors))
    return settings


def _rate_limit(read: _Reader, name: str, default: RateLimit) -> RateLimit:
    return read.parsed(name, default, parse_rate_limit, "COUNT/PERIOD such as 10/minute")


def _smtp_url(read: _Reader) -> str | None:
    def parse(raw: str) -> str:
        parse_smtp_url(raw)
        return raw

    return read.parsed(
        "SMTP_URL", None, parse, "smtp://[user:pass@]host[:port] or smtps://...", show=False
    )


def _log_level(read: _Reader, default: str) -> str:
    def parse(raw: str) -> str:
        if raw.upper() not in LOG_LEVELS:
            raise ValueError(raw)
        return raw.upper()

    return read.parsed("LOG_LEVEL", default, parse, " or ".join(LOG_LEVELS))


def _support_email(read: _Reader) -> str | None:
    def parse(raw: str) -> str:
        local, _, domain = raw.partition("@")
        if not local or "." not in domain or any(char.isspace() for char in raw):
            raise ValueError(raw)
        return raw

    return read.parsed("SUPPORT_EMAIL", None, parse, "an e-mail address such as help@example.com")


def _dev_defaults(read: _Reader) -> tuple[str, ...]:
    raw = read.text("AIGEN_DEV_DEFAULTS", "") or ""
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _check_consistency(settings: Settings, errors: list[str]) -> None:
    """Cross-field rules; production refuses every development default."""
    if bool(settings.google_client_id) != bool(settings.google_client_secret):
        errors.append("GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET must be set together")
    if settings.database_direct_url and not settings.database_url:
        errors.append("DATABASE_DIRECT_URL is set without DATABASE_URL: set both or neither")
    stripe_values = (
        settings.stripe_secret_key,
        settings.stripe_price_id,
        settings.stripe_webhook_secret,
    )
    if any(stripe_values) and not all(stripe_values):
        errors.append(", ".join(STRIPE_SETTINGS) + " must be set together (all three or none)")
    if not settings.is_production:
        return
    # Production without Stripe is allowed (upgrades are closed), never with the stand-in.
    if settings.stripe_api_base:
        errors.append(
            "STRIPE_API_BASE is for development and tests only (it points the SDK at a stand-in)"
        )
    if not settings.secret_key:
        errors.append("SECRET_KEY is required in production")
    elif len(settings.secret_key) < 32:
        errors.append("SECRET_KEY must be at least 32 characters in production")
    for name, value in (
        ("DATABASE_URL", settings.database_url),
        ("GOOGLE_CLIENT_ID", settings.google_client_id),
        ("ANTHROPIC_API_KEY", settings.anthropic_api_key),
        ("REDIS_URL", settings.redis_url),
        ("SMTP_URL", settings.smtp_url),
    ):
        if not value:
            errors.append(f"{name} is required in production (no development default is used)")
    if settings.dev_defaults:
        errors.append(
            "production refuses development defaults: " + ", ".join(settings.dev_defaults)
        )
    _check_encrypted_transport(settings, errors)


def _check_encrypted_transport(settings: Settings, errors: list[str]) -> None:
    """Production talks to the browser and to every service over TLS (or on this machine)."""
    if not settings.public_url.startswith("https://"):
        errors.append("PUBLIC_URL must use https:// in production")
    # Over plain http a man in the middle could serve his own JWKS (forged sign-ins) or read
    # the Anthropic key; over plain SMTP, the verification links.
    for name, value in (
        ("OIDC_DISCOVERY_URL", settings.oidc_discovery_url),
        ("ANTHROPIC_BASE_URL", settings.anthropic_base_url),
    ):
        if value and not value.startswith("https://"):
            errors.append(f"{name} must use https:// in production")
    if settings.smtp_url and not _smtp_is_encrypted(settings.smtp_url):
        errors.append(
            "SMTP_URL must use TLS in production: smtps://, port 587 or credentials (STARTTLS"
            " required), unless the server is on this machine"
        )
    # Over plain TCP across a network, prompts, answers and the database password travel in
    # clear; so do the rate-limit keys and Redis's password.
    for name, value in (
        ("DATABASE_URL", settings.database_url),
        ("DATABASE_DIRECT_URL", settings.database_direct_url),
    ):
        if value and not _database_is_encrypted(value):
            errors.append(
                f"{name} must use TLS in production: add ?sslmode=require (or verify-ca,"
                " verify-full), unless the server is on this machine"
            )
    if settings.redis_url and not _redis_is_encrypted(settings.redis_url):
        errors.append(
            "REDIS_URL must use rediss:// (TLS) in production, unless the server is on this machine"
        )


def _smtp_is_encrypted(url: str) -> bool:
    """Implicit TLS, required STARTTLS, or a relay on loopback."""
    smtp = parse_smtp_url(url)
    return smtp.use_tls or smtp.start_tls is True or is_local_host(smtp.hostname)


def _database_is_encrypted(url: str) -> bool:
    """sslmode=require or stricter, or every host on loopback or a Unix socket."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if query.get("sslmode", [""])[-1] in TLS_SSLMODES:
        return True
    hosts = [host for value in query.get("host", []) for host in value.split(",")]
    netloc_hosts = parts.netloc.rpartition("@")[2]
    hosts += [_without_port(host) for host in netloc_hosts.split(",") if host]
    # No host at all: libpq and asyncpg use the local Unix socket.
    return all(host.startswith("/") or is_local_host(host) for host in hosts)


def _redis_is_encrypted(url: str) -> bool:
    """rediss://, a Unix socket, or a server on loopback."""
    parts = urlsplit(url)
    return parts.scheme in ("rediss", "unix") or is_local_host(parts.hostname or "")


def _without_port(host: str) -> str:
    """'db:5432' -> 'db', '[::1]:5432' -> '::1'."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def is_local_host(host: str) -> bool:
    """A loopback name or address: traffic to it never leaves the machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
