"""Server-rendered pages."""

from __future__ import annotations

from quart import Blueprint, Response, redirect, render_template

from aigen.auth import current_user_id

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
async def landing() -> str | Response:
    """What the product does, and the way in."""
    if current_user_id() is not None:
        return redirect("/generate")
    return await render_template("pages/landing.html")
