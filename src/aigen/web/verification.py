"""E-mail verification pages: following the link from the mail, and asking for another."""

from __future__ import annotations

from quart import Blueprint, render_template, request

from aigen.core.verification import Outcome
from aigen.web.current_user import (
    is_htmx,
    login_required,
    signed_in_user,
    signed_in_user_id,
    user_if_signed_in,
)
from aigen.web.rate_limits import remember
from aigen.web.runtime import runtime

blueprint = Blueprint("verification", __name__)

OUTCOME_STATUS = {
    Outcome.VERIFIED: 200,
    Outcome.ALREADY_VERIFIED: 200,
    Outcome.USED: 410,
    Outcome.EXPIRED: 410,
    Outcome.INVALID: 400,
    Outcome.TAKEN: 409,
}


@blueprint.get("/verify-email")
async def verify_email() -> tuple[str, int]:
    """Follow the link from the mail and say what happened."""
    outcome, link_owner = await runtime().verification.follow_link(request.args.get("token", ""))
    # The layout shows `user` as whoever is signed in, who may not own the link; when they do,
    # their row as the link left it (the one read before it was followed is stale).
    user = await user_if_signed_in()
    if user is not None and link_owner is not None and link_owner.id == user.id:
        user = link_owner
    body = await render_template(
        "verification/result.html",
        outcome=outcome.value,
        link_owner=link_owner,
        user=user,
        signed_in=user is not None,
    )
    return body, OUTCOME_STATUS[outcome]


@blueprint.post("/verify-email/resend")
@login_required
async def resend() -> str:
    """Send a new link (the old one stops working); limited to a few per hour per user."""
    sent, decision = await runtime().verification.resend(signed_in_user_id())
    remember(decision)
    template = "verification/_sent.html" if is_htmx() else "verification/sent.html"
    # Nothing sent to an unverified user: another account verified the address.
    return await render_template(
        template, sent=sent, verified=(await signed_in_user()).email_verified
    )
