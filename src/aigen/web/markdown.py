"""Render Claude's (untrusted) Markdown answers to sanitized HTML."""

import re
from collections.abc import Sequence
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markupsafe import Markup, escape

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6",
        "ul", "ol", "li", "blockquote", "pre", "code",
        "em", "strong", "s", "del", "a",
        "table", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "nofollow noopener noreferrer"
# Dropped together with their content, not just unwrapped.
DROPPED_WITH_CONTENT = frozenset(
    {"script", "style", "iframe", "object", "embed", "svg", "math", "template",
     "noscript", "textarea", "select", "title", "xmp", "noembed", "noframes"}
)  # fmt: skip
ALIGN_CLASSES = {f"text-align:{side}": f"md-align-{side}" for side in ("left", "center", "right")}
IMAGE_LINK_CLASS = "md-image-link"

# Anything before the first ":" that comes before any "/", "?" or "#" is a scheme.
_SCHEME_RE = re.compile(r"^([^/?#]*):")
_WHITESPACE_RE = re.compile(r"\s+")


def _is_allowed_url(url: str) -> bool:
    """Accept relative URLs and http/https/mailto; markdown-it renders the rest as text."""
    match = _SCHEME_RE.match(url.strip())
    return match is None or match.group(1).lower() in ALLOWED_URL_SCHEMES


def _render_image_as_link(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    """Render ![alt](src) as a link: no tracking pixels, and the CSP may keep img-src 'self'."""
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env).strip()
    href = escape(token.attrGet("src") or "")
    return f'<a href="{href}" class="{IMAGE_LINK_CLASS}">{escape(alt or "image")}</a>'


def _table_alignment_to_class(state: StateCore) -> None:
    """Swap markdown-it's inline style="text-align:…" (which the CSP forbids) for a class."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and token.attrs.get("style") is not None:
            style = str(token.attrs.pop("style"))
            if style in ALIGN_CLASSES:
                token.attrSet("class", ALIGN_CLASSES[style])


def _build_parser() -> MarkdownIt:
    """CommonMark + tables + strikethrough, raw HTML shown as text, strict link schemes."""
    parser = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    parser.validateLink = _is_allowed_url  # type: ignore[method-assign]
    parser.add_render_rule("image", _render_image_as_link)
    parser.core.ruler.push("table_alignment_to_class", _table_alignment_to_class)
    return parser


_PARSER = _build_parser()
_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags=set(DROPPED_WITH_CONTENT),
    attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
    url_schemes=set(ALLOWED_URL_SCHEMES),
    link_rel=LINK_REL,
    allowed_classes={
        "a": {IMAGE_LINK_CLASS},
        "th": set(ALIGN_CLASSES.values()),
        "td": set(ALIGN_CLASSES.values()),
    },
    strip_comments=True,
)


def render_markdown(text: str) -> Markup:
    """Render untrusted Markdown to HTML that is safe to insert into a page."""
    return Markup(_CLEANER.clean(_PARSER.render(text)))


def first_line(text: str, limit: int = 80) -> str:
    """Return the first non-empty line of `text`, whitespace-collapsed, cut to `limit` chars."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = _WHITESPACE_RE.sub(" ", line).strip()
    if len(line) <= limit:
        return line
    return line[: limit - 1].rstrip() + "…"
