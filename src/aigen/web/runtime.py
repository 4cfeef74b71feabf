"""The long-lived objects of one running app (pool, clients, services), kept on the app."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import redis.asyncio
from quart import current_app

from aigen.clients.claude import ClaudeClient
from aigen.clients.mail import BackgroundMailer
from aigen.clients.oidc import OIDCClient
from aigen.clients.stripe import PriceCache, StripeBilling
from aigen.config import Settings
from aigen.core.generation import GenerationService
from aigen.core.limits import Limiter
from aigen.core.streaming import StreamingService
from aigen.core.verification import VerificationService
from aigen.store.pool import Pool

EXTENSION_KEY = "aigen"


@dataclass
class Runtime:
    """Created by create_app; the connections inside are opened in before_serving.

    The services are set by `app._start` and always present while serving; before that they
    are unset attributes, so code that may run earlier (readiness, shutdown) uses getattr.
    """

    settings: Settings
    pool: Pool = field(init=False)
    claude: ClaudeClient = field(init=False)
    generations: GenerationService = field(init=False)
    streaming: StreamingService = field(init=False)
    verification: VerificationService = field(init=False)
    oidc: OIDCClient = field(init=False)
    limiter: Limiter = field(init=False)
    redis: redis.asyncio.Redis | None = None  # None without REDIS_URL
    mailer: BackgroundMailer = field(init=False)
    billing: StripeBilling | None = None  # None without the STRIPE_* settings
    prices: PriceCache | None = None
    background: set[asyncio.Task[None]] = field(default_factory=set)


def runtime() -> Runtime:
    """The runtime of the app handling the current request."""
    return current_app.extensions[EXTENSION_KEY]
