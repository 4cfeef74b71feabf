"""The app served by hypercorn on loopback, and headless Debian Chromium driven by playwright."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from playwright import sync_api as playwright_sync
from playwright.sync_api import Page

from aigen.app import create_app
from aigen.dev.anthropic import FakeAnthropicServer
from aigen.dev.oidc_provider import LocalOIDCProvider
from aigen.dev.serving import LOOPBACK, ThreadedServer, find_free_port
from aigen.dev.stripe import DEFAULT_PRICE_ID, FakeStripeServer
from tests.helpers import STRIPE_WEBHOOK_SECRET, TEST_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
EXPECT_TIMEOUT_MS = 10_000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests last, so the quick tests report first."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session")
def served_app(
    database_url: str, fake_claude: FakeAnthropicServer, oidc_provider: LocalOIDCProvider
) -> Iterator[ThreadedServer]:
    """The real app over real HTTP with the local Claude and sign-in provider (no stand-ins)."""
    port = find_free_port()
    app = create_app(app_environ(port, database_url, fake_claude, oidc_provider))
    with ThreadedServer(app, port=port, name="aigen-browser-app", ready_path="/readyz") as server:
        yield server


@dataclass
class BillingApp:
    """The app with billing through the local Stripe stand-in, which posts webhooks to it."""

    server: ThreadedServer
    stripe: FakeStripeServer

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session")
def billing_app(
    database_url: str, fake_claude: FakeAnthropicServer, oidc_provider: LocalOIDCProvider
) -> Iterator[BillingApp]:
    """Like served_app, with the STRIPE_* settings pointing at a stand-in of its own."""
    port = find_free_port()
    webhook_url = f"http://{LOOPBACK}:{port}/billing/webhook"
    with FakeStripeServer(webhook_url=webhook_url, webhook_secret=STRIPE_WEBHOOK_SECRET) as fake:
        environ = app_environ(port, database_url, fake_claude, oidc_provider) | {
            "STRIPE_SECRET_KEY": fake.api_key,
            "STRIPE_PRICE_ID": DEFAULT_PRICE_ID,
            "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
            "STRIPE_API_BASE": fake.api_base,
        }
        app = create_app(environ)
        with ThreadedServer(
            app, port=port, name="aigen-billing-app", ready_path="/readyz"
        ) as app_server:
            yield BillingApp(app_server, fake)


def app_environ(
    port: int,
    database_url: str,
    fake_claude: FakeAnthropicServer,
    oidc_provider: LocalOIDCProvider,
) -> dict[str, str]:
    """The settings of a browser-tested app served on `port`."""
    return {
        "AIGEN_ENV": "development",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database_url,
        "ANTHROPIC_BASE_URL": fake_claude.base_url,
        "ANTHROPIC_API_KEY": "test-key",
        "OIDC_DISCOVERY_URL": oidc_provider.discovery_url,
        "GOOGLE_CLIENT_ID": "aigen-browser-test",
        "GOOGLE_CLIENT_SECRET": "aigen-browser-test-secret",
        "FREE_CREDITS": "3",
        "AIGEN_UPSTREAM_TIMEOUT": "5",
        "AIGEN_DEV_DEFAULTS": "",
        "PUBLIC_URL": f"http://{LOOPBACK}:{port}",
        # Every browser test signs in from 127.0.0.1: the per-address limit must not refuse them.
        "LOGIN_RATE_LIMIT": "10000/minute",
    }


def run_sql(database_url: str, sql: str, *args: object) -> object:
    """Run one statement on the test database from synchronous browser tests."""

    async def run() -> object:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    # Playwright's sync API keeps an event loop on this thread: run asyncpg on another.
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, run()).result()


@pytest.fixture
def clean_db(database_url: str, fake_claude: FakeAnthropicServer) -> str:
    """An emptied database and an empty Claude scenario; returns the database URL."""
    run_sql(database_url, "TRUNCATE users, generations, stripe_events RESTART IDENTITY CASCADE")
    fake_claude.clear()
    return database_url


@pytest.fixture(scope="module")
def browser(served_app: ThreadedServer) -> Iterator[object]:
    """One headless Debian Chromium per module (a fresh temporary profile).

    It needs the served app first: the app's fixtures use asyncio.run, which cannot run inside
    playwright's sync loop; and it ends with the module so later asyncio tests are unaffected.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run `make chromium` (make test does)")
    SCREENSHOTS.mkdir(exist_ok=True)
    playwright_sync.expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@dataclass
class BrowserProblems:
    """JavaScript errors and CSP refusals seen on our pages (they must stay empty)."""

    origin: str
    seen: list[str] = field(default_factory=list)

    def console(self, message) -> None:
        url = (message.location or {}).get("url", "")
        if message.type == "error" and url.startswith(self.origin):
            if "Failed to load resource" not in message.text:  # 404 pages are expected
                self.seen.append(message.text)

    def page_error(self, error) -> None:
        self.seen.append(f"uncaught: {error}")


def open_page(browser, served_app: ThreadedServer | BillingApp, **options):
    """A fresh context (no cookies) whose requests may not leave the machine."""
    context = browser.new_context(base_url=served_app.url, **{"viewport": LAPTOP, **options})
    # The sign-in mock links a CDN stylesheet: offline means offline, fail it at once.
    context.route("http*://**", _only_loopback)
    page = context.new_page()
    problems = BrowserProblems(served_app.url)
    page.on("console", problems.console)
    page.on("pageerror", problems.page_error)
    page.on("dialog", lambda dialog: problems.seen.append(f"dialog: {dialog.message}"))
    return context, page, problems


def _only_loopback(route) -> None:
    host = route.request.url.split("/")[2]
    if host.startswith(("127.0.0.1", "localhost")):
        route.continue_()
    else:
        route.abort()


@pytest.fixture
def page(browser, served_app: ThreadedServer, clean_db: str) -> Iterator[object]:
    """A laptop-sized page; fails the test on any JavaScript error or CSP refusal."""
    context, page, problems = open_page(browser, served_app)
    yield page
    context.close()
    assert problems.seen == []


def shot(page: Page, name: str) -> None:
    """A full-page screenshot in screenshots/NAME.png."""
    # Transitions (the fade-in of swapped content) are finished, not caught half-way.
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, animations="disabled")


def sign_in(page: Page, app_url: str, oidc: LocalOIDCProvider, sub: str, name: str = "") -> None:
    """Through the landing page and the local provider's real authorize form."""
    oidc.set_user(sub, email=f"{sub}@example.com", email_verified=True, name=name or sub.title())
    page.goto(app_url + "/")
    page.get_by_role("link", name="Sign in with Google").click()
    page.wait_for_url(oidc.url + "/**")
    page.locator('input[name="sub"]').fill(sub)
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.wait_for_url(app_url + "/generate")
