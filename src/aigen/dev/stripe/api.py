"""The ``/v1`` API routes: authentication, parameters, idempotency and the endpoints themselves."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any
from urllib.parse import parse_qsl

from quart import Blueprint, Response, g, jsonify, request

from aigen.dev.stripe import billing
from aigen.dev.stripe.context import current_state, request_id, request_origin
from aigen.dev.stripe.objects import JsonObject
from aigen.dev.stripe.protocol import (
    MISSING_KEY_MESSAGE,
    Params,
    StripeError,
    invalid_api_key,
    optional_list,
    parse_form,
    reject_unknown,
)
from aigen.dev.stripe.state import FakeStripeState

IDEMPOTENCY_LIMIT = 10_000
READ_PARAMS = frozenset({"expand"})
LIST_PARAMS = frozenset({"expand", "limit", "starting_after", "ending_before"})
View = Callable[..., JsonObject]

blueprint = Blueprint("fake_stripe_api", __name__)


def api_key_from_headers() -> str | None:
    """The secret key sent as Bearer token or as Basic auth user name (``curl -u sk_test_...:``)."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip() or None
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(credentials).decode().partition(":")[0] or None
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


def authenticate(state: FakeStripeState) -> None:
    """Answer 401 like Stripe when the key is missing or not the stand-in's."""
    key = api_key_from_headers()
    if key is None:
        raise StripeError(401, MISSING_KEY_MESSAGE)
    if key != state.api_key:
        raise invalid_api_key(key)


async def read_params() -> Params:
    """The query string's parameters, merged with a form-encoded body's."""
    pairs = parse_qsl(request.query_string.decode(), keep_blank_values=True)
    if request.method == "POST":
        body = await request.get_data(as_text=True)
        pairs += parse_qsl(str(body), keep_blank_values=True)
    return parse_form(pairs)


def stripe_endpoint(view: View) -> Callable[..., Awaitable[Response]]:
    """Wrap a view that takes parsed parameters and returns an object, the way every call goes."""

    @wraps(view)
    async def endpoint(**route_args: Any) -> Response:
        state = current_state()
        authenticate(state)
        g.params = params = await read_params()
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        g.idempotency_key = key
        if key is not None and key in state.idempotent:
            return replay_idempotent(state.idempotent[key], key, params)
        body = state.expand(view(params, **route_args), expand_paths(params))
        if key is not None:
            remember_idempotent(state, key, params, body)
        return jsonify(body)

    return endpoint


def expand_paths(params: Params) -> list[str]:
    """The ``expand[]`` parameter's paths."""
    return [str(path) for path in optional_list(params, "expand")]


def remember_idempotent(state: FakeStripeState, key: str, params: Params, body: Any) -> None:
    """Keep a successful answer, so a retry with the same key gets it again."""
    if len(state.idempotent) >= IDEMPOTENCY_LIMIT:
        state.idempotent.pop(next(iter(state.idempotent)))
    state.idempotent[key] = {
        "request": (request.method, request.path, params),
        "body": body,
        "request_id": request_id(),
    }


def replay_idempotent(saved: dict[str, Any], key: str, params: Params) -> Response:
    """Answer a retried request as the first time, or refuse a key reused for something else."""
    if saved["request"] != (request.method, request.path, params):
        raise StripeError(
            400,
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with. Try using a key other than '{key}' if you meant to execute a "
            "different request.",
            error_type="idempotency_error",
        )
    response = jsonify(saved["body"])
    response.headers["Idempotent-Replayed"] = "true"
    response.headers["Original-Request"] = saved["request_id"]
    return response


def _page_url(path: str) -> str:
    return request.host_url.rstrip("/") + path


@blueprint.post("/v1/checkout/sessions")
@stripe_endpoint
def create_checkout_session(params: Params) -> JsonObject:
    """Create a Checkout Session; its ``url`` is the stand-in's pay page."""
    return billing.create_checkout_session(current_state(), params, _page_url("/pay/"))


@blueprint.get("/v1/checkout/sessions")
@stripe_endpoint
def list_checkout_sessions(params: Params) -> JsonObject:
    """List Checkout Sessions (``customer``, ``status``, ``limit`` and the cursors are honoured)."""
    return billing.list_checkout_sessions(current_state(), params)


@blueprint.get("/v1/checkout/sessions/<session_id>")
@stripe_endpoint
def retrieve_checkout_session(params: Params, session_id: str) -> JsonObject:
    """Retrieve a Checkout Session."""
    reject_unknown(params, READ_PARAMS)
    return current_state().get("checkout.session", session_id, param="session")


@blueprint.get("/v1/checkout/sessions/<session_id>/line_items")
@stripe_endpoint
def list_checkout_line_items(params: Params, session_id: str) -> JsonObject:
    """List a Checkout Session's line items (all on one page)."""
    reject_unknown(params, LIST_PARAMS)
    state = current_state()
    state.get("checkout.session", session_id, param="session")
    return state.line_items_list(session_id)


@blueprint.post("/v1/checkout/sessions/<session_id>/expire")
@stripe_endpoint
def expire_checkout_session(params: Params, session_id: str) -> JsonObject:
    """Expire an open Checkout Session."""
    reject_unknown(params, READ_PARAMS)
    return billing.expire_checkout(current_state(), session_id, request_origin())


@blueprint.post("/v1/billing_portal/sessions")
@stripe_endpoint
def create_portal_session(params: Params) -> JsonObject:
    """Create a customer portal session; its ``url`` is the stand-in's portal page."""
    return billing.create_portal_session(current_state(), params, _page_url("/portal/"))


@blueprint.get("/v1/prices/<price_id>")
@stripe_endpoint
def retrieve_price(params: Params, price_id: str) -> JsonObject:
    """Retrieve a price."""
    reject_unknown(params, READ_PARAMS)
    return current_state().get("price", price_id)


@blueprint.post("/v1/customers")
@stripe_endpoint
def create_customer(params: Params) -> JsonObject:
    """Create a customer."""
    return billing.create_customer(current_state(), params)


@blueprint.get("/v1/customers/<customer_id>")
@stripe_endpoint
def retrieve_customer(params: Params, customer_id: str) -> JsonObject:
    """Retrieve a customer."""
    reject_unknown(params, READ_PARAMS)
    return current_state().get("customer", customer_id)


@blueprint.get("/v1/subscriptions")
@stripe_endpoint
def list_subscriptions(params: Params) -> JsonObject:
    """List subscriptions (``customer``, ``status``, ``limit`` and the cursors are honoured)."""
    return billing.list_subscriptions(current_state(), params)


@blueprint.get("/v1/subscriptions/<subscription_id>")
@stripe_endpoint
def retrieve_subscription(params: Params, subscription_id: str) -> JsonObject:
    """Retrieve a subscription."""
    reject_unknown(params, READ_PARAMS)
    return current_state().get("subscription", subscription_id)


@blueprint.delete("/v1/subscriptions/<subscription_id>")
@stripe_endpoint
def cancel_subscription(params: Params, subscription_id: str) -> JsonObject:
    """Cancel a subscription at once."""
    reject_unknown(params, billing.CANCEL_PARAMS)
    return billing.cancel_subscription(current_state(), subscription_id, request_origin())


@blueprint.get("/v1/events/<event_id>")
@stripe_endpoint
def retrieve_event(params: Params, event_id: str) -> JsonObject:
    """Retrieve an event."""
    reject_unknown(params, READ_PARAMS)
    return current_state().get("event", event_id)
