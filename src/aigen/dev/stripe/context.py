"""Where a request finds the stand-in's state and its own id."""

from __future__ import annotations

from quart import current_app, g

from aigen.dev.stripe.state import EventOrigin, FakeStripeState

STATE_KEY = "fake_stripe"


def current_state() -> FakeStripeState:
    """The state of the app answering this request."""
    state: FakeStripeState = current_app.extensions[STATE_KEY]
    return state


def request_id() -> str:
    """This request's ``req_...`` id (also sent back in the ``Request-Id`` header)."""
    value: str = g.request_id
    return value


def request_origin() -> EventOrigin:
    """The API request as an event's ``request`` field names it."""
    return EventOrigin(request_id(), g.get("idempotency_key"))
