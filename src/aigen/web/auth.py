"""Sign-in with OpenID Connect (Google, or the local provider in development) and sign-out."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import asyncpg
from quart import Blueprint, Response, redirect, request, session
from quart.typing import ResponseTypes
from quart_auth import AuthUser, current_user, login_user, logout_user

from aigen.clients.oidc import Identity, PendingSignIn, SignInError
from aigen.store import repository
from aigen.web.errors import APIError
from aigen.web.runtime import runtime

log = logging.getLogger(__name__)

blueprint = Blueprint("auth", __name__)

DEFAULT_NEXT = "/generate"
SESSION_KEY = "signin"


def safe_next(value: str | None) -> str:
    """A same-site path to go to after sign-in; anything else becomes the default."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return DEFAULT_NEXT
    if any(ord(char) < 32 or char == "\\" for char in value):
        return DEFAULT_NEXT
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    return value


def current_user_id() -> int | None:
    """The signed-in user's id, or None."""
    auth_id = current_user.auth_id
    return int(auth_id) if auth_id and auth_id.isdigit() else None


@blueprint.get("/login")
async def login() -> ResponseTypes:
    """Send the browser to the identity provider."""
    next_path = safe_next(request.args.get("next"))
    if current_user_id() is not None:
        return redirect(next_path)
    try:
        url, pending = await runtime().oidc.begin()
    except SignInError as error:
        raise APIError(503, f"Sign-in is unavailable: {error}") from error
    session[SESSION_KEY] = {**pending.to_dict(), "next": next_path}
    return redirect(url)


@blueprint.get("/auth/callback")
async def callback() -> ResponseTypes:
    """Validate the provider's answer, create or update the user, and sign them in."""
    stored = session.pop(SESSION_KEY, None)
    if not isinstance(stored, dict):
        raise APIError(400, "Sign-in failed: this sign-in link has expired. Please try again.")
    try:
        pending = PendingSignIn.from_dict(stored)
        identity = await runtime().oidc.finish(request.args.to_dict(), pending)
    except SignInError as error:
        raise APIError(400, f"Sign-in failed: {error}") from error
    user = await _save_identity(identity)
    login_user(AuthUser(str(user.id)), remember=True)
    log.info("user %s signed in", user.id)
    from aigen.web.verification import send_link_after_sign_in  # it imports this module

    await send_link_after_sign_in(user)
    return redirect(safe_next(stored.get("next")))


async def _save_identity(identity: Identity) -> repository.User:
    """Upsert the user by subject; an e-mail owned by another subject is refused."""
    settings = runtime().settings
    try:
        async with runtime().pool.acquire() as conn:
            return await repository.upsert_user(
                conn,
                sub=identity.sub,
                email=identity.email,
                email_verified=identity.email_verified,
                name=identity.name,
                avatar_url=identity.picture,
                credits_limit=settings.free_credits,
            )
    except asyncpg.UniqueViolationError as error:
        raise APIError(
            409, "Sign-in failed: this e-mail address belongs to another account."
        ) from error


@blueprint.post("/logout")
async def logout() -> ResponseTypes:
    """Forget the session and go back to the landing page."""
    logout_user()
    session.clear()
    if request.headers.get("HX-Request") == "true":
        return Response("", status=204, headers={"HX-Redirect": "/"})
    return redirect("/")
