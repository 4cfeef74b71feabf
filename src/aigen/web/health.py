"""Liveness and readiness probes for the platform."""

from __future__ import annotations

import logging

from quart import Blueprint, Response, jsonify

from aigen.clients.ratelimit import FallbackRateLimiter
from aigen.core.readiness import database_problems
from aigen.web.runtime import runtime

log = logging.getLogger(__name__)

blueprint = Blueprint("health", __name__)

UNAVAILABLE = "unavailable"


@blueprint.get("/healthz")
async def healthz() -> Response:
    """The process is up; touches nothing else."""
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
async def readyz() -> tuple[Response, int]:
    """Ready when the database answers and every migration is applied.

    A Redis outage makes the answer "degraded" but keeps it 200: generation goes on with each
    worker limiting on its own, and a 503 would take every instance out of the load balancer
    at once, turning a limiter outage into a full outage.
    """
    problems = await database_problems(getattr(runtime(), "pool", None))  # unset until serving
    limiter = await _rate_limiter_status()
    if problems:
        body = {"status": "unavailable", "reasons": problems, "rate_limiter": limiter}
        return jsonify(body), 503
    if limiter["error"] is not None:
        reason = f"rate limiter: {limiter['error']} (limiting per worker process)"
        return jsonify({"status": "degraded", "reasons": [reason], "rate_limiter": limiter}), 200
    return jsonify({"status": "ready", "rate_limiter": limiter}), 200


async def _rate_limiter_status() -> dict[str, object]:
    """Which limiter runs, whether Redis answers now, and how many hits the fallback decided."""
    limiter = getattr(runtime(), "limiter", None)  # unset until before_serving has run
    if not isinstance(limiter, FallbackRateLimiter):
        return {"backend": "memory", "error": None, "failures": 0}
    problem = await limiter.ping()
    if problem is not None:  # the detail names Redis's address: for the log, not the probe
        log.warning("readiness: the rate limiter's Redis is unavailable: %s", problem)
    error = None if problem is None else UNAVAILABLE
    return {"backend": "redis", "error": error, "failures": limiter.failures}
