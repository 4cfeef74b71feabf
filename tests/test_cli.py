"""The operator's command line: migrate, users list / set-plan / set-limit, refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

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


def test_migrate_goes_to_the_direct_url(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With DATABASE_DIRECT_URL set, migrating never touches DATABASE_URL (nothing listens)."""
    from aigen.dev.serving import find_free_port

    nowhere = f"postgresql://postgres@127.0.0.1:{find_free_port()}/nowhere"
    monkeypatch.setenv("DATABASE_URL", nowhere)
    monkeypatch.setenv("DATABASE_DIRECT_URL", cli_env)
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


async def _insert_generations(url: str, email: str, statuses: list[str], used: int) -> None:
    """Generations of the user with these statuses, and their credits_used set to `used`."""
    conn = await asyncpg.connect(url)
    user_id = await conn.fetchval("SELECT id FROM users WHERE email = $1", email)
    for status in statuses:
        await conn.execute(
            "INSERT INTO generations (user_id, prompt, model, status) VALUES ($1, 'p', 'm', $2)",
            user_id,
            status,
        )
    await conn.execute("UPDATE users SET credits_used = $2 WHERE id = $1", user_id, used)
    await conn.close()


async def _add_user(url: str, email: str) -> None:
    conn = await asyncpg.connect(url)
    await make_user(conn, email)
    await conn.close()


def test_doctor_summarises_a_balanced_ledger(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pending and succeeded generations hold a charge; failed ones were refunded."""
    asyncio.run(
        _insert_generations(cli_env, "ada@example.com", ["succeeded", "pending", "failed"], 2)
    )
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["ledger OK: 1 user(s), 2 generation(s) holding a charge"]


def test_doctor_lists_each_mismatch_and_exits_1(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_add_user(cli_env, "bob@example.com"))
    asyncio.run(_add_user(cli_env, "cy@example.com"))
    # ada: charged for a failed generation (a refund lost); bob: a pending one never charged.
    asyncio.run(_insert_generations(cli_env, "ada@example.com", ["succeeded", "failed"], 2))
    asyncio.run(_insert_generations(cli_env, "bob@example.com", ["pending"], 0))
    asyncio.run(_insert_generations(cli_env, "cy@example.com", ["succeeded"], 1))
    assert main(["doctor"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "user 1 ada@example.com: credits_used 2, generations holding a charge 1",
        "user 2 bob@example.com: credits_used 0, generations holding a charge 1",
    ]
    assert "2 of 3 user(s)" in captured.err


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


def _production_environ(database_url: str, port: int) -> dict[str, str]:
    """A production configuration whose services all answer on this machine."""
    import os

    from tests.helpers import PRODUCTION, TEST_SECRET_KEY

    return {
        **os.environ,
        **PRODUCTION,
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database_url,
        "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "SMTP_URL": "smtp://127.0.0.1:2525",  # never used: nobody signs in
        "PUBLIC_URL": f"https://127.0.0.1:{port}",
        # Every process, hypercorn's worker included, reports each module it imports.
        "PYTHONPROFILEIMPORTTIME": "1",
    }


def test_serving_in_production_imports_no_development_stand_in(
    database_url: str, tmp_path: Path
) -> None:
    """`aigen serve` in production: neither the CLI nor a worker loads anything of aigen.dev."""
    import subprocess
    import sys
    import time

    import httpx

    from aigen.dev.serving import find_free_port

    port = find_free_port()
    command = [sys.executable, "-m", "aigen.cli", "serve", "--port", str(port)]
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            command, env=_production_environ(database_url, port), stdout=stderr, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline and ready is None and server.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code
            except httpx.TransportError:
                time.sleep(0.1)
        assert ready == 200, log.read_text()[-3000:]
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = log.read_text().splitlines()
    imported = [
        line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")
    ]
    assert "aigen.web.api" in imported  # the worker's imports were seen
    assert not [name for name in imported if name.startswith("aigen.dev")]


def test_serve_on_a_busy_port_says_so_in_one_line(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--host", "127.0.0.1", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"port {port}" in err and f"make run PORT={port + 1}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("127.0.0.1", 8001, "http://127.0.0.1:8001"),
        ("0.0.0.0", 8000, "http://127.0.0.1:8000"),
        ("localhost", 9000, "http://localhost:9000"),
    ],
)
def test_development_public_url_follows_the_port_served(
    host: str, port: int, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run PORT=8001`: sign-in and Stripe's webhooks must come back to 8001, not 8000."""
    from aigen.cli import _development_public_url

    monkeypatch.delenv("PUBLIC_URL", raising=False)
    assert _development_public_url(host, port) == {"PUBLIC_URL": expected}
    monkeypatch.setenv("PUBLIC_URL", "https://dev.example.com")
    assert _development_public_url(host, port) == {}


def test_development_stand_ins_answer_to_the_port_served(database_url: str, tmp_path: Path) -> None:
    """`make run PORT=…` in development: the Stripe stand-in's webhooks come back to that port."""
    import os
    import subprocess
    import sys
    import time

    from aigen.dev.serving import find_free_port

    port = find_free_port()
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PUBLIC_URL", "STRIPE_", "AIGEN_ENV", "AIGEN_DEV"))
    }
    environment |= {"DATABASE_URL": database_url, "AIGEN_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "aigen.cli", "serve", "--host", "127.0.0.1"]
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [*command, "--port", str(port)], env=environment, stdout=output, stderr=output
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            if "serving on" in log.read_text():
                break
            time.sleep(0.1)
        text = log.read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)
    [stripe_line] = [line for line in text.splitlines() if "events go to" in line]
    assert f"events go to http://127.0.0.1:{port}/billing/webhook" in stripe_line, text[-3000:]
