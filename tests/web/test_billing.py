"""Billing over HTTP: Checkout, the webhook (signed by the local Stripe stand-in with Stripe's real
scheme), the success page, the portal, and the pages with and without Stripe configured.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import stripe
from quart import Quart

from aigen.app import create_app
from aigen.dev.serving import find_free_port
from aigen.dev.stripe import FakeStripeServer
from aigen.dev.stripe.server import FakeStripeAdminError
from aigen.store.repository import User
from aigen.web.runtime import EXTENSION_KEY, Runtime
from tests.helpers import (
    GENERATE,
    STRIPE_WEBHOOK_SECRET,
    make_user,
    page_csrf_token,
    served,
    signed_in,
)

WEBHOOK = "/billing/webhook"


class Served:
    """The app served over HTTP (the stand-in posts its webhooks there) and its base URL."""

    def __init__(self, app: Quart, url: str) -> None:
        self.app, self.url = app, url

    @property
    def runtime(self) -> Runtime:
        return self.app.extensions[EXTENSION_KEY]


@pytest.fixture
async def billing_app(
    stripe_settings: dict[str, str], fake_stripe: FakeStripeServer, db
) -> AsyncIterator[Served]:
    app = create_app(stripe_settings)
    async with served(app) as url:
        await fake_stripe.set_webhook(url + WEBHOOK, STRIPE_WEBHOOK_SECRET)
        yield Served(app, url)
        await fake_stripe.wait_for_deliveries()
        await fake_stripe.set_webhook(None, STRIPE_WEBHOOK_SECRET)


async def billing_state(db: asyncpg.Connection, user_id: int) -> dict[str, Any]:
    row = await db.fetchrow(
        "SELECT plan, stripe_customer_id, stripe_subscription_id FROM users WHERE id = $1",
        user_id,
    )
    return dict(row)


async def start_checkout(app: Quart, user: User) -> str:
    """POST /billing/checkout as the pricing page's form does; the Checkout Session's id."""
    async with signed_in(app, user.id) as client:
        token = await page_csrf_token(client, "/pricing")
        response = await client.post("/billing/checkout", form={"csrf_token": token})
    assert response.status_code == 303
    return response.headers["Location"].rsplit("/", 1)[1]


def is_session_created(request: dict[str, Any]) -> bool:
    """Whether a request the stand-in logged created a Checkout Session (not listed them)."""
    return request["path"] == "/v1/checkout/sessions" and request["method"] == "POST"


def signed_body(
    event: dict[str, Any], *, secret: str = STRIPE_WEBHOOK_SECRET, at: int | None = None
):
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, at)
    return payload.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}


def subscription_event(
    event_id: str, kind: str, status: str, customer: str, created: int
) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": f"customer.subscription.{kind}",
        "created": created,
        "data": {
            "object": {
                "id": "sub_A",
                "object": "subscription",
                "status": status,
                "customer": customer,
            }  # fmt: skip
        },
    }


async def post_webhook(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(url + WEBHOOK, content=body, headers=headers)


async def test_checkout_sends_the_user_to_stripe_as_themselves(
    billing_app: Served, fake_stripe: FakeStripeServer, db
) -> None:
    ada = await make_user(db)
    async with signed_in(billing_app.app, ada.id) as client:
        token = await page_csrf_token(client, "/pricing")
        response = await client.post("/billing/checkout", form={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"].startswith(fake_stripe.url + "/pay/cs_test_")
    requests = await fake_stripe.requests()
    [customer] = [r["params"] for r in requests if r["path"] == "/v1/customers"]
    assert customer == {"email": ada.email, "metadata": {"user_id": str(ada.id)}}
    [created] = [r for r in requests if is_session_created(r)]
    sent = created["params"]
    assert sent["mode"] == "subscription" and sent["client_reference_id"] == str(ada.id)
    assert sent["metadata"] == {"user_id": str(ada.id)}
    assert sent["customer"] == (await billing_state(db, ada.id))["stripe_customer_id"]
    assert sent["success_url"].startswith("http://127.0.0.1:8000/billing/success")
    assert sent["cancel_url"] == "http://127.0.0.1:8000/pricing"


async def test_a_new_checkout_expires_the_earlier_open_one(
    billing_app: Served, fake_stripe: FakeStripeServer, db
) -> None:
    """Two Checkout pages (two tabs, a double click) cannot both be paid: two subscriptions."""
    ada = await make_user(db)
    await fake_stripe.set_webhook(billing_app.url + WEBHOOK, STRIPE_WEBHOOK_SECRET)
    first = await start_checkout(billing_app.app, ada)
    second = await start_checkout(billing_app.app, ada)
    assert first != second
    with pytest.raises(FakeStripeAdminError, match="expired"):
        await fake_stripe.complete_checkout(first)
    await fake_stripe.complete_checkout(second)
    await fake_stripe.wait_for_deliveries()
    state = await billing_state(db, ada.id)
    subscriptions = [
        e for e in await fake_stripe.events() if e["type"] == "checkout.session.completed"
    ]
    assert state["plan"] == "PRO" and len(subscriptions) == 1


async def test_checkout_needs_the_csrf_token(billing_app: Served, fake_stripe, db) -> None:
    ada = await make_user(db)
    async with signed_in(billing_app.app, ada.id) as client:
        await page_csrf_token(client, "/pricing")
        response = await client.post(
            "/billing/checkout", headers={"Origin": "https://evil.example"}
        )
    assert response.status_code == 403
    assert not [r for r in await fake_stripe.requests() if is_session_created(r)]


async def test_upgrade_generate_past_the_limit_portal_and_cancel(
    billing_app: Served, fake_stripe: FakeStripeServer, db
) -> None:
    spent = await make_user(db, "spent@example.com", credits_limit=2)
    await db.execute("UPDATE users SET credits_used = 2 WHERE id = $1", spent.id)
    app = billing_app.app
    session_id = await start_checkout(app, spent)
    await fake_stripe.complete_checkout(session_id)  # what the pay page's button does
    deliveries = await fake_stripe.wait_for_deliveries()
    assert {d["status"] for d in deliveries} == {"succeeded"}
    state = await billing_state(db, spent.id)
    assert state["plan"] == "PRO" and state["stripe_customer_id"].startswith("cus_")
    assert state["stripe_subscription_id"].startswith("sub_")

    async with signed_in(app, spent.id) as client:
        status = await client.get("/billing/status?poll=3", headers={"HX-Request": "true"})
        assert "You're on Pro." in await status.get_data(as_text=True)
        for attempt in range(3):  # past the old limit of 2
            answer = await client.post(GENERATE, json={"prompt": f"pro {attempt}"})
            assert answer.status_code == 200
        token = await page_csrf_token(client, "/dashboard")
        portal = await client.post("/billing/portal", form={"csrf_token": token})
    assert portal.status_code == 303
    portal_url = portal.headers["Location"]
    assert portal_url.startswith(fake_stripe.url + "/portal/")

    async with httpx.AsyncClient() as http:  # the portal page's Cancel button
        cancelled = await http.post(
            portal_url + "/cancel", data={"subscription": state["stripe_subscription_id"]}
        )
    assert cancelled.status_code == 303
    assert cancelled.headers["Location"] == "http://127.0.0.1:8000/dashboard"
    await fake_stripe.wait_for_deliveries()
    assert (await billing_state(db, spent.id))["plan"] == "FREE"

    # Stripe resends the upgrade (same event id): it was applied once and changes nothing now.
    [upgrade] = [e for e in await fake_stripe.events() if e["type"] == "checkout.session.completed"]
    await fake_stripe.replay_event(upgrade["id"])
    deliveries = await fake_stripe.wait_for_deliveries()
    assert deliveries[-1]["attempts"][-1]["status"] == 200
    assert (await billing_state(db, spent.id))["plan"] == "FREE"


@pytest.mark.parametrize("tamper", ["missing", "forged", "stale"])
async def test_unsigned_forged_or_stale_webhooks_are_400_and_change_nothing(
    billing_app: Served, db, tamper: str
) -> None:
    ada = await make_user(db)
    await db.execute("UPDATE users SET stripe_customer_id = 'cus_A' WHERE id = $1", ada.id)
    event = subscription_event("evt_forged", "updated", "active", "cus_A", int(time.time()))
    body, headers = signed_body(event)
    if tamper == "missing":
        headers.pop("Stripe-Signature")
    elif tamper == "forged":
        body, headers = signed_body(event, secret="whsec_guessed")
    else:
        body, headers = signed_body(event, at=int(time.time()) - 3600)
    response = await post_webhook(billing_app.url, body, headers)
    assert response.status_code == 400
    assert (await billing_state(db, ada.id))["plan"] == "FREE"
    assert await db.fetchval("SELECT count(*) FROM stripe_events") == 0


async def test_events_out_of_order_keep_the_newest_state(billing_app: Served, db) -> None:
    ada = await make_user(db)
    await db.execute("UPDATE users SET stripe_customer_id = 'cus_A' WHERE id = $1", ada.id)
    now = int(time.time())
    newer = subscription_event("evt_newer", "deleted", "canceled", "cus_A", now)
    older = subscription_event("evt_older", "updated", "active", "cus_A", now - 60)
    for event in (newer, older):  # delivered newest first
        response = await post_webhook(billing_app.url, *signed_body(event))
        assert response.status_code == 200
    assert (await billing_state(db, ada.id))["plan"] == "FREE"
    assert response.json()["outcome"] == "stale"


async def test_unknown_customer_and_other_event_types_get_200_and_change_nothing(
    billing_app: Served, fake_stripe: FakeStripeServer, db
) -> None:
    ada = await make_user(db)
    bob = await make_user(db, "bob@example.com")
    await db.execute("UPDATE users SET stripe_customer_id = 'cus_B' WHERE id = $1", bob.id)
    stranger = {"id": "sub_X", "object": "subscription", "status": "active", "customer": "cus_X"}
    await fake_stripe.send_event("customer.subscription.updated", data_object=stranger)
    await fake_stripe.send_event("invoice.paid", data_object={"id": "in_1", "customer": "cus_B"})
    deliveries = await fake_stripe.wait_for_deliveries()
    assert [d["attempts"][-1]["status"] for d in deliveries] == [200, 200]
    assert (await billing_state(db, ada.id))["plan"] == "FREE"
    assert (await billing_state(db, bob.id))["plan"] == "FREE"


async def test_pricing_shows_the_price_stripe_has(
    billing_app: Served, fake_stripe: FakeStripeServer, db
) -> None:
    prices = billing_app.runtime.prices
    assert prices is not None
    await prices.refresh()
    async with httpx.AsyncClient() as http:
        html = (await http.get(billing_app.url + "/pricing")).text
        assert '$20 <span class="plan__period">/ month</span>' in html
        assert 'href="/login?next=/pricing">Sign in to upgrade' in html
        await fake_stripe.set_price("price_aigen_pro_monthly", unit_amount=2500, currency="eur")
        await prices.refresh()
        assert "€25 " in (await http.get(billing_app.url + "/pricing")).text


async def test_pricing_offers_checkout_to_free_and_manage_billing_to_pro(
    billing_app: Served, db
) -> None:
    free = await make_user(db, "free@example.com")
    pro = await make_user(db, "pro@example.com", plan="PRO")
    await db.execute("UPDATE users SET stripe_customer_id = 'cus_P' WHERE id = $1", pro.id)
    async with signed_in(billing_app.app, free.id) as client:
        free_html = await (await client.get("/pricing")).get_data(as_text=True)
    async with signed_in(billing_app.app, pro.id) as client:
        pro_html = await (await client.get("/pricing")).get_data(as_text=True)
        dashboard = await (await client.get("/dashboard")).get_data(as_text=True)
    assert 'action="/billing/checkout"' in free_html and "Keep generating" in free_html
    assert 'action="/billing/checkout"' not in pro_html and "Keep generating" not in pro_html
    assert 'action="/billing/portal"' in pro_html and "Manage billing" in dashboard


async def test_success_page_polls_until_the_webhook_arrives(billing_app: Served, db) -> None:
    ada = await make_user(db)
    async with signed_in(billing_app.app, ada.id) as client:
        page = await (await client.get("/billing/success?session_id=cs_x")).get_data(as_text=True)
        waiting = await (await client.get("/billing/status?poll=1")).get_data(as_text=True)
        gave_up = await (await client.get("/billing/status?poll=60")).get_data(as_text=True)
    assert 'hx-get="/billing/status?poll=0"' in page and "Switching your plan to Pro" in page
    assert 'hx-get="/billing/status?poll=2"' in waiting
    assert "hx-get" not in gave_up and "taking longer than usual" in gave_up


async def test_without_stripe_billing_routes_are_404_and_pricing_says_closed(
    user_client, db
) -> None:
    token = await page_csrf_token(user_client, "/pricing")
    html = await (await user_client.get("/pricing")).get_data(as_text=True)
    assert "Upgrades are not open yet." in html and "/billing/checkout" not in html
    for path in ("/billing/checkout", "/billing/portal"):
        response = await user_client.post(path, form={"csrf_token": token})
        assert response.status_code == 404
    response = await user_client.post(WEBHOOK, data=b"{}")
    assert response.status_code == 404


async def test_stripe_unreachable_start_up_and_pages_still_work(
    stripe_settings: dict[str, str], db, user: User
) -> None:
    closed = f"http://127.0.0.1:{find_free_port()}"
    app = create_app({**stripe_settings, "STRIPE_API_BASE": closed})
    async with app.test_app(), signed_in(app, user.id) as client:
        runtime: Runtime = app.extensions[EXTENSION_KEY]
        assert runtime.prices is not None and await runtime.prices.refresh() is False
        pricing = await client.get("/pricing")
        html = await pricing.get_data(as_text=True)
        assert pricing.status_code == 200
        assert "Unlimited <span" in html and 'action="/billing/checkout"' in html
        token = await page_csrf_token(client, "/pricing")
        checkout = await client.post("/billing/checkout", form={"csrf_token": token})
        assert checkout.status_code == 503
        assert "Payments are unavailable right now" in await checkout.get_data(as_text=True)
        assert (await client.get("/generate")).status_code == 200


async def test_forms_may_lead_to_the_stripe_pages(billing_app: Served, fake_stripe) -> None:
    """Regression: Chromium applies CSP form-action to the redirect after a POST, so the 303 of
    /billing/checkout to Stripe's page was blocked while form-action named only 'self'."""
    async with httpx.AsyncClient() as http:
        policy = (await http.get(billing_app.url + "/pricing")).headers["Content-Security-Policy"]
    assert f"form-action 'self' {fake_stripe.url};" in policy


