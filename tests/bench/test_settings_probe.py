"""Whether the app accepts a setting: how the harness decides to run case 1 through PgBouncer."""

from __future__ import annotations

import pytest
from bench.cases.pgbouncer import app_accepts

from tests.pgbouncer import pgbouncer_ini

BASE = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/aigen_bench_run"}


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("DB_POOL_MAX", "7", True),
        ("DB_POOL_MAX", "not a number", False),
        ("AIGEN_BENCH_NO_SUCH_SETTING", "1", False),
    ],
)
def test_app_accepts_only_settings_that_change_something(name, value, accepted) -> None:
    assert app_accepts(BASE, name, value) is accepted


def test_pgbouncer_ini_pools_transactions_of_every_database(tmp_path) -> None:
    ini = pgbouncer_ini(
        "postgresql://postgres@127.0.0.1:5433/x", 6544, tmp_path, pool_size=20, max_clients=9000
    )
    assert "* = host=127.0.0.1 port=5433 user=postgres" in ini
    assert "pool_mode = transaction" in ini and "listen_port = 6544" in ini
    assert "default_pool_size = 20" in ini and "max_client_conn = 9000" in ini
    assert "listen_addr = 127.0.0.1" in ini and f"auth_file = {tmp_path / 'userlist.txt'}" in ini
