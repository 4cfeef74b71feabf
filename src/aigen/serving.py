"""Hypercorn worker processes, stopped so that no generation in flight is lost.

hypercorn's own supervisor (`hypercorn.run.run`) stops waiting as soon as the first worker has
exited and then terminates the others with SIGTERM, which a worker does not handle: a worker
still finishing its generations died mid-answer (seen: one stop in four with two workers dropped
a connection and left its credit charged). Here the supervisor waits for every worker, and a
worker takes SIGTERM as "stop gracefully" too, since platforms (Heroku, systemd) send it to
every process, not only to the supervisor.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import signal
import time
from functools import partial
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType

import uvloop
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import load_application

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
POLL_SECONDS = 0.1
# After graceful_timeout (requests) and shutdown_timeout (drain), a worker that still runs is
# killed; its reservations are then the sweeper's.
KILL_MARGIN = 5.0
YOUNG_COLLECTION_THRESHOLD = 10_000


def run_workers(config: Config) -> int:
    """Serve with `config.workers` processes until SIGINT or SIGTERM (or a worker dies), then
    let every worker answer or refund what it has in flight, and exit once all have."""
    sockets = config.create_sockets()
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    # Inherited by the workers: Ctrl+C reaches the whole process group, and only the
    # supervisor decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    workers: list[BaseProcess] = []
    for _ in range(config.workers):
        worker = context.Process(
            target=serve_worker, kwargs={"config": config, "sockets": sockets, "stop": stop}
        )
        worker.start()
        workers.append(worker)
    try:
        return _supervise(workers, stop, config.graceful_timeout + config.shutdown_timeout)
    finally:
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()


def _supervise(workers: list[BaseProcess], stop: Event, grace: float) -> int:
    """Wait for every worker; tell all to stop on a signal or when one exits on its own."""
    signalled: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signalled.append(signum)  # only a flag: Event.set takes a lock the loop may hold

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    running, exit_code, deadline = list(workers), 0, float("inf")
    while running:
        wait([worker.sentinel for worker in running], timeout=POLL_SECONDS)
        for worker in [worker for worker in running if worker.exitcode is not None]:
            running.remove(worker)
            exit_code = exit_code or worker.exitcode or 0
            if not stop.is_set():
                log.error("worker %s exited (code %s): stopping", worker.pid, worker.exitcode)
                signalled.append(0)
        if signalled and not stop.is_set():
            stop.set()
            deadline = time.monotonic() + grace + KILL_MARGIN
        if running and time.monotonic() > deadline:
            _kill(running)
    return exit_code


def _kill(running: list[BaseProcess]) -> None:
    for worker in running:
        log.error("worker %s did not stop in time: killing it", worker.pid)
        worker.kill()


def serve_worker(config: Config, sockets: Sockets, stop: Event) -> None:
    """One worker process: hypercorn serving the app until the supervisor or SIGTERM stops it."""
    # From the first moment: a SIGTERM while the app starts stops it once it has started.
    signal.signal(signal.SIGTERM, _remember_sigterm)
    app = load_application(config.application_path, config.wsgi_max_body_size)
    freeze_start_up_objects()
    trigger = partial(_stop_requested, stop)
    serving = worker_serve(app, config, sockets=sockets, shutdown_trigger=trigger)
    if config.worker_class == "uvloop":
        uvloop.run(serving)
    else:
        asyncio.run(serving)


def freeze_start_up_objects() -> None:
    """Fewer and cheaper garbage collections in a worker.

    With thousands of generations in flight a worker holds millions of objects, and the default
    young threshold (700 allocations) led to a full collection every few hundred requests, each
    walking all of them with the event loop paused (about 0.4 s each; collections took 8.0 s of
    the worker's CPU in bench case 4). A young threshold of 10,000 makes them rarer (2.9 s), and
    freezing what start-up allocated (some 230,000 objects: the imports, the app) keeps those
    out of every walk.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


_sigterm_received: list[int] = []


def _remember_sigterm(signum: int, _frame: FrameType | None) -> None:
    _sigterm_received.append(signum)


async def _stop_requested(stop: Event) -> None:
    """Return once the supervisor sets `stop` or this process receives SIGTERM."""
    terminated = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminated.set)
    if _sigterm_received:
        terminated.set()
    while not (terminated.is_set() or stop.is_set()):
        try:
            await asyncio.wait_for(terminated.wait(), POLL_SECONDS)
        except TimeoutError:
            pass
