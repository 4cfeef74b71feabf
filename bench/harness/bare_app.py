"""The ceiling of /healthz: a bare Quart app with one JSON route, served like aigen is.

`aigen serve` runs hypercorn's `run()` with a Config of bind, workers and an access log going
through Python logging; this module serves its app with the same settings, so the only
difference measured is what aigen adds around the route.
"""

from __future__ import annotations

import argparse
import logging
from contextlib import ExitStack
from pathlib import Path

from quart import Quart, Response, jsonify

from bench.harness.services import HOST, Service, free_port, python_command, start

app = Quart(__name__)


@app.get("/healthz")
async def healthz() -> Response:
    """The same answer as aigen's /healthz."""
    return jsonify({"status": "ok"})


def start_bare_app(stack: ExitStack, *, workers: int, log_dir: Path) -> Service:
    """Serve the bare app in its own process with `workers` hypercorn workers."""
    port = free_port()
    command = python_command(
        "-m", "bench.harness.bare_app", "--port", str(port), "--workers", str(workers)
    )
    url = f"http://{HOST}:{port}"
    return start(stack, "bare-app", command, url=url, ready_path="/healthz", log_dir=log_dir)


def main() -> int:
    """hypercorn.run with the Config `aigen serve` builds (bind, workers, access log)."""
    from hypercorn.config import Config
    from hypercorn.run import run

    from aigen.cli import ACCESS_LOG_FORMAT
    from aigen.logs import configure_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    configure_logging()
    config = Config()
    config.application_path = "bench.harness.bare_app:app"
    config.bind = [f"{HOST}:{args.port}"]
    config.workers = args.workers
    config.accesslog = logging.getLogger("hypercorn.access")
    config.errorlog = logging.getLogger("hypercorn.error")
    config.access_log_format = ACCESS_LOG_FORMAT
    return run(config)


if __name__ == "__main__":
    raise SystemExit(main())
