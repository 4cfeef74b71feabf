"""The development launcher: what `make run` starts when a service is not configured."""

from __future__ import annotations

from contextlib import ExitStack

from aigen.clients.stripe import Price, StripeBilling
from aigen.config import LOCAL_STRIPE, load_settings
from aigen.dev.launcher import start_dev_peers
from aigen.dev.stripe import FakeStripeAdmin

CONFIGURED = {
    "DATABASE_URL": "postgresql://aigen@127.0.0.1:5432/aigen",
    "GOOGLE_CLIENT_ID": "id",
    "GOOGLE_CLIENT_SECRET": "secret",
    "ANTHROPIC_API_KEY": "key",
    "PUBLIC_URL": "http://127.0.0.1:8123",
}


async def test_without_stripe_settings_the_local_stand_in_starts_and_is_announced() -> None:
    settings = load_settings(CONFIGURED)
    with ExitStack() as stack:
        environ = start_dev_peers(settings, stack)
        assert environ["AIGEN_DEV_DEFAULTS"] == LOCAL_STRIPE
        configured = load_settings({**CONFIGURED, **environ})
        assert configured.billing_enabled and configured.missing_services() == []
        billing = StripeBilling(
            secret_key=environ["STRIPE_SECRET_KEY"],
            price_id=environ["STRIPE_PRICE_ID"],
            webhook_secret=environ["STRIPE_WEBHOOK_SECRET"],
            api_base=environ["STRIPE_API_BASE"],
        )
        try:
            assert await billing.price() == Price(2000, "usd", "month")
        finally:
            await billing.aclose()
        admin = FakeStripeAdmin(environ["STRIPE_API_BASE"])
        await admin.send_event("invoice.paid", data_object={"id": "in_1"})
        [delivery] = await admin.deliveries()
        assert delivery["url"] == "http://127.0.0.1:8123/billing/webhook"


def test_with_stripe_settings_nothing_is_started() -> None:
    stripe = {"STRIPE_SECRET_KEY": "sk_x", "STRIPE_PRICE_ID": "p", "STRIPE_WEBHOOK_SECRET": "w"}
    with ExitStack() as stack:
        assert start_dev_peers(load_settings({**CONFIGURED, **stripe}), stack) == {}
