"""What the stand-in does: Checkout Sessions, paying them, the portal, cancelling, custom events."""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import urlsplit

from aigen.dev.stripe.objects import (
    INTERVALS,
    JsonObject,
    checkout_session_json,
    customer_json,
    line_item_json,
    list_json,
    portal_session_json,
    price_json,
    subscription_json,
)
from aigen.dev.stripe.protocol import (
    Params,
    StripeError,
    metadata,
    new_id,
    now,
    one_of,
    optional_hash,
    optional_int,
    optional_list,
    optional_str,
    reject_unknown,
    required_str,
)
from aigen.dev.stripe.state import NO_ORIGIN, CheckoutDetails, EventOrigin, FakeStripeState
from aigen.dev.stripe.webhooks import Delivery

# Every parameter Stripe's create endpoints take; the stand-in uses some and ignores the rest.
CHECKOUT_PARAMS = frozenset(
    "adaptive_pricing after_expiration allow_promotion_codes allowed_payment_method_types "
    "automatic_tax billing_address_collection branding_settings cancel_url client_reference_id "
    "consent_collection currency custom_fields custom_text customer customer_account "
    "customer_creation customer_email customer_update discounts excluded_payment_method_types "
    "expand expires_at integration_identifier invoice_creation line_items locale "
    "managed_payments metadata mode name_collection optional_items origin_context "
    "payment_intent_data payment_method_collection payment_method_configuration "
    "payment_method_data payment_method_options payment_method_types permissions "
    "phone_number_collection redirect_on_completion return_url saved_payment_method_options "
    "setup_intent_data shipping_address_collection shipping_options submit_type "
    "subscription_data success_url tax_id_collection ui_mode wallet_options".split()
)
LINE_ITEM_PARAMS = frozenset({"price", "quantity", "adjustable_quantity", "dynamic_tax_rates"})
PORTAL_PARAMS = frozenset(
    "configuration customer customer_account expand flow_data locale on_behalf_of "
    "return_url".split()
)
CUSTOMER_PARAMS = frozenset(
    "address balance business_name cash_balance description email expand individual_name "
    "invoice_prefix invoice_settings metadata name next_invoice_sequence payment_method phone "
    "preferred_locales shipping source tax tax_exempt tax_id_data test_clock validate".split()
)
CANCEL_PARAMS = frozenset({"cancellation_details", "expand", "invoice_now", "prorate"})
SUBSCRIPTION_LIST_PARAMS = frozenset(
    "automatic_tax collection_method created current_period_end current_period_start customer "
    "customer_account ending_before expand limit price starting_after status test_clock".split()
)
SUBSCRIPTION_STATUSES = (
    "active all canceled ended incomplete incomplete_expired past_due paused trialing "
    "unpaid".split()
)
ENDED_SUBSCRIPTION_STATUSES = frozenset({"canceled", "incomplete_expired"})
DEFAULT_LIST_LIMIT = 10
MAX_LIST_LIMIT = 100
SUPPORTED_MODES = ("payment", "subscription")
SESSION_ID_TEMPLATE = "{CHECKOUT_SESSION_ID}"
EVENT_TYPE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")


def create_checkout_session(state: FakeStripeState, params: Params, pay_url: str) -> JsonObject:
    """``POST /v1/checkout/sessions``: an open session whose ``url`` is ``pay_url`` + its id."""
    reject_unknown(params, CHECKOUT_PARAMS)
    mode = one_of(params, "mode", SUPPORTED_MODES)
    fields: Params = {"mode": mode, "metadata": metadata(params)}
    for name in ("success_url", "cancel_url"):
        fields[name] = _url(params, name)
    for name in ("client_reference_id", "customer_email", "locale", "billing_address_collection"):
        fields[name] = optional_str(params, name)
    fields["customer"] = _customer_param(state, params)
    fields["allow_promotion_codes"] = _bool(params, "allow_promotion_codes")
    line_items = _line_items(state, params, mode)
    subscription_data = optional_hash(params, "subscription_data")
    session_id = new_id("cs_test")
    fields |= {"id": session_id, "url": pay_url + session_id}
    state.checkout_details[session_id] = CheckoutDetails(line_items, metadata(subscription_data))
    return state.add("checkout.session", checkout_session_json(fields, line_items))


