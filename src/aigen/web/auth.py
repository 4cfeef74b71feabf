"""Sign-in with OpenID Connect (Google, or the local provider in development) and sign-out."""

from __future__ import annotations

import logging

from quart import Blueprint, Response, redirect, request, session
from quart.typing import ResponseTypes
from quart_auth import AuthUser, login_user, logout_user

from aigen.clients.oidc import PendingSignIn, SignInError
from aigen.core.accounts import end_sessions, save_identity
from aigen.core.errors import SignInFailed, SignInUnavailable
from aigen.web.current_user import current_user_id, is_htmx, safe_next, session_auth_id
from aigen.web.runtime import runtime

log = logging.getLogger(__name__)

blueprint = Blueprint("auth", __name__)

SESSION_KEY = "signin"
EXPIRED_MESSAGE = "Sign-in failed: this sign-in link has expired. Please try again."


@blueprint.get("/login")
async def login() -> ResponseTypes:
    """Send the browser to the identity provider."""
    next_path = safe_next(request.args.get("next"))
    if current_user_id() is not None:
        return redirect(next_path)
    try:
        url, pending = await runtime().oidc.begin()
    except SignInError as error:
        raise SignInUnavailable(f"Sign-in is unavailable: {error}") from error
    session[SESSION_KEY] = {**pending.to_dict(), "next": next_path}
    return redirect(url)


@blueprint.get("/auth/callback")
async def callback() -> ResponseTypes:
    """Validate the provider's answer, create or update the user, and sign them in."""
    stored = session.pop(SESSION_KEY, None)
    if not isinstance(stored, dict):
        raise SignInFailed(EXPIRED_MESSAGE)
    try:
        pending = PendingSignIn.from_dict(stored)
        identity = await runtime().oidc.finish(request.args.to_dict(), pending)
    except SignInError as error:
        raise SignInFailed(f"Sign-in failed: {error}") from error
    user = await save_identity(runtime().pool, identity, runtime().settings.free_credits)
    login_user(AuthUser(session_auth_id(user.id, user.session_version)), remember=True)
    log.info("user %s signed in", user.id)
    await runtime().verification.send_link_after_sign_in(user)
    return redirect(safe_next(stored.get("next")))


@blueprint.post("/logout")
async def logout() -> ResponseTypes:
    """Sign out: the session ends here and on the server, so no copy of its cookie works."""
    return await _sign_out("signed out")


@blueprint.post("/logout/everywhere")
async def logout_everywhere() -> ResponseTypes:
    """Sign out of every session of this account, in every browser (from the dashboard)."""
    return await _sign_out("signed out everywhere")


async def _sign_out(what: str) -> ResponseTypes:
    """End the user's sessions, forget this one and go home.

    Sessions are versioned per user (no table of sessions), so a sign-out ends them all.
    """
    user_id = current_user_id()
    if user_id is not None:
        await end_sessions(runtime().pool, user_id)
        log.info("user %s %s", user_id, what)
    logout_user()
    session.clear()
    if is_htmx():
        return Response("", status=204, headers={"HX-Redirect": "/"})
    return redirect("/")
