"""The fake Messages API, driven by the real anthropic SDK (and raw HTTP where the SDK hides it)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import anthropic
import httpx2
import pytest
from quart import Quart

from aigen.config import is_local_host
from aigen.dev.anthropic import (
    FakeAnthropicAdmin,
    FakeAnthropicServer,
    compose_reply,
    count_tokens,
    create_fake_anthropic_app,
    parse_args,
    tokenize,
)
from aigen.dev.anthropic.answers import split_evenly, text_chunks
from aigen.dev.anthropic.scenarios import plan_stream

if TYPE_CHECKING:
    from quart.typing import TestClientProtocol

MODEL = "claude-test-1"
PROMPT = "Explain rate limiting\nin two sentences, <b>please</b>."
HEADERS = {"x-api-key": "test", "anthropic-version": "2023-06-01"}
SHORT_TIMEOUT = 0.25
LOG_POLLS = 250
LOG_POLL_SECONDS = 0.02
TLS_CONTEXT = ssl.create_default_context()


def text_of(message: anthropic.types.Message) -> str:
    """The text of a message's first block (the fake answers one text block)."""
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock), block
    return block.text


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropicServer]:
    """One fake server for the module, in its own thread."""
    with FakeAnthropicServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_fake(request: pytest.FixtureRequest) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").clear()