def _url(params: Params, name: str) -> str | None:
    value = optional_str(params, name)
    if value is not None and urlsplit(value).scheme not in ("http", "https"):
        raise StripeError(400, "Not a valid URL", code="url_invalid", param=name)
    return value


def _bool(params: Params, name: str) -> bool | None:
    value = optional_str(params, name)
    if value not in (None, "true", "false"):
        raise StripeError(
            400, f"Invalid boolean: {value}", code="parameter_invalid_boolean", param=name
        )
    return None if value is None else value == "true"


def _customer_param(state: FakeStripeState, params: Params) -> str | None:
    customer = optional_str(params, "customer")
    if customer is not None and optional_str(params, "customer_email") is not None:
        raise StripeError(
            400,
            "You may only specify one of these parameters: customer, customer_email.",
            param="customer_email",
        )
    if customer is not None:
        state.get("customer", customer, param="customer", status=400)
    return customer


def _line_items(state: FakeStripeState, params: Params, mode: str) -> list[JsonObject]:
    raw = optional_list(params, "line_items")
    if not raw:
        raise StripeError(
            400, "Missing required param: line_items.", code="parameter_missing", param="line_items"
        )
    items = [_line_item(state, entry, f"line_items[{index}]") for index, entry in enumerate(raw)]
    recurring = [item for item in items if item["price"]["recurring"] is not None]
    if mode == "subscription" and not recurring:
        raise StripeError(
            400,
            "You must provide at least one recurring price in `subscription` "
            "mode when using prices.",
            param="line_items",
        )
    if mode == "payment" and recurring:
        raise StripeError(
            400,
            "You specified `payment` mode but passed a recurring price. Either "
            "switch to `subscription` mode or use only one-time prices.",
            param="line_items",
        )
    return items


def _line_item(state: FakeStripeState, entry: Any, where: str) -> JsonObject:
    if not isinstance(entry, dict):
        raise StripeError(400, "Invalid hash", code="parameter_invalid_hash", param=where)
    for name in entry:
        if name not in LINE_ITEM_PARAMS:
            raise StripeError(
                400,
                f"Received unknown parameter: {where}[{name}]",
                code="parameter_unknown",
                param=f"{where}[{name}]",
            )
    price_id = required_str({f"{where}[price]": entry.get("price")}, f"{where}[price]")
    price = state.get("price", price_id, param=f"{where}[price]", status=400)
    quantity = optional_int(entry, "quantity", where=f"{where}[quantity]")
    if not quantity:
        raise StripeError(
            400,
            f"Missing required param: {where}[quantity].",
            code="parameter_missing",
            param=f"{where}[quantity]",
        )
    return line_item_json(price, quantity)


def complete_checkout(state: FakeStripeState, session_id: str, email: str | None) -> JsonObject:
    """Pay an open session: customer, subscription, the session marked complete, then events."""
    session = state.get("checkout.session", session_id)
    if session["status"] != "open":
        raise StripeError(400, f"This Checkout Session is {session['status']}.")
    customer, created = _paying_customer(state, session, email)
    session |= {
        "status": "complete",
        "payment_status": "paid",
        "customer": customer["id"],
        "url": None,
        "customer_details": _customer_details(customer),
    }
    subscription = None
    if session["mode"] == "subscription":
        subscription = _start_subscription(state, session)
    else:
        session["payment_intent"] = new_id("pi")
    if created:
        state.emit("customer.created", customer)
    state.emit("checkout.session.completed", session)
    if subscription is not None:
        state.emit("customer.subscription.created", subscription)
    return session


def _start_subscription(state: FakeStripeState, session: JsonObject) -> JsonObject:
    details = state.checkout_details[session["id"]]
    subscription = subscription_json(
        session["customer"], details.line_items, details.subscription_metadata
    )
    session |= {"subscription": subscription["id"], "invoice": subscription["latest_invoice"]}
    return state.add("subscription", subscription)


def _paying_customer(
    state: FakeStripeState, session: JsonObject, email: str | None
) -> tuple[JsonObject, bool]:
    if session["customer"] is not None:
        return state.get("customer", session["customer"]), False
    address = session["customer_email"] or email or "customer@example.com"
    return state.add("customer", customer_json(address, None, {})), True


