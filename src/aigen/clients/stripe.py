"""Stripe through the official SDK: Checkout and portal sessions, the Pro price, signed events.

One `StripeBilling` per app, made inside the running loop (its HTTPX client belongs to it) and
closed at shutdown. Webhook bodies are verified with the SDK's own `construct_event` and its
default tolerance before anything in them is read.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from stripe.params import CustomerCreateParams, SubscriptionListParams, billing_portal, checkout

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Stripe-Signature"
REQUEST_TIMEOUT_SECONDS = 10.0
NETWORK_RETRIES = 1
PRICE_REFRESH_SECONDS = 3600.0
PRICE_RETRY_SECONDS = 60.0
# Amounts in these currencies have no minor unit (Stripe's list of zero-decimal currencies).
ZERO_DECIMAL_CURRENCIES = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)
CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}
# Subscriptions that bill, or will once the card is fixed: a new Checkout would bill twice.
LIVE_SUBSCRIPTION_STATUSES = frozenset({"active", "trialing", "past_due"})
LIST_PAGE = 100  # the most Stripe lists a page (subscriptions, open Checkout Sessions)


class BillingUnavailable(Exception):
    """Stripe could not be reached, or refused what we asked (the message says which)."""


class CustomerMissing(BillingUnavailable):
    """Stripe knows no such customer (deleted there, or a development stand-in restarted)."""


class InvalidEvent(Exception):
    """A webhook whose signature is missing, forged or too old, or whose body is no event."""


@dataclass(frozen=True)
class Price:
    """The Pro plan's recurring price as Stripe has it."""

    unit_amount: int  # in the currency's minor unit (cents), as Stripe counts
    currency: str
    interval: str | None  # month, year ...; None for a one-time price
    interval_count: int = 1

    def amount_label(self) -> str:
        """The amount for people: $20, $19.50, 2,000 JPY."""
        currency = self.currency.lower()
        major = self.unit_amount if currency in ZERO_DECIMAL_CURRENCIES else self.unit_amount / 100
        number = f"{major:,.2f}".removesuffix(".00")
        symbol = CURRENCY_SYMBOLS.get(currency)
        return f"{symbol}{number}" if symbol else f"{number} {currency.upper()}"

    def period_label(self) -> str:
        """`month`, `3 months`, or '' for a one-time price."""
        if self.interval is None:
            return ""
        if self.interval_count == 1:
            return self.interval
        return f"{self.interval_count} {self.interval}s"


@dataclass(frozen=True)
class BillingEvent:
    """A verified Stripe event: what happened, when (Stripe's `created`) and to which object."""

    id: str
    type: str
    created: datetime
    data: dict[str, Any]  # the event's data.object as plain JSON


