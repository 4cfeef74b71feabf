"""The stand-in's memory: Stripe objects by id, the events made, and the request log."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aigen.dev.stripe.objects import JsonObject, event_json, list_json, price_json
from aigen.dev.stripe.protocol import StripeError, no_such
from aigen.dev.stripe.webhooks import DEFAULT_RETRY_DELAYS, WebhookDispatcher, WebhookTarget

REQUEST_LOG_LIMIT = 10_000
# Collections by the name Stripe uses for them in "No such ..." errors.
KINDS = (
    "price",
    "customer",
    "checkout.session",
    "subscription",
    "billing_portal.session",
    "event",
)


class EventOrigin(NamedTuple):
    """The API request that caused an event (both ``None`` for actions taken on a page)."""

    request_id: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class CheckoutDetails:
    """What a Checkout Session keeps that its JSON does not show."""

    line_items: list[JsonObject]
    subscription_metadata: dict[str, str]


NO_ORIGIN = EventOrigin()


@dataclass
class FakeStripeState:
    """Everything the stand-in remembers; touched only on the server's event loop."""

    api_key: str
    dispatcher: WebhookDispatcher
    objects: dict[str, dict[str, JsonObject]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    checkout_details: dict[str, CheckoutDetails] = field(default_factory=dict)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_LIMIT))
    idempotent: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, kind: str, obj: JsonObject) -> JsonObject:
        """Store an object under its id and return it."""
        self.objects[kind][obj["id"]] = obj
        return obj

    def get(self, kind: str, object_id: str, *, param: str = "id", status: int = 404) -> JsonObject:
        """The stored object, or Stripe's ``resource_missing`` error."""
        found = self.objects[kind].get(object_id)
        if found is None:
            raise no_such(kind, object_id, param=param, status=status)
        return found

    def find(self, object_id: str) -> tuple[str, JsonObject] | None:
        """Look an id up in every collection."""
        for kind, collection in self.objects.items():
            if object_id in collection:
                return kind, collection[object_id]
        return None

    def emit(
        self,
        event_type: str,
        obj: JsonObject,
        previous_attributes: JsonObject | None = None,
        origin: EventOrigin = NO_ORIGIN,
    ) -> JsonObject:
        """Record an event about ``obj`` as it is now and hand it to the webhook dispatcher."""
        endpoints = 0 if self.dispatcher.target.url is None else 1
        event = event_json(event_type, obj, previous_attributes, *origin, endpoints)
        self.add("event", event)
        self.dispatcher.send(event)
        return event

    def expand(self, obj: JsonObject, paths: Iterable[str]) -> JsonObject:
        """A copy of ``obj`` with top-level ids (and a session's ``line_items``) expanded."""
        shown = copy.deepcopy(obj)
        for path in paths:
            if path == "line_items" and obj["object"] == "checkout.session":
                shown["line_items"] = self.line_items_list(obj["id"])
                continue
            value = obj.get(path)
            found = self.find(value) if isinstance(value, str) else None
            if path not in obj or (value is not None and found is None):
                raise StripeError(400, f"This property cannot be expanded ({path}).")
            shown[path] = copy.deepcopy(found[1]) if found else None
        return shown

    def line_items_list(self, session_id: str) -> JsonObject:
        """A Checkout Session's line items as a Stripe list."""
        details = self.checkout_details.get(session_id)
        items = copy.deepcopy(details.line_items) if details else []
        return list_json(items, f"/v1/checkout/sessions/{session_id}/line_items")

    def clear_logs(self) -> None:
        """Forget the request log, the delivery log and the events (objects stay)."""
        self.requests.clear()
        self.dispatcher.deliveries.clear()
        self.objects["event"].clear()


def new_state(
    *,
    api_key: str,
    webhook_url: str | None,
    webhook_secret: str,
    prices: Sequence[JsonObject] | None = None,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
) -> FakeStripeState:
    """A fresh state holding the given prices (by default the Pro monthly price)."""
    dispatcher = WebhookDispatcher(WebhookTarget(webhook_url, webhook_secret), retry_delays)
    state = FakeStripeState(api_key=api_key, dispatcher=dispatcher)
    for price in prices if prices is not None else [price_json()]:
        state.add("price", copy.deepcopy(price))
    return state
