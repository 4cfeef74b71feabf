"""Rate-limit rules: which key each action counts against, and the refusal when it is over.

The GCRA itself and its Redis and in-process backends live in clients/ratelimit.py; web sets the
RateLimit-* headers from the decision returned here.
"""

from __future__ import annotations

import math
from typing import Protocol

from aigen.clients.ratelimit import Decision, RateLimit, parse_rate_limit
from aigen.core.errors import RateLimited

# Messages may use {seconds} and {minutes}: how long until a request will be allowed.
RATE_LIMITED_MESSAGE = "Too many requests. Please wait {seconds} s and try again."
RESEND_LIMIT = parse_rate_limit("3/hour")
RESEND_LIMITED_MESSAGE = (
    "You asked for several links already. Please check your inbox, or try again in {minutes} min."
)


class Limiter(Protocol):
    async def hit(self, key: str, limit: RateLimit) -> Decision: ...


async def check(
    limiter: Limiter, key: str, limit: RateLimit, message: str = RATE_LIMITED_MESSAGE
) -> Decision:
    """Count one hit on `key`; RateLimited when over, else the decision (for the headers)."""
    decision = await limiter.hit(key, limit)
    if not decision.allowed:
        seconds = decision.retry_after
        text = message.format(seconds=seconds, minutes=math.ceil(seconds / 60))
        raise RateLimited(text, decision)
    return decision


def generate_key(user_id: int) -> str:
    """Generations count per user, whichever worker or page they come from."""
    return f"generate:user:{user_id}"


def sign_in_key(client_ip: str) -> str:
    """Sign-in attempts count per client address (nobody is signed in yet)."""
    return f"ip:{client_ip}"


def resend_key(user_id: int) -> str:
    """Verification mails count per user."""
    return f"verify-resend:user:{user_id}"
