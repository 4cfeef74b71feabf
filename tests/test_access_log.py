"""The access log: one line per request, whatever bytes the client put in the path."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from aigen.access_log import ACCESS_LOG_FORMAT, AccessFields, EscapedAtoms, escape
from aigen.app import create_app
from aigen.cli import hypercorn_config
from aigen.config import load_settings
from aigen.dev.oidc_provider import find_free_port

FORGED_LINE = '/x%0A10.0.0.1:1 "GET /admin HTTP/1.1" 200 2 0.1s'


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("/generate", "/generate"),
        ("/é/ü", "/é/ü"),
        ("/a\nb", "/a\\x0ab"),
        ("/a\r\nb", "/a\\x0d\\x0ab"),
        ("/nul\x00", "/nul\\x00"),
        ('/"quoted"', "/\\x22quoted\\x22"),
        ("/back\\slash", "/back\\x5cslash"),
        ("/esc\x1b[31m", "/esc\\x1b[31m"),
        ("/del\x7f/c1\x85", "/del\\x7f/c1\\x85"),
        ("/line\u2028sep", "/line\\u2028sep"),
    ],
)
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


async def test_a_forged_path_stays_on_one_escaped_line(
    app_settings: dict[str, str], db, caplog: pytest.LogCaptureFixture
) -> None:
    from hypercorn.asyncio import serve

    caplog.set_level(logging.INFO, logger="hypercorn.access")
    port = find_free_port()
    config = hypercorn_config(load_settings(app_settings), "127.0.0.1", port, workers=1)
    stop = asyncio.Event()
    server = asyncio.create_task(
        serve(create_app(app_settings), config, shutdown_trigger=stop.wait)
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(200):
                try:
                    await client.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.02)
            assert (await client.get(FORGED_LINE)).status_code == 404
            assert (await client.get("/nul%00byte")).status_code == 404
    finally:
        stop.set()
        await server
    lines = [record.getMessage() for record in caplog.records if record.name == "hypercorn.access"]
    forged = [line for line in lines if "admin" in line or "nul" in line]
    assert len(forged) == 2, lines
    for line in forged:
        assert line.isprintable(), repr(line)  # no newline, NUL or other control character
    assert '"GET /x\\x0a10.0.0.1:1 \\x22GET /admin HTTP/1.1\\x22 200 2 0.1s 1.1" 404' in forged[0]
    assert '"GET /nul\\x00byte 1.1" 404' in forged[1]


def scope(path: str, client: tuple[str, int] | None = ("10.0.0.7", 5123)) -> dict[str, object]:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "query_string": b"code=secret",
        "headers": [(b"user-agent", b"curl/8\nforged"), (b"host", b"example.test")],
        "client": client,
    }


@pytest.mark.parametrize(
    ("request_scope", "response"),
    [
        (scope("/api/generate"), {"status": 200, "headers": [(b"Content-Length", b"312")]}),
        (scope('/x\n"y\x00'), {"status": 404, "headers": []}),
        (scope("/healthz", client=None), None),
    ],
)
def test_our_fields_are_hypercorns_escaped(
    request_scope: dict[str, object], response: dict[str, object] | None
) -> None:
    """The fields computed directly read as hypercorn's own atoms, escaped, would."""
    ours = AccessFields(request_scope, response, 0.0123)  # type: ignore[arg-type]
    theirs = EscapedAtoms(request_scope, response, 0.0123)  # type: ignore[arg-type]
    assert ACCESS_LOG_FORMAT % ours == ACCESS_LOG_FORMAT % theirs
    # A field of another format comes from hypercorn's atoms, escaped too.
    other_format = "%(a)s %({host}i)s %(q)s"  # as logging applies the format: `%` with a mapping
    assert other_format % ours == "curl/8\\x0aforged example.test code=secret"
