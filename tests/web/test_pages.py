"""Landing, generate (HTMX partials), dashboard and its usage partial, history, pricing, errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser

import asyncpg
import pytest
from quart import Quart

from aigen.app import create_app
from aigen.clients.ratelimit import Decision
from aigen.core.errors import DomainError, RateLimited, VerificationRequired
from aigen.core.history import HISTORY_PAGE_SIZE
from aigen.dev.anthropic import FakeAnthropicServer
from aigen.store.repository import User
from aigen.web.runtime import EXTENSION_KEY
from tests.helpers import make_user, page_csrf_token, signed_in

HTMX = {"HX-Request": "true", "HX-Current-URL": "http://127.0.0.1:8000/generate"}
HOSTILE_MARKDOWN = """# Report

<script>window.pwned = 1</script>
<img src=x onerror="window.pwned = 2">
[click me](javascript:window.pwned=3)
[data](data:text/html,<script>alert(1)</script>)
<a href="#" onclick="window.pwned=4">inline</a>

**bold** and a [real link](https://example.com/docs).
"""


async def text_of(response) -> str:
    return await response.get_data(as_text=True)


def matched(pattern: str, text: str, flags: int = 0) -> re.Match[str]:
    """re.search that fails the test, naming the pattern, when nothing matches."""
    match = re.search(pattern, text, flags)
    assert match, f"no match for {pattern!r}"
    return match


class TagCollector(HTMLParser):
    """Every start tag and its attributes, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse_tags(fragment: str) -> list[tuple[str, dict[str, str | None]]]:
    collector = TagCollector()
    collector.feed(fragment)
    return collector.tags


async def generate(client, prompt: str, *, htmx: bool = True):
    """POST the generate form as the page does (CSRF token in the header for htmx)."""
    token = await page_csrf_token(client, "/generate")
    headers = {**HTMX, "X-CSRF-Token": token} if htmx else {}
    form = {"prompt": prompt} if htmx else {"prompt": prompt, "csrf_token": token}
    return await client.post("/generate", form=form, headers=headers)


async def insert_generations(
    conn: asyncpg.Connection, user_id: int, count: int, *, start: datetime | None = None
) -> list[int]:
    """Insert finished generations one second apart, oldest first; return their ids."""
    start = start or datetime(2025, 1, 1, tzinfo=UTC)
    ids = []
    for number in range(count):
        ids.append(
            await conn.fetchval(
                """
                INSERT INTO generations (user_id, prompt, result, status, model, input_tokens,
                                         output_tokens, created_at, completed_at)
                VALUES ($1, $2, $3, 'succeeded', 'claude-test', 5, 7, $4, $4)
                RETURNING id
                """,
                user_id,
                f"Prompt number {number}\nsecond line",
                f"Answer **{number}**",
                start + timedelta(seconds=number),
            )
        )
    return ids


# --- landing, sign-in requirement --------------------------------------------------------------


async def test_landing_explains_the_product_and_offers_google_sign_in(client) -> None:
    response = await client.get("/")
    html = await text_of(response)
    assert response.status_code == 200
    assert "Ask Claude anything" in html
    assert re.search(r'<a class="button button--primary" href="/login">\s*<svg', html)
    assert "Sign in with Google" in html
    assert "3 free credits" in html  # FREE_CREDITS of the test settings


async def test_landing_sends_signed_in_users_to_generate(user_client) -> None:
    response = await user_client.get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/generate"


@pytest.mark.parametrize(
    ("path", "next_path"),
    [
        ("/generate", "/generate"),
        ("/dashboard", "/dashboard"),
        ("/dashboard/usage", "/dashboard/usage"),
        ("/history", "/history"),
        ("/history?before=1.2", "/history%3Fbefore%3D1.2"),
        ("/generations/7", "/generations/7"),
    ],
)
async def test_signed_out_page_redirects_to_login_with_next(client, path, next_path) -> None:
    response = await client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/login?next={next_path}"


async def test_signed_out_htmx_request_gets_hx_redirect_to_the_page_it_came_from(client) -> None:
    response = await client.get(
        "/dashboard/usage",
        headers={"HX-Request": "true", "HX-Current-URL": "http://127.0.0.1:8000/dashboard"},
    )
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == "/login?next=/dashboard"
    assert await text_of(response) == ""


async def test_signed_out_htmx_post_is_redirected_not_run(client, db, fake_claude) -> None:
    response = await client.post("/generate", form={"prompt": "hi"}, headers=HTMX)
    assert response.headers["HX-Redirect"] == "/login?next=/generate"
    assert await db.fetchval("SELECT count(*) FROM generations") == 0
    assert fake_claude.requests() == []


# --- generate ------------------------------------------------------------------------------------


async def test_generate_page_has_a_labelled_streaming_prompt_form(user_client) -> None:
    html = await text_of(await user_client.get("/generate"))
    assert '<label for="prompt">Your prompt</label>' in html
    textarea = matched(r"<textarea[^>]*>", html).group(0)
    assert 'id="prompt"' in textarea and 'name="prompt"' in textarea
    assert "required" in textarea and "data-submit-on-ctrl-enter" in textarea
    form = matched(r"<form class=\"card\"[^>]*>", html).group(0)
    # aigen.js streams into #result; without JavaScript the form posts the whole page.
    assert 'method="post" action="/generate"' in form and 'data-stream-into="result"' in form
    assert '<button class="button button--secondary" type="button" id="stop-button" hidden>' in html
    for script in ("markdown-it-15.0.3.min.js", "purify-3.5.0.min.js", "aigen.js"):
        assert f'src="/static/{script}" defer' in html
    button = matched(r'<button [^>]*id="generate-button">(.*?)</button>', html, re.S).group(1)
    assert '<span class="button__label">Generate</span>' in button
    assert re.search(r'<span class="htmx-indicator" id="generating">.*Generating…</span>', button)
    assert '<div id="result" class="result-region" aria-live="polite"></div>' in html
    assert 'id="usage"' in html  # the usage card refreshes beside the prompt too
    assert 'aria-current="page">Generate</a>' in html


async def test_generate_renders_markdown_tokens_and_credits_left(
    user_client, user: User, db, fake_claude: FakeAnthropicServer
) -> None:
    fake_claude.set_scenario([{"type": "reply", "text": "## Plan\n\n- **one**\n- `two`"}])
    response = await generate(user_client, "Make a plan")
    html = await text_of(response)
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "credits-changed"
    assert "<h2>Plan</h2>" in html and "<strong>one</strong>" in html and "<code>two</code>" in html
    row = await db.fetchrow("SELECT id, input_tokens, output_tokens FROM generations")
    assert f"{row['input_tokens']} in · {row['output_tokens']} out tokens" in html
    assert "2 credits left" in html
    assert f'href="/generations/{row["id"]}"' in html
    # The nav's credit pill is updated out of band.
    nav_pill = r'id="nav-credits" class="nav__credits" hx-swap-oob="true">2 credits left<'
    assert re.search(nav_pill, html)
    assert "<html" not in html  # a partial, not a page
    assert await db.fetchval("SELECT credits_used FROM users WHERE id = $1", user.id) == 1


async def test_hostile_markdown_is_rendered_inert(
    user_client, fake_claude: FakeAnthropicServer
) -> None:
    fake_claude.set_scenario([{"type": "reply", "text": HOSTILE_MARKDOWN}])
    html = await text_of(await generate(user_client, "be evil"))
    body = matched(r'<div class="result__body markdown">(.*?)</div>\s*</article>', html, re.S)
    rendered = body.group(1)
    assert "<h1>Report</h1>" in rendered and "<strong>bold</strong>" in rendered
    assert '<a href="https://example.com/docs" rel="nofollow noopener noreferrer">' in rendered
    tags = parse_tags(rendered)
    assert {tag for tag, _ in tags} <= {"h1", "p", "strong", "a", "br"}
    assert not [name for _, attrs in tags for name in attrs if name.startswith("on")]
    hrefs = [attrs["href"] for tag, attrs in tags if tag == "a"]
    assert hrefs == ["https://example.com/docs"]  # javascript: and data: links stay text
    assert "&lt;script&gt;" in rendered  # shown as text, not run


async def test_out_of_credits_shows_the_upgrade_banner_and_no_result(
    app: Quart, db, fake_claude: FakeAnthropicServer
) -> None:
    spent = await make_user(db, "spent@example.com", credits_limit=2)
    await db.execute("UPDATE users SET credits_used = 2 WHERE id = $1", spent.id)
    async with signed_in(app, spent.id) as client:
        response = await generate(client, "one more please")
    html = await text_of(response)
    assert response.status_code == 200  # htmx 2 swaps only 2xx
    assert "You've used all your free credits." in html
    assert '<a class="button button--primary button--small" href="/pricing">' in html
    assert 'class="result"' not in html
    assert "0 credits left" in html
    assert await db.fetchval("SELECT count(*) FROM generations") == 0
    assert fake_claude.requests() == []


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("   \n ", "Field 'prompt' must not be blank."),
        ("x" * 101, "Field 'prompt' must be at most 100 characters."),
    ],
)
async def test_bad_prompt_says_retrying_wont_help_and_charges_nothing(
    app_settings, db, user: User, fake_claude, prompt: str, message: str
) -> None:
    app = create_app({**app_settings, "MAX_PROMPT_CHARS": "100"})
    async with app.test_app(), signed_in(app, user.id) as client:
        response = await generate(client, prompt)
    html = await text_of(response)
    assert response.status_code == 200
    assert message in unescape(html)
    assert "Retrying won't help:" in html and "change your prompt" in html
    assert "HX-Trigger" not in response.headers  # nothing could have changed
    assert await db.fetchval("SELECT credits_used FROM users WHERE id = $1", user.id) == 0
    assert fake_claude.requests() == []


