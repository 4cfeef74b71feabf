"""The hosted pages: Checkout's pay page and the customer portal, plain HTML forms without JS."""

from __future__ import annotations

from datetime import UTC, datetime

from quart import Blueprint, Response, redirect, render_template_string, request, url_for
from werkzeug.wrappers.response import Response as WerkzeugResponse

from aigen.dev.stripe import billing
from aigen.dev.stripe.context import current_state
from aigen.dev.stripe.objects import JsonObject
from aigen.dev.stripe.protocol import StripeError

PAGE_START = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} · Stripe test mode</title>
<style>body{font:16px system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem}
.test{background:#ffde92;padding:.3rem .6rem;border-radius:4px;display:inline-block}
button{font-size:1rem;padding:.5rem 1.2rem}</style></head>
<body><p class="test">TEST MODE · local Stripe stand-in, no money moves</p>
<h1>{{ title }}</h1>
"""
PAGE_END = "</body></html>\n"

PAY_PAGE = """
<ul>{% for item in items %}<li>{{ item.description }} × {{ item.quantity }}:
 {{ money(item.amount_total, item.currency) }}{{ per(item.price) }}</li>{% endfor %}</ul>
<p>Total due today: <strong>{{ money(session.amount_total, session.currency) }}</strong></p>
{% if session.status == "open" %}
<form method="post" action="{{ url_for('fake_stripe_pages.pay', session_id=session.id) }}">
<p><label>Email <input type="email" name="email" value="{{ email or '' }}"
 {% if email %}readonly{% endif %}></label></p>
<p><button type="submit">Pay</button></p></form>
{% if session.cancel_url %}<p><a href="{{ session.cancel_url }}">Cancel</a></p>{% endif %}
{% else %}<p>This Checkout Session is {{ session.status }}.</p>{% endif %}
"""

PORTAL_PAGE = """
<p>Customer {{ customer.email or customer.id }}</p>
{% for sub in subscriptions %}<section><h2>{{ sub["items"].data[0].price.nickname
 or sub["items"].data[0].price.id }}</h2><p>Status: <strong>{{ sub.status }}</strong>
{% if sub.status != "canceled" %} · renews {{ date(sub["items"].data[0].current_period_end) }}
</p><form method="post" action="{{ url_for('fake_stripe_pages.portal_cancel',
 portal_id=portal.id) }}"><input type="hidden" name="subscription" value="{{ sub.id }}">
<button type="submit">Cancel subscription</button></form>{% else %}</p>{% endif %}</section>
{% else %}<p>No subscriptions.</p>{% endfor %}
{% if portal.return_url %}<p><a href="{{ portal.return_url }}">Return</a></p>{% endif %}
"""

MESSAGE_PAGE = "<p>{{ message }}</p>"

blueprint = Blueprint("fake_stripe_pages", __name__)


def money(amount: int, currency: str) -> str:
    """An amount in minor units as ``20.00 USD``."""
    return f"{amount / 100:.2f} {currency.upper()}"


def per(price: JsonObject) -> str:
    """`` / month`` for a recurring price, nothing for a one-time one."""
    recurring = price["recurring"]
    if recurring is None:
        return ""
    count = recurring["interval_count"]
    return f" / {recurring['interval']}" if count == 1 else f" / {count} {recurring['interval']}s"


def date(timestamp: int) -> str:
    """A Unix time as a calendar date."""
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat()


async def render(source: str, title: str, status: int = 200, **context: object) -> Response:
    """Render one of the pages (autoescaped) with the shared frame."""
    html = await render_template_string(
        PAGE_START + source + PAGE_END, title=title, money=money, per=per, date=date, **context
    )
    return Response(html, status=status, content_type="text/html; charset=utf-8")


@blueprint.get("/pay/<session_id>")
async def pay_page(session_id: str) -> Response:
    """Checkout's pay page: what is bought, an email field, Pay and Cancel."""
    state = current_state()
    session = state.get("checkout.session", session_id)
    email = session["customer_email"]
    if session["customer"] is not None:
        email = state.get("customer", session["customer"])["email"]
    items = state.checkout_details[session_id].line_items
    return await render(PAY_PAGE, "Checkout", session=session, items=items, email=email)


@blueprint.post("/pay/<session_id>")
async def pay(session_id: str) -> Response | WerkzeugResponse:
    """Pay: complete the session, send the webhooks, go to ``success_url``."""
    email = (await request.form).get("email") or None
    session = billing.complete_checkout(current_state(), session_id, email)
    target = billing.success_redirect(session)
    if target is None:
        return await render(MESSAGE_PAGE, "Thanks for your payment", message="Payment complete.")
    return redirect(target, 303)


@blueprint.get("/portal/<portal_id>")
async def portal_page(portal_id: str) -> Response:
    """The customer portal: the customer's subscriptions, each cancellable."""
    state = current_state()
    portal = state.get("billing_portal.session", portal_id)
    subscriptions = billing.customer_subscriptions(state, portal["customer"])
    customer = state.get("customer", portal["customer"])
    return await render(
        PORTAL_PAGE, "Billing", portal=portal, customer=customer, subscriptions=subscriptions
    )


@blueprint.post("/portal/<portal_id>/cancel")
async def portal_cancel(portal_id: str) -> WerkzeugResponse:
    """Cancel one of the portal customer's subscriptions, then go back to ``return_url``."""
    state = current_state()
    portal = state.get("billing_portal.session", portal_id)
    subscription_id = (await request.form).get("subscription", "")
    owned = billing.customer_subscriptions(state, portal["customer"])
    if subscription_id not in {sub["id"] for sub in owned}:
        raise StripeError(404, "No such subscription.")
    billing.cancel_subscription(state, subscription_id)
    back = portal["return_url"] or url_for("fake_stripe_pages.portal_page", portal_id=portal_id)
    return redirect(back, 303)


@blueprint.errorhandler(StripeError)
async def page_error(error: StripeError) -> Response:
    """Show a failed page action as a page, not as API JSON."""
    return await render(MESSAGE_PAGE, "Something went wrong", error.status, message=error.message)
