"""The application factory: what a worker does at start-up."""

from __future__ import annotations

import asyncio

import anthropic._data
import pytest
from quart.testing.app import LifespanError

from aigen.app import create_app
from aigen.web.runtime import EXTENSION_KEY, Runtime
from tests.helpers import make_user


async def test_a_worker_does_not_migrate_it_refuses_an_unmigrated_database(
    app_settings: dict[str, str], empty_database: str
) -> None:
    """Migrations run once per start, in `aigen serve` (or `aigen migrate`), never per worker."""
    app = create_app({**app_settings, "DATABASE_URL": empty_database})
    # The test client reports a failed start-up as LifespanError with the error's message.
    with pytest.raises(LifespanError, match=r"migrations \[.*\] are not applied.*aigen migrate"):
        async with app.test_app():
            pass


async def test_a_crashed_background_task_does_not_stop_the_shutdown(
    app_settings: dict[str, str], db, fake_claude
) -> None:
    """Regression: `_stop` re-raised the error a background task had ended with, and returned
    before draining the generations in flight and closing the pool."""
    ada = await make_user(db)
    app = create_app(app_settings)
    async with app.test_app():
        runtime: Runtime = app.extensions[EXTENSION_KEY]
        runtime.background.add(asyncio.create_task(crash()))  # a task that ended with an error
        fake_claude.set_scenario([{"type": "delay", "seconds": 1}])
        in_flight = asyncio.create_task(runtime.generations.generate(ada.id, "slow"))
        while await db.fetchval("SELECT count(*) FROM generations") == 0:
            await asyncio.sleep(0.02)
    assert (
        await in_flight
    ).generation.status == "succeeded"  # drained: answered before the pool closed
    assert await db.fetchval("SELECT status FROM generations") == "succeeded"
    assert runtime.pool.is_closing()


async def crash() -> None:
    raise RuntimeError("an odd error in a background task")


def test_a_model_the_sdk_calls_deprecated_is_named_in_the_log_at_start_up(
    app_settings: dict[str, str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK's own per-call DeprecationWarning is hidden by Python outside tests.
    monkeypatch.setitem(anthropic._data.DEPRECATED_MODELS, "claude-retiring-1", "June 1st, 2027")
    create_app({**app_settings, "AIGEN_MODEL": "claude-retiring-1"})
    assert "AIGEN_MODEL claude-retiring-1 reaches end of life on June 1st, 2027" in caplog.text
    caplog.clear()
    create_app({**app_settings, "AIGEN_MODEL": "claude-current-1"})
    assert "reaches end of life" not in caplog.text
