"""aigen served in this very process under pyinstrument, for a profile of the whole event loop.

    python -m bench.harness.profiled_app --port P --output DIR   (settings from the environment)

Served with hypercorn's `serve` on uvloop with `aigen serve`'s config, one worker, in process
(pyinstrument sees only its own process). SIGUSR1 starts the profiler (after the warm-up),
SIGTERM stops it, writes DIR/pyinstrument.txt and .html, and stops serving.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import uvloop
from hypercorn.config import Config
from quart import Quart

from bench.harness.services import HOST, Service, free_port, python_command, start

INTERVAL = 0.001


def start_profiled_app(
    stack: ExitStack, environment: dict[str, str], *, output: Path, log_dir: Path
) -> Service:
    """Start the profiled app; it answers /readyz once serving."""
    port = free_port()
    command = python_command(
        "-m", "bench.harness.profiled_app", "--port", str(port), "--output", str(output)
    )
    url = f"http://{HOST}:{port}"
    return start(
        stack,
        "profiled-app",
        command,
        url=url,
        ready_path="/readyz",
        log_dir=log_dir,
        environment=environment,
    )


def app_and_config(port: int) -> tuple[Quart, Config]:
    """The app from the environment's settings and `aigen serve`'s own hypercorn config (access
    log, uvloop), for one worker in this process."""
    from aigen.app import create_app
    from aigen.cli import hypercorn_config
    from aigen.config import load_settings

    return create_app(), hypercorn_config(load_settings(), HOST, port, workers=1)


async def serve(port: int, output: Path) -> None:
    """Serve until SIGTERM, profiling between SIGUSR1 and SIGTERM."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from pyinstrument import Profiler

    from aigen.serving import freeze_start_up_objects

    app, config = app_and_config(port)
    freeze_start_up_objects()
    profiler = Profiler(interval=INTERVAL, async_mode="disabled")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, profiler.start)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    if profiler.is_running:
        profiler.stop()
        write_profile(profiler, output)


def write_profile(profiler: Any, output: Path) -> None:
    """The profile as text (call tree) and as pyinstrument's HTML page."""
    output.mkdir(parents=True, exist_ok=True)
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    (output / "pyinstrument.txt").write_text(text)
    (output / "pyinstrument.html").write_text(profiler.output_html())


def main() -> None:
    """Command line of the profiled app."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.output))


if __name__ == "__main__":
    main()