class StripeBilling:
    """Checkout, the customer portal, the price and webhook verification for one Stripe account."""

    def __init__(
        self,
        *,
        secret_key: str,
        price_id: str,
        webhook_secret: str,
        api_base: str | None = None,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self.price_id = price_id
        self._webhook_secret = webhook_secret
        self._http = stripe.HTTPXClient(timeout=timeout)
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=NETWORK_RETRIES,
        )

    async def checkout_url(
        self,
        *,
        user_id: int,
        email: str,
        customer_id: str | None,
        success_url: str,
        cancel_url: str,
    ) -> str:
        """A subscription Checkout Session for this user; the URL to send the browser to."""
        reference = str(user_id)
        params: checkout.SessionCreateParams = {
            "mode": "subscription",
            "line_items": [{"price": self.price_id, "quantity": 1}],
            "client_reference_id": reference,
            "metadata": {"user_id": reference},
            "subscription_data": {"metadata": {"user_id": reference}},
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        if customer_id is not None:
            params["customer"] = customer_id  # one customer per user, reused on a new checkout
        else:
            params["customer_email"] = email
        try:
            session = await self._client.v1.checkout.sessions.create_async(params)
        except stripe.StripeError as error:
            raise _refusal("the checkout", error) from error
        if not session.url:
            raise BillingUnavailable("Stripe returned a checkout session without a URL")
        return session.url

    async def create_customer(self, *, user_id: int, email: str) -> str:
        """A new Stripe customer for this user; its id."""
        params: CustomerCreateParams = {"email": email, "metadata": {"user_id": str(user_id)}}
        try:
            customer = await self._client.v1.customers.create_async(params)
        except stripe.StripeError as error:
            raise BillingUnavailable(f"Stripe refused the customer: {_reason(error)}") from error
        return customer.id

    async def expire_open_checkouts(self, customer_id: str) -> list[str]:
        """Expire the customer's Checkout Sessions still open; the ids of those expired.

        Two Checkout pages open at once (two tabs, a double click) could both be paid, making two
        subscriptions: only the newest may be paid. A session paid or expired meanwhile is left
        as it is (the caller looks for live subscriptions next).
        """
        params: checkout.SessionListParams = {
            "customer": customer_id,
            "status": "open",
            "limit": LIST_PAGE,
        }
        expired: list[str] = []
        try:
            found = await self._client.v1.checkout.sessions.list_async(params)
            open_ids = [session.id async for session in found.auto_paging_iter()]
            for session_id in open_ids:
                try:
                    await self._client.v1.checkout.sessions.expire_async(session_id)
                except stripe.InvalidRequestError as error:
                    log.info("checkout %s was no longer open: %s", session_id, _reason(error))
                    continue
                expired.append(session_id)
        except stripe.StripeError as error:
            raise _refusal("the open checkouts", error) from error
        return expired

    async def live_subscriptions(self, customer_id: str) -> list[str]:
        """The ids of the customer's subscriptions that bill (active, trialing or past due)."""
        params: SubscriptionListParams = {"customer": customer_id, "limit": LIST_PAGE}
        try:
            found = await self._client.v1.subscriptions.list_async(params)
            return [
                subscription.id
                async for subscription in found.auto_paging_iter()
                if subscription.status in LIVE_SUBSCRIPTION_STATUSES
            ]
        except stripe.StripeError as error:
            raise _refusal("the list", error) from error

    async def portal_url(self, customer_id: str, return_url: str) -> str:
        """A customer portal session (manage or cancel the subscription); its URL."""
        params: billing_portal.SessionCreateParams = {
            "customer": customer_id,
            "return_url": return_url,
        }
        try:
            session = await self._client.v1.billing_portal.sessions.create_async(params)
        except stripe.StripeError as error:
            raise BillingUnavailable(f"Stripe refused the portal: {_reason(error)}") from error
        return session.url

    async def price(self) -> Price:
        """The configured price, read from Stripe."""
        try:
            found = await self._client.v1.prices.retrieve_async(self.price_id)
        except stripe.StripeError as error:
            raise BillingUnavailable(f"the price could not be read: {_reason(error)}") from error
        if found.unit_amount is None:
            raise BillingUnavailable(f"price {self.price_id} has no fixed amount")
        recurring = found.recurring
        return Price(
            unit_amount=found.unit_amount,
            currency=found.currency,
            interval=None if recurring is None else recurring.interval,
            interval_count=1 if recurring is None else recurring.interval_count,
        )

    def verify_event(self, payload: bytes, signature: str | None) -> BillingEvent:
        """The event in a webhook body, once its Stripe-Signature checks out; else InvalidEvent."""
        try:
            event = self._client.construct_event(payload, signature, self._webhook_secret)
            body = event.to_dict()
            return BillingEvent(
                id=str(body["id"]),
                type=str(body["type"]),
                created=datetime.fromtimestamp(int(body["created"]), UTC),
                data=dict(body["data"]["object"]),
            )
        except stripe.SignatureVerificationError as error:
            raise InvalidEvent(str(error)) from error
        except (ValueError, KeyError, TypeError) as error:  # signed, yet not an event
            raise InvalidEvent(f"not a Stripe event: {type(error).__name__}") from error

    async def aclose(self) -> None:
        """Close the HTTP connections (at shutdown)."""
        await self._http.close_async()


def _refusal(what: str, error: stripe.StripeError) -> BillingUnavailable:
    """CustomerMissing when the customer named is unknown to Stripe, else BillingUnavailable."""
    unknown_customer = (
        isinstance(error, stripe.InvalidRequestError)
        and error.code == "resource_missing"
        and (error.param or "customer") == "customer"
    )
    kind = CustomerMissing if unknown_customer else BillingUnavailable
    return kind(f"Stripe refused {what}: {_reason(error)}")


def _reason(error: stripe.StripeError) -> str:
    status = f"HTTP {error.http_status}: " if error.http_status else ""
    return status + (error.user_message or type(error).__name__)


class PriceCache:
    """The price, read in the background and kept; pages never wait on Stripe for it."""

    def __init__(self, billing: StripeBilling) -> None:
        self.billing = billing
        self.price: Price | None = None  # None until Stripe has answered once

    async def refresh(self) -> bool:
        """Read the price once; keep the last one known when Stripe fails. True if it was read."""
        try:
            self.price = await self.billing.price()
        except BillingUnavailable as error:
            log.warning("Stripe price not refreshed: %s", error)
            return False
        return True

    async def refresh_forever(
        self, every: float = PRICE_REFRESH_SECONDS, retry: float = PRICE_RETRY_SECONDS
    ) -> None:
        """Refresh now and then every `every` seconds (`retry` after a failure), until cancelled."""
        while True:
            try:
                read = await self.refresh()
            except Exception:  # an odd answer must not end the refresher: retried like a failure
                log.exception("Stripe price refresh failed")
                read = False
            await asyncio.sleep(every if read else retry)
