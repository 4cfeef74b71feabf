"""Serving an app in a thread on loopback, and finding a free port."""

from __future__ import annotations

import threading
import urllib.request

import pytest
from quart import Quart

from aigen.dev.serving import (
    LOOPBACK,
    ThreadedServer,
    answers,
    find_free_port,
    listening_socket,
    socket_url,
)


def hello_app(started: threading.Event | None = None) -> Quart:
    """An app answering /hello, which notes when its start-up hook ran."""
    app = Quart(__name__)

    @app.before_serving
    async def start_up() -> None:
        if started is not None:
            started.set()

    @app.get("/hello")
    async def hello() -> str:
        return "hello"

    return app


def test_threaded_server_answers_once_started_and_stops() -> None:
    started = threading.Event()
    server = ThreadedServer(hello_app(started))
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    with server:
        assert started.is_set()
        assert server.url == f"http://{LOOPBACK}:{server.port}"
        with urllib.request.urlopen(server.url + "/hello", timeout=5) as response:
            assert response.read() == b"hello"
    assert not answers(LOOPBACK, server.port)
    server.stop()  # a second stop is harmless


def test_threaded_server_serves_the_port_asked_for() -> None:
    port = find_free_port()
    with ThreadedServer(hello_app(), port=port) as server:
        assert server.port == port and answers(LOOPBACK, port, "/hello")


def test_threaded_server_reports_a_failed_start_up() -> None:
    app = Quart(__name__)

    @app.before_serving
    async def broken() -> None:
        raise ValueError("no database")

    server = ThreadedServer(app, name="broken-app")
    with pytest.raises(RuntimeError, match="broken-app failed to start"):
        server.start()


def test_free_port_is_free_and_a_bound_socket_knows_its_url() -> None:
    port = find_free_port()
    assert not answers(LOOPBACK, port)
    with listening_socket(LOOPBACK, 0) as sock:
        assert socket_url(sock) == f"http://{LOOPBACK}:{sock.getsockname()[1]}"
