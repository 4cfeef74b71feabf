"""The revenue path in headless Chromium, at laptop and phone width: a FREE user at 0 credits sees
the banner, goes to pricing, pays on the local Stripe stand-in's Checkout page, comes back to
Pro within seconds, generates past the old limit, opens Manage billing, cancels and is FREE
again. Screenshots go to screenshots/billing-*.png (look at them)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    LAPTOP,
    PHONE,
    SCREENSHOTS,
    BillingApp,
    open_page,
    run_sql,
    sign_in,
)

pytestmark = pytest.mark.browser
T = TypeVar("T")


def run_async(call: Callable[[], Awaitable[T]]) -> T:
    """Await an admin call of the stand-in from a synchronous test (playwright owns this loop)."""

    async def run() -> T:
        return await call()

    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, run()).result()


def shot(page: Page, name: str) -> None:
    page.screenshot(
        path=str(SCREENSHOTS / f"billing-{name}.png"), full_page=True, animations="disabled"
    )


@pytest.mark.parametrize("width", ["laptop", "phone"])
def test_upgrade_generate_past_the_limit_and_cancel(
    browser, billing_app: BillingApp, oidc_provider, clean_db: str, width: str
) -> None:
    viewport = {"viewport": LAPTOP} if width == "laptop" else {
        "viewport": PHONE, "is_mobile": True, "has_touch": True,
    }  # fmt: skip
    context, page, problems = open_page(browser, billing_app, **viewport)
    sub = f"payer-{width}"
    try:
        sign_in(page, billing_app.url, oidc_provider, sub)
        run_sql(clean_db, "UPDATE users SET credits_used = credits_limit WHERE sub = $1", sub)
        page.reload()
        banner = page.locator("#upgrade-banner")
        expect(banner).to_contain_text("You've used all your free credits.")
        expect(page.locator("#generate-button")).to_be_disabled()
        expect(page.locator("#prompt-hint")).to_contain_text("No credits left until")
        expect(page.locator("#nav-credits")).to_have_class(re.compile("nav__credits--empty"))
        shot(page, f"{width}-1-out-of-credits")

        banner.get_by_role("link", name="See plans and upgrade").click()
        page.wait_for_url("**/pricing")
        expect(page.locator("#plan-free")).to_contain_text("Your plan")
        expect(page.locator(".plan").first).not_to_contain_text("Keep generating")
        shot(page, f"{width}-2-pricing")
        page.get_by_role("button", name="Upgrade to Pro").click()

        page.wait_for_url(billing_app.stripe.url + "/pay/**")
        expect(page.get_by_role("heading", level=1)).to_have_text("Checkout")
        shot(page, f"{width}-3-stripe-checkout")
        page.get_by_role("button", name="Pay").click()

        page.wait_for_url(billing_app.url + "/billing/success**")
        expect(page.locator("#plan-status")).to_contain_text("You're on Pro.")  # polled
        expect(page.locator("#nav-credits")).to_have_text("Pro · unlimited")
        shot(page, f"{width}-4-success")

        page.get_by_role("link", name="Start generating").click()
        page.wait_for_url("**/generate")
        expect(page.locator("#upgrade-banner")).to_have_count(0)
        expect(page.locator(".page-header__lead")).not_to_contain_text("credit")
        page.get_by_label("Your prompt").fill("One past the old limit, please")
        page.get_by_role("button", name="Generate", exact=True).click()
        expect(page.locator("#result .result")).to_be_visible()
        expect(page.locator("#result .result__meta")).to_contain_text("Unlimited")
        shot(page, f"{width}-5-pro-generate")

        page.goto("/history")
        expect(page.locator("table tbody tr")).to_have_count(1)
        prompt_cell = page.locator("table tbody tr .table__prompt")
        expect(prompt_cell).to_contain_text("One past the old limit, please")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"/history scrolls sideways by {overflow}px"
        shot(page, f"{width}-6-history")

        page.goto("/dashboard")
        shot(page, f"{width}-7-pro-dashboard")
        page.get_by_role("button", name="Manage billing").click()
        page.wait_for_url(billing_app.stripe.url + "/portal/**")
        shot(page, f"{width}-8-stripe-portal")
        page.get_by_role("button", name="Cancel subscription").click()
        page.wait_for_url(billing_app.url + "/dashboard")
        run_async(billing_app.stripe.wait_for_deliveries)  # the cancellation's webhook is in
        page.reload()
        expect(page.locator("#usage")).to_contain_text("Free plan")
        # Back on FREE, a fresh count: the PRO answers and the credits spent before are not held
        expect(page.locator("#usage")).to_contain_text("0 of 3 credits used")
        expect(page.get_by_role("button", name="Manage billing")).to_have_count(0)
        shot(page, f"{width}-9-free-again")
        plan = run_sql(clean_db, "SELECT plan FROM users WHERE sub = $1", sub)
        assert plan == "FREE"
    finally:
        context.close()
    assert problems.seen == []
