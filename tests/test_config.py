"""Settings from the environment: defaults, one clear line per bad value, production refusals."""

from __future__ import annotations

import pytest

from aigen.clients.ratelimit import RateLimit
from aigen.config import (
    EMBEDDED_POSTGRES,
    LOCAL_CLAUDE,
    LOCAL_SIGN_IN,
    LOCAL_STRIPE,
    ConfigError,
    load_settings,
)
from tests.helpers import PRODUCTION


def test_defaults_match_the_documented_table() -> None:
    settings = load_settings({})
    assert settings.env == "development" and not settings.is_production
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.redirect_uri == "http://127.0.0.1:8000/auth/callback"
    assert settings.db_pool_max == 10
    assert (settings.database_pgbouncer, settings.database_direct_url) == (False, None)
    assert settings.oidc_discovery_url == (
        "https://accounts.google.com/.well-known/openid-configuration"
    )
    assert (settings.model, settings.max_tokens) == ("claude-opus-4-5", 1024)
    assert settings.upstream_timeout == 120.0
    assert (settings.free_credits, settings.max_prompt_chars) == (10, 20000)
    assert settings.rate_limit == RateLimit(10, 60.0)
    assert settings.login_rate_limit == RateLimit(20, 60.0)
    assert settings.log_level == "INFO"
    assert settings.missing_services() == [
        EMBEDDED_POSTGRES,
        LOCAL_SIGN_IN,
        LOCAL_CLAUDE,
        LOCAL_STRIPE,
    ]
    assert not settings.billing_enabled and settings.support_email is None


@pytest.mark.parametrize(
    ("timeout", "stale"), [("1", 2.0), ("5", 10.0), ("120", 150.0), ("600", 630.0)]
)
def test_a_reservation_is_stale_within_the_timeout_plus_30_seconds(
    timeout: str, stale: float
) -> None:
    """The sweeper refunds a dead process's reservations this long after they were made."""
    assert load_settings({"AIGEN_UPSTREAM_TIMEOUT": timeout}).stale_after == stale


def test_values_are_parsed() -> None:
    settings = load_settings(
        {
            "PUBLIC_URL": "https://x.example/",
            "DB_POOL_MAX": "4",
            "AIGEN_MAX_TOKENS": "256",
            "AIGEN_UPSTREAM_TIMEOUT": "2.5",
            "FREE_CREDITS": "0",
            "MAX_PROMPT_CHARS": "50",
            "AIGEN_MODEL": "claude-sonnet-4-5",
        }
    )
    assert settings.public_url == "https://x.example"
    assert (settings.db_pool_max, settings.max_tokens, settings.upstream_timeout) == (4, 256, 2.5)
    assert (settings.free_credits, settings.max_prompt_chars) == (0, 50)
    assert settings.model == "claude-sonnet-4-5"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AIGEN_ENV", "staging"),
        ("DB_POOL_MAX", "ten"),
        ("DB_POOL_MAX", "1"),
        ("AIGEN_MAX_TOKENS", "0"),
        ("AIGEN_UPSTREAM_TIMEOUT", "-1"),
        ("AIGEN_UPSTREAM_TIMEOUT", "soon"),
        ("FREE_CREDITS", "-3"),
        ("MAX_PROMPT_CHARS", "1.5"),
        ("LOG_LEVEL", "chatty"),
        ("PUBLIC_URL", "127.0.0.1:8000"),
        ("DATABASE_URL", "mysql://db/x"),
        ("DATABASE_PGBOUNCER", "maybe"),
        ("DATABASE_DIRECT_URL", "db.internal:5432"),
        ("OIDC_DISCOVERY_URL", "accounts.google.com"),
        ("ANTHROPIC_BASE_URL", "ftp://x"),
        ("REDIS_URL", "http://cache"),
        ("RATE_LIMIT", "lots"),
        ("LOGIN_RATE_LIMIT", "0/minute"),
        ("SMTP_URL", "smtp://"),
    ],
)
def test_each_bad_value_stops_start_up_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({name: value})
    lines = str(raised.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith(name)


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"DB_POOL_MAX": "x", "FREE_CREDITS": "y", "AIGEN_MAX_TOKENS": "z"})
    assert len(str(raised.value).splitlines()) == 3


def test_urls_with_passwords_are_never_echoed() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(
            {"DATABASE_URL": "mysql://u:hunter2@db/x", "SMTP_URL": "smtp://u:hunter2@h:0"}
        )
    assert "hunter2" not in str(raised.value)


