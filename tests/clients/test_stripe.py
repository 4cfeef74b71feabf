"""The Stripe wrapper, through the real stripe SDK against the local stand-in."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import stripe
from quart import Quart

from aigen.clients.stripe import (
    BillingUnavailable,
    InvalidEvent,
    Price,
    PriceCache,
    StripeBilling,
)
from aigen.dev.serving import find_free_port
from aigen.dev.stripe import DEFAULT_PRICE_ID, FakeStripeServer
from tests.helpers import STRIPE_WEBHOOK_SECRET, served

SUCCESS_URL = "http://127.0.0.1:8000/billing/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL_URL = "http://127.0.0.1:8000/pricing"


@pytest.fixture
async def billing(fake_stripe: FakeStripeServer) -> AsyncIterator[StripeBilling]:
    await fake_stripe.set_price(DEFAULT_PRICE_ID, unit_amount=2000, currency="usd")
    await fake_stripe.clear()
    client = StripeBilling(
        secret_key=fake_stripe.api_key,
        price_id=DEFAULT_PRICE_ID,
        webhook_secret=STRIPE_WEBHOOK_SECRET,
        api_base=fake_stripe.api_base,
    )
    yield client
    await client.aclose()


def signed(event: dict[str, Any], *, secret: str = STRIPE_WEBHOOK_SECRET, at: int | None = None):
    """A webhook body and its Stripe-Signature, made with the SDK's own signing helper."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, at)
    return payload.encode(), header


EVENT = {
    "id": "evt_1",
    "object": "event",
    "type": "customer.subscription.updated",
    "created": 1_700_000_000,
    "data": {"object": {"id": "sub_1", "object": "subscription", "status": "active"}},
}


async def checkout_session(fake: FakeStripeServer, url: str) -> dict[str, Any]:
    client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.api_base})
    session = await client.v1.checkout.sessions.retrieve_async(url.rsplit("/", 1)[1])
    return session.to_dict()


async def test_checkout_is_a_subscription_for_our_user(billing, fake_stripe) -> None:
    url = await billing.checkout_url(
        user_id=42,
        email="ada@example.com",
        customer_id=None,
        success_url=SUCCESS_URL,
        cancel_url=CANCEL_URL,
    )
    assert url.startswith(fake_stripe.url + "/pay/cs_test_")
    session = await checkout_session(fake_stripe, url)
    assert session["mode"] == "subscription" and session["status"] == "open"
    assert session["client_reference_id"] == "42"
    assert session["metadata"] == {"user_id": "42"}
    assert session["customer_email"] == "ada@example.com" and session["customer"] is None
    assert (session["success_url"], session["cancel_url"]) == (SUCCESS_URL, CANCEL_URL)


async def test_checkout_reuses_the_stripe_customer(billing, fake_stripe) -> None:
    first = await billing.checkout_url(
        user_id=7, email="b@example.com", customer_id=None, success_url=SUCCESS_URL,
        cancel_url=CANCEL_URL,
    )  # fmt: skip
    paid = await fake_stripe.complete_checkout(first.rsplit("/", 1)[1])
    again = await billing.checkout_url(
        user_id=7, email="b@example.com", customer_id=paid["customer"], success_url=SUCCESS_URL,
        cancel_url=CANCEL_URL,
    )  # fmt: skip
    session = await checkout_session(fake_stripe, again)
    assert session["customer"] == paid["customer"] and session["customer_email"] is None


async def test_live_subscriptions_of_a_customer_made_before_checkout(billing, fake_stripe) -> None:
    customer = await billing.create_customer(user_id=9, email="d@example.com")
    assert customer.startswith("cus_") and await billing.live_subscriptions(customer) == []
    urls = [
        await billing.checkout_url(
            user_id=9,
            email="d@example.com",
            customer_id=customer,
            success_url=SUCCESS_URL,
            cancel_url=CANCEL_URL,
        )  # fmt: skip
        for _ in range(2)
    ]
    paid = [await fake_stripe.complete_checkout(url.rsplit("/", 1)[1]) for url in urls]
    assert {p["customer"] for p in paid} == {customer}
    subscriptions = [p["subscription"] for p in paid]
    assert sorted(await billing.live_subscriptions(customer)) == sorted(subscriptions)
    client = stripe.StripeClient(fake_stripe.api_key, base_addresses={"api": fake_stripe.api_base})
    await client.v1.subscriptions.cancel_async(subscriptions[0])
    assert await billing.live_subscriptions(customer) == [subscriptions[1]]


async def test_portal_session_for_a_customer(billing, fake_stripe) -> None:
    url = await billing.checkout_url(
        user_id=8, email="c@example.com", customer_id=None, success_url=SUCCESS_URL,
        cancel_url=CANCEL_URL,
    )  # fmt: skip
    customer = (await fake_stripe.complete_checkout(url.rsplit("/", 1)[1]))["customer"]
    portal = await billing.portal_url(customer, "http://127.0.0.1:8000/dashboard")
    assert portal.startswith(fake_stripe.url + "/portal/bps_")
    with pytest.raises(BillingUnavailable, match="HTTP 400"):
        await billing.portal_url("cus_nobody", "http://127.0.0.1:8000/dashboard")


