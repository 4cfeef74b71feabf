"""A local stand-in for the parts of Stripe that billing uses, for development and tests only.

The real ``stripe`` SDK works against it unchanged::

    with FakeStripeServer(webhook_url="http://127.0.0.1:5000/billing/webhook") as fake:
        client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.api_base})
        session = await client.v1.checkout.sessions.create_async({...})

API: ``POST /v1/checkout/sessions``, ``GET /v1/checkout/sessions/<id>`` (and ``/line_items``,
``POST .../expire``), ``POST /v1/billing_portal/sessions``, ``GET /v1/prices/<id>``,
``POST /v1/customers``, ``GET /v1/customers/<id>``, ``GET /v1/subscriptions`` (by ``customer``
and ``status``), ``GET|DELETE /v1/subscriptions/<id>``,
``GET /v1/events/<id>``; top-level ``expand[]``; ``Idempotency-Key`` replays. Pages:
``/pay/<session>`` (Pay completes the session and sends signed webhooks) and ``/portal/<id>``
(Cancel subscription). Admin API under ``/_fake`` (see ``admin.py`` and ``FakeStripeAdmin``).
Command line: ``python -m aigen.dev.stripe --port P --webhook-url URL --webhook-secret S``.
"""

from aigen.dev.stripe.objects import DEFAULT_PRICE_ID
from aigen.dev.stripe.server import (
    DEFAULT_API_KEY,
    DEFAULT_WEBHOOK_SECRET,
    FakeStripeAdmin,
    FakeStripeAdminError,
    FakeStripeServer,
)

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_PRICE_ID",
    "DEFAULT_WEBHOOK_SECRET",
    "FakeStripeAdmin",
    "FakeStripeAdminError",
    "FakeStripeServer",
]