@pytest.fixture
async def claude(fake: FakeAnthropicServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The real SDK client pointed at the fake, without retries."""
    # A shared TLS context: building one per client (loading the CA bundle) costs ~35 ms a test.
    http_client = anthropic.DefaultAsyncHttpxClient(verify=TLS_CONTEXT)
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="test", max_retries=0, timeout=5, http_client=http_client
    ) as client:
        yield client


@pytest.fixture
async def fake_app() -> AsyncIterator[Quart]:
    """The fake as a Quart app, for raw wire checks without a socket."""
    app = create_fake_anthropic_app()
    async with app.test_app():
        yield app


@pytest.fixture
def wire(fake_app: Quart) -> TestClientProtocol:
    """A Quart test client of the fake app."""
    return fake_app.test_client()


async def ask(claude: anthropic.AsyncAnthropic, prompt: str = PROMPT, **options: Any) -> Any:
    """Call messages.create with sensible defaults."""
    options.setdefault("max_tokens", 1024)
    return await claude.messages.create(
        model=options.pop("model", MODEL), messages=[{"role": "user", "content": prompt}], **options
    )


async def stream_events(claude: anthropic.AsyncAnthropic, prompt: str = PROMPT) -> list[Any]:
    """Collect the raw events of create(stream=True)."""
    stream = await ask(claude, prompt, stream=True)
    return [event async for event in stream]


async def logged_stream(fake: FakeAnthropicServer, index: int = -1) -> dict[str, Any]:
    """The log entry of a streamed call, once the server has seen its stream end."""
    for _ in range(LOG_POLLS):
        entry = fake.requests()[index]
        if entry["stream_outcome"] is not None:
            return entry
        await asyncio.sleep(LOG_POLL_SECONDS)
    raise AssertionError(f"the stream never ended on the server: {entry}")


# --- answers -----------------------------------------------------------------------------------


async def test_message_has_the_real_api_shape(claude: anthropic.AsyncAnthropic) -> None:
    raw = await claude.messages.with_raw_response.create(
        model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": PROMPT}]
    )
    body = json.loads(await raw.text())
    assert set(body) == {
        "id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"
    }  # fmt: skip
    assert body["id"].startswith("msg_") and body["type"] == "message"
    assert body["role"] == "assistant" and body["model"] == MODEL
    assert [block["type"] for block in body["content"]] == ["text"]
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    assert raw.headers["request-id"].startswith("req_")
    message = await raw.parse()
    assert isinstance(message, anthropic.types.Message)


async def test_answer_is_markdown_quoting_the_first_line(claude: anthropic.AsyncAnthropic) -> None:
    text = (await ask(claude)).content[0].text
    assert text.startswith("## Explain rate limiting")
    assert "“Explain rate limiting”" in text
    assert "\n- " in text


async def test_answer_is_a_pure_function_of_prompt_and_model(
    claude: anthropic.AsyncAnthropic,
) -> None:
    first, again = (await ask(claude)).content[0].text, (await ask(claude)).content[0].text
    other_prompt = (await ask(claude, "Something else")).content[0].text
    other_model = (await ask(claude, model="claude-other")).content[0].text
    assert first == again == compose_reply(PROMPT, MODEL)
    assert len({first, other_prompt, other_model}) == 3


async def test_usage_counts_tokens_of_system_and_every_turn(
    claude: anthropic.AsyncAnthropic,
) -> None:
    message = await claude.messages.create(
        model=MODEL,
        max_tokens=1024,
        system="Be brief.",
        messages=[
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": PROMPT}]},
        ],
    )
    expected_input = sum(map(count_tokens, ["Be brief.", "Hi there", "Hello!", PROMPT]))
    assert message.usage.input_tokens == expected_input
    assert message.usage.output_tokens == count_tokens(text_of(message))
    assert text_of(message) == compose_reply(PROMPT, MODEL)


def test_tokens_are_words_or_punctuation_with_leading_space() -> None:
    assert tokenize("Hello, world!") == ["Hello", ",", " world", "!"]
    assert "".join(tokenize(compose_reply(PROMPT, MODEL))) == compose_reply(PROMPT, MODEL)


async def test_max_tokens_truncates(claude: anthropic.AsyncAnthropic) -> None:
    message = await ask(claude, max_tokens=5)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5
    assert compose_reply(PROMPT, MODEL).startswith(text_of(message))
    assert count_tokens(text_of(message)) == 5


async def test_stop_sequence_cuts_the_answer(claude: anthropic.AsyncAnthropic) -> None:
    message = await ask(claude, stop_sequences=["You asked"])
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "You asked"
    assert text_of(message) == "## Explain rate limiting in two sentences\n\n"


# --- streaming ---------------------------------------------------------------------------------


async def test_stream_sends_the_real_event_sequence(claude: anthropic.AsyncAnthropic) -> None:
    events = await stream_events(claude)
    types = [event.type for event in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"} and len(types[2:-3]) > 5
    assert events[0].message.usage.input_tokens == count_tokens(PROMPT)
    assert events[-2].delta.stop_reason == "end_turn"
    text = "".join(event.delta.text for event in events[2:-3])
    assert events[-2].usage.output_tokens == count_tokens(text)


async def test_stream_wire_format_has_ping_and_sse_headers(wire: TestClientProtocol) -> None:
    body = {"model": MODEL, "max_tokens": 20, "stream": True, "messages": [
        {"role": "user", "content": "hi"}
    ]}  # fmt: skip
    response = await wire.post("/v1/messages", json=body, headers=HEADERS)
    assert response.status_code == 200
    assert response.content_type.startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    raw = await response.get_data(as_text=True)
    names = [line.removeprefix("event: ") for line in raw.splitlines() if line.startswith("event:")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-1] == "message_stop"
    assert 'data: {"type": "ping"}' in raw


async def test_stream_text_equals_the_plain_answer(claude: anthropic.AsyncAnthropic) -> None:
    for max_tokens in (1024, 7):
        plain = await ask(claude, max_tokens=max_tokens)
        async with claude.messages.stream(
            model=MODEL, max_tokens=max_tokens, messages=[{"role": "user", "content": PROMPT}]
        ) as stream:
            streamed = "".join([text async for text in stream.text_stream])
            final = await stream.get_final_message()
        assert streamed == text_of(final) == text_of(plain)
        assert final.stop_reason == plain.stop_reason
        assert final.usage.input_tokens == plain.usage.input_tokens
        assert final.usage.output_tokens == plain.usage.output_tokens


async def test_latency_and_chunk_delay_slow_the_answer() -> None:
    app = create_fake_anthropic_app(latency_ms=100, chunk_delay_ms=10)
    body = {"model": MODEL, "max_tokens": 12, "stream": True, "messages": [
        {"role": "user", "content": "hi"}
    ]}  # fmt: skip
    async with app.test_app():
        started = time.perf_counter()
        response = await app.test_client().post("/v1/messages", json=body, headers=HEADERS)
        await response.get_data()
    # 12 tokens are 3 deltas, so 2 pauses between them
    assert time.perf_counter() - started >= 0.1 + 2 * 0.01


# --- faults ------------------------------------------------------------------------------------

STATUS_ERRORS = [
    (400, anthropic.BadRequestError, "invalid_request_error"),
    (401, anthropic.AuthenticationError, "authentication_error"),
    (403, anthropic.PermissionDeniedError, "permission_error"),
    (429, anthropic.RateLimitError, "rate_limit_error"),
    (500, anthropic.InternalServerError, "api_error"),
    (503, anthropic.ServiceUnavailableError, "api_error"),
    (504, anthropic.GatewayTimeoutError, "timeout_error"),
    (529, anthropic.OverloadedError, "overloaded_error"),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("status", "error_class", "error_type"), STATUS_ERRORS)
async def test_fail_answers_the_real_error(
    fake: FakeAnthropicServer,
    claude: anthropic.AsyncAnthropic,
    status: int,
    error_class: type[anthropic.APIStatusError],
    error_type: str,
    stream: bool,
) -> None:
    fake.set_scenario([{"type": "fail", "status": status}])
    with pytest.raises(error_class) as caught:
        await ask(claude, stream=stream)
    error = caught.value
    assert error.status_code == status and error.type == error_type
    assert isinstance(error.body, dict), error.body
    assert error.request_id and error.request_id == error.body["request_id"]
    assert error.body["type"] == "error"


async def test_rate_limit_says_when_to_retry(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "fail", "status": 429, "retry_after": 7}])
    with pytest.raises(anthropic.RateLimitError) as caught:
        await ask(claude)
    assert caught.value.response.headers["retry-after"] == "7"


async def test_error_code_selects_the_sdk_subclass(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "fail", "status": 429, "error_code": "ramp_limit_exceeded"}])
    with pytest.raises(anthropic.RateLimitError) as caught:
        await ask(claude)
    assert caught.value.error_code == "ramp_limit_exceeded"


async def test_delay_provokes_a_client_timeout(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "delay", "seconds": 5}])
    started = time.perf_counter()
    with pytest.raises(anthropic.APITimeoutError):
        await ask(claude, timeout=SHORT_TIMEOUT)
    assert time.perf_counter() - started < 2


async def test_short_delay_then_normal_answer(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "delay", "seconds": 0.05}])
    assert (await ask(claude)).content[0].text == compose_reply(PROMPT, MODEL)


async def test_malformed_html_comes_back_as_a_plain_str(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "malformed"}])
    answer = await ask(claude)
    assert isinstance(answer, str) and "502 Bad Gateway" in answer


async def test_malformed_json_raises_a_bare_decode_error(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "malformed", "content_type": "application/json"}])
    with pytest.raises(json.JSONDecodeError):
        await ask(claude)


async def test_malformed_stream_yields_no_events(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "malformed"}])
    assert await stream_events(claude) == []


@pytest.mark.parametrize("stream", [False, True])
async def test_reply_scripts_the_answer(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic, stream: bool
) -> None:
    hostile = '# Hi\n\n<script>alert(1)</script> [x](javascript:alert(2)) <img src=x onerror="y">'
    fake.set_scenario([{"type": "reply", "text": hostile}])
    if stream:
        events = await stream_events(claude)
        text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    else:
        text = (await ask(claude)).content[0].text
    assert text == hostile


async def test_reply_respects_max_tokens(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "reply", "text": "one two three four"}])
    message = await ask(claude, max_tokens=2)
    assert text_of(message) == "one two" and message.stop_reason == "max_tokens"


async def test_stream_stall_times_out_after_the_first_events(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "stream_stall"}])
    stream = await ask(claude, stream=True, timeout=SHORT_TIMEOUT)
    seen = []
    with pytest.raises(httpx2.ReadTimeout):
        async for event in stream:
            seen.append(event.type)
    assert seen == ["message_start", "content_block_start"] + ["content_block_delta"] * 2


async def test_stream_disconnect_drops_the_connection(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "stream_disconnect"}])
    seen = []
    with pytest.raises(httpx2.RemoteProtocolError):
        async for event in await ask(claude, stream=True):
            seen.append(event.type)
    assert seen[0] == "message_start" and "message_stop" not in seen


@pytest.mark.parametrize(
    ("behavior", "error_class"),
    [
        ("stream_disconnect", anthropic.APIConnectionError),
        ("stream_stall", anthropic.APITimeoutError),
    ],
)
async def test_stream_faults_on_a_plain_call(
    fake: FakeAnthropicServer,
    claude: anthropic.AsyncAnthropic,
    behavior: str,
    error_class: type[Exception],
) -> None:
    fake.set_scenario([{"type": behavior}])
    with pytest.raises(error_class):
        await ask(claude, timeout=SHORT_TIMEOUT)


async def test_stream_error_event_raises_status_error_with_status_200(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "stream_error", "status": 529}])
    with pytest.raises(anthropic.APIStatusError) as caught:
        await stream_events(claude)
    # The SDK picks the class from the HTTP status, which was 200 when the stream began.
    assert type(caught.value) is anthropic.APIStatusError
    assert caught.value.status_code == 200 and caught.value.type == "overloaded_error"


# --- streaming pace, faults at a chosen delta, and how the server saw the stream end ------------


async def sdk_stream(
    claude: anthropic.AsyncAnthropic, prompt: str = PROMPT, **options: Any
) -> tuple[list[str], Any]:
    """Run messages.stream to its end; return the text deltas and the final message."""
    async with claude.messages.stream(
        model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": prompt}], **options
    ) as stream:
        texts = [event.text async for event in stream if event.type == "text"]
        return texts, await stream.get_final_message()


async def sdk_stream_until_error(
    claude: anthropic.AsyncAnthropic, error_class: type[Exception], prompt: str = PROMPT
) -> list[str]:
    """Run messages.stream until it raises ``error_class``; return the text deltas seen."""
    texts: list[str] = []
    with pytest.raises(error_class):
        async with claude.messages.stream(
            model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": prompt}]
        ) as stream:
            async for event in stream:
                if event.type == "text":
                    texts.append(event.text)
    return texts


def test_split_evenly_gives_exactly_the_parts_asked_for() -> None:
    assert split_evenly("one two three four five", 2) == ["one two three", " four five"]
    assert split_evenly("one two", 4) == ["on", "e ", "tw", "o"]
    reply = compose_reply(PROMPT, MODEL)
    for parts in (1, 5, len(tokenize(reply)) + 3):
        pieces = split_evenly(reply, parts)
        assert len(pieces) == parts and "".join(pieces) == reply and all(pieces)
    assert split_evenly("ab", 5) == ["a", "b"]
    assert split_evenly("", 3) == []


@pytest.mark.parametrize("deltas", [1, 3, 17])
async def test_stream_paced_sends_exactly_n_deltas(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic, deltas: int
) -> None:
    fake.set_scenario([{"type": "stream_paced", "deltas": deltas, "interval": 0.001}])
    texts, final = await sdk_stream(claude)
    assert len(texts) == deltas
    assert "".join(texts) == text_of(final) == compose_reply(PROMPT, MODEL)
    assert final.stop_reason == "end_turn"
    entry = await logged_stream(fake)
    assert (entry["behavior"], entry["stream_outcome"]) == ("stream_paced", "completed")
    assert entry["deltas_sent"] == deltas


def test_stream_paced_waits_before_every_delta_and_others_between() -> None:
    paced = plan_stream({"type": "stream_paced", "deltas": 3, "interval": 0.5}, "a b c", 0.02)
    plain = plan_stream(None, "a b c d e f", 0.02)
    assert [paced.pause_before(index) for index in range(3)] == [0.5, 0.5, 0.5]
    assert [plain.pause_before(index) for index in range(2)] == [0.0, 0.02]


async def test_stream_paced_scripted_text_and_plain_call(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    paced = {"type": "stream_paced", "deltas": 3, "interval": 0, "text": "one two three four"}
    fake.set_scenario([paced, paced])
    texts, _ = await sdk_stream(claude)
    assert texts == ["one two", " three", " four"]
    assert (await ask(claude)).content[0].text == "one two three four"


@pytest.mark.parametrize("after", [0, 3])
async def test_stream_stall_after_k_deltas(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic, after: int
) -> None:
    fake.set_scenario([{"type": "stream_stall", "after": after}])
    texts = await sdk_stream_until_error(
        claude.with_options(timeout=SHORT_TIMEOUT), httpx2.ReadTimeout
    )
    assert len(texts) == after
    # The client gave up on the stalled stream and closed it; the server saw that.
    entry = await logged_stream(fake)
    assert (entry["stream_outcome"], entry["deltas_sent"]) == ("client_closed", after)


async def test_stream_stall_that_resumes_completes_the_answer(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "stream_stall", "after": 1, "seconds": 0.05, "resume": True}])
    texts, final = await sdk_stream(claude)
    assert "".join(texts) == text_of(final) == compose_reply(PROMPT, MODEL)
    entry = await logged_stream(fake)
    assert (entry["stream_outcome"], entry["deltas_sent"]) == ("completed", len(texts))


@pytest.mark.parametrize("after", [0, 3])
async def test_stream_error_after_k_deltas(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic, after: int
) -> None:
    fake.set_scenario([{"type": "stream_error", "status": 500, "after": after}])
    texts = await sdk_stream_until_error(claude, anthropic.APIStatusError)
    assert len(texts) == after
    entry = await logged_stream(fake)
    assert (entry["stream_outcome"], entry["deltas_sent"]) == ("fault", after)


async def test_stream_disconnect_after_k_deltas(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "stream_disconnect", "after": 4}])
    texts = await sdk_stream_until_error(claude, httpx2.RemoteProtocolError)
    assert len(texts) == 4
    entry = await logged_stream(fake)
    assert (entry["stream_outcome"], entry["deltas_sent"]) == ("fault", 4)


async def test_fault_after_more_deltas_than_the_answer_has(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "stream_error", "after": 50, "text": "short answer"}])
    texts = await sdk_stream_until_error(claude, anthropic.APIStatusError)
    assert "".join(texts) == "short answer"


async def test_closing_the_sdk_stream_early_is_logged_as_client_closed(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    # After one delta the server holds the stream open (it would resume after an hour).
    fake.set_scenario([{"type": "stream_stall", "after": 1, "resume": True}])
    async with claude.messages.stream(
        model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        async for event in stream:
            if event.type == "text":
                break
    entry = await logged_stream(fake)
    assert (entry["stream_outcome"], entry["deltas_sent"]) == ("client_closed", 1)


async def test_stream_behaviors_list_their_defaults(fake: FakeAnthropicServer) -> None:
    stored = fake.set_scenario(
        [{"type": "stream_stall"}, {"type": "stream_error"}, {"type": "stream_paced"}]
    )
    assert stored == [
        {"type": "stream_stall", "seconds": 3600.0, "resume": False, "after": 2, "times": 1},
        {"type": "stream_error", "status": 529, "after": 2, "times": 1},
        {"type": "stream_paced", "deltas": 10, "interval": 0.5, "times": 1},
    ]


async def test_stream_directives(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    texts, _ = await sdk_stream(claude, "Pace it [fake:paced=3,0.001]")
    assert len(texts) == 3
    prompt = "Pause [fake:stall=0.01,1,true]"
    texts, _ = await sdk_stream(claude, prompt)
    assert "".join(texts) == compose_reply(prompt, MODEL)
    stalled = await logged_stream(fake)
    assert (stalled["behavior"], stalled["stream_outcome"]) == ("stream_stall", "completed")
    error_prompt = "[fake:stream_error=529,1]"
    assert len(await sdk_stream_until_error(claude, anthropic.APIStatusError, error_prompt)) == 1
    dropped = await sdk_stream_until_error(
        claude, httpx2.RemoteProtocolError, "[fake:disconnect=0]"
    )
    assert dropped == []


@pytest.mark.parametrize(
    "directive", ["[fake:paced=0]", "[fake:paced=2,x]", "[fake:stall=1,2,3,4]", "[fake:stall=,,x]"]
)
async def test_bad_stream_directives_are_400(
    claude: anthropic.AsyncAnthropic, directive: str
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="fake directive"):
        await ask(claude, directive, stream=True)


# --- scenario queue, directives and the request log -------------------------------------------


async def test_behaviors_are_consumed_in_order_with_times(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario(
        [{"type": "fail", "status": 529, "times": 2}, {"type": "reply", "text": "ok"}]
    )
    for _ in range(2):
        with pytest.raises(anthropic.OverloadedError):
            await ask(claude)
    assert fake.admin.scenario() == [{"type": "reply", "text": "ok", "times": 1}]
    assert (await ask(claude)).content[0].text == "ok"
    assert (await ask(claude)).content[0].text == compose_reply(PROMPT, MODEL)
    assert fake.admin.scenario() == []


async def test_clear_drops_the_queue(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "fail", "status": 500}])
    fake.clear()
    assert (await ask(claude)).stop_reason == "end_turn"


@pytest.mark.parametrize(
    ("directive", "error_class"),
    [
        ("[fake:fail=529]", anthropic.OverloadedError),
        ("[fake:fail=429]", anthropic.RateLimitError),
        ("[fake:delay=5]", anthropic.APITimeoutError),
        ("[fake:stall]", anthropic.APITimeoutError),
        ("[fake:disconnect]", anthropic.APIConnectionError),
        ("[fake:fail=abc]", anthropic.BadRequestError),
        ("[fake:nonsense]", anthropic.BadRequestError),
    ],
)
async def test_prompt_directives_fail_that_one_call(
    claude: anthropic.AsyncAnthropic, directive: str, error_class: type[Exception]
) -> None:
    with pytest.raises(error_class):
        await ask(claude, f"Please {directive} now", timeout=SHORT_TIMEOUT)
    assert (await ask(claude)).stop_reason == "end_turn"


async def test_directive_malformed_and_reply(claude: anthropic.AsyncAnthropic) -> None:
    assert isinstance(await ask(claude, "[fake:malformed]"), str)
    assert (await ask(claude, "[fake:reply=**bold**]")).content[0].text == "**bold**"


async def test_queued_behavior_wins_over_a_directive(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "reply", "text": "queued"}])
    assert (await ask(claude, "[fake:fail=529]")).content[0].text == "queued"


async def test_request_log_records_each_call(
    fake: FakeAnthropicServer, claude: anthropic.AsyncAnthropic
) -> None:
    fake.set_scenario([{"type": "fail", "status": 500}])
    with pytest.raises(anthropic.InternalServerError):
        await ask(claude, "first")
    await stream_events(claude, "second")
    first, second = fake.requests()
    assert (first["method"], first["path"], first["model"]) == ("POST", "/v1/messages", MODEL)
    assert (first["prompt"], first["stream"], first["behavior"]) == ("first", False, "fail")
    assert (second["prompt"], second["stream"], second["behavior"]) == ("second", True, None)
    assert first["time"] <= second["time"] <= time.time()
    assert (first["stream_outcome"], first["deltas_sent"]) == (None, None)
    second = await logged_stream(fake, 1)
    expected_deltas = len(text_chunks(compose_reply("second", MODEL)))
    assert (second["stream_outcome"], second["deltas_sent"]) == ("completed", expected_deltas)
    fake.clear()
    assert fake.requests() == []


@pytest.mark.parametrize(
    "behaviors",
    [
        [{"type": "explode"}],
        [{"type": "fail"}],
        [{"type": "fail", "status": 200}],
        [{"type": "delay", "seconds": -1}],
        [{"type": "reply", "text": "x", "times": 0}],
        [{"type": "stream_paced", "deltas": 0}],
        [{"type": "stream_paced", "interval": "fast"}],
        [{"type": "stream_error", "after": -1}],
        [{"type": "stream_disconnect", "after": 1.5}],
        [{"type": "stream_stall", "resume": "yes"}],
        "not a list",
    ],
)
def test_scenario_rejects_bad_behaviors(fake: FakeAnthropicServer, behaviors: Any) -> None:
    with pytest.raises(ValueError, match="/_fake/scenario"):
        FakeAnthropicAdmin(fake.url).set_scenario(behaviors)
    assert fake.admin.scenario() == []


# --- request validation ------------------------------------------------------------------------

GOOD_BODY = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": None}, "model"),
        ({"model": ""}, "model"),
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"messages": None}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": ["hi"]}, "messages.0"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": " "}]}, "messages.0"),
        ({"messages": [{"role": "user", "content": [{"type": "image"}]}]}, "messages.0.content.0"),
        ({"system": 3}, "system"),
        ({"stream": "yes"}, "stream"),
        ({"stop_sequences": "END"}, "stop_sequences"),
    ],
)
async def test_bad_bodies_are_400(wire: TestClientProtocol, change: dict, message: str) -> None:
    body = {key: value for key, value in (GOOD_BODY | change).items() if value is not None}
    response = await wire.post("/v1/messages", json=body, headers=HEADERS)
    assert response.status_code == 400
    payload = await response.get_json()
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["message"].startswith(message)
    assert payload["request_id"] == response.headers["request-id"]


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b"null"])
async def test_non_object_bodies_are_400(wire: TestClientProtocol, data: bytes) -> None:
    response = await wire.post("/v1/messages", data=data, headers=HEADERS)
    assert response.status_code == 400


async def test_sdk_sees_bad_request_for_an_invalid_body(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        await ask(claude, max_tokens=0)


async def test_missing_api_key_is_401(wire: TestClientProtocol) -> None:
    response = await wire.post(
        "/v1/messages", json=GOOD_BODY, headers={"anthropic-version": "2023-06-01"}
    )
    assert response.status_code == 401
    assert (await response.get_json())["error"]["type"] == "authentication_error"
    assert response.headers["request-id"]


async def test_missing_version_header_is_400(wire: TestClientProtocol) -> None:
    response = await wire.post("/v1/messages", json=GOOD_BODY, headers={"x-api-key": "k"})
    assert response.status_code == 400


async def test_unknown_path_is_an_anthropic_404(wire: TestClientProtocol) -> None:
    response = await wire.post("/v1/complete", json=GOOD_BODY, headers=HEADERS)
    assert response.status_code == 404
    assert (await response.get_json())["error"]["type"] == "not_found_error"
    assert response.headers["request-id"]


# --- runner and command line -------------------------------------------------------------------


def test_server_knows_its_real_port(fake: FakeAnthropicServer) -> None:
    assert fake.url.startswith("http://127.0.0.1:") and not fake.url.endswith(":0")
    assert fake.base_url == fake.url


def test_server_can_be_stopped_twice_and_url_needs_start() -> None:
    server = FakeAnthropicServer()
    with pytest.raises(RuntimeError):
        _ = server.url
    server.start()
    assert server.requests() == []
    server.stop()
    server.stop()


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
    ],
)
def test_cli_binds_only_to_loopback(host: str, allowed: bool) -> None:
    assert is_local_host(host) is allowed
    if allowed:
        assert parse_args(["--host", host]).host == host
    else:
        with pytest.raises(SystemExit):
            parse_args(["--host", host])
        assert parse_args(["--host", host, "--allow-remote"]).allow_remote


def test_cli_defaults() -> None:
    args = parse_args(["--port", "0", "--latency-ms", "5", "--chunk-delay-ms", "1"])
    assert (args.host, args.port, args.latency_ms, args.chunk_delay_ms) == ("127.0.0.1", 0, 5, 1)


@pytest.fixture
def fake_process() -> Iterator[str]:
    """The fake run by its command line in a child process; yields its URL."""
    command = [sys.executable, "-m", "aigen.dev.anthropic", "--port", "0", "--latency-ms", "1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            announced = re.search(r"http://127\.0\.0\.1:\d+", process.stdout.readline())
            assert announced, "the fake did not announce its URL"
            yield announced.group(0)
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=5) == 0


async def test_cli_serves_and_is_driven_from_another_process(fake_process: str) -> None:
    admin = FakeAnthropicAdmin(fake_process)
    admin.set_scenario([{"type": "reply", "text": "from afar"}])
    async with anthropic.AsyncAnthropic(
        base_url=fake_process, api_key="test", max_retries=0, timeout=5
    ) as claude:
        assert (await ask(claude)).content[0].text == "from afar"
    assert [entry["behavior"] for entry in admin.requests()] == ["reply"]
