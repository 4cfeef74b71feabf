"""Liveness and readiness probes for the platform."""

from __future__ import annotations

import asyncio

from quart import Blueprint, Response, jsonify

from aigen.db import load_migrations, pending_migrations
from aigen.runtime import runtime

blueprint = Blueprint("health", __name__)

READY_TIMEOUT = 3.0


@blueprint.get("/healthz")
async def healthz() -> Response:
    """The process is up; touches nothing else."""
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
async def readyz() -> tuple[Response, int]:
    """Ready when the database answers and every migration is applied."""
    problems = await _database_problems()
    if problems:
        return jsonify({"status": "unavailable", "reasons": problems}), 503
    return jsonify({"status": "ready"}), 200


async def _database_problems() -> list[str]:
    pool = runtime().pool
    if pool is None:
        return ["database: not connected yet"]
    try:
        async with asyncio.timeout(READY_TIMEOUT), pool.acquire() as conn:
            pending = await pending_migrations(conn, load_migrations())
    except (OSError, TimeoutError, Exception) as error:  # noqa: BLE001 - any failure means not ready
        return [f"database: {type(error).__name__}: {error}"]
    if pending:
        return [f"database: migrations not applied: {pending}"]
    return []
