"""Liveness and readiness probes."""

from __future__ import annotations

from aigen.app import create_app


async def test_healthz_answers_without_the_database(app_settings) -> None:
    app = create_app({**app_settings, "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"})
    response = await app.test_client().get("/healthz")  # start-up hooks never ran: no pool
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


async def test_readyz_is_ready_when_migrated(client) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert (await response.get_json())["status"] == "ready"


async def test_readyz_reports_missing_migrations(client, db) -> None:
    await db.execute("DELETE FROM schema_migrations WHERE version = 1")
    try:
        response = await client.get("/readyz")
        body = await response.get_json()
    finally:
        await db.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (1, 'users_and_generations')"
        )
    assert response.status_code == 503
    assert "migrations not applied: [1]" in " ".join(body["reasons"])


async def test_readyz_without_a_pool_is_503(app_settings) -> None:
    app = create_app(app_settings)
    response = await app.test_client().get("/readyz")
    assert response.status_code == 503
