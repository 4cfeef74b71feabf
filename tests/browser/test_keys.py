"""The /keys page in headless Chromium: create a key (shown once, copied), call the API with it,
revoke it after confirming, the limit of 10; on a laptop and at 390 px. Screenshots in
screenshots/ (look at them)."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from aigen.dev.serving import ThreadedServer
from tests.browser.conftest import PHONE, SCREENSHOTS, open_page, run_sql, sign_in

pytestmark = pytest.mark.browser

KEY = re.compile(r"aig_[A-Za-z0-9_-]{43}")


def shot(page: Page, name: str) -> None:
    """A full-page screenshot in screenshots/NAME.png, transitions finished.

    The caret is left alone: Playwright hides it with a <style> our CSP refuses, and the refusal,
    seen after a later htmx swap, would count as a problem of the page.
    """
    page.screenshot(
        path=str(SCREENSHOTS / f"{name}.png"),
        full_page=True,
        animations="disabled",
        caret="initial",
    )


def create_key(page: Page, name: str) -> str:
    """Create a key on /keys and read it from the box it is shown in once."""
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Create key").click()
    shown = page.get_by_label("Your new API key")
    expect(shown).to_have_value(KEY)
    return shown.input_value()


def call_api(served_app: ThreadedServer, key: str) -> httpx.Response:
    """POST /api/generate from a script holding only the key."""
    return httpx.post(
        served_app.url + "/api/generate",
        json={"prompt": "Hello from a script"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_create_copy_use_and_revoke_a_key(
    page: Page, served_app: ThreadedServer, oidc_provider, clean_db
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, served_app.url, oidc_provider, "keymaker")
    page.get_by_role("link", name="Dashboard").click()
    page.locator("main").get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("API keys")
    expect(page.locator("nav").get_by_role("link", name="API keys")).to_have_attribute(
        "aria-current", "page"
    )
    expect(page.locator("#keys")).to_contain_text("No active keys")
    shot(page, "18-keys-empty")

    page.evaluate("window.sameDocument = true")
    key = create_key(page, "ci")
    assert page.evaluate("window.sameDocument") is True  # an htmx swap, not a reload
    expect(page.locator("#new-key")).to_contain_text("it will not be shown again")
    rows = page.locator("#keys tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ci")
    expect(rows.first).to_contain_text(key[:12])
    expect(rows.first).to_contain_text("Never")
    expect(page.get_by_label("Name", exact=True)).to_have_value("")  # ready for the next one
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    shot(page, "19-keys-created")

    answer = call_api(served_app, key)
    assert answer.status_code == 200, answer.text
    assert answer.json()["credits"]["used"] == 1

    page.reload()
    assert key not in page.content()  # shown once
    expect(page.get_by_label("Your new API key")).to_have_count(0)
    expect(rows.first).not_to_contain_text("Never")  # last used just now

    page.get_by_role("link", name="Revoke ci").click()
    confirm = page.locator(".keys-table__confirm")
    expect(confirm).to_contain_text("Revoke “ci”?")
    shot(page, "20-keys-confirm-revoke")
    confirm.get_by_role("link", name="Cancel").click()
    expect(confirm).to_have_count(0)
    expect(rows).to_have_count(1)
    page.get_by_role("link", name="Revoke ci").click()
    page.get_by_role("button", name="Revoke key").click()
    expect(page.locator("#keys")).to_contain_text("Key “ci” was revoked")
    expect(page.locator("#keys")).to_contain_text("No active keys")
    shot(page, "21-keys-revoked")

    refused = call_api(served_app, key)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"


def test_the_eleventh_key_is_refused_on_the_page(
    page: Page, served_app: ThreadedServer, oidc_provider, clean_db
) -> None:
    sign_in(page, served_app.url, oidc_provider, "collector")
    run_sql(
        clean_db,
        """
        INSERT INTO api_keys (user_id, name, prefix, secret_hash)
        SELECT users.id, 'key ' || n, 'aig_key' || n, sha256(('secret ' || n)::bytea)
        FROM users, generate_series(1, 10) AS n WHERE users.sub = $1
        """,
        "collector",
    )
    page.goto("/keys")
    expect(page.locator("#keys tbody tr")).to_have_count(10)
    page.get_by_label("Name", exact=True).fill("eleventh")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#key-name-error")).to_contain_text("Revoke one to create another")
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Name", exact=True)).to_have_value("eleventh")
    expect(page.get_by_label("Your new API key")).to_have_count(0)
    shot(page, "22-keys-limit")


def test_keys_page_on_a_phone_and_in_the_dark(
    browser, served_app: ThreadedServer, oidc_provider, clean_db
) -> None:
    context, page, problems = open_page(
        browser, served_app, viewport=PHONE, is_mobile=True, has_touch=True
    )
    try:
        sign_in(page, served_app.url, oidc_provider, "pocket")
        page.goto("/keys")
        shot(page, "23-phone-keys-empty")
        create_key(page, "a rather long name for a key used by the nightly report job")
        create_key(page, "phone")
        assert sideways_overflow(page) <= 0
        shot(page, "24-phone-keys-created")
        page.get_by_role("link", name="Revoke phone").click()
        expect(page.locator(".keys-table__confirm")).to_be_visible()
        assert sideways_overflow(page) <= 0
        page.evaluate("window.scrollTo(0, 0)")  # else the sticky nav lands mid-screenshot
        shot(page, "25-phone-keys-confirm")
    finally:
        context.close()
    assert problems.seen == []

    context, page, problems = open_page(browser, served_app, color_scheme="dark")
    try:
        sign_in(page, served_app.url, oidc_provider, "owl")
        page.goto("/keys")
        create_key(page, "night shift")
        shot(page, "26-dark-keys-created")
    finally:
        context.close()
    assert problems.seen == []


def sideways_overflow(page: Page) -> int:
    """How far the page scrolls sideways (0 or less: it does not)."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert isinstance(overflow, int)
    return overflow