def _customer_details(customer: JsonObject) -> JsonObject:
    return {
        "address": None,
        "email": customer["email"],
        "name": customer["name"],
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }


def success_redirect(session: JsonObject) -> str | None:
    """Where the customer goes after paying, with ``{CHECKOUT_SESSION_ID}`` filled in."""
    url = session["success_url"]
    return None if url is None else url.replace(SESSION_ID_TEMPLATE, session["id"])


def expire_checkout(state: FakeStripeState, session_id: str, origin: EventOrigin) -> JsonObject:
    """``POST /v1/checkout/sessions/<id>/expire``: an open session can no longer be paid."""
    session = state.get("checkout.session", session_id)
    status = session["status"]
    if status != "open":
        raise StripeError(
            400,
            'Only Checkout Sessions with a status in ["open"] can be expired. '
            f'This Checkout Session has a status of "{status}".',
            param="session",
        )
    session |= {"status": "expired", "url": None}
    state.emit("checkout.session.expired", session, origin=origin)
    return session


def create_customer(state: FakeStripeState, params: Params) -> JsonObject:
    """``POST /v1/customers``."""
    reject_unknown(params, CUSTOMER_PARAMS)
    customer = customer_json(
        optional_str(params, "email"), optional_str(params, "name"), metadata(params)
    )
    state.add("customer", customer)
    state.emit("customer.created", customer)
    return customer


def create_portal_session(state: FakeStripeState, params: Params, portal_url: str) -> JsonObject:
    """``POST /v1/billing_portal/sessions``: a page where the customer can cancel."""
    reject_unknown(params, PORTAL_PARAMS)
    customer_id = required_str(params, "customer")
    state.get("customer", customer_id, param="customer", status=400)
    session_id = new_id("bps")
    session = portal_session_json(
        session_id, customer_id, _url(params, "return_url"), portal_url + session_id
    )
    return state.add("billing_portal.session", session)


def customer_subscriptions(state: FakeStripeState, customer_id: str) -> list[JsonObject]:
    """The customer's subscriptions, oldest first."""
    found = state.objects["subscription"].values()
    return [sub for sub in found if sub["customer"] == customer_id]


def list_subscriptions(state: FakeStripeState, params: Params) -> JsonObject:
    """``GET /v1/subscriptions``: newest first; by default every one not canceled."""
    reject_unknown(params, SUBSCRIPTION_LIST_PARAMS)
    customer = optional_str(params, "customer")
    if customer is not None:
        state.get("customer", customer, param="customer", status=400)
    wanted = (
        None if params.get("status") is None else one_of(params, "status", SUBSCRIPTION_STATUSES)
    )
    found = [
        sub
        for sub in reversed(state.objects["subscription"].values())
        if customer in (None, sub["customer"]) and _status_listed(sub["status"], wanted)
    ]
    return _list_page(found, params, "/v1/subscriptions")


CHECKOUT_LIST_PARAMS = frozenset(
    "created customer customer_details customer_account ending_before expand limit "
    "payment_intent payment_link starting_after status subscription".split()
)
CHECKOUT_STATUSES = ("open", "complete", "expired")


def list_checkout_sessions(state: FakeStripeState, params: Params) -> JsonObject:
    """``GET /v1/checkout/sessions``: newest first, by ``customer`` and ``status`` if given."""
    reject_unknown(params, CHECKOUT_LIST_PARAMS)
    customer = optional_str(params, "customer")
    wanted = None if params.get("status") is None else one_of(params, "status", CHECKOUT_STATUSES)
    found = [
        session
        for session in reversed(state.objects["checkout.session"].values())
        if customer in (None, session.get("customer")) and wanted in (None, session["status"])
    ]
    return _list_page(found, params, "/v1/checkout/sessions")


def _status_listed(status: str, wanted: str | None) -> bool:
    if wanted is None:
        return status != "canceled"
    if wanted == "all":
        return True
    if wanted == "ended":
        return status in ENDED_SUBSCRIPTION_STATUSES
    return status == wanted