async def test_upstream_failure_says_retrying_may_help_and_refunds(
    user_client, user: User, db, fake_claude: FakeAnthropicServer
) -> None:
    fake_claude.set_scenario([{"type": "fail", "status": 529, "times": 2}])
    response = await generate(user_client, "hello")
    html = await text_of(response)
    assert response.status_code == 200
    assert 'data-status="503"' in html
    assert "Claude is unavailable right now" in html
    assert "Retrying may help:" in html and "Your credit was refunded." in html
    assert response.headers["HX-Trigger"] == "credits-changed"
    assert await db.fetchval("SELECT credits_used FROM users WHERE id = $1", user.id) == 0
    assert await db.fetchval("SELECT status FROM generations") == "failed"


async def test_non_retryable_upstream_error_says_retrying_wont_help(
    user_client, fake_claude: FakeAnthropicServer
) -> None:
    fake_claude.set_scenario([{"type": "fail", "status": 400}])
    html = await text_of(await generate(user_client, "hello"))
    assert "Claude rejected the request (HTTP 400)." in html
    assert "Retrying won't help</strong> right now" in html


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            RateLimited("Too many generations: slow down.", Decision(False, 10, 0, 12, 12)),
            ["You're sending prompts too quickly", "Retrying may help:", "try again in 12 seconds"],
        ),
        (
            VerificationRequired("Verify your e-mail address to generate."),
            [
                "Please verify your e-mail address first.",
                'hx-post="/verify-email/resend"',
                "Verify your e-mail address to generate.",
            ],
        ),
    ],
)
async def test_errors_of_the_guardrails_get_their_own_partial(
    app: Quart, user_client, monkeypatch, error: DomainError, expected: list[str]
) -> None:
    async def refuse(user_id: int, prompt: str):
        raise error

    monkeypatch.setattr(app.extensions[EXTENSION_KEY].generations, "generate", refuse)
    response = await generate(user_client, "hello")
    html = await text_of(response)
    assert response.status_code == 200
    for text in expected:
        assert text in unescape(html)