async def test_production_forms_may_lead_to_stripes_hosted_pages(app_settings) -> None:
    from aigen.app import STRIPE_PAGE_ORIGINS, _stripe_page_origins
    from aigen.config import load_settings

    stripe_env = {"STRIPE_SECRET_KEY": "sk_x", "STRIPE_PRICE_ID": "p", "STRIPE_WEBHOOK_SECRET": "w"}
    assert _stripe_page_origins(load_settings(stripe_env)) == STRIPE_PAGE_ORIGINS
    assert _stripe_page_origins(load_settings({})) == ()


async def test_a_pro_user_is_not_sent_to_checkout_again(
    billing_app: Served, fake_stripe, db
) -> None:
    pro = await make_user(db, "pro@example.com", plan="PRO")
    async with signed_in(billing_app.app, pro.id) as client:
        token = await page_csrf_token(client, "/pricing")
        response = await client.post("/billing/checkout", form={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/pricing"
    assert not [r for r in await fake_stripe.requests() if is_session_created(r)]


async def test_portal_without_a_stripe_customer_is_404(billing_app: Served, db) -> None:
    pro = await make_user(db, "byhand@example.com", plan="PRO")  # set by an operator
    async with signed_in(billing_app.app, pro.id) as client:
        token = await page_csrf_token(client, "/dashboard")
        dashboard = await (await client.get("/dashboard")).get_data(as_text=True)
        response = await client.post("/billing/portal", form={"csrf_token": token})
    assert "Manage billing" not in dashboard
    assert response.status_code == 404
    assert "no billing account for you yet" in await response.get_data(as_text=True)


async def test_checkout_again_while_the_webhook_is_late_goes_to_the_portal(
    billing_app: Served, fake_stripe: FakeStripeServer, db
) -> None:
    """Regression: a second Upgrade before the webhook arrived made a second paid subscription."""
    ada = await make_user(db)
    await fake_stripe.set_webhook(None, STRIPE_WEBHOOK_SECRET)  # the webhook is late
    await fake_stripe.complete_checkout(await start_checkout(billing_app.app, ada))
    assert (await billing_state(db, ada.id))["plan"] == "FREE"
    async with signed_in(billing_app.app, ada.id) as client:
        token = await page_csrf_token(client, "/pricing")
        again = await client.post("/billing/checkout", form={"csrf_token": token})
    assert again.status_code == 303
    assert again.headers["Location"].startswith(fake_stripe.url + "/portal/")
    sessions = [r for r in await fake_stripe.requests() if is_session_created(r)]
    assert len(sessions) == 1
    customer = (await billing_state(db, ada.id))["stripe_customer_id"]
    assert sessions[0]["params"]["customer"] == customer  # one customer, made before paying


async def test_checkout_after_a_cancelled_subscription_reuses_the_customer(
    billing_app: Served, fake_stripe: FakeStripeServer, db
) -> None:
    ada = await make_user(db)
    await fake_stripe.complete_checkout(await start_checkout(billing_app.app, ada))
    await fake_stripe.wait_for_deliveries()
    state = await billing_state(db, ada.id)
    assert state["plan"] == "PRO"
    await fake_stripe.send_event(
        "customer.subscription.deleted",
        object_id=state["stripe_subscription_id"],
        changes={"status": "canceled"},
    )
    await fake_stripe.wait_for_deliveries()
    assert (await billing_state(db, ada.id))["plan"] == "FREE"
    second = await start_checkout(billing_app.app, ada)
    assert second.startswith("cs_test_")
    sessions = [r for r in await fake_stripe.requests() if is_session_created(r)]
    assert [s["params"]["customer"] for s in sessions] == [state["stripe_customer_id"]] * 2


async def test_checkout_replaces_a_customer_stripe_no_longer_knows(
    billing_app: Served, fake_stripe: FakeStripeServer, db
) -> None:
    """Deleted in Stripe, or the development stand-in restarted: a new customer, not a 503 (QA)."""
    ada = await make_user(db)
    await db.execute("UPDATE users SET stripe_customer_id = 'cus_gone' WHERE id = $1", ada.id)
    session = await start_checkout(billing_app.app, ada)
    assert session.startswith("cs_test_")
    replaced = (await billing_state(db, ada.id))["stripe_customer_id"]
    assert replaced not in (None, "cus_gone")
    sessions = [r for r in await fake_stripe.requests() if is_session_created(r)]
    assert sessions[-1]["params"]["customer"] == replaced
