"""The sign-in requirement of pages: signed-out browsers go to /login?next=<where they were>."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar
from urllib.parse import quote, urlsplit

from quart import Response, redirect, request
from quart.typing import ResponseTypes

from aigen.web.auth import current_user_id, safe_next
from aigen.web.errors import APIError

P = ParamSpec("P")
R = TypeVar("R")


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


def signed_in_user_id() -> int:
    """The signed-in user's id where sign-in is required; 401 if there is none."""
    user_id = current_user_id()
    if user_id is None:
        raise APIError(401, "Unauthorized")
    return user_id


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
