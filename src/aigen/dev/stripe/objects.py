"""The JSON shapes of the Stripe objects the stand-in serves, with the fields Stripe sends."""

from __future__ import annotations

import calendar
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from aigen.dev.stripe.protocol import API_VERSION, new_id, now

JsonObject = dict[str, Any]
DEFAULT_PRICE_ID = "price_aigen_pro_monthly"
DEFAULT_PRODUCT_ID = "prod_aigen_pro"
DEFAULT_UNIT_AMOUNT = 2000
DEFAULT_CURRENCY = "usd"
DEFAULT_INTERVAL = "month"
DEFAULT_NICKNAME = "AIgen Pro"
INTERVALS = ("day", "week", "month", "year")
CHECKOUT_LIFETIME_SECONDS = 24 * 3600
PORTAL_CONFIGURATION_ID = "bpc_aigen_default"


def price_json(
    price_id: str = DEFAULT_PRICE_ID,
    *,
    unit_amount: int = DEFAULT_UNIT_AMOUNT,
    currency: str = DEFAULT_CURRENCY,
    interval: str | None = DEFAULT_INTERVAL,
    interval_count: int = 1,
    product: str = DEFAULT_PRODUCT_ID,
    nickname: str | None = DEFAULT_NICKNAME,
) -> JsonObject:
    """A price; ``interval=None`` makes a one-time price."""
    recurring = None
    if interval is not None:
        recurring = {
            "interval": interval,
            "interval_count": interval_count,
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        }
    return {
        "id": price_id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": nickname,
        "product": product,
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "one_time" if recurring is None else "recurring",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def line_item_json(price: JsonObject, quantity: int) -> JsonObject:
    """One line of a Checkout Session (``object: item``)."""
    amount = price["unit_amount"] * quantity
    return {
        "id": new_id("li"),
        "object": "item",
        "amount_discount": 0,
        "amount_subtotal": amount,
        "amount_tax": 0,
        "amount_total": amount,
        "currency": price["currency"],
        "description": price["nickname"] or price["product"],
        "price": copy.deepcopy(price),
        "quantity": quantity,
    }


def list_json(data: list[JsonObject], url: str) -> JsonObject:
    """Stripe's list envelope."""
    return {"object": "list", "data": data, "has_more": False, "url": url}


def checkout_session_json(fields: JsonObject, line_items: list[JsonObject]) -> JsonObject:
    """An open Checkout Session built from its parsed parameters (``fields``)."""
    created = now()
    amount = sum(item["amount_total"] for item in line_items)
    return {
        "id": fields["id"],
        "object": "checkout.session",
        "adaptive_pricing": None,
        "after_expiration": None,
        "allow_promotion_codes": fields.get("allow_promotion_codes"),
        "amount_subtotal": amount,
        "amount_total": amount,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": fields.get("billing_address_collection"),
        "cancel_url": fields.get("cancel_url"),
        "client_reference_id": fields.get("client_reference_id"),
        "client_secret": None,
        "consent": None,
        "consent_collection": None,
        "created": created,
        "currency": line_items[0]["currency"] if line_items else None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": fields.get("customer"),
        "customer_creation": None if fields["mode"] == "subscription" else "if_required",
        "customer_details": None,
        "customer_email": fields.get("customer_email"),
        "discounts": [],
        "expires_at": created + CHECKOUT_LIFETIME_SECONDS,
        "invoice": None,
        "invoice_creation": None,
        "livemode": False,
        "locale": fields.get("locale"),
        "metadata": fields.get("metadata", {}),
        "mode": fields["mode"],
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "always",
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": None,
        "subscription": None,
        "success_url": fields.get("success_url"),
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": fields["url"],
    }


def customer_json(email: str | None, name: str | None, metadata: dict[str, str]) -> JsonObject:
    """A customer."""
    customer_id = new_id("cus")
    return {
        "id": customer_id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": now(),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "email": email,
        "invoice_prefix": customer_id[4:12].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": metadata,
        "name": name,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def add_interval(start: int, interval: str, count: int = 1) -> int:
    """The end of a billing period: calendar months and years, clamped to the month's last day."""
    moment = datetime.fromtimestamp(start, UTC)
    if interval in ("day", "week"):
        return int((moment + timedelta(days=count * (7 if interval == "week" else 1))).timestamp())
    months = moment.month - 1 + count * (12 if interval == "year" else 1)
    year, month = moment.year + months // 12, months % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def subscription_item_json(
    subscription_id: str, price: JsonObject, quantity: int, start: int
) -> JsonObject:
    """One item of a subscription; since API 2025-03-31 it carries the current period."""
    recurring = price["recurring"]
    return {
        "id": new_id("si"),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": start,
        "current_period_end": add_interval(
            start, recurring["interval"], recurring["interval_count"]
        ),
        "current_period_start": start,
        "discounts": [],
        "metadata": {},
        "price": copy.deepcopy(price),
        "quantity": quantity,
        "subscription": subscription_id,
        "tax_rates": [],
    }


def subscription_json(
    customer_id: str, line_items: list[JsonObject], metadata: dict[str, str]
) -> JsonObject:
    """An active subscription to the recurring prices of a completed Checkout Session."""
    subscription_id, start = new_id("sub"), now()
    items = [
        subscription_item_json(subscription_id, item["price"], item["quantity"], start)
        for item in line_items
        if item["price"]["recurring"] is not None
    ]
    return {
        "id": subscription_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": start,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": start,
        "currency": items[0]["price"]["currency"],
        "customer": customer_id,
        "days_until_due": None,
        "default_payment_method": new_id("pm"),
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            **list_json(items, f"/v1/subscription_items?subscription={subscription_id}"),
            "total_count": len(items),
        },
        "latest_invoice": new_id("in"),
        "livemode": False,
        "metadata": metadata,
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": None,
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": start,
        "status": "active",
        "test_clock": None,
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }


def portal_session_json(
    session_id: str, customer_id: str, return_url: str | None, url: str
) -> JsonObject:
    """A customer portal session."""
    return {
        "id": session_id,
        "object": "billing_portal.session",
        "configuration": PORTAL_CONFIGURATION_ID,
        "created": now(),
        "customer": customer_id,
        "flow": None,
        "livemode": False,
        "locale": None,
        "on_behalf_of": None,
        "return_url": return_url,
        "url": url,
    }


def event_json(
    event_type: str,
    data_object: JsonObject,
    previous_attributes: JsonObject | None = None,
    request_id: str | None = None,
    idempotency_key: str | None = None,
    pending_webhooks: int = 1,
) -> JsonObject:
    """An event carrying a snapshot of the object as it is now."""
    data: JsonObject = {"object": copy.deepcopy(data_object)}
    if previous_attributes is not None:
        data["previous_attributes"] = copy.deepcopy(previous_attributes)
    return {
        "id": new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": now(),
        "data": data,
        "livemode": False,
        "pending_webhooks": pending_webhooks,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": event_type,
    }
