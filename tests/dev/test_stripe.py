"""The Stripe stand-in, driven by the real stripe SDK, raw HTTP and a local webhook receiver."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
import stripe
from stripe.params import SubscriptionListParams, checkout
from stripe.params.checkout import SessionCreateParams

from aigen.dev.serving import answers, find_free_port
from aigen.dev.stripe import (
    DEFAULT_API_KEY,
    DEFAULT_PRICE_ID,
    FakeStripeAdmin,
    FakeStripeAdminError,
    FakeStripeServer,
)
from tests.helpers import ROOT

RETRY_DELAYS = (0.01, 0.02)
SUCCESS_PATH = "/billing/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL_PATH = "/billing/cancelled"
RETURN_PATH = "/account"
SECRET = "whsec_test_secret"


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A small HTTP server on the test's loop: keeps every request, answers queued statuses."""

    def __init__(self, statuses: Sequence[int] = ()) -> None:
        self.statuses = deque(statuses)
        self.received: list[Received] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """The root URL."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    @property
    def webhook_url(self) -> str:
        """Where the stand-in posts events."""
        return self.url + "/webhooks/stripe"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def posts(self) -> list[Received]:
        """The webhook deliveries received."""
        return [item for item in self.received if item.path == "/webhooks/stripe"]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, path, _ = head[0].split(" ", 2)
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.received.append(Received(method, path, headers, body))
        status = self.statuses.popleft() if self.statuses else 200
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode()
        )
        await writer.drain()
        writer.close()


def verified_events(receiver: Receiver, secret: str = SECRET) -> list[stripe.Event]:
    """Every delivery received, checked and parsed by the SDK's own webhook code."""
    return [
        stripe.Webhook.construct_event(item.body, item.headers["stripe-signature"], secret)
        for item in receiver.posts()
    ]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripeServer]:
    """One stand-in for the module, retrying failed deliveries quickly."""
    with FakeStripeServer(webhook_secret=SECRET, retry_delays=RETRY_DELAYS) as server:
        yield server


@pytest.fixture
async def receiver(fake: FakeStripeServer) -> AsyncIterator[Receiver]:
    """A fresh webhook receiver, made the stand-in's target; the stand-in's logs emptied."""
    async with Receiver() as server:
        fake.webhook_url, fake.webhook_secret = server.webhook_url, SECRET
        await fake.clear()
        yield server
        await fake.wait_for_deliveries()


@pytest.fixture
async def client(fake: FakeStripeServer) -> AsyncIterator[stripe.StripeClient]:
    """The real SDK client pointed at the stand-in, async over httpx, without retries."""
    http_client = stripe.HTTPXClient()
    yield stripe.StripeClient(
        fake.api_key,
        base_addresses={"api": fake.api_base},
        http_client=http_client,
        max_network_retries=0,
    )
    await http_client.close_async()


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client standing in for the customer's browser."""
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


def checkout_params(receiver: Receiver, **overrides: Any) -> SessionCreateParams:
    """What the billing feature sends to start an upgrade to Pro, with ``overrides`` applied."""
    params: SessionCreateParams = {
        "mode": "subscription",
        "line_items": [{"price": DEFAULT_PRICE_ID, "quantity": 1}],
        "client_reference_id": "42",
        "metadata": {"user_id": "42"},
        "customer_email": "ada@example.com",
        "success_url": receiver.url + SUCCESS_PATH,
        "cancel_url": receiver.url + CANCEL_PATH,
    }
    # Overrides go beyond the SDK's type on purpose: unknown keys, wrong types, and None (which
    # the SDK leaves out of the request) are how the tests reach the stand-in's validation.
    return cast(SessionCreateParams, {**params, **overrides})


async def paid_session(
    client: stripe.StripeClient, browser: httpx.AsyncClient, receiver: Receiver, **overrides: Any
) -> stripe.checkout.Session:
    """Create a session, press Pay on its page, and return the session as it is afterwards."""
    session = await client.v1.checkout.sessions.create_async(checkout_params(receiver, **overrides))
    assert session.url is not None
    answer = await browser.post(session.url, data={"email": ""})
    assert answer.status_code == 303
    return await client.v1.checkout.sessions.retrieve_async(session.id)


# --- Checkout Sessions, prices, customers ----------------------------------------------------


