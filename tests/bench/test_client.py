"""The exact-count load client and the recording stand-in, over real sockets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bench.cases.streaming import first_text_at
from bench.harness.client import encode_request, parse_head, run
from bench.harness.upstream import UpstreamState, listen

from aigen.dev.anthropic import compose_reply
from aigen.dev.oidc_provider import find_free_port

HEADERS = {"x-api-key": "bench", "anthropic-version": "2023-06-01"}


def message(prompt: str, *, stream: bool) -> str:
    turn = {"role": "user", "content": prompt}
    return json.dumps(
        {"model": "claude-bench", "max_tokens": 64, "messages": [turn], "stream": stream}
    )


@pytest.fixture
async def stamped() -> AsyncIterator[tuple[UpstreamState, int]]:
    """The stamping stand-in, served on a free port of this loop."""
    state = UpstreamState(chunk_delay=0.005)
    async with await listen(state) as server:
        yield state, server.sockets[0].getsockname()[1]


def spec(port: int, bodies: list[str], **options: Any) -> dict[str, Any]:
    requests = [{"headers": HEADERS, "body": body} for body in bodies]
    base = {"host": "127.0.0.1", "port": port, "path": "/v1/messages", "requests": requests}
    return {**base, "timeout": 10.0, "keep_chunks": 0, **options}


def test_request_bytes_close_the_connection() -> None:
    raw = encode_request("127.0.0.1", 80, "/api/generate", {"Cookie": "a=b"}, '{"prompt": "é"}')
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1:80\r\n")
    assert b"\r\nCookie: a=b\r\n" in head and b"\r\nConnection: close" in head
    assert b"\r\nContent-Length: 16" in head and body == '{"prompt": "é"}'.encode()


def test_head_gives_status_and_content_type() -> None:
    head = b"HTTP/1.1 402 Payment Required\r\ncontent-type: application/json\r\n\r\n"
    assert parse_head(head) == (402, "application/json")
    assert parse_head(b"HTTP/1.1 204 No Content\r\n\r\n") == (204, "")


async def test_streams_are_stamped_upstream_and_matched_downstream(stamped) -> None:
    state, port = stamped
    prompts = [f"Bench stream {number}" for number in range(3)]
    bodies = [message(prompt, stream=True) for prompt in prompts]
    outcome = await run(spec(port, bodies, keep_chunks=64))
    assert 1 <= outcome["peak_in_flight"] <= 3
    assert set(state.stamps) == set(prompts)
    for prompt, result in zip(prompts, outcome["results"], strict=True):
        assert result["status"] == 200 and result["error"] is None
        assert result["content_type"].startswith("text/event-stream")
        stamped_at, text = state.stamps[prompt]
        assert text and compose_reply(prompt, "claude-bench").startswith(text)
        arrived_at, fallback = first_text_at(result["chunks"], text)
        assert not fallback
        assert arrived_at is not None and stamped_at <= arrived_at  # sent before it arrived


async def test_plain_answers_are_not_stamped(stamped) -> None:
    state, port = stamped
    outcome = await run(spec(port, [message("Bench plain", stream=False)]))
    [result] = outcome["results"]
    assert result["status"] == 200 and result["content_type"] == "application/json"
    assert state.stamps == {}


async def test_refused_connections_are_counted_as_errors() -> None:
    outcome = await run(spec(find_free_port(), [message("nobody listens", stream=False)] * 2))
    assert [result["status"] for result in outcome["results"]] == [None, None]
    assert {result["error"] for result in outcome["results"]} == {"ConnectionRefusedError"}
    assert outcome["peak_in_flight"] == 0
