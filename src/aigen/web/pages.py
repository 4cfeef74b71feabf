"""Server-rendered pages: landing, dashboard (with its live usage partial), history, pricing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from markupsafe import Markup
from quart import Blueprint, redirect, render_template, request
from quart.typing import ResponseTypes

from aigen.store import repository
from aigen.store.repository import Generation, User
from aigen.web.auth import current_user_id
from aigen.web.current_user import login_required, signed_in_user_id
from aigen.web.errors import APIError
from aigen.web.markdown import first_line, render_markdown
from aigen.web.runtime import runtime

blueprint = Blueprint("pages", __name__)

RECENT_COUNT = 5
HISTORY_PAGE_SIZE = 20
MALFORMED_CURSOR = "This history link is malformed. Start again from the newest."
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


@blueprint.app_template_global()
def is_signed_in() -> bool:
    """Whether the request carries a valid sign-in (templates choose the navigation by it)."""
    return current_user_id() is not None


@blueprint.app_template_filter("markdown")
def markdown_filter(text: str | None) -> Markup:
    """Claude's untrusted Markdown as sanitized HTML."""
    return render_markdown(text or "")


blueprint.add_app_template_filter(first_line, "first_line")


@blueprint.app_template_filter("iso_utc")
def iso_utc(moment: datetime) -> str:
    """A machine-readable UTC timestamp for <time datetime>."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@blueprint.app_template_filter("short_utc")
def short_utc(moment: datetime) -> str:
    """A short readable UTC time, e.g. 2025-01-31 14:05."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


async def load_user(conn: asyncpg.Connection, user_id: int) -> User:
    """The signed-in user's row; 401 if it no longer exists."""
    user = await repository.select_user(conn, user_id)
    if user is None:
        raise APIError(401, "Your account no longer exists. Please sign in again.")
    return user


async def current_user_row() -> User:
    """The signed-in user's row, in a short-lived connection."""
    async with runtime().pool.acquire() as conn:
        return await load_user(conn, signed_in_user_id())


async def get_owned_generation(
    conn: asyncpg.Connection, user_id: int, generation_id: int
) -> Generation:
    """One of the user's generations; someone else's is as absent as a missing one (404)."""
    generation = await repository.select_generation(conn, user_id, generation_id)
    if generation is None:
        raise APIError(404, "There is no such generation in your history.")
    return generation


def encode_cursor(generation: Generation) -> str:
    """The keyset cursor after `generation`: microseconds since the epoch and the id."""
    micros = (generation.created_at - EPOCH) // MICROSECOND
    return f"{micros}.{generation.id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Parse a cursor made by encode_cursor; 400 when it is not one."""
    micros, _, generation_id = cursor.partition(".")
    try:
        if not (micros.isdigit() and generation_id.isdigit()):
            raise ValueError(cursor)
        return EPOCH + int(micros) * MICROSECOND, int(generation_id)
    except (ValueError, OverflowError) as error:
        raise APIError(400, MALFORMED_CURSOR) from error


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
    async with runtime().pool.acquire() as conn:
        user = await load_user(conn, signed_in_user_id())
        recent = await repository.select_generations(conn, user.id, limit=RECENT_COUNT)
    return await render_template(
        "dashboard/page.html", user=user, recent=recent, generations=recent
    )


@blueprint.get("/dashboard/usage")
@login_required
async def usage() -> str:
    """The usage card alone: polled every 30 s and refreshed after each generation."""
    return await render_template("dashboard/_usage.html", user=await current_user_row())


@blueprint.get("/history")
@login_required
async def history() -> str:
    """All of the user's generations, newest first, a keyset page at a time (no OFFSET)."""
    cursor = request.args.get("before")
    before = decode_cursor(cursor) if cursor else None
    async with runtime().pool.acquire() as conn:
        user = await load_user(conn, signed_in_user_id())
        rows = await repository.select_generations(
            conn, user.id, limit=HISTORY_PAGE_SIZE + 1, before=before
        )
    generations = rows[:HISTORY_PAGE_SIZE]
    more = len(rows) > HISTORY_PAGE_SIZE
    return await render_template(
        "history/page.html",
        user=user,
        generations=generations,
        is_first_page=before is None,
        next_cursor=encode_cursor(generations[-1]) if more else None,
    )


@blueprint.get("/generations/<int:generation_id>")
@login_required
async def generation_detail(generation_id: int) -> str:
    """One generation: the prompt and the rendered answer (or why there is none)."""
    async with runtime().pool.acquire() as conn:
        user = await load_user(conn, signed_in_user_id())
        generation = await get_owned_generation(conn, user.id, generation_id)
    return await render_template("history/detail.html", user=user, generation=generation)


@blueprint.get("/pricing")
async def pricing() -> str:
    """Free and Pro side by side, limits from the configuration."""
    user = await current_user_row() if current_user_id() is not None else None
    return await render_template(
        "pricing/page.html", user=user, free_credits=runtime().settings.free_credits
    )
