"""LOG_LEVEL=DEBUG: everything of ours, but never a prompt or an answer (the SDK's loggers too)."""

from __future__ import annotations

import logging

import pytest

from aigen.app import create_app
from aigen.store.repository import User
from tests.helpers import GENERATE, signed_in

PROMPT = "A-PROMPT-NOBODY-MAY-READ about lighthouses"


async def test_debug_logs_hold_no_prompt_and_no_answer(
    app_settings: dict[str, str], db, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = create_app({**app_settings, "LOG_LEVEL": "DEBUG"})
    async with app.test_app(), signed_in(app, user.id) as client:
        response = await client.post(GENERATE, json={"prompt": PROMPT})
        assert response.status_code == 200
        answer = (await response.get_json())["result"]
    assert logging.getLogger().getEffectiveLevel() == logging.DEBUG
    assert [record for record in caplog.records if record.name.startswith("aigen")]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "A-PROMPT-NOBODY-MAY-READ" not in logged
    assert answer not in logged and answer[:40] not in logged