async def test_checkout_session_has_stripe_shape(
    fake: FakeStripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    session = await client.v1.checkout.sessions.create_async(checkout_params(receiver))
    assert isinstance(session, stripe.checkout.Session)
    assert re.fullmatch(r"cs_test_[A-Za-z0-9]{24}", session.id)
    assert session.object == "checkout.session" and session.livemode is False
    assert session.url == f"{fake.url}/pay/{session.id}"
    assert (session.status, session.payment_status, session.mode) == (
        "open",
        "unpaid",
        "subscription",
    )
    assert session.customer is None and session.subscription is None
    assert session.customer_email == "ada@example.com"
    assert session.client_reference_id == "42"
    assert session.metadata is not None and session.metadata.to_dict() == {"user_id": "42"}
    assert session.success_url == receiver.url + SUCCESS_PATH
    assert (session.amount_total, session.currency) == (2000, "usd")
    assert session.expires_at > session.created


async def test_checkout_session_retrieved_with_line_items(
    client: stripe.StripeClient, receiver: Receiver
) -> None:
    created = await client.v1.checkout.sessions.create_async(checkout_params(receiver))
    session = await client.v1.checkout.sessions.retrieve_async(
        created.id, {"expand": ["line_items"]}
    )
    assert session.id == created.id
    assert session.metadata is not None and session.metadata.to_dict() == {"user_id": "42"}
    assert session.line_items is not None
    (item,) = session.line_items.data
    assert item.price is not None
    assert (item.quantity, item.amount_total, item.price.id) == (1, 2000, DEFAULT_PRICE_ID)
    listed = await client.v1.checkout.sessions.line_items.list_async(created.id)
    assert [line.id for line in listed.data] == [item.id]


async def test_default_price(client: stripe.StripeClient) -> None:
    price = await client.v1.prices.retrieve_async(DEFAULT_PRICE_ID)
    assert (price.object, price.type, price.active) == ("price", "recurring", True)
    assert (price.unit_amount, price.currency) == (2000, "usd")
    assert price.recurring is not None and price.recurring.interval == "month"
    assert price.product == "prod_aigen_pro"


async def test_price_set_at_run_time_is_served_and_charged(
    fake: FakeStripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    await fake.set_price("price_pro_yearly", unit_amount=19000, interval="year", currency="eur")
    price = await client.v1.prices.retrieve_async("price_pro_yearly")
    assert price.recurring is not None
    assert (price.unit_amount, price.currency, price.recurring.interval) == (19000, "eur", "year")
    items = [{"price": "price_pro_yearly", "quantity": 2}]
    session = await client.v1.checkout.sessions.create_async(
        checkout_params(receiver, line_items=items)
    )
    assert (session.amount_total, session.currency) == (38000, "eur")


@pytest.mark.parametrize(
    "fields",
    [{"unit_amount": -1}, {"interval": "fortnight"}, {"colour": "red"}, {"unit_amount": "20"}],
)
async def test_bad_price_is_refused(fake: FakeStripeServer, fields: dict[str, Any]) -> None:
    with pytest.raises(FakeStripeAdminError):
        await fake.set_price("price_bad", **fields)


def test_prices_given_at_construction() -> None:
    with FakeStripeServer(prices={"price_team": {"unit_amount": 5000}}) as server:
        client = stripe.StripeClient(server.api_key, base_addresses={"api": server.api_base})
        price = client.v1.prices.retrieve("price_team")
        assert price.recurring is not None
        assert (price.unit_amount, price.recurring.interval) == (5000, "month")
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.prices.retrieve(DEFAULT_PRICE_ID)


async def test_checkout_for_an_existing_customer_keeps_it(
    client: stripe.StripeClient, browser: httpx.AsyncClient, receiver: Receiver
) -> None:
    customer = await client.v1.customers.create_async(
        {"email": "bob@example.com", "metadata": {"user_id": "7"}}
    )
    assert customer.id.startswith("cus_")
    assert customer.metadata is not None and customer.metadata.to_dict() == {"user_id": "7"}
    session = await paid_session(
        client, browser, receiver, customer=customer.id, customer_email=None
    )
    assert session.customer == customer.id
    assert session.customer_details is not None
    assert session.customer_details.email == "bob@example.com"
    fetched = await client.v1.customers.retrieve_async(customer.id)
    assert fetched.email == "bob@example.com"


# --- errors ----------------------------------------------------------------------------------


async def test_wrong_key_is_refused_like_stripe(fake: FakeStripeServer) -> None:
    client = stripe.StripeClient("sk_test_wrong_key_1234", base_addresses={"api": fake.api_base})
    with pytest.raises(stripe.AuthenticationError) as caught:
        await client.v1.prices.retrieve_async(DEFAULT_PRICE_ID)
    assert caught.value.http_status == 401
    assert isinstance(caught.value.json_body, dict)
    error = caught.value.json_body["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Invalid API Key provided: sk_test_")
    assert error["message"].endswith("1234") and "wrong" not in error["message"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Token x"}])
async def test_missing_key_is_refused_like_stripe(
    fake: FakeStripeServer, browser: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    answer = await browser.get(f"{fake.url}/v1/prices/{DEFAULT_PRICE_ID}", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="Stripe"'
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("You did not provide an API key.")


async def test_basic_auth_key_is_accepted(
    fake: FakeStripeServer, browser: httpx.AsyncClient
) -> None:
    answer = await browser.get(f"{fake.url}/v1/prices/{DEFAULT_PRICE_ID}", auth=(fake.api_key, ""))
    assert answer.status_code == 200 and answer.json()["id"] == DEFAULT_PRICE_ID
    assert answer.headers["request-id"].startswith("req_")


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        ("checkout.sessions", "checkout.session"),
        ("prices", "price"),
        ("customers", "customer"),
        ("subscriptions", "subscription"),
        ("events", "event"),
    ],
)
async def test_unknown_id_is_resource_missing(
    client: stripe.StripeClient, call: str, kind: str
) -> None:
    service: Any = client.v1
    for name in call.split("."):
        service = getattr(service, name)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await service.retrieve_async("x_missing")
    assert caught.value.http_status == 404 and caught.value.code == "resource_missing"
    assert str(caught.value.user_message) == f"No such {kind}: 'x_missing'"


async def test_unknown_route_is_unrecognized(
    fake: FakeStripeServer, browser: httpx.AsyncClient
) -> None:
    answer = await browser.put(f"{fake.url}/v1/nothing/here", auth=(fake.api_key, ""))
    assert answer.status_code == 404
    assert answer.json()["error"]["message"].startswith("Unrecognized request URL (PUT: /v1/")


BAD_CHECKOUTS: list[tuple[dict[str, Any], str, str | None]] = [
    ({"mode": None}, "mode", "parameter_missing"),
    ({"mode": "setup"}, "mode", "parameter_invalid_string"),
    ({"line_items": None}, "line_items", "parameter_missing"),
    ({"colour": "red"}, "colour", "parameter_unknown"),
    ({"line_items": [{"price": "price_nope", "quantity": 1}]}, "line_items[0][price]",
     "resource_missing"),
    ({"line_items": [{"price": DEFAULT_PRICE_ID}]}, "line_items[0][quantity]", "parameter_missing"),
    ({"line_items": [{"price": DEFAULT_PRICE_ID, "quantity": "two"}]}, "line_items[0][quantity]",
     "parameter_invalid_integer"),
    ({"line_items": [{"price": DEFAULT_PRICE_ID, "quantity": 1, "size": "L"}]},
     "line_items[0][size]", "parameter_unknown"),
    ({"mode": "payment"}, "line_items", None),
    ({"customer": "cus_nope", "customer_email": None}, "customer", "resource_missing"),
    ({"customer": "cus_any"}, "customer_email", None),
    ({"success_url": "javascript:alert(1)"}, "success_url", "url_invalid"),
    ({"metadata": "user 42"}, "metadata", "parameter_invalid_hash"),
    ({"allow_promotion_codes": "yes"}, "allow_promotion_codes", "parameter_invalid_boolean"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "param", "code"), BAD_CHECKOUTS)
async def test_bad_checkout_params_are_invalid_request_errors(
    client: stripe.StripeClient,
    receiver: Receiver,
    overrides: dict[str, Any],
    param: str,
    code: str | None,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.create_async(checkout_params(receiver, **overrides))
    assert caught.value.http_status == 400
    assert (caught.value.param, caught.value.code) == (param, code)
    assert isinstance(caught.value.json_body, dict)
    assert caught.value.json_body["error"]["type"] == "invalid_request_error"


async def test_one_time_price_in_payment_mode(
    fake: FakeStripeServer, client: stripe.StripeClient, browser: httpx.AsyncClient,
    receiver: Receiver,
) -> None:  # fmt: skip
    await fake.set_price("price_credits", unit_amount=500, interval=None)
    items = [{"price": "price_credits", "quantity": 3}]
    session = await paid_session(client, browser, receiver, mode="payment", line_items=items)
    assert (session.status, session.amount_total, session.subscription) == ("complete", 1500, None)
    assert session.payment_intent is not None and str(session.payment_intent).startswith("pi_")


# --- idempotency -----------------------------------------------------------------------------


async def test_idempotency_key_replays_the_first_answer(
    client: stripe.StripeClient, receiver: Receiver
) -> None:
    params = checkout_params(receiver)
    options: stripe.RequestOptions = {"idempotency_key": "upgrade-42-a"}
    first = await client.v1.checkout.sessions.create_async(params, options)
    again = await client.v1.checkout.sessions.create_async(params, options)
    assert again.id == first.id
    assert again.last_response is not None
    assert again.last_response.headers["idempotent-replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError):
        await client.v1.checkout.sessions.create_async(
            checkout_params(receiver, client_reference_id="43"), options
        )


# --- paying: page, redirect, webhooks --------------------------------------------------------


async def test_pay_page_offers_pay_and_cancel(
    client: stripe.StripeClient, browser: httpx.AsyncClient, receiver: Receiver
) -> None:
    session = await client.v1.checkout.sessions.create_async(checkout_params(receiver))
    assert session.url is not None
    page = await browser.get(session.url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'<form method="post" action="/pay/{session.id}">' in page.text
    assert '<button type="submit">Pay</button>' in page.text
    assert f'<a href="{receiver.url}{CANCEL_PATH}">Cancel</a>' in page.text
    assert "20.00 USD / month" in page.text and "ada@example.com" in page.text


async def test_pay_completes_session_and_sends_signed_webhooks(
    fake: FakeStripeServer,
    client: stripe.StripeClient,
    browser: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    session = await client.v1.checkout.sessions.create_async(checkout_params(receiver))
    assert session.url is not None
    landed = await browser.post(session.url, data={"email": ""}, follow_redirects=True)
    assert landed.history[0].status_code == 303
    assert str(landed.url) == receiver.url + SUCCESS_PATH.replace(
        "{CHECKOUT_SESSION_ID}", session.id
    )
    deliveries = await fake.wait_for_deliveries()
    events = verified_events(receiver)
    assert [event.type for event in events] == [
        "customer.created", "checkout.session.completed", "customer.subscription.created"
    ]  # fmt: skip
    assert [d["status"] for d in deliveries] == ["succeeded"] * 3
    completed = events[1].data.object
    assert (completed.id, completed.status, completed.payment_status) == (
        session.id, "complete", "paid"
    )  # fmt: skip
    assert completed.client_reference_id == "42" and completed.metadata.to_dict() == {
        "user_id": "42"
    }
    assert completed.customer == events[0].data.object.id
    subscription = events[2].data.object
    assert completed.subscription == subscription.id and subscription.status == "active"
    assert subscription.customer == completed.customer


async def test_webhook_events_have_stripe_shape(
    fake: FakeStripeServer,
    client: stripe.StripeClient,
    browser: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    await paid_session(client, browser, receiver)
    await fake.wait_for_deliveries()
    post = receiver.posts()[0]
    assert post.method == "POST"
    assert post.headers["content-type"] == "application/json; charset=utf-8"
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", post.headers["stripe-signature"])
    event = json.loads(post.body)
    assert set(event) >= {"id", "object", "type", "created", "data", "api_version", "livemode"}
    assert event["id"].startswith("evt_") and event["object"] == "event"
    assert event["api_version"] == stripe.api_version and event["livemode"] is False
    stripe.WebhookSignature.verify_header(post.body.decode(), post.headers["stripe-signature"],
                                          SECRET)  # fmt: skip
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(post.body, post.headers["stripe-signature"], "whsec_other")


async def test_paid_session_and_subscription_read_back(
    client: stripe.StripeClient, browser: httpx.AsyncClient, receiver: Receiver
) -> None:
    session = await paid_session(client, browser, receiver)
    assert (session.status, session.payment_status, session.url) == ("complete", "paid", None)
    assert session.customer is not None and str(session.customer).startswith("cus_")
    expanded = await client.v1.checkout.sessions.retrieve_async(
        session.id, {"expand": ["subscription", "customer"]}
    )
    subscription = expanded.subscription
    assert isinstance(subscription, stripe.Subscription) and subscription.status == "active"
    assert isinstance(expanded.customer, stripe.Customer)
    assert expanded.customer.email == "ada@example.com"
    (item,) = subscription["items"].data
    assert item.price.id == DEFAULT_PRICE_ID and item.current_period_end > item.current_period_start
    fetched = await client.v1.subscriptions.retrieve_async(subscription.id)
    assert fetched.customer == session.customer


async def test_subscription_data_metadata_goes_to_the_subscription(
    client: stripe.StripeClient, browser: httpx.AsyncClient, receiver: Receiver
) -> None:
    session = await paid_session(
        client, browser, receiver, subscription_data={"metadata": {"user_id": "42"}}
    )
    assert session.subscription is not None
    subscription = await client.v1.subscriptions.retrieve_async(str(session.subscription))
    assert subscription.metadata.to_dict() == {"user_id": "42"}


async def test_email_typed_on_the_page_names_the_new_customer(
    client: stripe.StripeClient, browser: httpx.AsyncClient, receiver: Receiver
) -> None:
    session = await client.v1.checkout.sessions.create_async(
        checkout_params(receiver, customer_email=None)
    )
    assert session.url is not None
    await browser.post(session.url, data={"email": "typed@example.com"})
    paid = await client.v1.checkout.sessions.retrieve_async(session.id, {"expand": ["customer"]})
    assert isinstance(paid.customer, stripe.Customer)
    assert paid.customer.email == "typed@example.com"


async def test_a_session_is_paid_only_once(
    fake: FakeStripeServer,
    client: stripe.StripeClient,
    browser: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    session = await paid_session(client, browser, receiver)
    assert session.id is not None
    again = await browser.post(f"{fake.url}/pay/{session.id}", data={})
    assert again.status_code == 400 and "This Checkout Session is complete." in again.text
    page = await browser.get(f"{fake.url}/pay/{session.id}")
    assert "<button" not in page.text
    await fake.wait_for_deliveries()
    assert len(receiver.posts()) == 3


async def test_pay_page_of_unknown_session_is_404(
    fake: FakeStripeServer, browser: httpx.AsyncClient
) -> None:
    for answer in (
        await browser.get(f"{fake.url}/pay/cs_test_nope"),
        await browser.post(f"{fake.url}/pay/cs_test_nope"),
    ):
        assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")


async def test_expired_session_cannot_be_paid(
    fake: FakeStripeServer,
    client: stripe.StripeClient,
    browser: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    session = await client.v1.checkout.sessions.create_async(checkout_params(receiver))
    expired = await client.v1.checkout.sessions.expire_async(session.id)
    assert (expired.status, expired.url) == ("expired", None)
    answer = await browser.post(f"{fake.url}/pay/{session.id}")
    assert answer.status_code == 400
    await fake.wait_for_deliveries()
    (event,) = verified_events(receiver)
    assert event.type == "checkout.session.expired"
    assert event.request is not None and str(event.request.id).startswith("req_")
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.checkout.sessions.expire_async(session.id)


async def test_pages_escape_what_they_show(
    fake: FakeStripeServer,
    client: stripe.StripeClient,
    browser: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    await fake.set_price("price_odd", nickname="<script>alert(1)</script>")
    session = await client.v1.checkout.sessions.create_async(
        checkout_params(receiver, line_items=[{"price": "price_odd", "quantity": 1}])
    )
    assert session.url is not None
    page = (await browser.get(session.url)).text
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- customer portal -------------------------------------------------------------------------


async def test_portal_cancels_the_subscription(
    fake: FakeStripeServer,
    client: stripe.StripeClient,
    browser: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    session = await paid_session(client, browser, receiver)
    portal = await client.v1.billing_portal.sessions.create_async(
        {"customer": str(session.customer), "return_url": receiver.url + RETURN_PATH}
    )
    assert portal.object == "billing_portal.session" and portal.id.startswith("bps_")
    assert portal.url == f"{fake.url}/portal/{portal.id}" and portal.customer == session.customer
    page = await browser.get(portal.url)
    assert "Status: <strong>active</strong>" in page.text and "Cancel subscription" in page.text
    answer = await browser.post(
        f"{portal.url}/cancel", data={"subscription": str(session.subscription)}
    )
    assert answer.status_code == 303 and answer.headers["location"] == receiver.url + RETURN_PATH
    await fake.wait_for_deliveries()
    last = verified_events(receiver)[-1]
    assert last.type == "customer.subscription.deleted" and last.data.object.status == "canceled"
    subscription = await client.v1.subscriptions.retrieve_async(str(session.subscription))
    assert subscription.status == "canceled" and subscription.canceled_at is not None
    page = await browser.get(portal.url)
    assert (
        "Status: <strong>canceled</strong>" in page.text and "Cancel subscription" not in page.text
    )


async def test_portal_cannot_cancel_another_customers_subscription(
    fake: FakeStripeServer,
    client: stripe.StripeClient,
    browser: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    mine = await paid_session(client, browser, receiver)
    other = await client.v1.customers.create_async({"email": "eve@example.com"})
    portal = await client.v1.billing_portal.sessions.create_async({"customer": other.id})
    answer = await browser.post(
        f"{portal.url}/cancel", data={"subscription": str(mine.subscription)}
    )
    assert answer.status_code == 404
    subscription = await client.v1.subscriptions.retrieve_async(str(mine.subscription))
    assert subscription.status == "active"


async def test_portal_for_unknown_customer_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.billing_portal.sessions.create_async({"customer": "cus_nope"})
    assert (caught.value.http_status, caught.value.code, caught.value.param) == (
        400, "resource_missing", "customer"
    )  # fmt: skip


async def test_subscription_cancelled_through_the_api(
    fake: FakeStripeServer,
    client: stripe.StripeClient,
    browser: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    session = await paid_session(client, browser, receiver)
    cancelled = await client.v1.subscriptions.cancel_async(str(session.subscription))
    assert cancelled.status == "canceled"
    await fake.wait_for_deliveries()
    assert verified_events(receiver)[-1].type == "customer.subscription.deleted"
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.subscriptions.cancel_async(str(session.subscription))


async def test_subscriptions_listed_by_customer_and_status(
    client: stripe.StripeClient, browser: httpx.AsyncClient, receiver: Receiver
) -> None:
    customer = await client.v1.customers.create_async({"email": "two@example.com"})
    first, second = [
        await paid_session(client, browser, receiver, customer=customer.id, customer_email=None)
        for _ in range(2)
    ]
    await client.v1.subscriptions.cancel_async(str(first.subscription))
    other = await paid_session(client, browser, receiver)  # another customer's

    async def listed(**params: Any) -> list[str]:
        query = cast(SubscriptionListParams, {"customer": customer.id, **params})
        found = await client.v1.subscriptions.list_async(query)
        assert found.to_dict()["object"] == "list" and found.url == "/v1/subscriptions"
        return [subscription.id for subscription in found.data]

    assert await listed() == [second.subscription]  # by default: all but the canceled
    assert await listed(status="active") == [second.subscription]
    assert await listed(status="canceled") == [first.subscription]
    assert await listed(status="trialing") == []
    assert await listed(status="all") == [second.subscription, first.subscription]  # newest first
    page = await client.v1.subscriptions.list_async(
        {"customer": customer.id, "status": "all", "limit": 1}
    )
    assert [s.id for s in page.data] == [second.subscription] and page.has_more is True
    everyone = await client.v1.subscriptions.list_async({"status": "all", "limit": 100})
    assert other.subscription in [s.id for s in everyone.data]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.subscriptions.list_async({"status": "sleeping"})  # type: ignore[typeddict-item]
    assert caught.value.param == "status"


async def test_checkout_sessions_listed_by_customer_and_status(
    client: stripe.StripeClient, browser: httpx.AsyncClient, receiver: Receiver
) -> None:
    customer = await client.v1.customers.create_async({"email": "tabs@example.com"})
    mine = {"customer": customer.id, "customer_email": None}
    paid = await paid_session(client, browser, receiver, **mine)
    expired, still_open = [
        await client.v1.checkout.sessions.create_async(checkout_params(receiver, **mine))
        for _ in range(2)
    ]
    await client.v1.checkout.sessions.expire_async(expired.id)
    await client.v1.checkout.sessions.create_async(checkout_params(receiver))  # someone else's

    async def listed(**params: Any) -> list[str]:
        query = cast(checkout.SessionListParams, {"customer": customer.id, **params})
        found = await client.v1.checkout.sessions.list_async(query)
        assert found.to_dict()["object"] == "list" and found.url == "/v1/checkout/sessions"
        return [session.id for session in found.data]

    assert await listed() == [still_open.id, expired.id, paid.id]  # newest first
    assert await listed(status="open") == [still_open.id]
    assert await listed(status="expired") == [expired.id]
    assert await listed(status="complete") == [paid.id]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.list_async({"status": "paid"})  # type: ignore[typeddict-item]
    assert caught.value.param == "status"


# --- admin: custom events, replays, retries, the target --------------------------------------


async def test_custom_event_changes_the_subscription(
    fake: FakeStripeServer,
    client: stripe.StripeClient,
    browser: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    session = await paid_session(client, browser, receiver)
    sent = await fake.send_event(
        "customer.subscription.updated", str(session.subscription), changes={"status": "unpaid"}
    )
    await fake.wait_for_deliveries()
    event = verified_events(receiver)[-1]
    assert event.id == sent["id"] and event.type == "customer.subscription.updated"
    assert event.data.object.status == "unpaid"
    assert event.data.previous_attributes is not None
    assert event.data.previous_attributes.to_dict() == {"status": "active"}
    subscription = await client.v1.subscriptions.retrieve_async(str(session.subscription))
    assert subscription.status == "unpaid"
    fetched = await client.v1.events.retrieve_async(sent["id"])
    assert fetched.type == "customer.subscription.updated"


async def test_custom_event_with_a_given_object(fake: FakeStripeServer, receiver: Receiver) -> None:
    invoice = {"id": "in_test_1", "object": "invoice", "status": "open", "customer": "cus_x"}
    await fake.send_event("invoice.payment_failed", data_object=invoice)
    await fake.wait_for_deliveries()
    (event,) = verified_events(receiver)
    assert event.type == "invoice.payment_failed" and event.data.object.id == "in_test_1"


@pytest.mark.parametrize(
    ("event_type", "object_id", "changes"),
    [
        ("not an event", "sub_x", None),
        ("customer.subscription.updated", "sub_missing", None),
        ("customer.subscription.updated", None, None),
    ],
)
async def test_bad_custom_events_are_refused(
    fake: FakeStripeServer, event_type: str, object_id: str | None, changes: Any
) -> None:
    with pytest.raises(FakeStripeAdminError):
        await fake.send_event(event_type, object_id, changes=changes)


async def test_unknown_field_change_is_refused(
    fake: FakeStripeServer,
    client: stripe.StripeClient,
    browser: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    session = await paid_session(client, browser, receiver)
    with pytest.raises(FakeStripeAdminError, match="colour"):
        await fake.send_event(
            "customer.subscription.updated", str(session.subscription), changes={"colour": "red"}
        )


async def test_replay_sends_the_same_event_again(
    fake: FakeStripeServer,
    client: stripe.StripeClient,
    browser: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    await paid_session(client, browser, receiver)
    await fake.wait_for_deliveries()
    completed = verified_events(receiver)[1]
    delivery = await fake.replay_event(completed.id)
    await fake.wait_for_deliveries()
    replayed = verified_events(receiver)[-1]
    assert delivery["event_id"] == replayed.id == completed.id
    assert replayed.to_dict() == completed.to_dict()
    assert len(receiver.posts()) == 4


async def test_failed_delivery_is_retried(
    fake: FakeStripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    receiver.statuses.extend([500, 503])
    customer = await client.v1.customers.create_async({"email": "c@example.com"})
    (delivery,) = await fake.wait_for_deliveries()
    assert delivery["status"] == "succeeded"
    assert [attempt["status"] for attempt in delivery["attempts"]] == [500, 503, 200]
    assert [event.data.object.id for event in verified_events(receiver)] == [customer.id] * 3


async def test_delivery_gives_up_after_the_retries(
    fake: FakeStripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    receiver.statuses.extend([500] * 5)
    await client.v1.customers.create_async({"email": "c@example.com"})
    (delivery,) = await fake.wait_for_deliveries()
    assert delivery["status"] == "failed" and len(delivery["attempts"]) == 1 + len(RETRY_DELAYS)
    async with Receiver() as gone:  # closed at once: a refused connection is a failure too
        fake.webhook_url = gone.webhook_url
    await client.v1.customers.create_async({"email": "d@example.com"})
    deliveries = await fake.wait_for_deliveries()
    assert deliveries[-1]["status"] == "failed"
    assert all(attempt["error"] for attempt in deliveries[-1]["attempts"])


async def test_webhook_target_changes_at_run_time(
    fake: FakeStripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    async with Receiver() as other:
        fake.webhook_url, fake.webhook_secret = other.webhook_url, "whsec_rotated"
        await client.v1.customers.create_async({"email": "c@example.com"})
        await fake.wait_for_deliveries()
        assert receiver.posts() == []
        (event,) = verified_events(other, "whsec_rotated")
        assert event.type == "customer.created"
        await fake.set_webhook(None)
        assert fake.webhook_url is None
        await client.v1.customers.create_async({"email": "d@example.com"})
        assert (await fake.deliveries())[-1]["status"] == "skipped"
        await fake.set_webhook(receiver.webhook_url, SECRET)
        assert (fake.webhook_url, fake.webhook_secret) == (receiver.webhook_url, SECRET)


async def test_bad_webhook_target_is_refused(fake: FakeStripeServer, receiver: Receiver) -> None:
    with pytest.raises(FakeStripeAdminError, match="http"):
        await fake.set_webhook("http://[::1")
    with pytest.raises(ValueError, match="http"):
        fake.webhook_url = "ftp://example.com/hook"
    with pytest.raises(ValueError, match="secret"):
        fake.webhook_secret = ""
    with pytest.raises(ValueError, match="http"):
        FakeStripeServer(webhook_url="example.com/hook")
    assert (fake.webhook_url, fake.webhook_secret) == (receiver.webhook_url, SECRET)


async def test_admin_complete_checkout_without_the_page(
    fake: FakeStripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    session = await client.v1.checkout.sessions.create_async(checkout_params(receiver))
    completed = await fake.complete_checkout(session.id)
    assert completed["status"] == "complete" and completed["subscription"].startswith("sub_")
    await fake.wait_for_deliveries()
    assert [event.type for event in verified_events(receiver)][1] == "checkout.session.completed"


async def test_logs_list_requests_and_events_without_the_key(
    fake: FakeStripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    await client.v1.customers.create_async({"email": "c@example.com"}, {"idempotency_key": "k1"})
    (logged,) = await fake.requests()
    assert (logged["method"], logged["path"], logged["status"]) == ("POST", "/v1/customers", 200)
    assert logged["params"] == {"email": "c@example.com"} and logged["idempotency_key"] == "k1"
    assert fake.api_key not in json.dumps(logged)
    (event,) = await fake.events()
    assert event["type"] == "customer.created"
    await fake.clear()
    assert await fake.requests() == [] and await fake.events() == []


# --- the SDK's global configuration, serving and the command line ----------------------------


async def test_global_sdk_configuration_works(
    fake: FakeStripeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_client = stripe.HTTPXClient()
    monkeypatch.setattr(stripe, "api_base", fake.api_base)
    monkeypatch.setattr(stripe, "api_key", fake.api_key)
    monkeypatch.setattr(stripe, "default_http_client", http_client)
    price = await stripe.Price.retrieve_async(DEFAULT_PRICE_ID)
    await http_client.close_async()
    assert price.unit_amount == 2000


def test_binds_loopback_only(fake: FakeStripeServer) -> None:
    assert fake.url.startswith("http://127.0.0.1:")


def test_server_lifecycle_on_the_port_asked_for() -> None:
    port = find_free_port()
    server = FakeStripeServer(port=port)
    with pytest.raises(RuntimeError, match="FakeStripeServer is not started"):
        _ = server.url
    with server:
        assert server.url == server.api_base == f"http://127.0.0.1:{port}"
        logged = httpx.get(f"{server.url}/_fake/requests", timeout=10).json()["requests"]
        assert logged == []  # the start-up probe is not an API call
    assert not answers("127.0.0.1", port)
    server.stop()  # a second stop is harmless


def test_refuses_to_start_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIGEN_ENV", "production")
    with pytest.raises(RuntimeError, match="production"):
        FakeStripeServer().start()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m aigen.dev.stripe`` with the worktree's code."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    command = [sys.executable, "-m", "aigen.dev.stripe", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)


def test_cli_refuses_production() -> None:
    with run_cli("--port", str(find_free_port()), env={"AIGEN_ENV": "production"}) as process:
        assert process.wait(30) == 2


async def test_cli_serves_the_sdk_and_posts_webhooks() -> None:
    port = find_free_port()
    async with Receiver() as receiver:
        process = run_cli("--port", str(port), "--webhook-url", receiver.webhook_url,
                          "--webhook-secret", SECRET)  # fmt: skip
        try:
            assert process.stdout is not None
            banner = await asyncio.to_thread(process.stdout.readline)
            assert f"http://127.0.0.1:{port}" in banner
            url = f"http://127.0.0.1:{port}"
            http_client = stripe.HTTPXClient()
            client = stripe.StripeClient(
                DEFAULT_API_KEY, base_addresses={"api": url}, http_client=http_client
            )
            customer = await client.v1.customers.create_async({"email": "cli@example.com"})
            await http_client.close_async()
            admin_deliveries = await FakeStripeAdmin(url).wait_for_deliveries()
            assert admin_deliveries[0]["status"] == "succeeded"
            (event,) = verified_events(receiver)
            assert event.data.object.id == customer.id
        finally:
            process.send_signal(signal.SIGINT)
            await asyncio.to_thread(process.wait, 30)