async def test_generate_without_javascript_renders_the_whole_page_keeping_the_prompt(
    user_client, fake_claude: FakeAnthropicServer
) -> None:
    fake_claude.set_scenario([{"type": "fail", "status": 529, "times": 2}])
    response = await generate(user_client, "keep <this> prompt", htmx=False)
    html = await text_of(response)
    assert response.status_code == 503
    assert "<html" in html and "Retrying may help:" in html
    assert ">keep &lt;this&gt; prompt</textarea>" in html
    assert html.count('id="nav-credits"') == 1


# --- dashboard and the usage partial -----------------------------------------------------------


async def test_dashboard_welcomes_and_shows_usage_and_the_five_newest(
    user_client, user: User, db
) -> None:
    ids = await insert_generations(db, user.id, 7)
    await db.execute("UPDATE users SET credits_used = 1 WHERE id = $1", user.id)
    html = await text_of(await user_client.get("/dashboard"))
    assert "Welcome, Ada" in html and "Free plan" in html
    assert "1 of 3 credits used" in html and "2 credits left" in html
    assert re.search(r'<progress class="progress"\s+max="3" value="1"', html)
    links = re.findall(r'href="/generations/(\d+)"', html)
    assert [int(link) for link in links] == list(reversed(ids))[:5]
    assert "Prompt number 6" in html and "second line" not in html  # first line only
    assert '<time datetime="2025-01-01T00:00:06Z">2025-01-01 00:00</time>' in html
    assert '<span class="badge badge--success">Succeeded</span>' in html