def test_google_id_and_secret_go_together() -> None:
    with pytest.raises(ConfigError, match="GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET"):
        load_settings({"GOOGLE_CLIENT_ID": "id"})


STRIPE = {
    "STRIPE_SECRET_KEY": "sk_live_x",
    "STRIPE_PRICE_ID": "price_pro",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
}


@pytest.mark.parametrize("left_out", sorted(STRIPE))
def test_stripe_settings_go_together(left_out: str) -> None:
    partial = {name: value for name, value in STRIPE.items() if name != left_out}
    with pytest.raises(ConfigError, match="must be set together") as raised:
        load_settings(partial)
    assert "sk_live_x" not in str(raised.value) and "whsec_x" not in str(raised.value)


def test_stripe_settings_enable_billing_and_stay_out_of_repr() -> None:
    settings = load_settings({**STRIPE, "STRIPE_API_BASE": "http://127.0.0.1:12111"})
    assert settings.billing_enabled and LOCAL_STRIPE not in settings.missing_services()
    assert settings.stripe_api_base == "http://127.0.0.1:12111"
    assert "sk_live_x" not in repr(settings) and "whsec_x" not in repr(settings)


def test_production_runs_without_billing_or_with_real_stripe() -> None:
    closed = load_settings(PRODUCTION)
    assert not closed.billing_enabled and closed.missing_services() == []
    assert load_settings({**PRODUCTION, **STRIPE}).billing_enabled


@pytest.mark.parametrize("value", ["help", "help@localhost", "a b@example.com", "@example.com"])
def test_support_email_must_be_an_address(value: str) -> None:
    with pytest.raises(ConfigError, match="SUPPORT_EMAIL"):
        load_settings({"SUPPORT_EMAIL": value})
    assert load_settings({"SUPPORT_EMAIL": "help@aigen.example"}).support_email == (
        "help@aigen.example"
    )


def test_complete_production_settings_are_accepted() -> None:
    settings = load_settings(PRODUCTION)
    assert settings.is_production and settings.missing_services() == []
    assert "pw" not in repr(settings) and "sk-ant" not in repr(settings)


@pytest.mark.parametrize(
    "missing",
    [
        "SECRET_KEY",
        "DATABASE_URL",
        "GOOGLE_CLIENT_ID",
        "ANTHROPIC_API_KEY",
        "REDIS_URL",
        "SMTP_URL",
    ],
)
def test_production_refuses_to_start_without(missing: str) -> None:
    environ = {key: value for key, value in PRODUCTION.items() if key != missing}
    if missing == "GOOGLE_CLIENT_ID":
        environ.pop("GOOGLE_CLIENT_SECRET")
    with pytest.raises(ConfigError, match=missing):
        load_settings(environ)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 32"),
        ({"PUBLIC_URL": "http://aigen.example.com"}, "PUBLIC_URL must use https"),
        ({"AIGEN_DEV_DEFAULTS": EMBEDDED_POSTGRES}, "refuses development defaults"),
        (
            {"OIDC_DISCOVERY_URL": "http://idp.example/.well-known/openid-configuration"},
            "OIDC_DISCOVERY_URL must use https",
        ),
        ({"ANTHROPIC_BASE_URL": "http://gateway.internal"}, "ANTHROPIC_BASE_URL must use https"),
        ({"SMTP_URL": "smtp://mail.internal:25"}, "SMTP_URL must use TLS"),
        ({**STRIPE, "STRIPE_API_BASE": "http://127.0.0.1:12111"}, "STRIPE_API_BASE is for"),
        ({"AIGEN_DEV_DEFAULTS": LOCAL_STRIPE}, "refuses development defaults: local Stripe"),
    ],
)
def test_production_refuses_development_shortcuts(change: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({**PRODUCTION, **change})


@pytest.mark.parametrize(
    "smtp_url",
    [
        "smtps://mail.example:465",
        "smtp://u:p@mail.example:2525",
        "smtp://mail.example:587",
        "smtp://127.0.0.1:25",
    ],
)
def test_production_accepts_encrypted_or_local_mail(smtp_url: str) -> None:
    assert load_settings({**PRODUCTION, "SMTP_URL": smtp_url}).smtp_url == smtp_url


# --- PgBouncer in front of PostgreSQL -----------------------------------------------------------

BOUNCED = "postgresql://aigen:pw@pgbouncer.internal:6432/aigen"
DIRECT = "postgresql://aigen:direct-pw@db.internal:5432/aigen?sslmode=verify-full"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), ("0", False), ("false", False), ("no", False)],
)
def test_pgbouncer_flag_is_parsed(value: str, expected: bool) -> None:
    settings = load_settings({"DATABASE_URL": BOUNCED, "DATABASE_PGBOUNCER": value})
    assert settings.database_pgbouncer is expected


