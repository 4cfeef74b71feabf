"""The lean Claude stand-in of the benchmarks, through the real SDK and raw sockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack

import anthropic
import pytest
from bench.harness.client import run
from bench.harness.services import HOST, Service
from bench.harness.upstream import IN_FLIGHT_PATH, STAMPS_PATH, start_upstream, upstream_call

from aigen.dev.anthropic import compose_reply, count_tokens, finish_reply
from aigen.dev.anthropic.answers import text_chunks

MODEL = "claude-bench"
HEADERS = {"x-api-key": "bench", "anthropic-version": "2023-06-01"}
HELD_CALLS = 2000


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The stand-in in its own process, as the suite starts it."""
    with ExitStack() as stack:
        log_dir = tmp_path_factory.mktemp("upstream")
        yield start_upstream(stack, log_dir=log_dir, chunk_delay_ms=5)


@pytest.fixture(params=["httpx", "aiohttp"])
async def claude(
    request: pytest.FixtureRequest, upstream: Service
) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The SDK on its default httpx client, and on aiohttp."""
    http_client = anthropic.DefaultAioHttpClient() if request.param == "aiohttp" else None
    async with anthropic.AsyncAnthropic(
        base_url=upstream.url, api_key="bench", max_retries=0, http_client=http_client
    ) as client:
        yield client


def port_of(service: Service) -> int:
    return int(service.url.rsplit(":", 1)[1])


def turn(prompt: str) -> list[anthropic.types.MessageParam]:
    return [{"role": "user", "content": prompt}]


def body_of(prompt: str, *, stream: bool = False) -> str:
    message = {"model": MODEL, "max_tokens": 64, "messages": turn(prompt), "stream": stream}
    return json.dumps(message)


def request_bytes(path: str, headers: dict[str, str], body: str, *, close: bool) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {len(body.encode())}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Connection: close"] if close else []
    return ("\r\n".join([*lines, "", ""])).encode() + body.encode()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict]:
    """Status and JSON body of one Content-Length answer."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    length = int(head.split("content-length:")[1].split("\r\n")[0])
    return int(head.split(" ")[1]), json.loads(await reader.readexactly(length))


async def test_create_answers_the_stand_ins_message(claude: anthropic.AsyncAnthropic) -> None:
    prompt = "Explain keep-alive in one paragraph"
    message = await claude.messages.create(model=MODEL, max_tokens=40, messages=turn(prompt))
    expected = finish_reply(compose_reply(prompt, MODEL), 40)
    assert message.id.startswith("msg_") and message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == expected.text  # type: ignore[union-attr]
    assert message.stop_reason == expected.stop_reason == "max_tokens"
    assert message.usage.input_tokens == count_tokens(prompt)
    assert message.usage.output_tokens == expected.output_tokens


