"""The Stripe stand-in's wire helpers: form decoding, signatures, periods, command line."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl

import pytest
import stripe

from aigen.dev.stripe.objects import add_interval
from aigen.dev.stripe.protocol import StripeError, invalid_api_key, parse_form
from aigen.dev.stripe.server import DEFAULT_API_KEY, DEFAULT_PORT, parse_args
from aigen.dev.stripe.webhooks import _post, delivery_client, event_payload, signature_header


def form(query: str) -> dict[str, object]:
    """Decode a form-encoded string as the stand-in does."""
    return parse_form(parse_qsl(query, keep_blank_values=True))


def test_nested_hashes_and_indexed_arrays() -> None:
    decoded = form(
        "mode=subscription&line_items[0][price]=price_a&line_items[0][quantity]=1"
        "&line_items[1][price]=price_b&metadata[user_id]=42&subscription_data[metadata][k]=v"
    )
    assert decoded == {
        "mode": "subscription",
        "line_items": [{"price": "price_a", "quantity": "1"}, {"price": "price_b"}],
        "metadata": {"user_id": "42"},
        "subscription_data": {"metadata": {"k": "v"}},
    }


def test_indexes_order_numerically_and_brackets_append() -> None:
    pairs = [(f"expand[{index}]", f"p{index}") for index in range(12)][::-1]
    assert parse_form(pairs) == {"expand": [f"p{index}" for index in range(12)]}
    assert form("expand[]=customer&expand[]=subscription") == {
        "expand": ["customer", "subscription"]
    }


def test_blank_values_are_kept_for_unsetting() -> None:
    assert form("metadata[user_id]=&customer_email=") == {
        "metadata": {"user_id": ""},
        "customer_email": "",
    }


def test_what_the_sdk_encodes_decodes_back() -> None:
    params = {"line_items": [{"price": "p", "quantity": 2}], "metadata": {"a": "b"}, "x": True}
    encoded = stripe._encode._api_encode(params)  # the SDK's own form encoder
    assert parse_form((key, str(value)) for key, value in encoded) == {
        "line_items": [{"price": "p", "quantity": "2"}],
        "metadata": {"a": "b"},
        "x": "true",
    }


@pytest.mark.parametrize("query", ["a=1&a[b]=2", "a[b]=2&a=1", "a]=1", "[a]=1"])
def test_conflicting_or_malformed_keys_are_invalid(query: str) -> None:
    with pytest.raises(StripeError) as caught:
        form(query)
    assert caught.value.status == 400


def test_signature_is_what_the_sdk_verifies() -> None:
    payload = event_payload({"id": "evt_1", "object": "event", "type": "ping"})
    header = signature_header(payload, "whsec_abc", timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    tolerance = 2**40  # the fixed timestamp is long past; only the HMAC is being checked
    assert stripe.WebhookSignature.verify_header(payload.decode(), header, "whsec_abc", tolerance)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload.decode(), header, "whsec_abd", tolerance)
    expected = stripe.WebhookSignature._compute_signature(
        f"1700000000.{payload.decode()}", "whsec_abc"
    )
    assert header.endswith(expected)


@pytest.mark.parametrize(
    ("start", "interval", "count", "end"),
    [
        ("2025-01-31", "month", 1, "2025-02-28"),
        ("2024-01-31", "month", 1, "2024-02-29"),
        ("2025-11-15", "month", 3, "2026-02-15"),
        ("2024-02-29", "year", 1, "2025-02-28"),
        ("2025-03-01", "week", 2, "2025-03-15"),
        ("2025-12-31", "day", 1, "2026-01-01"),
    ],
)
def test_billing_periods_follow_the_calendar(
    start: str, interval: str, count: int, end: str
) -> None:
    begin = int(datetime.fromisoformat(start).replace(hour=9, tzinfo=UTC).timestamp())
    finish = datetime.fromtimestamp(add_interval(begin, interval, count), UTC)
    assert (finish.date().isoformat(), finish.hour) == (end, 9)


def test_invalid_key_message_shows_only_the_ends() -> None:
    message = invalid_api_key("sk_test_supersecretvalue9876").message
    assert message == "Invalid API Key provided: sk_test_****************9876"
    assert "secret" not in message
    assert invalid_api_key("short").message.endswith("*****")


async def test_an_unparseable_url_is_a_failed_attempt_not_a_crash() -> None:
    # Regression: httpx.InvalidURL is no httpx.HTTPError and once ended the delivery worker.
    async with delivery_client() as client:
        attempt = await _post(client, "http://[::1", b"{}", "whsec_x")
    assert attempt["succeeded"] is False and "InvalidURL" in attempt["error"]


def test_cli_refuses_a_bad_webhook_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--webhook-url", "localhost:5000/hook"])
    assert "http(s) URL" in capsys.readouterr().err


def test_cli_defaults_and_options() -> None:
    defaults = parse_args([])
    assert (defaults.port, defaults.api_key, defaults.webhook_url) == (
        DEFAULT_PORT,
        DEFAULT_API_KEY,
        None,
    )
    given = parse_args(["--port", "9", "--webhook-url", "http://h/w", "--webhook-secret", "s"])
    assert (given.port, given.webhook_url, given.webhook_secret) == (9, "http://h/w", "s")
