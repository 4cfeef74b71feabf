"""The signed-in user: their id from the cookie, their row loaded once per request, and the
sign-in requirement of pages (signed-out browsers go to /login?next=<where they were>).

The cookie carries "<user id>.<session version>". Before each request the row is loaded and
its version compared: an older one (after a sign-out) or a deleted account signs the request
out and deletes the cookie, so a copied cookie stops working with the sign-out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar
from urllib.parse import quote, urlsplit

from quart import Quart, Response, g, redirect, request
from quart.typing import ResponseTypes
from quart_auth import current_user, logout_user

from aigen.core.accounts import current_session_user, load_user
from aigen.core.errors import NotSignedIn
from aigen.store.repository import MAX_ID, User
from aigen.web.runtime import runtime

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_NEXT = "/generate"
UNAUTHORIZED = "Unauthorized"
USER_KEY = "aigen_user"
# Routes that never look at the user: no row is loaded for them.
SESSIONLESS_ENDPOINTS = frozenset({"static", "health.healthz", "health.readyz", "openapi"})


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


def session_auth_id(user_id: int, session_version: int) -> str:
    """What the sign-in cookie carries for this session of the user."""
    return f"{user_id}.{session_version}"


def current_user_id() -> int | None:
    """The signed-in user's id from the sign-in cookie, or None.

    The one place that parses the cookie; check_session has signed out a stale one already.
    """
    session = _cookie_session()
    return session[0] if session is not None else None


def _cookie_session() -> tuple[int, int] | None:
    """(user id, session version) of the sign-in cookie, or None."""
    user_id, _, version = (current_user.auth_id or "").partition(".")
    if not (_is_id(user_id) and _is_id(version)):
        return None
    return int(user_id), int(version)


def _is_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) <= MAX_ID


async def check_session() -> None:
    """before_request: load the signed-in user's row once; a stale session is signed out."""
    if request.endpoint in SESSIONLESS_ENDPOINTS:  # first: reading the cookie has a cost
        return
    session = _cookie_session()
    if session is None:
        return
    user = await current_session_user(runtime().pool, *session)
    if user is None:
        logout_user()  # the answer deletes the cookie; current_user_id() is None from now on
        return
    setattr(g, USER_KEY, user)


def signed_in_user_id() -> int:
    """The signed-in user's id where sign-in is required; NotSignedIn if there is none."""
    user_id = current_user_id()
    if user_id is None:
        raise NotSignedIn(UNAUTHORIZED)
    return user_id


async def signed_in_user() -> User:
    """The signed-in user's row, read once per request and kept on `g`."""
    user: User | None = g.get(USER_KEY)
    if user is None:
        user = await load_user(runtime().pool, signed_in_user_id())
        setattr(g, USER_KEY, user)
    return user


async def user_if_signed_in() -> User | None:
    """The signed-in user's row, or None for a visitor."""
    return await signed_in_user() if current_user_id() is not None else None


def forget_loaded_user() -> None:
    """Drop the row read earlier in this request (after a change to it, e.g. a generation)."""
    g.pop(USER_KEY, None)


def is_htmx() -> bool:
    """Whether htmx made this request (it then swaps the answer into part of a page)."""
    return request.headers.get("HX-Request") == "true"


def _return_path() -> str:
    """Where to come back after sign-in: the page the user is on, never a partial or a POST."""
    if is_htmx():
        # A partial (e.g. /dashboard/usage) is no place to land: use the page it sits in.
        current = urlsplit(request.headers.get("HX-Current-URL", ""))
        return safe_next(current.path + (f"?{current.query}" if current.query else ""))
    if request.method != "GET":
        return safe_next(request.path)
    query = request.query_string.decode("latin-1")
    return safe_next(request.path + (f"?{query}" if query else ""))


def login_redirect() -> ResponseTypes:
    """Send a signed-out visitor to sign-in; htmx gets HX-Redirect, not a login page swapped in."""
    location = "/login?next=" + quote(_return_path(), safe="/")
    if is_htmx():
        return Response("", status=200, headers={"HX-Redirect": location})
    return redirect(location)


def login_required(
    view: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R | ResponseTypes]]:
    """Run the view only for a signed-in user."""

    @wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | ResponseTypes:
        if current_user_id() is None:
            return login_redirect()
        return await view(*args, **kwargs)

    return wrapper


def init_app(app: Quart) -> None:
    """Check the session of every request (after json_only, before CSRF)."""
    app.before_request(check_session)
