"""Serving the stand-in: in a thread for tests (``FakeStripeServer``), or from the command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import httpx

from aigen.dev.serving import (
    LOOPBACK,
    ThreadedServer,
    hypercorn_config,
    listening_socket,
    serve_app,
    socket_url,
)
from aigen.dev.stripe import billing
from aigen.dev.stripe.app import create_fake_stripe_app
from aigen.dev.stripe.protocol import StripeError
from aigen.dev.stripe.state import FakeStripeState, new_state
from aigen.dev.stripe.webhooks import DEFAULT_RETRY_DELAYS, WebhookTarget

HOST = LOOPBACK  # a development stand-in: never reachable from another machine
DEFAULT_PORT = 12111  # the port stripe-mock uses
DEFAULT_API_KEY = "sk_test_aigen_local"
DEFAULT_WEBHOOK_SECRET = "whsec_aigen_local"
PRODUCTION_ENV = "production"
READY_PATH = "/_fake/webhook"  # answers once start-up (the webhook worker) is done; logs nothing
ADMIN_TIMEOUT_SECONDS = 30.0
PriceSpecs = Mapping[str, Mapping[str, Any]]


class FakeStripeAdminError(RuntimeError):
    """An admin call the stand-in refused (its message says why)."""


@cache
def _tls_context() -> ssl.SSLContext:
    # httpx builds a TLS context per client, even for http:// URLs; one loaded once is cheaper.
    return ssl.create_default_context()


def refuse_in_production() -> None:
    """Stop here when ``AIGEN_ENV=production``: the stand-in accepts any payment."""
    if os.environ.get("AIGEN_ENV") == PRODUCTION_ENV:
        raise RuntimeError("the local Stripe stand-in must not run with AIGEN_ENV=production")


class FakeStripeAdmin:
    """Drive a running stand-in (in this process or another) through ``/_fake``."""

    def __init__(self, url: str) -> None:
        self._admin_url = url.rstrip("/")

    @property
    def url(self) -> str:
        """The stand-in's root URL."""
        return self._admin_url

    async def requests(self) -> list[dict[str, Any]]:
        """The API calls received, oldest first."""
        return (await self._call("GET", "/requests"))["requests"]

    async def events(self) -> list[dict[str, Any]]:
        """The events made, oldest first."""
        return (await self._call("GET", "/events"))["events"]

    async def deliveries(self) -> list[dict[str, Any]]:
        """The webhook deliveries with their attempts, oldest first."""
        return (await self._call("GET", "/deliveries"))["deliveries"]

    async def wait_for_deliveries(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until no delivery is pending (retries included); return the delivery log."""
        answer = await self._call("POST", "/deliveries/wait", {"timeout": timeout})
        if not answer["idle"]:
            raise TimeoutError(f"webhook deliveries still pending after {timeout} s")
        return answer["deliveries"]

    async def send_event(
        self,
        event_type: str,
        object_id: str | None = None,
        *,
        changes: Mapping[str, Any] | None = None,
        data_object: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send an event about a stored object (after applying ``changes``) or a given object."""
        body: dict[str, Any] = {"type": event_type, "object_id": object_id}
        if changes is not None:
            body["changes"] = dict(changes)
        if data_object is not None:
            body["object"] = dict(data_object)
        return await self._call("POST", "/events", body)

    async def replay_event(self, event_id: str) -> dict[str, Any]:
        """Deliver an event already sent once more (same id); return the new delivery."""
        return await self._call("POST", f"/events/{event_id}/replay")

    async def set_price(self, price_id: str, **fields: Any) -> dict[str, Any]:
        """Create or replace a price: ``unit_amount``, ``currency``, ``interval``, ``product``..."""
        return await self._call("PUT", f"/prices/{price_id}", fields)

    async def complete_checkout(self, session_id: str, email: str | None = None) -> dict[str, Any]:
        """Pay a Checkout Session as the pay page's button does; return the session."""
        return await self._call(
            "POST", f"/checkout/sessions/{session_id}/complete", {"email": email}
        )

    async def set_webhook(self, url: str | None, secret: str | None = None) -> None:
        """Send later events to ``url`` (``None``: keep them only), signed with ``secret``."""
        body: dict[str, Any] = {"url": url} | ({} if secret is None else {"secret": secret})
        await self._call("PUT", "/webhook", body)

    async def clear(self) -> None:
        """Forget requests, events and deliveries."""
        await self._call("POST", "/clear")

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        async with httpx.AsyncClient(verify=_tls_context(), timeout=ADMIN_TIMEOUT_SECONDS) as http:
            response = await http.request(method, f"{self.url}/_fake{path}", json=body)
        if response.is_error:
            message = response.json().get("error", {}).get("message", response.reason_phrase)
            raise FakeStripeAdminError(f"{method} /_fake{path}: {message}")
        return response.json()


def build_state(
    *,
    api_key: str,
    webhook_url: str | None,
    webhook_secret: str,
    prices: PriceSpecs | None = None,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
) -> FakeStripeState:
    """A state with the given prices (``{price_id: {"unit_amount": ..}}``) or the default one."""
    state = new_state(
        api_key=api_key,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        prices=None if prices is None else (),
        retry_delays=retry_delays,
    )
    for price_id, spec in (prices or {}).items():
        try:
            billing.set_price(state, price_id, dict(spec))
        except StripeError as error:
            raise ValueError(f"price {price_id}: {error.message}") from None
    return state


class FakeStripeServer(FakeStripeAdmin):
    """The stand-in on 127.0.0.1 in a daemon thread with its own event loop; also its admin."""

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        webhook_url: str | None = None,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        prices: PriceSpecs | None = None,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    ) -> None:
        super().__init__("")
        self._state = build_state(
            api_key=api_key,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            prices=prices,
            retry_delays=retry_delays,
        )
        self.app = create_fake_stripe_app(self._state)
        self._server = ThreadedServer(
            self.app, port=port, name="fake-stripe", ready_path=READY_PATH
        )

    @property
    def url(self) -> str:
        """The root URL, e.g. ``http://127.0.0.1:40123``: the SDK's API base."""
        try:
            return self._server.url
        except RuntimeError:
            raise RuntimeError("FakeStripeServer is not started") from None

    @property
    def api_base(self) -> str:
        """What to give the SDK: ``StripeClient(key, base_addresses={"api": api_base})``."""
        return self.url

    @property
    def api_key(self) -> str:
        """The one secret key the stand-in accepts."""
        return self._state.api_key

    @property
    def webhook_url(self) -> str | None:
        """Where events are POSTed (``None``: they are only kept)."""
        return self._state.dispatcher.target.url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self._retarget(url, self.webhook_secret)

    @property
    def webhook_secret(self) -> str:
        """The endpoint secret (``whsec_...``) events are signed with."""
        return self._state.dispatcher.target.secret

    @webhook_secret.setter
    def webhook_secret(self, secret: str) -> None:
        self._retarget(self.webhook_url, secret)

    def _retarget(self, url: str | None, secret: str) -> None:
        # One reference swapped whole: the server thread sees the old target or the new one.
        self._state.dispatcher.target = WebhookTarget(url, secret)

    def start(self) -> FakeStripeServer:
        """Start serving; return once requests are answered."""
        refuse_in_production()
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.stop()

    def __enter__(self) -> FakeStripeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line of ``python -m aigen.dev.stripe``."""
    parser = argparse.ArgumentParser(
        prog="python -m aigen.dev.stripe",
        description="Local Stripe stand-in: Checkout, customer portal, signed webhooks.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the secret key accepted")
    parser.add_argument("--webhook-url", default=None, help="where events are POSTed")
    parser.add_argument("--webhook-secret", default=DEFAULT_WEBHOOK_SECRET)
    args = parser.parse_args(argv)
    try:
        WebhookTarget(args.webhook_url, args.webhook_secret)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the stand-in on 127.0.0.1 until interrupted."""
    args = parse_args(argv)
    try:
        refuse_in_production()
    except RuntimeError as error:
        print(f"refusing to start: {error}", file=sys.stderr)
        return 2
    state = build_state(
        api_key=args.api_key, webhook_url=args.webhook_url, webhook_secret=args.webhook_secret
    )
    sock = listening_socket(HOST, args.port)
    url = socket_url(sock)
    key = args.api_key if args.api_key == DEFAULT_API_KEY else "the --api-key given"
    print(f"Stripe stand-in on {url} (API base; secret key: {key})", flush=True)
    print(f"Webhooks to {args.webhook_url or '(none: events are only kept)'}", flush=True)
    asyncio.run(serve_app(create_fake_stripe_app(state), hypercorn_config(sock)))
    return 0
