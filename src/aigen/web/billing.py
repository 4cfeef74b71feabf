"""Upgrading through Stripe: Checkout, the success page that waits for the webhook, the customer
portal, and the webhook itself (Stripe's signature is its proof: no cookie, no CSRF token).
"""

from __future__ import annotations

import logging

from quart import Blueprint, Response, jsonify, redirect, render_template, request
from quart.typing import ResponseTypes

from aigen.clients.stripe import SIGNATURE_HEADER, InvalidEvent
from aigen.core import billing
from aigen.core.errors import NotFound
from aigen.core.plans import is_unlimited
from aigen.web.current_user import login_required, signed_in_user
from aigen.web.runtime import runtime

log = logging.getLogger(__name__)

blueprint = Blueprint("billing", __name__, url_prefix="/billing")

# The success page asks every POLL_SECONDS whether the webhook has arrived, MAX_POLLS times.
POLL_SECONDS = 1
MAX_POLLS = 60


@blueprint.post("/checkout")
@login_required
async def checkout() -> ResponseTypes:
    """Send the user to Stripe Checkout to subscribe to Pro."""
    user = await signed_in_user()
    if is_unlimited(user):
        return redirect("/pricing", 303)
    rt = runtime()
    url = await billing.checkout_url(rt.billing, rt.pool, user, rt.settings.public_url)
    return redirect(url, 303)


@blueprint.get("/success")
@login_required
async def success() -> str:
    """Back from Checkout: the plan switches to Pro as soon as Stripe's webhook has arrived."""
    return await render_template("billing/success.html", user=await signed_in_user(), **_polling(0))


@blueprint.get("/status")
@login_required
async def status() -> str:
    """The success page's polled partial: waiting, Pro, or taking longer than it should."""
    poll = request.args.get("poll", "0")
    count = int(poll) + 1 if poll.isdigit() else MAX_POLLS
    return await render_template(
        "billing/_status.html", user=await signed_in_user(), swap_nav=True, **_polling(count)
    )


def _polling(count: int) -> dict[str, int]:
    return {"poll": count, "max_polls": MAX_POLLS, "poll_seconds": POLL_SECONDS}


@blueprint.post("/portal")
@login_required
async def portal() -> ResponseTypes:
    """Send a paying user to Stripe's customer portal (change card, cancel)."""
    user = await signed_in_user()
    settings = runtime().settings
    return redirect(await billing.portal_url(runtime().billing, user, settings.public_url), 303)


@blueprint.post("/webhook")
async def webhook() -> tuple[Response, int]:
    """Apply a signed Stripe event; anything unsigned, forged or stale is refused with 400."""
    stripe_billing = runtime().billing
    if stripe_billing is None:
        raise NotFound(billing.UPGRADES_CLOSED_MESSAGE)
    payload = await request.get_data(as_text=False)
    assert isinstance(payload, bytes)  # as_text=False
    try:
        event = stripe_billing.verify_event(payload, request.headers.get(SIGNATURE_HEADER))
    except InvalidEvent as error:
        log.warning("refused a Stripe webhook: %s", error)
        return jsonify({"error": "invalid signature"}), 400
    outcome = await billing.apply_event(runtime().pool, event)
    return jsonify({"received": True, "outcome": outcome.value}), 200