async def test_dashboard_for_pro_says_unlimited(app: Quart, db) -> None:
    pro = await make_user(db, "pro@example.com", plan="PRO")
    async with signed_in(app, pro.id) as client:
        html = await text_of(await client.get("/dashboard"))
    assert "Unlimited" in html and "Pro plan" in html
    assert "<progress" not in html
    assert "No generations yet." in html


async def test_usage_partial_refreshes_itself_and_after_each_generation(
    user_client, user: User, db
) -> None:
    first = await text_of(await user_client.get("/dashboard/usage", headers=HTMX))
    await db.execute("UPDATE users SET credits_used = 3 WHERE id = $1", user.id)
    second = await text_of(await user_client.get("/dashboard/usage", headers=HTMX))
    assert "<html" not in first
    section = matched(r'<section id="usage"[^>]*>', first, re.S).group(0)
    assert 'hx-get="/dashboard/usage"' in section and 'hx-swap="outerHTML"' in section
    assert 'hx-trigger="every 30s, credits-changed from:body"' in section
    assert "0 of 3 credits used" in first
    assert "3 of 3 credits used" in second and "progress--error" in second
    assert "You've used all your free credits." in second


# --- history and one generation ----------------------------------------------------------------


async def history_ids(client, url: str) -> tuple[list[int], str | None]:
    html = await text_of(await client.get(url))
    ids = [int(match) for match in re.findall(r'href="/generations/(\d+)"', html)]
    older = re.search(r'href="(/history\?before=[^"]+)" rel="next"', html)
    return ids, older.group(1).replace("&amp;", "&") if older else None


async def test_history_pages_through_everything_newest_first(user_client, user: User, db) -> None:
    ids = await insert_generations(db, user.id, 2 * HISTORY_PAGE_SIZE + 5)
    seen: list[list[int]] = []
    url: str | None = "/history"
    while url:
        page, url = await history_ids(user_client, url)
        seen.append(page)
    assert [len(page) for page in seen] == [HISTORY_PAGE_SIZE, HISTORY_PAGE_SIZE, 5]
    assert [i for page in seen for i in page] == list(reversed(ids))
    html = await text_of(await user_client.get("/history"))
    assert "End of history" not in html
    assert 'aria-current="page">History</a>' in html


async def test_history_keyset_pages_do_not_shift_when_new_generations_arrive(
    user_client, user: User, db
) -> None:
    ids = await insert_generations(db, user.id, HISTORY_PAGE_SIZE + 3)
    first, older = await history_ids(user_client, "/history")
    assert older is not None
    await insert_generations(db, user.id, 4, start=datetime(2030, 1, 1, tzinfo=UTC))
    second, _ = await history_ids(user_client, older)
    assert second == list(reversed(ids))[HISTORY_PAGE_SIZE:]  # no repeats, none skipped


async def test_history_breaks_ties_of_equal_timestamps_by_id(user_client, user: User, db) -> None:
    ids = await insert_generations(db, user.id, HISTORY_PAGE_SIZE + 2)
    await db.execute("UPDATE generations SET created_at = '2025-06-01T00:00:00Z'")
    first, older = await history_ids(user_client, "/history")
    assert older is not None
    second, _ = await history_ids(user_client, older)
    assert first + second == sorted(ids, reverse=True)


async def test_history_is_only_the_users_own(app: Quart, user_client, user: User, db) -> None:
    other = await make_user(db, "other@example.com")
    await insert_generations(db, other.id, 3)
    html = await text_of(await user_client.get("/history"))
    assert "You haven't generated anything yet." in html
    assert "/generations/" not in html


@pytest.mark.parametrize("cursor", ["nonsense", "1.x", "99999999999999999999999.1", ".", "-5.3"])
async def test_history_rejects_a_malformed_cursor(user_client, cursor: str) -> None:
    response = await user_client.get("/history", query_string={"before": cursor})
    assert response.status_code == 400
    assert "This history link is malformed." in await text_of(response)


async def test_generation_page_shows_prompt_and_rendered_answer(
    user_client, user: User, db
) -> None:
    [generation_id] = await insert_generations(db, user.id, 1)
    html = await text_of(await user_client.get(f"/generations/{generation_id}"))
    assert "Prompt number 0\nsecond line" in html
    assert "Answer <strong>0</strong>" in html
    assert "5 in · 7 out tokens" in html


