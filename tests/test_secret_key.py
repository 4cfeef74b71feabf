"""The signing key: never one written in the source; in development, one of our own, kept."""

from __future__ import annotations

import stat
from pathlib import Path

from quart import Quart

from aigen.app import create_app
from aigen.store.repository import User
from tests.helpers import ROOT, cookie_signed_with

# The key aigen used to fall back on when SECRET_KEY was unset: anyone could read it.
KEY_FROM_THE_SOURCE = "aigen-development-only-secret-key"


def without_secret_key(app_settings: dict[str, str]) -> dict[str, str]:
    """Every service configured, but neither AIGEN_ENV nor SECRET_KEY (a forgotten setting)."""
    return {
        name: value
        for name, value in app_settings.items()
        if name not in ("AIGEN_ENV", "SECRET_KEY")
    }


async def test_a_cookie_signed_with_a_key_from_the_source_is_refused(
    app_settings: dict[str, str], user: User
) -> None:
    app = create_app(without_secret_key(app_settings))
    async with app.test_app():
        forged = cookie_signed_with(app, KEY_FROM_THE_SOURCE, user.id)
        client = app.test_client()
        client.set_cookie("127.0.0.1", app.config["QUART_AUTH_COOKIE_NAME"], forged)
        response = await client.get("/api/usage")
    assert response.status_code == 401


async def test_development_keeps_its_own_key_private_and_across_restarts(
    app_settings: dict[str, str], user: User, tmp_path: Path
) -> None:
    settings = {**without_secret_key(app_settings), "AIGEN_DATA_DIR": str(tmp_path / "data")}
    first, second = create_app(settings), create_app(settings)
    key_file = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first.secret_key == second.secret_key == key_file.read_text().strip()
    assert len(key_file.read_text().strip()) >= 32
    other = create_app({**settings, "AIGEN_DATA_DIR": str(tmp_path / "elsewhere")})
    assert other.secret_key != first.secret_key
    assert await signed_in_status(second, cookie_signed_with(first, str(first.secret_key), user.id))


async def signed_in_status(app: Quart, cookie: str) -> bool:
    """Whether `app` takes this sign-in cookie (a restart must not sign everyone out)."""
    async with app.test_app():
        client = app.test_client()
        client.set_cookie("127.0.0.1", app.config["QUART_AUTH_COOKIE_NAME"], cookie)
        return (await client.get("/api/usage")).status_code == 200


def test_the_procfile_runs_production() -> None:
    procfile = (ROOT / "Procfile").read_text().splitlines()
    assert procfile and all("AIGEN_ENV=production" in line for line in procfile)
