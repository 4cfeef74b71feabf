"""End to end in headless Chromium: sign in, generate, live credits, banner, hostile Markdown,
history, sign out. Screenshots of every page go to screenshots/ (look at them)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from aigen.core.history import HISTORY_PAGE_SIZE
from aigen.dev.anthropic import FakeAnthropicServer
from tests.browser.conftest import PHONE, open_page, run_sql, shot, sign_in

pytestmark = pytest.mark.browser

HOSTILE_ANSWER = """## Totally normal answer

<script>window.pwned = "script"</script>
<img src="x" onerror="window.pwned = 'img'">
<svg onload="window.pwned = 'svg'"></svg>
[click me](javascript:window.pwned='link')
<a href="javascript:window.pwned='a'">raw link</a>
<iframe src="javascript:window.pwned='iframe'"></iframe>

A **real** [docs link](https://example.com/docs).
"""


def user_id(database_url: str, sub: str) -> int:
    found = run_sql(database_url, "SELECT id FROM users WHERE sub = $1", sub)
    assert isinstance(found, int), f"no user {sub}"
    return found


def test_sign_in_generate_and_credits_change_without_reload(
    page: Page, served_app, oidc_provider, fake_claude: FakeAnthropicServer, clean_db
) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Ask Claude anything")
    shot(page, "01-landing")
    sign_in(page, served_app.url, oidc_provider, "ada", name="Ada Lovelace")
    usage = page.locator("#usage")
    expect(usage).to_contain_text("0 of 3 credits used")
    expect(page.locator("#nav-credits")).to_have_text("3 credits left")
    page.evaluate("window.sameDocument = true")  # gone if anything reloads the page

    fake_claude.set_scenario([{"type": "delay", "seconds": 1.0}])
    prompt = page.get_by_label("Your prompt")
    prompt.fill("Show a python example of keyset pagination")
    prompt.press("Control+Enter")
    button = page.locator("#generate-button")
    expect(button).to_be_disabled()
    expect(button).to_have_accessible_name("Generating…")
    expect(page.locator("#generating")).to_be_visible()
    shot(page, "02-generate-running")

    result = page.locator("#result .result")
    expect(result).to_be_visible()
    expect(result.locator(".result__body h2")).to_have_text("Show a python example of keyset")
    expect(result.locator("pre code")).to_contain_text("def answer()")
    expect(result.locator(".result__meta")).to_contain_text(re.compile(r"\d+ in · \d+ out tokens"))
    expect(result.locator(".result__meta")).to_contain_text("2 credits left")
    expect(button).to_be_enabled()
    expect(button).to_have_accessible_name("Generate")
    expect(page.locator("#generating")).to_be_hidden()
    expect(usage).to_contain_text("1 of 3 credits used")  # HX-Trigger: credits-changed
    expect(page.locator("#nav-credits")).to_have_text("2 credits left")  # out-of-band swap
    expect(prompt).to_have_value("Show a python example of keyset pagination")
    assert page.evaluate("window.sameDocument") is True
    shot(page, "03-generate-result")

    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ada Lovelace")
    expect(page.locator("#usage progress")).to_have_attribute("value", "1")
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Show a python example of keyset pagination")
    expect(rows.first).to_contain_text("Succeeded")
    shot(page, "04-dashboard")

    # Credits spent elsewhere (another tab, the API) show up on the next refresh of the card.
    page.evaluate("window.sameDocument = true")
    run_sql(clean_db, "UPDATE users SET credits_used = 3 WHERE sub = 'ada'")
    page.evaluate("htmx.trigger(document.body, 'credits-changed')")
    expect(page.locator("#usage")).to_contain_text("3 of 3 credits used")
    expect(page.locator("#usage progress")).to_have_class(re.compile("progress--error"))
    assert page.evaluate("window.sameDocument") is True


def test_exhausted_credits_show_the_upgrade_banner_and_no_result(
    page: Page, served_app, oidc_provider, fake_claude: FakeAnthropicServer, clean_db
) -> None:
    sign_in(page, served_app.url, oidc_provider, "spent")
    # Spent elsewhere (another tab) while this page still offers the Generate button.
    run_sql(clean_db, "UPDATE users SET credits_used = credits_limit WHERE sub = 'spent'")
    page.get_by_label("Your prompt").fill("One more answer, please")
    page.get_by_role("button", name="Generate", exact=True).click()
    banner = page.locator("#upgrade-banner")
    expect(banner).to_contain_text("You've used all your free credits.")
    expect(page.locator("#result .result")).to_have_count(0)
    expect(page.get_by_label("Your prompt")).to_have_value("One more answer, please")
    expect(page.locator("#nav-credits")).to_have_text("0 credits left")
    assert fake_claude.requests() == []
    shot(page, "05-upgrade-banner")
    page.reload()  # on load: one banner, and Generate is disabled with the reason
    expect(banner).to_have_count(1)
    expect(page.locator("#generate-button")).to_be_disabled()
    expect(page.locator("#prompt-hint")).to_contain_text("No credits left until")
    banner.get_by_role("link", name="See plans and upgrade").click()
    page.wait_for_url("**/pricing")
    expect(page.locator(".plan")).to_have_count(2)
    expect(page.locator("#plan-free")).to_contain_text("Your plan")
    shot(page, "06-pricing")


def test_hostile_markdown_answer_renders_inert(
    page: Page, served_app, oidc_provider, fake_claude: FakeAnthropicServer, clean_db
) -> None:
    sign_in(page, served_app.url, oidc_provider, "mallory")
    fake_claude.set_scenario([{"type": "reply", "text": HOSTILE_ANSWER}])
    page.get_by_label("Your prompt").fill("Say something nasty")
    page.get_by_role("button", name="Generate", exact=True).click()
    body = page.locator("#result .result__body")
    expect(body.locator("h2")).to_have_text("Totally normal answer")
    expect(body).to_contain_text('<script>window.pwned = "script"</script>')  # as text
    inert = ("script", "img", "svg", "iframe", "[onerror]", "[onload]", "a[href^=javascript]")
    for selector in inert:
        expect(body.locator(selector)).to_have_count(0)
    expect(body.locator("a")).to_have_count(1)
    expect(body.locator("a")).to_have_attribute("href", "https://example.com/docs")
    body.get_by_text("click me", exact=False).click()  # plain text: clicking does nothing
    assert page.evaluate("window.pwned") is None
    shot(page, "07-hostile-markdown")


def test_upstream_failure_keeps_the_prompt_and_retry_works(
    page: Page, served_app, oidc_provider, fake_claude: FakeAnthropicServer, clean_db
) -> None:
    sign_in(page, served_app.url, oidc_provider, "grace")
    fake_claude.set_scenario([{"type": "fail", "status": 529, "times": 2}])
    prompt = page.get_by_label("Your prompt")
    prompt.fill("Is the service up?")
    page.get_by_role("button", name="Generate", exact=True).click()
    error = page.locator("#generate-error")
    expect(error).to_contain_text("Retrying may help")
    expect(error).to_contain_text("Your credit was refunded.")
    expect(prompt).to_have_value("Is the service up?")
    expect(page.locator("#usage")).to_contain_text("0 of 3 credits used")
    shot(page, "08-upstream-error")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#result .result")).to_be_visible()
    expect(error).to_have_count(0)


def test_history_pages_with_keyset_links_and_opens_a_generation(
    page: Page, served_app, oidc_provider, clean_db
) -> None:
    sign_in(page, served_app.url, oidc_provider, "historian")
    uid = user_id(clean_db, "historian")
    total = HISTORY_PAGE_SIZE + 5
    run_sql(
        clean_db,
        """
        INSERT INTO generations (user_id, prompt, result, status, model, input_tokens,
                                 output_tokens, created_at, completed_at)
        SELECT $1, 'Question ' || n || E'\\nwith details', '### Answer ' || n || E'\\n\\n*done*',
               CASE WHEN n % 7 = 0 THEN 'failed' ELSE 'succeeded' END, 'claude-test', 10, 20,
               timestamptz '2025-03-01 09:00Z' + n * interval '1 minute',
               timestamptz '2025-03-01 09:00Z' + n * interval '1 minute'
        FROM generate_series(1, $2) AS n
        """,
        uid,
        total,
    )
    page.get_by_role("link", name="History").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(HISTORY_PAGE_SIZE)
    expect(rows.first).to_contain_text(f"Question {total}")
    expect(rows.first).not_to_contain_text("with details")
    shot(page, "09-history")
    page.get_by_role("link", name="Older →").click()
    expect(rows).to_have_count(5)
    expect(rows.last).to_contain_text("Question 1")
    expect(page.get_by_text("End of history")).to_be_visible()
    shot(page, "10-history-last-page")
    rows.first.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Generation #\d+"))
    expect(page.locator(".prompt-text")).to_have_text("Question 5\nwith details")
    expect(page.locator(".result__body h3")).to_have_text("Answer 5")
    expect(page.locator(".result__body em")).to_have_text("done")
    shot(page, "11-generation-detail")
    page.get_by_role("link", name="← History").click()
    expect(rows).to_have_count(HISTORY_PAGE_SIZE)


def test_sign_out_and_signed_out_pages_go_to_sign_in(
    page: Page, served_app, oidc_provider, clean_db
) -> None:
    sign_in(page, served_app.url, oidc_provider, "leaver")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(served_app.url + "/")
    expect(page.get_by_role("link", name="Sign in with Google")).to_be_visible()
    page.goto("/dashboard")
    page.wait_for_url(oidc_provider.url + "/**")  # /login?next=/dashboard → the provider
    page.locator('input[name="sub"]').fill("leaver")
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.wait_for_url(served_app.url + "/dashboard")  # and back where they wanted to go


def test_signed_out_htmx_refresh_redirects_the_whole_page(
    page: Page, served_app, oidc_provider, clean_db
) -> None:
    sign_in(page, served_app.url, oidc_provider, "expired")
    page.goto("/dashboard")
    page.context.clear_cookies()  # the session ends while the page is open
    page.evaluate("htmx.trigger(document.body, 'credits-changed')")
    page.wait_for_url(oidc_provider.url + "/**")  # not a login page inside the usage card


def test_not_found_page(page: Page, served_app, oidc_provider, clean_db) -> None:
    page.goto("/generations/999999")
    # Signed out: redirected to sign-in, which sends the browser on to the provider.
    assert page.url.startswith(oidc_provider.url), page.url
    sign_in(page, served_app.url, oidc_provider, "lost")
    response = page.goto("/generations/999999")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("We couldn't find that page")
    shot(page, "12-not-found")


# The text of the visible elements matching a selector that reach past either edge of the window.
OUTSIDE_THE_VIEWPORT = """selector => [...document.querySelectorAll(selector)]
    .filter(element => {
        const box = element.getBoundingClientRect();
        return box.width > 0 && (box.left < -0.5 || box.right > window.innerWidth + 0.5);
    })
    .map(element => element.textContent.trim())"""


def test_phone_and_dark_mode(browser, served_app, oidc_provider, clean_db) -> None:
    context, page, problems = open_page(
        browser, served_app, viewport=PHONE, is_mobile=True, has_touch=True
    )
    try:
        page.goto("/")
        shot(page, "13-phone-landing")
        sign_in(page, served_app.url, oidc_provider, "phone")
        page.get_by_label("Your prompt").fill("Summarise the plot of Hamlet in three bullet points")
        page.get_by_role("button", name="Generate", exact=True).click()
        expect(page.locator("#result .result")).to_be_visible()
        expect(page.locator("#usage")).to_contain_text("1 of 3 credits used")
        shot(page, "14-phone-generate")
        for path in ("/generate", "/dashboard", "/history", "/pricing"):
            page.goto(path)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} scrolls sideways on a phone by {overflow}px"
            # Nor is anything cut off inside a box that scrolls or clips (a nav link, a cell).
            cut_off = page.evaluate(OUTSIDE_THE_VIEWPORT, ".nav__link, .table--cards td")
            assert cut_off == [], f"{path} puts these beyond the screen's edge: {cut_off}"
        page.goto("/dashboard")
        shot(page, "15-phone-dashboard")
    finally:
        context.close()
    assert problems.seen == []

    context, page, problems = open_page(browser, served_app, color_scheme="dark")
    try:
        sign_in(page, served_app.url, oidc_provider, "night")
        page.get_by_label("Your prompt").fill("Explain dark mode in one paragraph")
        page.get_by_role("button", name="Generate", exact=True).click()
        expect(page.locator("#result .result")).to_be_visible()
        shot(page, "16-dark-generate")
        page.goto("/pricing")
        shot(page, "17-dark-pricing")
    finally:
        context.close()
    assert problems.seen == []


def test_unverified_user_sees_one_banner_and_no_credits_yet(
    page: Page, served_app, oidc_provider, clean_db
) -> None:
    oidc_provider.set_user(
        "waiting", email="waiting@example.com", email_verified=False, name="Wai Ting"
    )
    page.goto("/")
    page.get_by_role("link", name="Sign in with Google").click()
    page.wait_for_url(oidc_provider.url + "/**")
    page.locator('input[name="sub"]').fill("waiting")
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.wait_for_url(served_app.url + "/generate")
    expect(page.locator("#verify-email-banner")).to_have_count(1)
    expect(page.get_by_role("button", name="Resend the verification e-mail")).to_have_count(1)
    expect(page.locator("#generate-button")).to_be_disabled()
    expect(page.locator("#nav-credits")).to_have_text("Verify for credits")
    expect(page.locator("#usage")).to_contain_text("Your credits arrive with verification")
    shot(page, "18-unverified")
