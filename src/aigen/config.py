"""Settings parsed once from the environment (12-factor) and validated at start-up."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, overload
from urllib.parse import urlsplit

from aigen.clients.mail import parse_smtp_url
from aigen.clients.ratelimit import RateLimit, parse_rate_limit

GOOGLE_DISCOVERY_URL = "https://accounts.google.com/.well-known/openid-configuration"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENVIRONMENTS = ("development", "production")
DEFAULT_SECRET_KEY = "aigen-development-only-secret-key"
STALE_MARGIN = 30.0

# Names of the local stand-ins; `aigen serve` lists the ones it started in AIGEN_DEV_DEFAULTS.
EMBEDDED_POSTGRES = "embedded PostgreSQL"
LOCAL_SIGN_IN = "local sign-in provider"
LOCAL_CLAUDE = "local Claude-compatible server"
IN_PROCESS_RATE_LIMITER = "in-process rate limiter"
LOCAL_OUTBOX = "local mail outbox"

T = TypeVar("T")


class ConfigError(Exception):
    """One or more settings are missing or malformed; the message names each of them."""


@dataclass(frozen=True)
class Settings:
    """Every setting of the application, typed and validated."""

    env: str = "development"
    secret_key: str = field(default=DEFAULT_SECRET_KEY, repr=False)
    public_url: str = "http://127.0.0.1:8000"
    database_url: str | None = field(default=None, repr=False)
    db_pool_max: int = 10
    google_client_id: str | None = None
    google_client_secret: str | None = field(default=None, repr=False)
    oidc_discovery_url: str = GOOGLE_DISCOVERY_URL
    anthropic_api_key: str | None = field(default=None, repr=False)
    anthropic_base_url: str | None = None
    model: str = "claude-opus-4-5"
    max_tokens: int = 1024
    upstream_timeout: float = 120.0
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
        secret_key=read.text("SECRET_KEY", default.secret_key),
        public_url=read.url("PUBLIC_URL", default.public_url, ("http", "https")).rstrip("/"),
        database_url=read.url("DATABASE_URL", None, ("postgresql", "postgres")),
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


def _dev_defaults(read: _Reader) -> tuple[str, ...]:
    raw = read.text("AIGEN_DEV_DEFAULTS", "") or ""
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _check_consistency(settings: Settings, errors: list[str]) -> None:
    """Cross-field rules; production refuses every development default."""
    if bool(settings.google_client_id) != bool(settings.google_client_secret):
        errors.append("GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET must be set together")
    if not settings.is_production:
        return
    if settings.secret_key == DEFAULT_SECRET_KEY:
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


def _smtp_is_encrypted(url: str) -> bool:
    """Implicit TLS, required STARTTLS, or a relay on loopback."""
    smtp = parse_smtp_url(url)
    return (
        smtp.use_tls or smtp.start_tls is True or smtp.hostname in ("127.0.0.1", "::1", "localhost")
    )
