"""The pyinstrument case's app: aigen from the environment, served as `aigen serve` serves it."""

from __future__ import annotations

import pytest
from bench.harness.profiled_app import app_and_config

from aigen.access_log import ACCESS_LOG_FORMAT


def test_it_serves_aigen_with_aigen_serves_config(
    app_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # It once imported a name aigen.cli no longer had, and the bench's profile came out empty.
    for name, value in app_settings.items():
        monkeypatch.setenv(name, value)
    app, config = app_and_config(8123)
    assert app.name == "aigen.app" and "generate" in app.blueprints
    assert config.bind == ["127.0.0.1:8123"] and config.workers == 1
    assert config.worker_class == "uvloop"
    assert config.access_log_format == ACCESS_LOG_FORMAT
