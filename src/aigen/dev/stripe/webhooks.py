"""Webhook signing (Stripe's ``Stripe-Signature`` scheme) and asynchronous delivery with retries."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from aigen.dev.stripe.protocol import new_id, now

DELIVERY_TIMEOUT_SECONDS = 10.0
DEFAULT_RETRY_DELAYS = (0.2, 0.5, 1.0)
DELIVERY_LOG_LIMIT = 10_000
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


@dataclass(frozen=True)
class WebhookTarget:
    """Where events go and the secret they are signed with (``url=None``: events are only kept)."""

    url: str | None
    secret: str

    def __post_init__(self) -> None:
        if self.url is not None and not is_http_url(self.url):
            raise ValueError(f"webhook URL must be an http(s) URL with a host: {self.url!r}")
        if not self.secret:
            raise ValueError("webhook secret must not be empty")


def is_http_url(url: str) -> bool:
    """Tell whether ``url`` is an absolute http(s) URL that httpx can parse."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


@dataclass
class Delivery:
    """One event sent (or replayed) to one endpoint, with every attempt made."""

    id: str
    event_id: str
    event_type: str
    url: str | None
    status: str = "pending"  # pending, succeeded, failed or skipped (no endpoint configured)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    created: int = field(default_factory=now)

    def to_json(self) -> dict[str, Any]:
        """The delivery as the admin API lists it."""
        return asdict(self)


@dataclass(frozen=True)
class _Job:
    delivery: Delivery
    url: str
    payload: bytes
    secret: str


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """``t=<unix time>,v1=<hex HMAC-SHA256 of "t.payload" keyed with the endpoint secret>``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256)
    return f"t={stamp},v1={digest.hexdigest()}"


def event_payload(event: dict[str, Any]) -> bytes:
    """The request body: the event as pretty-printed JSON, like Stripe sends it."""
    return json.dumps(event, indent=2).encode()


class WebhookDispatcher:
    """Queue events and POST them one at a time, retrying a failed delivery after short delays."""

    def __init__(self, target: WebhookTarget, retry_delays: Sequence[float]) -> None:
        self.target = target  # replaced whole, so another thread may swap it at any time
        self.retry_delays = tuple(retry_delays)
        self.deliveries: deque[Delivery] = deque(maxlen=DELIVERY_LOG_LIMIT)
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()

    def send(self, event: dict[str, Any]) -> Delivery:
        """Log a delivery of the event to the current target and queue it."""
        target = self.target
        delivery = Delivery(new_id("whdel"), event["id"], event["type"], target.url)
        self.deliveries.append(delivery)
        if target.url is None:
            delivery.status = "skipped"
        else:
            self._queue.put_nowait(_Job(delivery, target.url, event_payload(event), target.secret))
        return delivery

    async def wait_idle(self) -> None:
        """Return once every queued delivery has succeeded or used up its retries."""
        await self._queue.join()

    async def run(self, client: httpx.AsyncClient) -> None:
        """Deliver queued events until cancelled."""
        while True:
            job = await self._queue.get()
            try:
                await self._deliver(client, job)
            finally:
                self._queue.task_done()

    async def _deliver(self, client: httpx.AsyncClient, job: _Job) -> None:
        for delay in (0.0, *self.retry_delays):
            await asyncio.sleep(delay)
            attempt = await _post(client, job.url, job.payload, job.secret)
            job.delivery.attempts.append(attempt)
            if attempt["succeeded"]:
                job.delivery.status = "succeeded"
                return
        job.delivery.status = "failed"


async def _post(client: httpx.AsyncClient, url: str, payload: bytes, secret: str) -> dict[str, Any]:
    """One attempt; each is signed afresh, so its timestamp is the attempt's."""
    headers = {
        "content-type": "application/json; charset=utf-8",
        "stripe-signature": signature_header(payload, secret),
        "user-agent": USER_AGENT,
    }
    attempt: dict[str, Any] = {"at": now(), "status": None, "error": None, "succeeded": False}
    try:
        response = await client.post(url, content=payload, headers=headers)
    except (httpx.HTTPError, httpx.InvalidURL) as error:  # either way the endpoint missed it
        attempt["error"] = f"{type(error).__name__}: {error}"
        return attempt
    attempt["status"] = response.status_code
    attempt["succeeded"] = 200 <= response.status_code < 300
    return attempt


def delivery_client() -> httpx.AsyncClient:
    """The HTTP client deliveries go through (no redirects followed, as Stripe does not)."""
    return httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS, follow_redirects=False)
