"""Billing rules: which event sets which plan, each event at most once, never an older one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from quart import Quart

from aigen.clients.stripe import BillingEvent
from aigen.core.billing import Outcome, PlanChange, apply_event, plan_change
from aigen.store import repository
from aigen.store.repository import User
from aigen.web.runtime import EXTENSION_KEY
from tests.helpers import ledger_mismatches, make_user

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
COUNTER = iter(range(1, 1_000_000))


def event(
    kind: str, data: dict[str, Any], *, at: datetime = T0, event_id: str = ""
) -> BillingEvent:
    return BillingEvent(event_id or f"evt_{next(COUNTER)}", kind, at, data)


def completed(user: User, customer: str = "cus_A", subscription: str = "sub_A", **extra: Any):
    data = {
        "id": "cs_1",
        "object": "checkout.session",
        "mode": "subscription",
        "payment_status": "paid",
        "client_reference_id": str(user.id),
        "metadata": {"user_id": str(user.id)},
        "customer": customer,
        "subscription": subscription,
        **extra,
    }
    return event("checkout.session.completed", data)


def subscription(
    kind: str, status: str, *, customer: str = "cus_A", sub: str = "sub_A", at: datetime = T0
):
    data = {"id": sub, "object": "subscription", "status": status, "customer": customer}
    return event(f"customer.subscription.{kind}", data, at=at)


async def plan(db: asyncpg.Connection, user_id: int) -> tuple[str, str | None, str | None]:
    row = await db.fetchrow(
        "SELECT plan, stripe_customer_id, stripe_subscription_id FROM users WHERE id = $1",
        user_id,
    )
    return row["plan"], row["stripe_customer_id"], row["stripe_subscription_id"]


@pytest.fixture
def pool(app: Quart) -> asyncpg.Pool:
    return app.extensions[EXTENSION_KEY].pool


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        ("updated", "active", "PRO"),
        ("updated", "trialing", "PRO"),
        ("updated", "unpaid", "FREE"),
        ("updated", "canceled", "FREE"),
        ("updated", "incomplete_expired", "FREE"),
        ("deleted", "canceled", "FREE"),
        ("updated", "past_due", None),  # Stripe is still retrying the card: no change yet
        ("updated", "incomplete", None),
        ("created", "active", None),  # checkout.session.completed carries the upgrade
    ],
)
def test_which_subscription_event_sets_which_plan(kind: str, status: str, expected) -> None:
    change = plan_change(subscription(kind, status))
    assert (change.plan if change else None) == expected


def test_checkout_completed_names_our_user_and_the_stripe_ids() -> None:
    data = {"mode": "subscription", "client_reference_id": "12", "customer": "cus_X",
            "subscription": {"id": "sub_X"}, "payment_status": "paid"}  # fmt: skip
    assert plan_change(event("checkout.session.completed", data)) == PlanChange(
        "PRO", "cus_X", "sub_X", 12
    )
    unpaid = {**data, "payment_status": "unpaid"}  # e.g. a bank debit still pending
    assert plan_change(event("checkout.session.completed", unpaid)) is None
    one_off = {**data, "mode": "payment"}
    assert plan_change(event("checkout.session.completed", one_off)) is None
    assert plan_change(event("invoice.paid", data)) is None


async def test_upgrade_then_downgrade(pool, db) -> None:
    ada = await make_user(db)
    assert await apply_event(pool, completed(ada)) is Outcome.APPLIED
    assert await plan(db, ada.id) == ("PRO", "cus_A", "sub_A")
    later = T0 + timedelta(days=30)
    assert await apply_event(pool, subscription("deleted", "canceled", at=later)) is Outcome.APPLIED
    assert await plan(db, ada.id) == ("FREE", "cus_A", "sub_A")  # the customer is kept for reuse


async def test_a_replayed_event_changes_nothing(pool, db) -> None:
    ada = await make_user(db)
    upgrade = completed(ada)
    await apply_event(pool, upgrade)
    later = T0 + timedelta(days=30)
    await apply_event(pool, subscription("deleted", "canceled", at=later))
    assert await apply_event(pool, upgrade) is Outcome.DUPLICATE
    assert await plan(db, ada.id) == ("FREE", "cus_A", "sub_A")
    assert await db.fetchval("SELECT count(*) FROM stripe_events") == 2


async def test_an_event_older_than_the_last_applied_changes_nothing(pool, db) -> None:
    ada = await make_user(db)
    await apply_event(pool, completed(ada))
    cancelled = subscription("deleted", "canceled", at=T0 + timedelta(minutes=10))
    delayed_renewal = subscription("updated", "active", at=T0 + timedelta(minutes=5))
    assert await apply_event(pool, cancelled) is Outcome.APPLIED
    assert await apply_event(pool, delayed_renewal) is Outcome.STALE
    assert await plan(db, ada.id) == ("FREE", "cus_A", "sub_A")


async def test_events_of_the_same_second_apply_in_arrival_order(pool, db) -> None:
    ada = await make_user(db)
    await apply_event(pool, completed(ada))
    assert await apply_event(pool, subscription("deleted", "canceled")) is Outcome.APPLIED
    assert await plan(db, ada.id) == ("FREE", "cus_A", "sub_A")


async def test_unknown_customer_changes_nobody(pool, db) -> None:
    ada = await make_user(db)
    stranger = subscription("updated", "active", customer="cus_nobody", sub="sub_nobody")
    assert await apply_event(pool, stranger) is Outcome.UNKNOWN_CUSTOMER
    assert await plan(db, ada.id) == ("FREE", None, None)


async def test_a_second_customer_is_left_alone(pool, db) -> None:
    ada = await make_user(db, "ada@example.com")
    bob = await make_user(db, "bob@example.com")
    await apply_event(pool, completed(ada, "cus_A", "sub_A"))
    await apply_event(pool, completed(bob, "cus_B", "sub_B"))
    later = T0 + timedelta(days=1)
    await apply_event(pool, subscription("deleted", "canceled", customer="cus_A", at=later))
    assert await plan(db, ada.id) == ("FREE", "cus_A", "sub_A")
    assert await plan(db, bob.id) == ("PRO", "cus_B", "sub_B")


async def test_the_end_of_a_replaced_subscription_keeps_pro(pool, db) -> None:
    ada = await make_user(db)
    await apply_event(pool, completed(ada, "cus_A", "sub_old"))
    await apply_event(
        pool, subscription("updated", "active", sub="sub_new", at=T0 + timedelta(days=1))
    )
    old_ends = subscription("deleted", "canceled", sub="sub_old", at=T0 + timedelta(days=2))
    assert await apply_event(pool, old_ends) is Outcome.NOT_CURRENT
    assert await plan(db, ada.id) == ("PRO", "cus_A", "sub_new")


async def test_subscription_event_before_checkout_finds_the_user_by_metadata(pool, db) -> None:
    ada = await make_user(db)
    early = subscription("updated", "active", customer="cus_A")
    early.data["metadata"] = {"user_id": str(ada.id)}  # subscription_data.metadata at checkout
    assert await apply_event(pool, early) is Outcome.APPLIED
    assert await plan(db, ada.id) == ("PRO", "cus_A", "sub_A")


async def test_metadata_cannot_move_a_user_paying_through_another_customer(pool, db) -> None:
    ada = await make_user(db)
    await apply_event(pool, completed(ada, "cus_A", "sub_A"))
    other = subscription(
        "deleted", "canceled", customer="cus_Z", sub="sub_Z", at=T0 + timedelta(days=1)
    )
    other.data["metadata"] = {"user_id": str(ada.id)}
    assert await apply_event(pool, other) is Outcome.UNKNOWN_CUSTOMER
    assert await plan(db, ada.id) == ("PRO", "cus_A", "sub_A")


async def test_ignored_types_are_not_recorded(pool, db) -> None:
    ada = await make_user(db)
    assert await apply_event(pool, event("invoice.paid", {"customer": "cus_A"})) is Outcome.IGNORED
    assert await db.fetchval("SELECT count(*) FROM stripe_events") == 0
    assert await plan(db, ada.id) == ("FREE", None, None)


async def test_two_subscriptions_the_end_of_either_other_one_keeps_pro(
    pool, db, caplog: pytest.LogCaptureFixture
) -> None:
    """Two Checkouts paid (two tabs): whichever subscription the user row does not hold ends,
    the plan stays PRO; only the end of the one stored makes the user FREE."""
    ada = await make_user(db)
    await apply_event(pool, completed(ada, "cus_A", "sub_1"))
    second = completed(ada, "cus_A", "sub_2")
    second = BillingEvent(second.id, second.type, T0 + timedelta(minutes=1), second.data)
    assert await apply_event(pool, second) is Outcome.APPLIED
    assert await plan(db, ada.id) == ("PRO", "cus_A", "sub_2")
    assert "pays two subscriptions (sub_1 and sub_2)" in caplog.text  # for an operator to refund
    first_ends = subscription("deleted", "canceled", sub="sub_1", at=T0 + timedelta(minutes=2))
    assert await apply_event(pool, first_ends) is Outcome.NOT_CURRENT
    first_unpaid = subscription("updated", "unpaid", sub="sub_1", at=T0 + timedelta(minutes=3))
    assert await apply_event(pool, first_unpaid) is Outcome.NOT_CURRENT
    assert await plan(db, ada.id) == ("PRO", "cus_A", "sub_2")
    renewed = subscription("updated", "active", sub="sub_1", at=T0 + timedelta(days=30))
    assert await apply_event(pool, renewed) is Outcome.APPLIED  # sub_1 is the one stored now
    second_ends = subscription("deleted", "canceled", sub="sub_2", at=T0 + timedelta(days=31))
    assert await apply_event(pool, second_ends) is Outcome.NOT_CURRENT
    assert await plan(db, ada.id) == ("PRO", "cus_A", "sub_1")


async def test_cancelling_pro_starts_a_fresh_free_count(app: Quart, pool, db) -> None:
    """Regression: PRO answers counted against the free credits, so a user who cancelled after
    200 answers read "No credits left" for the rest of the month."""
    ada = await make_user(db, credits_limit=3)
    await apply_event(pool, completed(ada))
    generations = app.extensions[EXTENSION_KEY].generations
    for attempt in range(5):  # past the free limit of 3
        await generations.generate(ada.id, f"pro {attempt}")
    before = await db.fetchrow("SELECT credits_used, period_start, period_end FROM users")
    assert before["credits_used"] == 5
    cancelled = subscription("deleted", "canceled", at=datetime.now(UTC))
    assert await apply_event(pool, cancelled) is Outcome.APPLIED
    after = await db.fetchrow("SELECT plan, credits_used, period_start, period_end FROM users")
    assert (after["plan"], after["credits_used"]) == ("FREE", 0)
    assert after["period_start"] > before["period_start"]
    assert after["period_end"] == before["period_end"]  # the free credits renew as before
    assert await ledger_mismatches(db) == []
    old = await db.fetchval("SELECT max(id) FROM generations")
    await repository.refund_credit(db, ada.id, old)  # a PRO answer's refund is not a FREE credit
    await generations.generate(ada.id, "free again")
    assert await db.fetchval("SELECT credits_used FROM users") == 1
    assert await ledger_mismatches(db) == []
    again = subscription("deleted", "canceled", at=datetime.now(UTC) + timedelta(seconds=1))
    await apply_event(pool, again)  # FREE already: the count is not reset again
    assert await db.fetchval("SELECT credits_used FROM users") == 1
