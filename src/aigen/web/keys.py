"""API keys, managed with the browser's session only: the JSON API (/api/keys) and the /keys page.

The page's htmx forms swap partials (answered 200 whatever happened, as htmx 2 swaps only 2xx);
without JavaScript the same forms post normally and get the whole page back. An answer that
holds a new key is marked `Cache-Control: no-store`: the key is shown once and kept nowhere.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, redirect, render_template, request
from quart.typing import ResponseTypes

from aigen.core.api_keys import (
    NewKey,
    create_key,
    key_json,
    list_keys,
    owned_key,
    revoke_key,
    validate_key_name,
)
from aigen.core.errors import Conflict, InvalidInput
from aigen.web.api import json_body
from aigen.web.bearer import refuse_api_keys
from aigen.web.current_user import is_htmx, login_required, signed_in_user, signed_in_user_id
from aigen.web.errors import api_error_from
from aigen.web.openapi import (
    CREATE_KEY_RESPONSES,
    LIST_KEYS_RESPONSES,
    REVOKE_KEY_RESPONSES,
    KeyName,
    documented,
)
from aigen.web.runtime import runtime

blueprint = Blueprint("keys", __name__)
blueprint.before_request(refuse_api_keys)

NO_STORE = {"Cache-Control": "no-store"}
# A key id as PostgreSQL's bigint holds it: a larger number is a 404, not a failed query.
KEY_ID = "<int(max=9223372036854775807):key_id>"


# --- JSON API ------------------------------------------------------------------------------------


@blueprint.post("/api/keys")
@documented(CREATE_KEY_RESPONSES, request=KeyName)
async def create_api_key() -> tuple[Response, int, dict[str, str]]:
    """Make a key named by the body's "name"; the answer is the only time the key is shown."""
    user_id = signed_in_user_id()
    name = validate_key_name(await json_body())
    created = await create_key(runtime().pool, user_id, name)
    return jsonify(created.to_json()), 201, NO_STORE


@blueprint.get("/api/keys")
@documented(LIST_KEYS_RESPONSES)
async def list_api_keys() -> Response:
    """The user's active keys, newest first, by name and prefix (never the key)."""
    keys = await list_keys(runtime().pool, signed_in_user_id())
    return jsonify({"keys": [key_json(key) for key in keys]})


@blueprint.delete(f"/api/keys/{KEY_ID}")
@documented(REVOKE_KEY_RESPONSES)
async def revoke_api_key(key_id: int) -> tuple[str, int]:
    """Revoke one of the user's keys; it stops working at once."""
    await revoke_key(runtime().pool, signed_in_user_id(), key_id)
    return "", 204


# --- The /keys page ------------------------------------------------------------------------------


@blueprint.get("/keys")
@login_required
async def page() -> str:
    """Create a key, list the active ones, revoke one."""
    return await _render_page()


@blueprint.post("/keys")
@login_required
async def create() -> ResponseTypes:
    """Make a key from the form and show it once; or say why not, the name kept in the box."""
    name = (await request.form).get("name", "")
    created: NewKey | None = None
    context: dict[str, object]
    try:
        valid_name = validate_key_name({"name": name})
        created = await create_key(runtime().pool, signed_in_user_id(), valid_name)
    except (InvalidInput, Conflict) as error:
        status, context = api_error_from(error).status, {"name": name, "error": error.message}
    else:
        status, context = 201, {"created": created}
    if is_htmx():
        # The list changes only when a key was made: then it comes along out of band.
        keys = await list_keys(runtime().pool, signed_in_user_id()) if created else None
        body = await render_template("keys/_create.html", oob_keys=keys, **context)
        return Response(body, status=200, headers=NO_STORE)
    return Response(await _render_page(**context), status=status, headers=NO_STORE)


@blueprint.get(f"/keys/{KEY_ID}/revoke")
@login_required
async def confirm_revoke(key_id: int) -> str:
    """Ask before revoking: the list with this key's row asking to confirm."""
    key = await owned_key(runtime().pool, signed_in_user_id(), key_id)
    if is_htmx():
        keys = await list_keys(runtime().pool, signed_in_user_id())
        return await render_template("keys/_list.html", keys=keys, confirming=key.id)
    return await _render_page(confirming=key.id)


@blueprint.post(f"/keys/{KEY_ID}/revoke")
@login_required
async def revoke(key_id: int) -> str | ResponseTypes:
    """Revoke the key; the list comes back without it."""
    revoked = await revoke_key(runtime().pool, signed_in_user_id(), key_id)
    if not is_htmx():
        return redirect("/keys", 303)
    keys = await list_keys(runtime().pool, signed_in_user_id())
    return await render_template("keys/_list.html", keys=keys, revoked=revoked)


async def _render_page(**context: object) -> str:
    user = await signed_in_user()
    keys = await list_keys(runtime().pool, user.id)
    return await render_template("keys/page.html", user=user, keys=keys, **context)