def test_migrations_go_past_pgbouncer_when_a_direct_url_is_set() -> None:
    bounced = {"DATABASE_URL": BOUNCED, "DATABASE_PGBOUNCER": "1"}
    assert load_settings(bounced).migration_database_url == BOUNCED
    direct = load_settings({**bounced, "DATABASE_DIRECT_URL": DIRECT})
    assert (direct.required_database_url, direct.migration_database_url) == (BOUNCED, DIRECT)


def test_a_direct_url_needs_the_database_url() -> None:
    with pytest.raises(ConfigError, match="DATABASE_DIRECT_URL is set without DATABASE_URL"):
        load_settings({"DATABASE_DIRECT_URL": DIRECT})


def test_production_accepts_pgbouncer_and_never_shows_the_direct_password() -> None:
    settings = load_settings(
        {**PRODUCTION, "DATABASE_PGBOUNCER": "1", "DATABASE_DIRECT_URL": DIRECT}
    )
    assert settings.database_pgbouncer and settings.migration_database_url == DIRECT
    assert "direct-pw" not in repr(settings)
    with pytest.raises(ConfigError) as raised:
        load_settings({**PRODUCTION, "DATABASE_DIRECT_URL": "mysql://u:direct-pw@db/x"})
    assert "DATABASE_DIRECT_URL" in str(raised.value) and "direct-pw" not in str(raised.value)


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql://aigen:pw@db.internal:5432/aigen",
        "postgresql://aigen:pw@db.internal/aigen?sslmode=prefer",
        "postgresql://aigen:pw@db.internal/aigen?sslmode=disable",
        "postgresql://aigen:pw@127.0.0.1,db.internal/aigen",
    ],
)
def test_production_refuses_a_remote_database_without_tls(database_url: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL must use TLS") as raised:
        load_settings({**PRODUCTION, "DATABASE_URL": database_url})
    assert "pw" not in str(raised.value)


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql://aigen:pw@db.internal/aigen?sslmode=require",
        "postgresql://aigen:pw@db.internal/aigen?sslmode=verify-ca",
        "postgres://aigen:pw@db.internal:5432/aigen?sslmode=verify-full",
        "postgresql://aigen:pw@127.0.0.1:5432/aigen",
        "postgresql://aigen:pw@localhost/aigen",
        "postgresql://aigen:pw@[::1]:5432/aigen",
        "postgresql://aigen@/aigen?host=/var/run/postgresql",
    ],
)
def test_production_accepts_a_database_over_tls_or_on_this_machine(database_url: str) -> None:
    assert load_settings({**PRODUCTION, "DATABASE_URL": database_url}).database_url


def test_production_refuses_a_direct_database_url_without_tls() -> None:
    direct = "postgresql://aigen:direct-pw@db.internal:5432/aigen"
    with pytest.raises(ConfigError, match="DATABASE_DIRECT_URL must use TLS") as raised:
        load_settings({**PRODUCTION, "DATABASE_DIRECT_URL": direct})
    assert "direct-pw" not in str(raised.value)
    accepted = load_settings({**PRODUCTION, "DATABASE_DIRECT_URL": direct + "?sslmode=require"})
    assert accepted.migration_database_url == direct + "?sslmode=require"


@pytest.mark.parametrize(
    ("redis_url", "accepted"),
    [
        ("redis://cache.internal:6379/0", False),
        ("redis://:pw@cache.internal:6379/0", False),
        ("rediss://cache.internal:6379/0", True),
        ("redis://127.0.0.1:6379/0", True),
        ("redis://localhost:6379/0", True),
        ("unix:///run/redis.sock?db=0", True),
    ],
)
def test_production_refuses_a_remote_redis_without_tls(redis_url: str, accepted: bool) -> None:
    environ = {**PRODUCTION, "REDIS_URL": redis_url}
    if accepted:
        assert load_settings(environ).redis_url == redis_url
    else:
        with pytest.raises(ConfigError, match="REDIS_URL must use rediss://"):
            load_settings(environ)
