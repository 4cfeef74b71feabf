"""The application factory: what a worker does at start-up."""

from __future__ import annotations

import pytest
from quart.testing.app import LifespanError

from aigen.app import create_app


async def test_a_worker_does_not_migrate_it_refuses_an_unmigrated_database(
    app_settings: dict[str, str], empty_database: str
) -> None:
    """Migrations run once per start, in `aigen serve` (or `aigen migrate`), never per worker."""
    app = create_app({**app_settings, "DATABASE_URL": empty_database})
    # The test client reports a failed start-up as LifespanError with the error's message.
    with pytest.raises(LifespanError, match=r"migrations \[.*\] are not applied.*aigen migrate"):
        async with app.test_app():
            pass