async def test_stream_gives_text_and_usage_and_is_stamped(
    claude: anthropic.AsyncAnthropic, upstream: Service
) -> None:
    prompt = f"Stream me an answer through {type(claude._client).__name__}"
    expected = finish_reply(compose_reply(prompt, MODEL), 1024)
    async with claude.messages.stream(
        model=MODEL, max_tokens=1024, messages=turn(prompt)
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert pieces == text_chunks(expected.text)
    assert final.content[0].text == expected.text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == count_tokens(prompt)
    assert final.usage.output_tokens == expected.output_tokens
    stamps = await asyncio.to_thread(upstream_call, upstream.url, STAMPS_PATH)
    assert stamps[prompt][1] == pieces[0] and stamps[prompt][0] <= time.monotonic()


async def test_delay_directive_holds_the_answer(claude: anthropic.AsyncAnthropic) -> None:
    for stream in (False, True):
        started = time.monotonic()
        await claude.messages.create(
            model=MODEL, max_tokens=8, messages=turn("Wait [fake:delay=0.3]"), stream=stream
        )
        assert 0.3 <= time.monotonic() - started < 0.6


async def test_fail_directive_answers_its_error(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as raised:
        await claude.messages.create(model=MODEL, max_tokens=8, messages=turn("[fake:fail=529]"))
    assert raised.value.status_code == 529
    error = {"type": "overloaded_error", "message": "Overloaded"}
    assert raised.value.body == {
        "type": "error",
        "error": error,
        "request_id": raised.value.request_id,
    }
    assert raised.value.request_id and raised.value.request_id.startswith("req_01")


async def test_directives_it_does_not_play_are_refused(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match=r"\[fake:stall=2\]"):
        await claude.messages.create(model=MODEL, max_tokens=8, messages=turn("[fake:stall=2]"))


async def test_requests_in_pieces_on_one_connection_then_close(upstream: Service) -> None:
    reader, writer = await asyncio.open_connection(HOST, port_of(upstream))
    raw = request_bytes("/v1/messages", HEADERS, body_of("In pieces"), close=False)
    for start in range(0, len(raw), 40):
        writer.write(raw[start : start + 40])
        await writer.drain()
        await asyncio.sleep(0.005)
    status, message = await read_answer(reader)
    assert status == 200 and message["content"][0]["text"].startswith("## In pieces")
    writer.write(request_bytes("/v1/messages", HEADERS, body_of("Then close"), close=True))
    status, message = await read_answer(reader)
    assert status == 200 and message["type"] == "message"
    assert await reader.read() == b""  # the server closed the connection
    writer.close()


@pytest.mark.parametrize(
    ("path", "headers", "status", "kind"),
    [
        ("/v1/elsewhere", HEADERS, 404, "not_found_error"),
        ("/v1/messages", {"anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        ("/v1/messages", {"x-api-key": "bench"}, 400, "invalid_request_error"),
    ],
)
async def test_errors_in_anthropics_format(
    upstream: Service, path: str, headers: dict[str, str], status: int, kind: str
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port_of(upstream))
    writer.write(request_bytes(path, headers, body_of("Refused"), close=True))
    answered, error = await read_answer(reader)
    writer.close()
    assert answered == status and error["type"] == "error" and error["error"]["type"] == kind


async def test_a_client_that_leaves_leaves_the_count(upstream: Service) -> None:
    await asyncio.to_thread(upstream_call, upstream.url, IN_FLIGHT_PATH, "DELETE")
    reader, writer = await asyncio.open_connection(HOST, port_of(upstream))
    writer.write(request_bytes("/v1/messages", HEADERS, body_of("[fake:delay=30]"), close=True))
    assert await in_flight_once(upstream, lambda counts: counts["now"] == 1)
    writer.close()
    assert await in_flight_once(upstream, lambda counts: counts == {"now": 0, "peak": 1})


async def in_flight_once(upstream: Service, wanted: Callable[[dict[str, int]], bool]) -> bool:
    """Whether the in-flight counts reach `wanted` within two seconds."""
    for _ in range(200):
        if wanted(await asyncio.to_thread(upstream_call, upstream.url, IN_FLIGHT_PATH)):
            return True
        await asyncio.sleep(0.01)
    return False


async def test_thousands_of_delayed_calls_at_once(upstream: Service) -> None:
    await asyncio.to_thread(upstream_call, upstream.url, IN_FLIGHT_PATH, "DELETE")
    requests = [{"headers": HEADERS, "body": body_of("[fake:delay=2]")}] * HELD_CALLS
    spec = {"host": HOST, "port": port_of(upstream), "path": "/v1/messages"}
    outcome = await run({**spec, "requests": requests, "timeout": 30.0, "keep_chunks": 0})
    assert [result["status"] for result in outcome["results"]] == [200] * HELD_CALLS
    assert all(2.0 <= result["seconds"] < 10.0 for result in outcome["results"])
    counts = await asyncio.to_thread(upstream_call, upstream.url, IN_FLIGHT_PATH)
    assert counts == {"now": 0, "peak": HELD_CALLS}
