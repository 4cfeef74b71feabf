"""What templates may call: sign-in state, the plan rules of core/plans.py, and safe filters."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup
from quart import Quart

from aigen.core import plans
from aigen.web.current_user import current_user_id
from aigen.web.markdown import first_line, render_markdown


def is_signed_in() -> bool:
    """Whether the request carries a valid sign-in (templates choose the navigation by it)."""
    return current_user_id() is not None


def markdown_filter(text: str | None) -> Markup:
    """Claude's untrusted Markdown as sanitized HTML."""
    return render_markdown(text or "")


def iso_utc(moment: datetime) -> str:
    """A machine-readable UTC timestamp for <time datetime>."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def short_utc(moment: datetime) -> str:
    """A short readable UTC time, e.g. 2025-01-31 14:05."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def long_date(moment: datetime) -> str:
    """A calendar date in words, in UTC, e.g. 1 December 2026."""
    day = moment.astimezone(UTC)
    return f"{day.day} {day:%B %Y}"


def init_app(app: Quart) -> None:
    """Offer the globals and filters to every template."""
    app.jinja_env.globals.update(
        is_signed_in=is_signed_in,
        is_unlimited=plans.is_unlimited,
        credits_remaining=plans.credits_remaining,
        generation_access=plans.generation_access,
        Access=plans.Access,
        credits_renew_at=plans.credits_renew_at,
        can_manage_billing=plans.can_manage_billing,
    )
    app.jinja_env.filters.update(
        markdown=markdown_filter,
        first_line=first_line,
        iso_utc=iso_utc,
        short_utc=short_utc,
        long_date=long_date,
    )