def _list_page(found: list[JsonObject], params: Params, url: str) -> JsonObject:
    """One page of a list, cut by ``limit`` and the ``starting_after``/``ending_before`` cursor."""
    limit = optional_int(params, "limit")
    limit = DEFAULT_LIST_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise StripeError(
            400, f"Invalid limit: must be between 1 and {MAX_LIST_LIMIT}", param="limit"
        )
    ids = [obj["id"] for obj in found]
    for name in ("starting_after", "ending_before"):
        cursor = optional_str(params, name)
        if cursor is not None and cursor not in ids:
            raise StripeError(
                400, f"No such object: '{cursor}'", code="resource_missing", param=name
            )
    after, before = optional_str(params, "starting_after"), optional_str(params, "ending_before")
    if after is not None:
        found = found[ids.index(after) + 1 :]
    elif before is not None:
        found = found[: ids.index(before)][-limit:]
    return {**list_json(found[:limit], url), "has_more": len(found) > limit}


def cancel_subscription(
    state: FakeStripeState, subscription_id: str, origin: EventOrigin = NO_ORIGIN
) -> JsonObject:
    """Cancel at once, as ``DELETE /v1/subscriptions/<id>`` and the portal do; tell the webhook."""
    subscription = state.get("subscription", subscription_id)
    if subscription["status"] == "canceled":
        raise StripeError(400, "This subscription is already canceled.", param="id")
    moment = now()
    subscription |= {"status": "canceled", "canceled_at": moment, "ended_at": moment}
    subscription["cancellation_details"] = {
        "comment": None,
        "feedback": None,
        "reason": "cancellation_requested",
    }
    state.emit("customer.subscription.deleted", subscription, origin=origin)
    return subscription


def send_custom_event(
    state: FakeStripeState,
    event_type: str,
    object_id: str | None = None,
    changes: JsonObject | None = None,
    data_object: JsonObject | None = None,
) -> JsonObject:
    """Send any event: about a stored object (after applying ``changes``) or about a given one."""
    if not EVENT_TYPE.match(event_type):
        raise StripeError(400, f"Invalid event type: {event_type!r}", param="type")
    if (object_id is None) == (data_object is None):
        raise StripeError(400, "Give exactly one of object_id and object.", param="object_id")
    if data_object is not None:
        return state.emit(event_type, data_object)
    found = state.find(object_id or "")
    if found is None:
        raise StripeError(
            404, f"No such object: '{object_id}'", code="resource_missing", param="object_id"
        )
    previous = _apply_changes(found[1], changes or {})
    return state.emit(event_type, found[1], previous if changes else None)


def _apply_changes(obj: JsonObject, changes: JsonObject) -> JsonObject:
    unknown = [name for name in changes if name not in obj or name in ("id", "object")]
    if unknown:
        raise StripeError(
            400, f"Cannot change {', '.join(unknown)} of {obj['object']}.", param="changes"
        )
    previous = {name: copy.deepcopy(obj[name]) for name in changes}
    obj.update(copy.deepcopy(changes))
    return previous


def replay_event(state: FakeStripeState, event_id: str) -> Delivery:
    """Deliver an event already made once more, unchanged (same id), as Stripe's resend does."""
    return state.dispatcher.send(state.get("event", event_id))


PRICE_FIELDS: dict[str, tuple[type, ...]] = {
    "unit_amount": (int,),
    "currency": (str,),
    "interval": (str, type(None)),
    "interval_count": (int,),
    "product": (str,),
    "nickname": (str, type(None)),
}


def set_price(state: FakeStripeState, price_id: str, spec: JsonObject) -> JsonObject:
    """Create or replace a price; fields not given take the Pro monthly price's values."""
    for name, value in spec.items():
        kinds = PRICE_FIELDS.get(name)
        if kinds is None:
            raise StripeError(
                400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
            )
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise StripeError(400, f"Invalid {name}: {value!r}", param=name)
    if spec.get("interval", INTERVALS[2]) not in (*INTERVALS, None):
        raise StripeError(
            400, f"Invalid interval: must be one of {', '.join(INTERVALS)}", param="interval"
        )
    if spec.get("unit_amount", 0) < 0 or spec.get("interval_count", 1) < 1:
        raise StripeError(400, "Amounts and counts must be positive.", param="unit_amount")
    return state.add("price", price_json(price_id, **spec))
