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


async def test_readyz_names_a_failing_dependency_without_its_address_or_error(
    app_settings, db
) -> None:
    import asyncpg

    from aigen.web.runtime import EXTENSION_KEY

    dead_port = "9"
    settings = {**app_settings, "REDIS_URL": f"redis://127.0.0.1:{dead_port}/0"}
    app = create_app(settings)
    async with app.test_app():
        runtime = app.extensions[EXTENSION_KEY]
        live_pool = runtime.pool
        runtime.pool = await asyncpg.create_pool(
            f"postgresql://nobody@127.0.0.1:{dead_port}/none", min_size=0
        )
        try:
            response = await app.test_client().get("/readyz")
        finally:
            await runtime.pool.close()
            runtime.pool = live_pool
    assert response.status_code == 503
    body = await response.get_json()
    text = str(body)
    assert "127.0.0.1" not in text and "Connect" not in text and "Error" not in text
    assert body["reasons"][0].startswith("database:")
    assert body["rate_limiter"]["error"] == "unavailable"
