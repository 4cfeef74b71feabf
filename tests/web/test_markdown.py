import re
from html.parser import HTMLParser

import pytest
from markupsafe import Markup

from aigen.web.markdown import ALLOWED_TAGS, LINK_REL, first_line, render_markdown

URL_ATTRIBUTES = ("href", "src", "action", "formaction", "data", "xlink:href", "poster")
SCHEME_RE = re.compile(r"^([a-z][a-z0-9+.\-]*):")
# Browsers drop leading C0 controls/space and every tab/newline before reading the scheme.
IGNORED_URL_CHARS_RE = re.compile(r"[\x00-\x20\x7f]")


class ElementCollector(HTMLParser):
    """Record every start tag with its (entity-decoded) attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.text += data


def collect(html: str) -> ElementCollector:
    collector = ElementCollector()
    collector.feed(str(html))  # a Markup would re-escape every concatenated slice
    collector.close()
    return collector


def elements_of(html: str) -> list[tuple[str, dict[str, str]]]:
    return collect(html).elements


def url_scheme(url: str) -> str | None:
    match = SCHEME_RE.match(IGNORED_URL_CHARS_RE.sub("", url).lower())
    return match.group(1) if match else None


def assert_safe(html: str) -> None:
    for tag, attrs in elements_of(html):
        assert tag in ALLOWED_TAGS, f"unexpected <{tag}> in {html!r}"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"event handler {name} in {html!r}"
            assert name not in ("style", "target", "srcdoc"), f"{name} kept in {html!r}"
            if name in URL_ATTRIBUTES:
                assert url_scheme(value) in (None, "http", "https", "mailto"), (
                    f"dangerous URL {value!r} in {html!r}"
                )
        if tag == "a":
            assert attrs.get("rel") == LINK_REL


HOSTILE_MARKDOWN = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](&#x6A;&#x61;vascript&#x3A;alert(1))",
    "[x](javascript&colon;alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](<java\tscript:alert(1)>)",
    "[x](java&#9;script:alert(1))",
    "[x](\x01javascript:alert(1))",
    "[x](\njavascript:alert(1))",
    "[x](  javascript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](data:image/png;base64,iVBORw0KGgo=)",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="#" target="_blank" onclick="alert(1)">x</a>',
    "<svg onload=alert(1)><circle r=1 /></svg>",
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    '<iframe src="https://evil.example"></iframe>',
    "<iframe srcdoc='<script>alert(1)</script>'></iframe>",
    "<style>body { display: none }</style>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<form action="https://evil.example"><input name="card"><button>Pay</button></form>',
    '<object data="javascript:alert(1)"></object>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:/">',
    "<details open ontoggle=alert(1)>x</details>",
    "<!-- <script>alert(1)</script> -->",
    "<javascript:alert(1)>",
    "<JAVASCRIPT:alert(1)>",
    '<https://ok.example/"onmouseover="alert(1)>',
    "<data:text/html,<script>alert(1)</script>>",
    "[x][ref]\n\n[ref]: javascript:alert(1)",
    '[x][ref]\n\n[ref]: <JaVaScRiPt:alert(1)> "title"',
    "[ref]\n\n[ref]: vbscript:msgbox(1)",
    '![x" onerror="alert(1)](https://e.example/a.png)',
    '![x](https://e.example/a.png" onerror="alert(1))',
    "![x](javascript:alert(1))",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    '[x](https://ok.example "t\\" onclick=\\"alert(1)")',
    "`<script>alert(1)</script>`",
    "```html\n<script>alert(1)</script>\n```",
    "| a |\n|---|\n| <img src=x onerror=alert(1)> |",
    "> <iframe src=javascript:alert(1)>",
    "- [x](javascript:alert(1))\n- <svg/onload=alert(1)>",
]


@pytest.mark.parametrize("source", HOSTILE_MARKDOWN)
def test_hostile_markdown_is_neutralised(source: str) -> None:
    html = render_markdown(source)
    assert isinstance(html, Markup)
    assert_safe(html)


def test_raw_html_is_shown_as_text() -> None:
    html = render_markdown("Try <script>alert(1)</script> now")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert [tag for tag, _ in elements_of(html)] == ["p"]


def test_rejected_link_stays_readable_as_text() -> None:
    html = render_markdown("[click](javascript:alert(1))")
    assert elements_of(html) == [("p", {})]
    assert "click" in html


def test_heading_and_emphasis() -> None:
    html = render_markdown("# Title\n\nSome *em*, **strong** and ~~gone~~.")
    tags = [tag for tag, _ in elements_of(html)]
    assert tags == ["h1", "p", "em", "strong", "s"]
    assert "<h1>Title</h1>" in html


def test_lists() -> None:
    html = render_markdown("- one\n- two\n\n3. three\n4. four")
    elements = elements_of(html)
    assert [tag for tag, _ in elements] == ["ul", "li", "li", "ol", "li", "li"]
    assert elements[3] == ("ol", {"start": "3"})


def test_code_block_content_is_kept_verbatim_as_text() -> None:
    code = "if a < b and c > d:\n    print(\"<b>&amp;</b>\", '<script>')\n"
    parsed = collect(render_markdown(f"```python\n{code}```"))
    assert [tag for tag, _ in parsed.elements] == ["pre", "code"]
    assert parsed.text.strip("\n") == code.strip("\n")


def test_inline_code_is_escaped() -> None:
    html = render_markdown("Use `<br>` here")
    assert "<code>&lt;br&gt;</code>" in html


def test_table_with_alignment_uses_classes_not_styles() -> None:
    html = render_markdown("| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |")
    elements = elements_of(html)
    assert [tag for tag, _ in elements][:3] == ["table", "thead", "tr"]
    cells = [attrs for tag, attrs in elements if tag == "td"]
    assert cells == [
        {"class": "md-align-left"},
        {"class": "md-align-center"},
        {"class": "md-align-right"},
    ]
    assert "style" not in html


def test_link_gets_rel_and_no_target() -> None:
    html = render_markdown('[docs](https://example.com/a?b=1&c=2 "Docs")')
    assert elements_of(html)[1] == (
        "a",
        {"href": "https://example.com/a?b=1&c=2", "title": "Docs", "rel": LINK_REL},
    )


@pytest.mark.parametrize(
    ("source", "href"),
    [
        ("<https://example.com>", "https://example.com"),
        ("<someone@example.com>", "mailto:someone@example.com"),
        ("[m](mailto:someone@example.com)", "mailto:someone@example.com"),
        ("[r](/generations/1)", "/generations/1"),
        ("[f](#section)", "#section"),
        ("[x][ref]\n\n[ref]: http://example.com", "http://example.com"),
    ],
)
def test_allowed_links(source: str, href: str) -> None:
    links = [attrs for tag, attrs in elements_of(render_markdown(source)) if tag == "a"]
    assert links == [{"href": href, "rel": LINK_REL}]


def test_image_becomes_link_to_the_image() -> None:
    html = render_markdown('![A *cat*](https://example.com/cat.png "t")')
    assert elements_of(html) == [
        ("p", {}),
        ("a", {"href": "https://example.com/cat.png", "class": "md-image-link", "rel": LINK_REL}),
    ]
    assert ">A cat</a>" in html


def test_image_without_alt_text_gets_a_label() -> None:
    assert ">image</a>" in render_markdown("![](https://example.com/cat.png)")


def test_blockquote_and_rules() -> None:
    html = render_markdown("> quoted\n\n---\n\nline  \nbreak")
    assert [tag for tag, _ in elements_of(html)] == ["blockquote", "p", "hr", "p", "br"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello world", "Hello world"),
        ("\n\n   \n  Indented first  \nsecond line", "Indented first"),
        ("tabs\tand   spaces", "tabs and spaces"),
        ("", ""),
        ("   \n\t\n", ""),
        ("x" * 80, "x" * 80),
        ("x" * 81, "x" * 79 + "…"),
        ("word " * 30, ("word " * 16).rstrip() + "…"),
        ("<b>not html</b>", "<b>not html</b>"),
    ],
)
def test_first_line(text: str, expected: str) -> None:
    result = first_line(text)
    assert result == expected
    assert len(result) <= 80


def test_first_line_custom_limit() -> None:
    assert first_line("abcdefghij", limit=5) == "abcd…"


def test_first_line_rejects_non_positive_limit() -> None:
    with pytest.raises(ValueError):
        first_line("abc", limit=0)
