"""hypercorn's access log, one line per request whatever the client sent.

hypercorn logs the percent-decoded path: `%0A` would end the line and start a forged one, `%00`
would write a raw NUL. Every character that is not printable, and the quote and backslash that
delimit and escape fields, is written as an escape such as \\x0a instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from hypercorn.logging import AccessLogAtoms, Logger
from hypercorn.typing import ResponseSummary, WWWScope

# %(r)s is the method, the path without its query (OAuth codes and e-mail tokens travel in
# query strings) and the protocol.
ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'
ALWAYS_ESCAPED = frozenset('"\\')


def escape(text: str) -> str:
    """`text` with every character that could forge or garble a log line escaped."""
    if text.isprintable() and not ALWAYS_ESCAPED.intersection(text):
        return text
    return "".join(_escape_char(char) for char in text)


def _escape_char(char: str) -> str:
    if char.isprintable() and char not in ALWAYS_ESCAPED:
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class EscapedAtoms(AccessLogAtoms):
    """hypercorn's access log fields (header lookups and "-" for a missing one kept), escaped."""

    def __init__(
        self, request: WWWScope, response: ResponseSummary | None, request_time: float
    ) -> None:
        super().__init__(request, response, request_time)
        self.update({name: escape(value) for name, value in self.items() if isinstance(value, str)})


class EscapingLogger(Logger):
    """hypercorn's Logger writing escaped fields (set as Config.logger_class)."""

    def atoms(
        self, request: WWWScope, response: ResponseSummary | None, request_time: float
    ) -> Mapping[str, str]:
        """The access log fields of one request, escaped."""
        return EscapedAtoms(request, response, request_time)
