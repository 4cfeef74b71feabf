"""The stand-in's Quart app: the API, the hosted pages, the admin API and webhook delivery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

from quart import Quart, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from aigen.dev.stripe import admin, api, pages
from aigen.dev.stripe.context import STATE_KEY, current_state, request_id
from aigen.dev.stripe.protocol import API_VERSION, StripeError, new_id, now, unrecognized_url
from aigen.dev.stripe.state import FakeStripeState
from aigen.dev.stripe.webhooks import delivery_client


def create_fake_stripe_app(state: FakeStripeState) -> Quart:
    """Create the app around a state (see ``state.new_state``)."""
    app = Quart(__name__)
    app.extensions[STATE_KEY] = state
    for blueprint in (api.blueprint, pages.blueprint, admin.blueprint):
        app.register_blueprint(blueprint)
    app.before_request(_assign_request_id)
    app.after_request(_finish_response)
    app.register_error_handler(StripeError, error_response)
    app.register_error_handler(HTTPException, http_error_response)
    app.while_serving(_webhook_worker(state))
    return app


async def error_response(error: StripeError) -> Response:
    """Stripe's error JSON with the error's status (401s also name the auth scheme)."""
    response = jsonify(error.body())
    response.status_code = error.status
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="Stripe"'
    return response


async def http_error_response(error: HTTPException) -> Response:
    """Unknown routes and methods answer like Stripe's "Unrecognized request URL"."""
    if error.code in (404, 405):
        return await error_response(unrecognized_url(request.method, request.path))
    return await error_response(StripeError(error.code or 500, error.description or "Error"))


async def _assign_request_id() -> None:
    g.request_id = new_id("req")


async def _finish_response(response: Response) -> Response:
    response.headers["Request-Id"] = request_id()
    if request.path.startswith("/v1/"):
        response.headers["Stripe-Version"] = API_VERSION
        _log_request(response.status_code)
    return response


def _log_request(status: int) -> None:
    """Keep what the API was asked (never the Authorization header)."""
    current_state().requests.append(
        {
            "id": request_id(),
            "created": now(),
            "method": request.method,
            "path": request.path,
            "params": g.get("params"),
            "idempotency_key": g.get("idempotency_key"),
            "status": status,
        }
    )


def _webhook_worker(state: FakeStripeState) -> Callable[[], AsyncGenerator[None, None]]:
    """Run the delivery worker for as long as the app serves."""

    async def deliver_webhooks() -> AsyncGenerator[None, None]:
        async with delivery_client() as client:
            worker = asyncio.create_task(state.dispatcher.run(client))
            yield
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    return deliver_webhooks
