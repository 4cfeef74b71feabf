"""How the Claude client sets up the official SDK: its transport and its tracing."""

from __future__ import annotations

import anthropic
from opentelemetry import trace

from aigen.clients.claude import ClaudeClient, sdk_tracing


def claude_client() -> ClaudeClient:
    return ClaudeClient(
        api_key="test-key",
        base_url="http://127.0.0.1:9",
        model="m",
        max_tokens=64,
        timeout=5,
        max_connections=7,
    )


def test_no_spans_while_opentelemetry_is_not_set_up() -> None:
    assert sdk_tracing(trace.ProxyTracerProvider()) is False
    # The tests set no tracer provider: the client the app builds emits no spans.
    traces = claude_client()._sdk.open_telemetry["traces"]
    assert traces["enabled"] is False


def test_the_sdks_own_tracing_once_a_provider_is_set_up(monkeypatch) -> None:
    """A provider set up (as opentelemetry-instrument does) leaves the SDK's defaults and its
    ANTHROPIC_OPEN_TELEMETRY* variables in charge."""
    assert sdk_tracing(trace.NoOpTracerProvider()) is None
    monkeypatch.setattr(trace, "get_tracer_provider", trace.NoOpTracerProvider)
    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY_TRACES_CONTENT_MODE", "content")
    traces = claude_client()._sdk.open_telemetry["traces"]
    assert traces["enabled"] is True and traces["content_mode"] == "content"


async def test_calls_go_through_the_sdks_aiohttp_transport_with_our_limit() -> None:
    client = claude_client()
    try:
        http = client._sdk._client
        assert isinstance(http, anthropic.DefaultAioHttpClient)
        limits = http._transport.limits  # type: ignore[attr-defined]  # the aiohttp transport's
        assert limits.max_connections == limits.max_keepalive_connections == 7
    finally:
        await client.aclose()
