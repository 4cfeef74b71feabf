"""The generate page streams in headless Chromium: text appears while Claude writes, Markdown is
rendered (and sanitized) as it grows, Stop cancels, and the credits follow. Screenshots go to
screenshots/ (look at them)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from aigen.dev.anthropic import FakeAnthropicServer
from tests.browser.conftest import EXPECT_TIMEOUT_MS, open_page, run_sql, shot, sign_in

pytestmark = pytest.mark.browser

RICH_ANSWER = """## Rendered the same way

Text with **bold**, *emphasis*, ~~struck~~ and `code`, a [link](https://example.com/a?b=1&c=2)
and a [relative one](/history), ![a picture](https://example.com/p.png) shown as a link.

| left | centre | right |
|:-----|:------:|------:|
| 1    | 2      | 3     |

1. one
2. two

> quoted

```python
print("<b>not bold</b>")
```

<b>raw html stays text</b> and [bad](javascript:alert(1)) and <https://example.com/auto>.
"""


def wait_for(check: Any, what: str) -> Any:
    """Poll a synchronous check until it is truthy (the server finishes on its own)."""
    deadline = time.monotonic() + EXPECT_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def generation(database_url: str, column: str) -> object:
    return run_sql(database_url, f"SELECT {column} FROM generations ORDER BY id DESC LIMIT 1")


def upstream_streaming(fake: FakeAnthropicServer) -> bool:
    """Whether the upstream has begun sending its stream (deltas_sent is set when it starts)."""
    logged = fake.requests()
    return bool(logged) and logged[-1]["deltas_sent"] is not None


def upstream_outcome(fake: FakeAnthropicServer) -> str | None:
    logged = fake.requests()
    return logged[-1]["stream_outcome"] if logged else None


def test_the_answer_appears_while_claude_writes_it(
    page: Page, served_app, oidc_provider, fake_claude: FakeAnthropicServer, clean_db
) -> None:
    sign_in(page, served_app.url, oidc_provider, "reader")
    fake_claude.set_scenario([{"type": "stream_paced", "deltas": 8, "interval": 0.4}])
    page.get_by_label("Your prompt").fill("Explain streaming in a few lines")
    page.get_by_role("button", name="Generate", exact=True).click()

    writing = page.locator("#result .result--streaming")
    expect(writing.locator(".result__body h2")).to_have_text("Explain streaming in a few lines")
    # Rendered as Markdown while the upstream is still sending: nothing waited for the end.
    assert upstream_outcome(fake_claude) is None
    expect(writing.locator(".result__meta")).to_contain_text("Writing…")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.locator("#generate-button")).to_be_disabled()
    shot(page, "18-stream-writing")

    result = page.locator("#result .result")
    expect(result).not_to_have_class(re.compile("result--streaming"))
    assert upstream_outcome(fake_claude) == "completed"
    expect(result.locator(".result__meta")).to_contain_text(re.compile(r"\d+ in · \d+ out tokens"))
    expect(result.locator(".result__meta")).to_contain_text("2 credits left")
    expect(result.get_by_role("link", name="Permalink")).to_have_attribute(
        "href", re.compile(r"^/generations/\d+$")
    )
    expect(page.locator("#nav-credits")).to_have_text("2 credits left")
    expect(page.locator("#usage")).to_contain_text("1 of 3 credits used")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.locator("#generate-button")).to_be_enabled()
    assert generation(clean_db, "status") == "succeeded"
    shot(page, "19-stream-done")


def test_stop_cancels_and_keeps_the_partial_answer(
    page: Page, served_app, oidc_provider, fake_claude: FakeAnthropicServer, clean_db
) -> None:
    sign_in(page, served_app.url, oidc_provider, "stopper")
    fake_claude.set_scenario([{"type": "stream_paced", "deltas": 30, "interval": 0.3}])
    page.get_by_label("Your prompt").fill("A long answer I will not wait for")
    page.get_by_role("button", name="Generate", exact=True).click()
    body = page.locator("#result .result__body")
    expect(body.locator("h2")).to_be_visible()
    page.get_by_role("button", name="Stop").click()

    meta = page.locator("#result .result__meta")
    expect(meta).to_contain_text("Stopped · The partial answer used your credit.")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.locator("#generate-button")).to_be_enabled()
    wait_for(lambda: upstream_outcome(fake_claude) == "client_closed", "the upstream saw the close")
    wait_for(lambda: generation(clean_db, "status") == "cancelled", "the row cancelled")
    stored = generation(clean_db, "result")
    assert isinstance(stored, str) and stored.startswith("## A long")  # what had arrived
    expect(page.locator("#usage")).to_contain_text("1 of 3 credits used")
    expect(page.locator("#nav-credits")).to_have_text("2 credits left")
    shot(page, "20-stream-stopped")

    # The next prompt streams as usual.
    fake_claude.set_scenario([])
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#result .result__meta")).to_contain_text("1 credit left")
    expect(meta).not_to_contain_text("Stopped")


def test_stop_before_claude_writes_refunds_the_credit(
    page: Page, served_app, oidc_provider, fake_claude: FakeAnthropicServer, clean_db
) -> None:
    sign_in(page, served_app.url, oidc_provider, "hasty")
    fake_claude.set_scenario([{"type": "stream_stall", "after": 0, "seconds": 30}])
    page.get_by_label("Your prompt").fill("Never mind")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#result .result--streaming")).to_be_visible()  # `start` arrived
    wait_for(lambda: upstream_streaming(fake_claude), "the upstream began its stream")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#result .result__meta")).to_contain_text(
        "Stopped · Your credit was refunded."
    )
    wait_for(lambda: generation(clean_db, "status") == "cancelled", "the row cancelled")
    assert generation(clean_db, "result") is None
    expect(page.locator("#usage")).to_contain_text("0 of 3 credits used")
    expect(page.locator("#nav-credits")).to_have_text("3 credits left")


def test_an_upstream_error_mid_stream_keeps_the_partial_and_explains(
    page: Page, served_app, oidc_provider, fake_claude: FakeAnthropicServer, clean_db
) -> None:
    sign_in(page, served_app.url, oidc_provider, "unlucky")
    fake_claude.set_scenario([{"type": "stream_error", "status": 529, "after": 2}])
    page.get_by_label("Your prompt").fill("Break halfway please")
    page.get_by_role("button", name="Generate", exact=True).click()
    error = page.locator("#generate-error")
    expect(error).to_contain_text("Claude stopped before finishing")
    expect(error).to_contain_text("Claude is overloaded or unavailable right now.")
    expect(error).to_contain_text("Retrying may help")
    expect(error).to_contain_text("The partial answer used your credit.")
    expect(page.locator("#result .result__body h2")).to_have_text("Break halfway please")
    expect(page.locator("#usage")).to_contain_text("1 of 3 credits used")
    expect(page.locator("#nav-credits")).to_have_text("2 credits left")
    assert generation(clean_db, "status") == "failed"
    shot(page, "21-stream-error")


def test_streamed_markdown_is_rendered_as_the_server_renders_it(
    page: Page, served_app, oidc_provider, fake_claude: FakeAnthropicServer, clean_db
) -> None:
    """The browser's renderer (markdown-it + DOMPurify) gives the HTML of web/markdown.py."""
    sign_in(page, served_app.url, oidc_provider, "typesetter")
    fake_claude.set_scenario(
        [{"type": "stream_paced", "deltas": 15, "interval": 0.05, "text": RICH_ANSWER}]
    )
    page.get_by_label("Your prompt").fill("Show me everything")
    page.get_by_role("button", name="Generate", exact=True).click()
    body = page.locator("#result .result__body")
    expect(page.locator("#result .result")).not_to_have_class(re.compile("result--streaming"))
    streamed = body.inner_html()
    assert page.evaluate("window.pwned") is None
    expect(body.locator("a.md-image-link")).to_have_attribute("href", "https://example.com/p.png")
    expect(body.locator("th.md-align-center")).to_have_text("centre")
    expect(body.locator("a[href^=javascript]")).to_have_count(0)
    expect(body.locator("b")).to_have_count(0)
    expect(body.locator("a").first).to_have_attribute("rel", "nofollow noopener noreferrer")
    shot(page, "22-stream-markdown")

    page.get_by_role("link", name="Permalink").click()
    rendered_by_server = page.locator(".result__body").inner_html()
    assert streamed.strip() == rendered_by_server.strip()


def test_without_javascript_the_form_posts_and_shows_the_answer(
    browser, served_app, oidc_provider, fake_claude: FakeAnthropicServer, clean_db
) -> None:
    context, page, _ = open_page(browser, served_app)
    sign_in(page, served_app.url, oidc_provider, "nojs")  # the provider's form needs JavaScript
    cookies = context.storage_state()
    context.close()
    context, page, problems = open_page(
        browser, served_app, java_script_enabled=False, storage_state=cookies
    )
    try:
        page.goto("/generate")
        page.get_by_label("Your prompt").fill("No scripts here")
        page.get_by_role("button", name="Generate", exact=True).click()
        page.wait_for_url(served_app.url + "/generate")
        result = page.locator("#result .result")
        expect(result.locator(".result__body h2")).to_have_text("No scripts here")
        expect(result.locator(".result__meta")).to_contain_text("2 credits left")
        expect(page.get_by_label("Your prompt")).to_have_value("No scripts here")
        expect(page.get_by_role("button", name="Stop")).to_be_hidden()
        assert fake_claude.requests()[-1]["stream"] is False
        shot(page, "23-no-javascript")
    finally:
        context.close()
    assert problems.seen == []
