"""The operator's command line: migrate, users list / set-plan / set-limit, refusals."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from aigen.cli import main
from tests.helpers import make_user


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI at the test database with an emptied users table."""
    for name in ("AIGEN_ENV", "AIGEN_DEV_DEFAULTS", "SMTP_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)

    async def reset() -> None:
        conn = await asyncpg.connect(database_url)
        await conn.execute("TRUNCATE users, generations RESTART IDENTITY CASCADE")
        await make_user(conn, "ada@example.com", credits_limit=10)
        await conn.close()

    asyncio.run(reset())
    return database_url


def test_migrate_reports_up_to_date(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert "database is up to date" in capsys.readouterr().out


def test_users_list(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["users", "list"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.split("\t")[1:5] == ["ada@example.com", "verified", "FREE", "0/10"]


def test_set_plan_and_limit(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["users", "set-plan", "ADA@example.com", "pro"]) == 0
    assert "\tPRO\t" in capsys.readouterr().out
    assert main(["users", "set-limit", "ada@example.com", "25"]) == 0
    assert "0/25" in capsys.readouterr().out

    async def read() -> tuple[str, int]:
        conn = await asyncpg.connect(cli_env)
        row = await conn.fetchrow("SELECT plan, credits_limit FROM users")
        await conn.close()
        return row["plan"], row["credits_limit"]

    assert asyncio.run(read()) == ("PRO", 25)


def test_unknown_email_is_an_error(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["users", "set-plan", "nobody@example.com", "PRO"]) == 1
    assert "no user with e-mail nobody@example.com" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["users", "set-plan", "ada@example.com", "GOLD"],
        ["users", "set-limit", "a@b.c", "-1"],
        ["users", "set-limit", "a@b.c", "many"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_2(cli_env: str, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2


def test_production_refuses_to_start_with_defaults(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "DATABASE_URL",
        "GOOGLE_CLIENT_ID",
        "GOOGLE_CLIENT_SECRET",
        "ANTHROPIC_API_KEY",
        "SECRET_KEY",
        "REDIS_URL",
        "SMTP_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIGEN_ENV", "production")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    for name in ("SECRET_KEY", "DATABASE_URL", "GOOGLE_CLIENT_ID", "ANTHROPIC_API_KEY"):
        assert name in err
