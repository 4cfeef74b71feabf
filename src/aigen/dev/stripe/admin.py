"""The ``/_fake`` admin API for tests: custom events, replays, prices, the webhook target, logs."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, Response, jsonify, request

from aigen.dev.stripe import billing
from aigen.dev.stripe.context import current_state
from aigen.dev.stripe.protocol import StripeError
from aigen.dev.stripe.webhooks import WebhookTarget

DEFAULT_WAIT_SECONDS = 10.0

blueprint = Blueprint("fake_stripe_admin", __name__, url_prefix="/_fake")


async def json_body() -> dict[str, Any]:
    """The request's JSON object (``{}`` when there is no body)."""
    body = await request.get_json(force=True, silent=True)
    if body is None and await request.get_data():
        raise StripeError(400, "The body is not JSON.")
    if not isinstance(body, dict | None):
        raise StripeError(400, "The body must be a JSON object.")
    return body or {}


@blueprint.get("/requests")
async def list_requests() -> Response:
    """The API calls received, oldest first (no headers, so no keys)."""
    return jsonify({"requests": list(current_state().requests)})


@blueprint.get("/events")
async def list_events() -> Response:
    """The events made, oldest first."""
    return jsonify({"events": list(current_state().objects["event"].values())})


@blueprint.get("/deliveries")
async def list_deliveries() -> Response:
    """The webhook deliveries, oldest first, with their attempts."""
    deliveries = current_state().dispatcher.deliveries
    return jsonify({"deliveries": [delivery.to_json() for delivery in deliveries]})


@blueprint.post("/deliveries/wait")
async def wait_for_deliveries() -> Response:
    """Wait (up to ``timeout`` seconds) until no delivery is pending; then list them."""
    timeout = (await json_body()).get("timeout", DEFAULT_WAIT_SECONDS)
    if not isinstance(timeout, int | float) or timeout < 0:
        raise StripeError(400, "timeout must be a number of seconds", param="timeout")
    state = current_state()
    try:
        await asyncio.wait_for(state.dispatcher.wait_idle(), timeout)
    except TimeoutError:
        idle = False
    else:
        idle = True
    deliveries = [delivery.to_json() for delivery in state.dispatcher.deliveries]
    return jsonify({"idle": idle, "deliveries": deliveries})


@blueprint.post("/events")
async def send_event() -> Response:
    """Send an event: ``{"type", "object_id", "changes"}`` or ``{"type", "object"}``."""
    body = await json_body()
    event = billing.send_custom_event(
        current_state(),
        str(body.get("type", "")),
        object_id=body.get("object_id"),
        changes=body.get("changes"),
        data_object=body.get("object"),
    )
    return jsonify(event)


@blueprint.post("/events/<event_id>/replay")
async def replay_event(event_id: str) -> Response:
    """Deliver an event again, unchanged."""
    delivery = billing.replay_event(current_state(), event_id)
    return jsonify(delivery.to_json())


@blueprint.put("/prices/<price_id>")
async def set_price(price_id: str) -> Response:
    """Create or replace a price (``unit_amount``, ``currency``, ``interval``, ...)."""
    return jsonify(billing.set_price(current_state(), price_id, await json_body()))


@blueprint.post("/checkout/sessions/<session_id>/complete")
async def complete_checkout(session_id: str) -> Response:
    """Pay a Checkout Session without the page (``{"email"}`` optional)."""
    email = (await json_body()).get("email")
    if not isinstance(email, str | None):
        raise StripeError(400, "email must be a string", param="email")
    return jsonify(billing.complete_checkout(current_state(), session_id, email))


@blueprint.get("/webhook")
async def webhook_target() -> Response:
    """Where events go (the secret is not shown)."""
    return jsonify({"url": current_state().dispatcher.target.url})


@blueprint.put("/webhook")
async def set_webhook_target() -> Response:
    """Change where events go: ``{"url": ..., "secret": ...}`` (``url: null`` stops deliveries)."""
    body = await json_body()
    dispatcher = current_state().dispatcher
    url = body.get("url", dispatcher.target.url)
    secret = body.get("secret", dispatcher.target.secret)
    if not isinstance(url, str | None) or not isinstance(secret, str):
        raise StripeError(400, "url must be a string or null and secret a string")
    try:
        dispatcher.target = WebhookTarget(url, secret)
    except ValueError as error:
        raise StripeError(400, str(error)) from None
    return jsonify({"url": url})


@blueprint.post("/clear")
async def clear_logs() -> Response:
    """Forget requests, events and deliveries (customers, sessions and the rest stay)."""
    current_state().clear_logs()
    return jsonify({"cleared": True})
