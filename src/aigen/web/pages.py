"""Server-rendered pages: landing, dashboard (with its live usage partial), history, pricing."""

from __future__ import annotations

from quart import Blueprint, redirect, render_template, request
from quart.typing import ResponseTypes

from aigen.core.history import history_page, owned_generation, recent_generations
from aigen.web.current_user import (
    current_user_id,
    login_required,
    signed_in_user,
    user_if_signed_in,
)
from aigen.web.runtime import runtime

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
async def landing() -> str | ResponseTypes:
    """What the product does, and the way in."""
    if current_user_id() is not None:
        return redirect("/generate")
    return await render_template("pages/landing.html")


@blueprint.get("/dashboard")
@login_required
async def dashboard() -> str:
    """Welcome, plan, live usage and the newest generations."""
    user = await signed_in_user()
    recent = await recent_generations(runtime().pool, user.id)
    return await render_template(
        "dashboard/page.html", user=user, recent=recent, generations=recent
    )


@blueprint.get("/dashboard/usage")
@login_required
async def usage() -> str:
    """The usage card alone: polled every 30 s and refreshed after each generation."""
    return await render_template(
        "dashboard/_usage.html", user=await signed_in_user(), swap_nav=True
    )


@blueprint.get("/history")
@login_required
async def history() -> str:
    """All of the user's generations, newest first, a keyset page at a time (no OFFSET)."""
    user = await signed_in_user()
    page = await history_page(runtime().pool, user.id, request.args.get("before"))
    return await render_template(
        "history/page.html",
        user=user,
        generations=page.generations,
        is_first_page=page.is_first_page,
        next_cursor=page.next_cursor,
    )


@blueprint.get("/generations/<int:generation_id>")
@login_required
async def generation_detail(generation_id: int) -> str:
    """One generation: the prompt and the rendered answer (or why there is none)."""
    user = await signed_in_user()
    generation = await owned_generation(runtime().pool, user.id, generation_id)
    return await render_template("history/detail.html", user=user, generation=generation)


@blueprint.get("/pricing")
async def pricing() -> str:
    """Free and Pro side by side: limits from the configuration, the price as Stripe last said."""
    prices = runtime().prices
    return await render_template(
        "pricing/page.html",
        user=await user_if_signed_in(),
        free_credits=runtime().settings.free_credits,
        price=prices.price if prices is not None else None,
    )
