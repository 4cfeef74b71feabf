"""API keys at the HTTP edge: `Authorization: Bearer <key>` on the routes marked to accept one.

On such a route (POST /api/generate, GET /api/usage) a Bearer header makes the key THE
credential: a cookie sent along is ignored, and no CSRF proof is asked, since a key is not an
ambient credential (a browser adds it to no request by itself). A bad key is a 401 with
`WWW-Authenticate: Bearer`, never a fall-back to the cookie. Key management refuses keys (403).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from quart import current_app, g, request

from aigen.core.accounts import load_user
from aigen.core.api_keys import KeyOwner, authenticate
from aigen.store.repository import User
from aigen.web.current_user import signed_in_user, signed_in_user_id
from aigen.web.errors import UNAUTHORIZED, APIError
from aigen.web.runtime import runtime

F = TypeVar("F", bound=Callable[..., object])

SCHEME = "bearer"
MARK = "aigen_accepts_api_key"
KEYS_NEED_A_SESSION = (
    "API keys cannot manage API keys. Sign in with a browser to create, list or revoke them."
)


@dataclass(frozen=True)
class Caller:
    """Who an API request speaks for, and the key it came with (None: the browser's cookie)."""

    user_id: int
    api_key_id: int | None


def accepts_api_key(view: F) -> F:
    """Mark a view as one a Bearer key may call (put it under the route decorator)."""
    setattr(view, MARK, True)
    return view


def bearer_token() -> str | None:
    """What follows `Bearer` in the Authorization header ('' if nothing); None without one.

    Other schemes (a proxy's Basic, say) are not ours and are ignored.
    """
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    return credentials.strip() if scheme.lower() == SCHEME else None


def route_accepts_api_key() -> bool:
    """Whether the view this request is routed to is marked @accepts_api_key."""
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, MARK, False))


def uses_api_key() -> bool:
    """Whether a key is this request's credential (a Bearer header on a route taking one)."""
    return bearer_token() is not None and route_accepts_api_key()


def invalid_key() -> APIError:
    """401 for a bad, malformed or revoked key, with the challenge RFC 6750 asks for."""
    error = APIError(401, UNAUTHORIZED)
    error.headers = {"WWW-Authenticate": "Bearer"}
    return error


async def key_owner() -> KeyOwner:
    """The owner of the request's key, checked once per request; 401 when it is not valid."""
    owner: KeyOwner | None = g.get("aigen_key_owner")
    if owner is None:
        owner = await authenticate(runtime().pool, bearer_token() or "")
        if owner is None:
            raise invalid_key()
        g.aigen_key_owner = owner
    return owner


async def api_caller() -> Caller:
    """The key's owner on a Bearer request, else the signed-in user (NotSignedIn if none)."""
    if not uses_api_key():
        return Caller(signed_in_user_id(), None)
    owner = await key_owner()
    return Caller(owner.user_id, owner.key_id)


async def api_user() -> User:
    """The row of the user the API request speaks for, read once."""
    if not uses_api_key():
        return await signed_in_user()
    return await load_user(runtime().pool, (await key_owner()).user_id)


async def refuse_api_keys() -> None:
    """before_request of key management: a key may not make, list or revoke keys (403).

    Pages ignore the header like every page does: there, the cookie decides.
    """
    if bearer_token() is not None and request.path.startswith("/api/"):
        raise APIError(403, KEYS_NEED_A_SESSION)
