"""Billing rules: which Stripe event sets which plan, each event at most once, never an older one.

The webhook hands over a verified event; nothing here calls Stripe back. An event is applied in
one transaction that locks the user row, records the event id (a replay finds it and stops) and
compares the event's `created` time with the last one applied to the user's subscription.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from aigen.clients.stripe import BillingEvent, BillingUnavailable, CustomerMissing, StripeBilling
from aigen.core.database import connection
from aigen.core.errors import NotFound, PaymentsUnavailable
from aigen.core.plans import FREE, PRO
from aigen.store import repository
from aigen.store.repository import User

log = logging.getLogger(__name__)

CHECKOUT_COMPLETED = "checkout.session.completed"
SUBSCRIPTION_UPDATED = "customer.subscription.updated"
SUBSCRIPTION_DELETED = "customer.subscription.deleted"
PAYING_STATUSES = frozenset({"active", "trialing"})
ENDED_STATUSES = frozenset({"unpaid", "canceled", "incomplete_expired"})
SUCCESS_PATH = "/billing/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL_PATH = "/pricing"
PORTAL_RETURN_PATH = "/dashboard"
UPGRADES_CLOSED_MESSAGE = "Upgrades are not open yet."
NO_BILLING_ACCOUNT_MESSAGE = "There is no billing account for you yet: upgrade to Pro first."
PAYMENTS_UNAVAILABLE_MESSAGE = (
    "Payments are unavailable right now: Stripe could not be reached. Please try again shortly."
)


class Outcome(enum.Enum):
    """What applying an event did (logged; the webhook answers 2xx to each)."""

    APPLIED = "applied"
    IGNORED = "ignored"  # a type or status that changes no plan
    DUPLICATE = "duplicate"  # this event id was applied before
    STALE = "stale"  # older than the last event applied to the subscription
    NOT_CURRENT = "not current"  # about a subscription the user no longer has
    UNKNOWN_CUSTOMER = "unknown customer"


@dataclass(frozen=True)
class PlanChange:
    """The plan an event asks for, and who it is about."""

    plan: str
    customer_id: str | None
    subscription_id: str | None
    user_id: int | None  # our id, as we put it in client_reference_id and metadata


def plan_change(event: BillingEvent) -> PlanChange | None:
    """The plan change an event asks for; None for events that change no plan."""
    data = event.data
    if event.type == CHECKOUT_COMPLETED:
        if data.get("mode") != "subscription" or data.get("payment_status") == "unpaid":
            return None
        reference = data.get("client_reference_id") or _metadata_user(data)
        return PlanChange(
            PRO, _id(data.get("customer")), _id(data.get("subscription")), _int(reference)
        )
    if event.type == SUBSCRIPTION_DELETED:
        plan = FREE
    elif event.type == SUBSCRIPTION_UPDATED and data.get("status") in PAYING_STATUSES:
        plan = PRO
    elif event.type == SUBSCRIPTION_UPDATED and data.get("status") in ENDED_STATUSES:
        plan = FREE
    else:
        return None
    return PlanChange(
        plan, _id(data.get("customer")), _id(data.get("id")), _int(_metadata_user(data))
    )


def _metadata_user(data: dict[str, Any]) -> Any:
    metadata = data.get("metadata")
    return metadata.get("user_id") if isinstance(metadata, dict) else None


def _id(value: Any) -> str | None:
    """An object id, whether the event carries it as a string or expanded."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() else None


def refusal(user: User, change: PlanChange, event: BillingEvent) -> Outcome | None:
    """Why this change must not be applied to this user, or None when it may."""
    if user.stripe_event_at is not None and event.created < user.stripe_event_at:
        return Outcome.STALE
    current = user.stripe_subscription_id
    ends_another = change.plan == FREE and current is not None
    if ends_another and change.subscription_id not in (None, current):
        return Outcome.NOT_CURRENT
    return None


async def apply_event(pool: asyncpg.Pool, event: BillingEvent) -> Outcome:
    """Apply a verified event at most once, in one short transaction."""
    change = plan_change(event)
    if change is None:
        return Outcome.IGNORED
    async with connection(pool) as conn, conn.transaction():
        user = await _locked_user(conn, change)
        if user is None:
            outcome = Outcome.UNKNOWN_CUSTOMER
        elif not await repository.insert_stripe_event(conn, event.id, event.type, event.created):
            outcome = Outcome.DUPLICATE
        else:
            outcome = refusal(user, change, event) or await _apply(conn, user, change, event)
    log.info("stripe event %s (%s): %s", event.id, event.type, outcome.value)
    return outcome


async def _locked_user(conn: asyncpg.Connection, change: PlanChange) -> User | None:
    """The user the event is about: by its Stripe customer, else by the id we gave Stripe."""
    if change.customer_id is not None:
        user = await repository.lock_user_by_stripe_customer(conn, change.customer_id)
        if user is not None:
            return user
    if change.user_id is None:
        return None
    user = await repository.lock_user(conn, change.user_id)
    if user is None or user.stripe_customer_id not in (None, change.customer_id):
        return None  # that user pays through another customer: not theirs to change
    return user