async def test_price_is_read_from_stripe(billing, fake_stripe) -> None:
    assert await billing.price() == Price(2000, "usd", "month")
    await fake_stripe.set_price(DEFAULT_PRICE_ID, unit_amount=1950, currency="eur")
    price = await billing.price()
    assert (price.amount_label(), price.period_label()) == ("€19.50", "month")


@pytest.mark.parametrize(
    ("price", "amount", "period"),
    [
        (Price(2000, "usd", "month"), "$20", "month"),
        (Price(123456, "gbp", "year"), "£1,234.56", "year"),
        (Price(2000, "jpy", "month", 3), "2,000 JPY", "3 months"),
        (Price(500, "chf", None), "5 CHF", ""),
    ],
)
def test_price_labels(price: Price, amount: str, period: str) -> None:
    assert (price.amount_label(), price.period_label()) == (amount, period)


async def test_unreachable_stripe_is_billing_unavailable_and_the_cache_keeps_none() -> None:
    closed = StripeBilling(
        secret_key="sk_test_x",
        price_id=DEFAULT_PRICE_ID,
        webhook_secret=STRIPE_WEBHOOK_SECRET,
        api_base=f"http://127.0.0.1:{find_free_port()}",
        timeout=2.0,
    )
    try:
        with pytest.raises(BillingUnavailable):
            await closed.checkout_url(
                user_id=1, email="a@example.com", customer_id=None, success_url=SUCCESS_URL,
                cancel_url=CANCEL_URL,
            )  # fmt: skip
        cache = PriceCache(closed)
        assert await cache.refresh() is False and cache.price is None
    finally:
        await closed.aclose()


async def test_the_cache_keeps_the_last_price_when_stripe_fails(billing, fake_stripe) -> None:
    cache = PriceCache(billing)
    assert await cache.refresh() is True and cache.price == Price(2000, "usd", "month")
    billing.price_id = "price_deleted"  # Stripe now answers 404 for it
    assert await cache.refresh() is False and cache.price == Price(2000, "usd", "month")


def test_a_correctly_signed_event_is_read(billing) -> None:
    event = billing.verify_event(*signed(EVENT))
    assert (event.id, event.type, event.data["status"]) == ("evt_1", EVENT["type"], "active")
    assert event.created.timestamp() == 1_700_000_000


@pytest.mark.parametrize(
    "tamper",
    [
        "missing",
        "forged",
        "other secret",
        "stale",
        "body changed",
        "garbage header",
    ],
)
def test_unverifiable_events_are_refused(billing, tamper: str) -> None:
    payload, header = signed(EVENT)
    if tamper == "missing":
        header = None
    elif tamper == "forged":
        header = header.split("v1=")[0] + "v1=" + "0" * 64
    elif tamper == "other secret":
        payload, header = signed(EVENT, secret="whsec_attacker")
    elif tamper == "stale":  # the SDK's default tolerance is 300 s
        payload, header = signed(EVENT, at=int(time.time()) - 301)
    elif tamper == "body changed":
        payload = payload.replace(b"active", b"trialing")
    else:
        header = "not a signature"
    with pytest.raises(InvalidEvent):
        billing.verify_event(payload, header)


@pytest.mark.parametrize(
    "payload", [b"not json", b'{"id": "evt_1"}', "\udcff".encode(errors="surrogateescape")]
)
def test_signed_bodies_that_are_not_events_are_refused(billing, payload: bytes) -> None:
    header = stripe.WebhookSignature.generate_signature_header(
        payload.decode(errors="replace"), STRIPE_WEBHOOK_SECRET
    )
    with pytest.raises(InvalidEvent):
        billing.verify_event(payload, header)


async def test_an_odd_price_answer_does_not_end_the_refresher() -> None:
    """Regression: only BillingUnavailable was caught, so an answer that lacked the price's
    fields ended the refresher with an AttributeError, for good (and broke the shutdown)."""
    odd = Quart("odd-stripe")
    answered: list[str] = []

    @odd.get("/v1/prices/<price_id>")
    async def price(price_id: str) -> dict[str, Any]:
        answered.append(price_id)
        if len(answered) < 3:
            return {"id": price_id, "object": "price"}  # no amount, no currency
        recurring = {"interval": "month", "interval_count": 1}
        return {"id": price_id, "object": "price", "unit_amount": 900, "currency": "usd",
                "recurring": recurring}  # fmt: skip

    async with served(odd) as url:
        billing = StripeBilling(
            secret_key="sk_test_odd", price_id="price_odd", webhook_secret="whsec_odd", api_base=url
        )
        cache = PriceCache(billing)
        refresher = asyncio.create_task(cache.refresh_forever(retry=0.01))
        while cache.price is None and not refresher.done():
            await asyncio.sleep(0.01)
        assert not refresher.done()
        assert cache.price == Price(900, "usd", "month") and len(answered) == 3
        refresher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await refresher
        await billing.aclose()
