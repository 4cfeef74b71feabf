"""Serving ASGI apps with hypercorn on loopback: free ports, bound sockets, a server in a thread."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Self

from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import Framework

LOOPBACK = "127.0.0.1"
BACKLOG = 128
GRACEFUL_TIMEOUT_SECONDS = 1.0
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 1.0
PROBE_INTERVAL_SECONDS = 0.02


def find_free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on the host that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind and listen, so the real port is known before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def socket_url(sock: socket.socket) -> str:
    """The ``http://host:port`` root URL of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def hypercorn_config(sock: socket.socket, *, loglevel: str = "INFO") -> Config:
    """Make a hypercorn config serving an already bound socket (which it takes over)."""
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.loglevel = loglevel
    config.accesslog = None
    config.graceful_timeout = GRACEFUL_TIMEOUT_SECONDS
    return config


def _ignore_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # Python 3.11 logs each connection hypercorn cancels after its graceful timeout as an error.
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


async def serve_app(
    app: Framework, config: Config, shutdown_trigger: Callable[[], Awaitable[Any]] | None = None
) -> None:
    """Serve the app with hypercorn until the trigger fires (or SIGINT/SIGTERM without one)."""
    asyncio.get_running_loop().set_exception_handler(_ignore_cancelled)
    await serve(app, config, shutdown_trigger=shutdown_trigger)


def answers(host: str, port: int, path: str = "/", timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Tell whether an HTTP server on host:port answers a GET of the path (any status)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


class ThreadedServer:
    """Serve an ASGI app with hypercorn on 127.0.0.1 in a daemon thread with its own event loop.

    Start-up hooks run before ``start`` returns: hypercorn answers only once they are done.
    """

    def __init__(
        self,
        app: Framework,
        *,
        port: int = 0,
        name: str = "served-app",
        ready_path: str = "/",
        loglevel: str = "WARNING",
    ) -> None:
        self.app = app
        self._requested_port = port
        self._name = name
        self._ready_path = ready_path
        self._loglevel = loglevel
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._port is None:
            raise RuntimeError(f"{self._name} is not started")
        return self._port

    def start(self) -> Self:
        """Start serving; return once the server answers HTTP requests."""
        sock = listening_socket(LOOPBACK, self._requested_port)
        self._port = sock.getsockname()[1]
        config = hypercorn_config(sock, loglevel=self._loglevel)
        self._error = None
        self._thread = threading.Thread(
            target=self._run, args=(config,), name=f"{self._name}-{self._port}", daemon=True
        )
        self._thread.start()
        try:
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end; stopping twice is harmless."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._shutdown is not None and thread.is_alive():
            self._loop.call_soon_threadsafe(self._shutdown.set)
        thread.join(STOP_TIMEOUT_SECONDS)
        self._loop = None
        self._shutdown = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError(f"{self._name} failed to start") from self._error
            if answers(LOOPBACK, self.port, self._ready_path):
                return
            time.sleep(PROBE_INTERVAL_SECONDS)
        raise RuntimeError(f"{self._name} did not answer on {self.url} within the start timeout")

    def _run(self, config: Config) -> None:
        try:
            asyncio.run(self._serve(config))
        except BaseException as error:  # reported by start(); a daemon thread has no one else
            self._error = error

    async def _serve(self, config: Config) -> None:
        self._loop = asyncio.get_running_loop()
        self._shutdown = asyncio.Event()
        await serve_app(self.app, config, self._shutdown.wait)
