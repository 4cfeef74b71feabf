"""Running the fake: in a thread of this process, or as ``python -m aigen.dev.anthropic``."""

from __future__ import annotations

import argparse
import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from aigen.config import is_local_host
from aigen.dev.anthropic.app import create_fake_anthropic_app
from aigen.dev.serving import (
    LOOPBACK,
    ThreadedServer,
    hypercorn_config,
    listening_socket,
    serve_app,
    socket_url,
)

DEFAULT_HOST = LOOPBACK
DEFAULT_PORT = 8787
ADMIN_TIMEOUT_SECONDS = 5.0


class FakeAnthropicAdmin:
    """Drive a running fake (in this process or another) through its admin endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def set_scenario(self, behaviors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the queued behaviors; return the queue as the fake stored it."""
        return self._call("POST", "/_fake/scenario", {"behaviors": list(behaviors)})["behaviors"]

    def scenario(self) -> list[dict[str, Any]]:
        """Return the behaviors still queued."""
        return self._call("GET", "/_fake/scenario")["behaviors"]

    def requests(self) -> list[dict[str, Any]]:
        """Return the request log."""
        return self._call("GET", "/_fake/requests")["requests"]

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._call("DELETE", "/_fake/requests")

    def clear(self) -> None:
        """Drop queued behaviors and empty the request log."""
        self._call("DELETE", "/_fake/scenario")
        self.clear_requests()

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        call = urllib.request.Request(self.url + path, data=data, method=method)
        call.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(call, timeout=ADMIN_TIMEOUT_SECONDS) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            detail = json.load(error).get("error", {}).get("message", error.reason)
            raise ValueError(f"{method} {path}: {detail}") from None


class FakeAnthropicServer:
    """Serve the fake with hypercorn on 127.0.0.1 in a daemon thread with its own event loop."""

    def __init__(self, *, port: int = 0, latency_ms: int = 0, chunk_delay_ms: int = 0) -> None:
        self.app = create_fake_anthropic_app(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms)
        self._server = ThreadedServer(
            self.app, port=port, name="fake-anthropic", ready_path="/_fake/health"
        )

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:40123``."""
        return self._server.url

    @property
    def base_url(self) -> str:
        """What to pass as the SDK's ``base_url`` (or ``ANTHROPIC_BASE_URL``)."""
        return self.url

    @property
    def admin(self) -> FakeAnthropicAdmin:
        """An admin client bound to this server."""
        return FakeAnthropicAdmin(self.url)

    def start(self) -> FakeAnthropicServer:
        """Start serving; return once requests are answered."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.stop()

    def set_scenario(self, behaviors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the queued behaviors (see ``POST /_fake/scenario``)."""
        return self.admin.set_scenario(behaviors)

    def clear(self) -> None:
        """Drop queued behaviors and empty the request log."""
        self.admin.clear()

    def requests(self) -> list[dict[str, Any]]:
        """Return the request log."""
        return self.admin.requests()

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line of ``python -m aigen.dev.anthropic``."""
    parser = argparse.ArgumentParser(
        prog="python -m aigen.dev.anthropic",
        description="Local fake of the Anthropic Messages API.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--latency-ms", type=int, default=0, help="delay before every answer")
    parser.add_argument("--chunk-delay-ms", type=int, default=20, help="delay between deltas")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback host")
    args = parser.parse_args(argv)
    if not (args.allow_remote or is_local_host(args.host)):
        parser.error(f"refusing to listen on {args.host}: pass --allow-remote to mean it")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake until interrupted."""
    args = parse_args(argv)
    app = create_fake_anthropic_app(latency_ms=args.latency_ms, chunk_delay_ms=args.chunk_delay_ms)
    sock = listening_socket(args.host, args.port)
    url = socket_url(sock)
    print(f"Fake Anthropic API on {url} (ANTHROPIC_BASE_URL={url})", flush=True)
    asyncio.run(serve_app(app, hypercorn_config(sock)))
    return 0