async def test_failed_generation_page_says_why(user_client, user: User, db) -> None:
    [generation_id] = await insert_generations(db, user.id, 1)
    await db.execute(
        "UPDATE generations SET status = 'failed', result = NULL, error = 'Claude timed out.'"
    )
    html = await text_of(await user_client.get(f"/generations/{generation_id}"))
    assert "this generation failed and its credit was refunded" in html
    assert "Claude timed out." in html and "Claude's answer" not in html


async def test_another_users_generation_is_404(app: Quart, user_client, db) -> None:
    other = await make_user(db, "other@example.com")
    [theirs] = await insert_generations(db, other.id, 1)
    for path in (f"/generations/{theirs}", f"/generations/{theirs + 1000}"):
        response = await user_client.get(path)
        html = await text_of(response)
        assert response.status_code == 404
        assert "We couldn't find that page" in html and "Prompt number" not in html


# --- pricing, errors, development badge, sign-out ----------------------------------------------


async def test_pricing_compares_free_and_pro_with_limits_from_config(client) -> None:
    html = await text_of(await client.get("/pricing"))
    assert 'id="plan-free"' in html and 'id="plan-pro"' in html
    assert "3 answers from Claude every month" in html  # FREE_CREDITS=3
    assert "Unlimited" in html
    assert 'href="/login">Start for free' in html


async def test_pricing_without_stripe_says_upgrades_are_not_open_and_never_shows_commands(
    app_settings, user: User, db
) -> None:
    app = create_app({**app_settings, "SUPPORT_EMAIL": "help@aigen.example"})
    async with app.test_app(), signed_in(app, user.id) as client:
        html = await text_of(await client.get("/pricing"))
    assert re.search(r'Free <span class="badge">Your plan</span>', html)
    assert "Upgrades are not open yet." in html
    assert '<a href="mailto:help@aigen.example">help@aigen.example</a>' in html
    for internal in ("aigen users", "set-plan", "administrator", "coming soon", "/billing/"):
        assert internal not in html, internal


async def test_404_page_is_in_the_layout(client) -> None:
    response = await client.get("/no/such/page")
    html = await text_of(response)
    assert response.status_code == 404
    assert '<header class="nav">' in html and "We couldn't find that page" in html


async def test_404_page_keeps_the_signed_in_users_badge(user_client, user) -> None:
    """The header says who is signed in on an error page too, not "Sign in"."""
    response = await user_client.get("/no/such/page")
    html = await text_of(response)
    assert response.status_code == 404
    assert f'<span class="nav__email" title="{user.email}">{user.email}</span>' in html
    assert "Your dashboard" in html and "Sign in with Google" not in html


async def test_500_page_is_in_the_layout_and_hides_the_details(app_settings, db) -> None:
    app = create_app(app_settings)

    @app.get("/boom")
    async def boom() -> str:
        raise RuntimeError("secret internals")

    async with app.test_app():
        response = await app.test_client().get("/boom")
    html = await text_of(response)
    assert response.status_code == 500
    assert '<header class="nav">' in html and "Something went wrong" in html
    assert "secret internals" not in html


@pytest.mark.parametrize(
    ("defaults", "shown"), [("local Claude-compatible server", True), ("", False)]
)
async def test_development_badge(app_settings, db, defaults: str, shown: bool) -> None:
    # Redis and SMTP configured, so the only development default is the one under test.
    configured = {"REDIS_URL": "redis://127.0.0.1:6379/0", "SMTP_URL": "smtp://127.0.0.1:2525"}
    app = create_app({**app_settings, **configured, "AIGEN_DEV_DEFAULTS": defaults})
    async with app.test_app():
        html = await text_of(await app.test_client().get("/"))
    assert ("Development mode" in html) is shown
    if shown:
        assert 'title="Using the local Claude-compatible server"' in html


async def test_sign_out_form_ends_the_session(app: Quart, user: User) -> None:
    async with signed_in(app, user.id) as client:
        html = await text_of(await client.get("/dashboard"))
        token = matched(r'name="csrf_token" value="([^"]+)"', html).group(1)
        assert '<form class="nav__signout" method="post" action="/logout">' in html
        response = await client.post("/logout", form={"csrf_token": token})
        assert response.status_code == 302 and response.headers["Location"] == "/"
        # quart-auth's test helper re-sends its cookie: check the answer told the browser to drop it
        cookies = response.headers.get_all("Set-Cookie")
        assert any(c.startswith("aigen_auth=;") for c in cookies)


