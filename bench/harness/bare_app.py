"""The ceiling of /healthz: a bare Quart app with one JSON route, served like aigen is.

`aigen serve` runs hypercorn's `run()` with a Config of bind, workers and an access log going
through Python logging; this module serves its app with the same settings, so the only
difference measured is what aigen adds around the route.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path

from quart import Quart, Response, jsonify, request

from bench.harness.services import HOST, Service, free_port, python_command, start

app = Quart(__name__)


@app.get("/healthz")
async def healthz() -> Response:
    """The same answer as aigen's /healthz."""
    return jsonify({"status": "ok"})


@app.post("/api/generate")
async def generate() -> Response:
    """A JSON body in, an answer the size and shape of aigen's 200 out (bench/cases/floor.py)."""
    body = await request.get_json()
    return jsonify(
        {
            "id": 1,
            "result": "x" * 600 + str(body["prompt"]),
            "usage": {"input_tokens": 4, "output_tokens": 120},
            "credits": {"plan": "free", "used": 1, "limit": 1000000, "remaining": 999999},
        }
    )


def start_bare_app(stack: ExitStack, *, workers: int, log_dir: Path) -> Service:
    """Serve the bare app in its own process with `workers` hypercorn workers."""
    port = free_port()
    command = python_command(
        "-m", "bench.harness.bare_app", "--port", str(port), "--workers", str(workers)
    )
    url = f"http://{HOST}:{port}"
    return start(stack, "bare-app", command, url=url, ready_path="/healthz", log_dir=log_dir)


def main() -> int:
    """hypercorn with the very Config `aigen serve` builds (event loop, access log, workers)."""
    from aigen.cli import hypercorn_config
    from aigen.config import load_settings
    from aigen.logs import configure_logging
    from aigen.serving import run_workers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    configure_logging()
    config = hypercorn_config(load_settings({}), HOST, args.port, args.workers)
    config.application_path = "bench.harness.bare_app:app"
    return run_workers(config)


if __name__ == "__main__":
    raise SystemExit(main())
