"""Plans and credits: the one rule that says whether a user may generate now, and why not."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from aigen.store.repository import User

FREE = "FREE"
PRO = "PRO"
PLANS = (FREE, PRO)


class Access(enum.Enum):
    """Whether the user may start a generation now."""

    ALLOWED = "allowed"
    VERIFY_EMAIL = "verify_email"  # free credits wait for a verified address
    NO_CREDITS = "no_credits"  # the free credits are spent


def is_unlimited(user: User) -> bool:
    """PRO users pay, so credits never limit them."""
    return user.plan == PRO


def credits_remaining(user: User) -> int | None:
    """Credits left, or None for an unlimited plan."""
    if is_unlimited(user):
        return None
    return max(user.credits_limit - user.credits_used, 0)


def generation_access(user: User) -> Access:
    """Plan, verification and credits, in the order the user has to act on them."""
    if is_unlimited(user):
        return Access.ALLOWED
    if not user.email_verified:
        return Access.VERIFY_EMAIL
    if user.credits_used >= user.credits_limit:
        return Access.NO_CREDITS
    return Access.ALLOWED


def needs_verification(user: User) -> bool:
    """Whether a verification link would unlock anything for this user."""
    return not user.email_verified and not is_unlimited(user)


def credits_renew_at(user: User) -> datetime | None:
    """When the free credits start again from zero (the end of the period); None for PRO."""
    return None if is_unlimited(user) else user.period_end


def can_manage_billing(user: User) -> bool:
    """Whether the user has a Stripe customer whose billing portal they can open."""
    return user.stripe_customer_id is not None


def credits_json(user: User) -> dict[str, Any]:
    """The user's plan and credits as the API shows them."""
    return {"plan": user.plan, "used": user.credits_used, "limit": user.credits_limit}