@pytest.mark.parametrize(
    ("verified", "plan", "shown"),
    [
        (False, "FREE", True),
        (True, "FREE", False),
        (False, "PRO", False),
    ],
)
async def test_generate_page_asks_unverified_free_users_to_verify(
    app: Quart, db, verified: bool, plan: str, shown: bool
) -> None:
    person = await make_user(db, "v@example.com", verified=verified, plan=plan)
    async with signed_in(app, person.id) as client:
        html = await text_of(await client.get("/generate"))
    assert ("Please verify your e-mail address first." in html) is shown
    assert ('hx-post="/verify-email/resend"' in html) is shown


# --- plan states: out of credits, unverified, PRO ----------------------------------------------


def generate_button(html: str) -> dict[str, str | None]:
    [button] = [attrs for tag, attrs in parse_tags(html) if attrs.get("id") == "generate-button"]
    return button


async def test_out_of_credits_on_load_shows_the_banner_and_a_disabled_button_saying_why(
    app: Quart, db
) -> None:
    spent = await make_user(db, "spent@example.com", credits_limit=2)
    await db.execute("UPDATE users SET credits_used = 2 WHERE id = $1", spent.id)
    async with signed_in(app, spent.id) as client:
        html = await text_of(await client.get("/generate"))
    assert html.count('id="upgrade-banner"') == 1
    assert "wait until your credits renew on" in html
    button = generate_button(html)
    assert "disabled" in button and button["aria-describedby"] == "prompt-hint"
    hint = matched(r'<p class="hint hint--blocked" id="prompt-hint">([^<]*)<time', html).group(1)
    assert hint.startswith("No credits left until")
    assert 'class="nav__credits nav__credits--empty"' in html


async def test_unverified_free_user_sees_one_banner_and_credits_awaiting_verification(
    app: Quart, db
) -> None:
    person = await make_user(db, "v@example.com", verified=False)
    async with signed_in(app, person.id) as client:
        html = await text_of(await client.get("/generate"))
        dashboard = await text_of(await client.get("/dashboard"))
    assert html.count('id="verify-email-banner"') == 1
    assert html.count('hx-post="/verify-email/resend"') == 1
    assert "disabled" in generate_button(html)
    assert "Verify your e-mail address to start generating." in html
    nav = matched(r'<span id="nav-credits"[^>]*>([^<]*)</span>', html)
    assert nav.group(1) == "Verify for credits"
    assert 'title="Your free credits arrive with verification"' in nav.group(0)
    assert "Your credits arrive with verification" in dashboard
    assert "credits left" not in html and "credits left" not in dashboard


async def test_allowed_user_gets_an_enabled_button_and_no_banner(user_client) -> None:
    html = await text_of(await user_client.get("/generate"))
    assert "disabled" not in generate_button(html)
    assert "upgrade-banner" not in html and "verify-email-banner" not in html
    assert "Credits renew on" in html


CREDIT_WORDING = ("one credit", "credit refunded", "credit was refunded", "credits left")


async def test_pro_users_never_read_credit_wording(
    app: Quart, db, fake_claude: FakeAnthropicServer
) -> None:
    pro = await make_user(db, "pro@example.com", plan="PRO")
    async with signed_in(app, pro.id) as client:
        pages = [await text_of(await client.get(path)) for path in ("/generate", "/dashboard")]
        fake_claude.set_scenario([{"type": "fail", "status": 529, "times": 2}])
        failed = await text_of(await generate(client, "hello"))
        generation_id = await db.fetchval("SELECT id FROM generations")
        pages.append(await text_of(await client.get(f"/generations/{generation_id}")))
        pricing = await text_of(await client.get("/pricing"))
    assert "Retrying may help:" in failed
    for html in (*pages, failed):
        for wording in CREDIT_WORDING:
            assert wording not in html.lower(), wording
    assert "Keep generating" not in pricing


async def test_pricing_free_card_does_not_say_keep_generating_at_zero_credits(
    app: Quart, db
) -> None:
    spent = await make_user(db, "spent@example.com", credits_limit=2)
    await db.execute("UPDATE users SET credits_used = 2 WHERE id = $1", spent.id)
    async with signed_in(app, spent.id) as client:
        html = await text_of(await client.get("/pricing"))
    assert "Keep generating" not in html
    assert "Your free credits are used up. They renew on" in html