async def _apply(
    conn: asyncpg.Connection, user: User, change: PlanChange, event: BillingEvent
) -> Outcome:
    _warn_if_paid_twice(user, change, event)
    await repository.update_user_subscription(
        conn,
        user.id,
        plan=change.plan,
        customer_id=change.customer_id,
        subscription_id=change.subscription_id,
        event_at=event.created,
        # PRO answers were counted too: back on FREE, the free credits start from none used.
        restart_period=user.plan == PRO and change.plan == FREE,
    )
    log.info("user %s is now %s (subscription %s)", user.id, change.plan, change.subscription_id)
    return Outcome.APPLIED


def _warn_if_paid_twice(user: User, change: PlanChange, event: BillingEvent) -> None:
    """Checkout refuses a customer Stripe already bills and expires their earlier open Checkouts,
    but two opened at the very same moment could still both be paid: an operator refunds one
    (the handler never calls Stripe back)."""
    current = user.stripe_subscription_id
    if event.type == CHECKOUT_COMPLETED and user.plan == PRO and current is not None:
        if change.subscription_id not in (None, current):
            log.warning(
                "user %s pays two subscriptions (%s and %s): cancel and refund one",
                user.id,
                current,
                change.subscription_id,
            )


async def checkout_url(
    billing: StripeBilling | None, pool: asyncpg.Pool, user: User, public_url: str
) -> str:
    """Where to send the user to pay for Pro: a new subscription Checkout Session, or the
    customer portal when Stripe already bills them (the webhook may not have arrived yet)."""
    if billing is None:
        raise NotFound(UPGRADES_CLOSED_MESSAGE)
    try:
        try:
            return await _checkout_or_portal(billing, pool, user, public_url)
        except CustomerMissing as missing:
            # Stripe no longer knows the stored customer: start over with a new one, once.
            log.warning("user %s: %s; a new Stripe customer replaces it", user.id, missing)
            replaced = await _replace_customer(billing, pool, user)
            return await _checkout_or_portal(billing, pool, replaced, public_url)
    except BillingUnavailable as error:
        log.warning("checkout for user %s failed: %s", user.id, error)
        raise PaymentsUnavailable(PAYMENTS_UNAVAILABLE_MESSAGE) from error


async def _checkout_or_portal(
    billing: StripeBilling, pool: asyncpg.Pool, user: User, public_url: str
) -> str:
    """A Checkout Session, or the portal when one of the customer's subscriptions still bills."""
    customer_id = user.stripe_customer_id or await _new_customer(billing, pool, user)
    # First, so that a page paid while this runs shows up as a live subscription just below.
    expired = await billing.expire_open_checkouts(customer_id)
    if expired:
        log.info("user %s: earlier checkout(s) %s expired for a new one", user.id, expired)
    live = await billing.live_subscriptions(customer_id)
    if live:
        log.info("user %s already has subscription %s: sent to the portal", user.id, live[0])
        return await billing.portal_url(customer_id, public_url + PORTAL_RETURN_PATH)
    return await billing.checkout_url(
        user_id=user.id,
        email=user.email,
        customer_id=customer_id,
        success_url=public_url + SUCCESS_PATH,
        cancel_url=public_url + CANCEL_PATH,
    )


async def _new_customer(billing: StripeBilling, pool: asyncpg.Pool, user: User) -> str:
    """The user's Stripe customer, made before their first Checkout so that every Checkout (and
    the check for a subscription already paid) goes through one customer; two at once keep the
    first stored."""
    created = await billing.create_customer(user_id=user.id, email=user.email)
    async with connection(pool) as conn:
        stored = await repository.update_user_stripe_customer(conn, user.id, created)
    if stored is None:
        raise NotFound("No such user.")
    return stored


async def _replace_customer(billing: StripeBilling, pool: asyncpg.Pool, user: User) -> User:
    """A new Stripe customer in place of the one Stripe no longer knows; the updated row."""
    created = await billing.create_customer(user_id=user.id, email=user.email)
    async with connection(pool) as conn:
        replaced = await repository.replace_user_stripe_customer(
            conn, user.id, user.stripe_customer_id, created
        )
    if replaced is None:
        raise NotFound("No such user.")
    return replaced


async def portal_url(billing: StripeBilling | None, user: User, public_url: str) -> str:
    """Where the user manages (or cancels) their subscription: a customer portal session."""
    if billing is None or user.stripe_customer_id is None:
        raise NotFound(NO_BILLING_ACCOUNT_MESSAGE)
    try:
        return await billing.portal_url(user.stripe_customer_id, public_url + PORTAL_RETURN_PATH)
    except BillingUnavailable as error:
        log.warning("billing portal for user %s failed: %s", user.id, error)
        raise PaymentsUnavailable(PAYMENTS_UNAVAILABLE_MESSAGE) from error
