"""hypercorn's access log, one line per request whatever the client sent.

hypercorn logs the percent-decoded path: `%0A` would end the line and start a forged one, `%00`
would write a raw NUL. Every character that is not printable, and the quote and backslash that
delimit and escape fields, is written as an escape such as \\x0a instead.

The fields of our format are computed directly: hypercorn's own atoms copy every request and
response header and the whole environment into a dict for each request, a measurable share of
a cheap request's CPU (bench/README.md). Any other field still comes from them, escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


class AccessFields(dict[str, Any]):
    """The fields of ACCESS_LOG_FORMAT as hypercorn writes them, escaped; others on demand."""

    def __init__(
        self, request: WWWScope, response: ResponseSummary | None, request_time: float
    ) -> None:
        client = request.get("client")
        method = request["method"] if request["type"] == "http" else "GET"
        protocol = request.get("http_version", "ws")
        super().__init__(
            h=escape(_remote_address(client)),
            r=escape(f"{method} {request['path']} {protocol}"),
            s=str(response["status"]) if response is not None else "-",
            b=_content_length(response),
            L=f"{request_time:.6f}",
        )
        self._scope = (request, response, request_time)

    def __missing__(self, key: str) -> str:
        """A field our format does not use (a changed access_log_format): hypercorn's, escaped."""
        value: str = EscapedAtoms(*self._scope)[key]
        return value


def _remote_address(client: Any) -> str:
    if client is None:
        return "None"  # as hypercorn writes it
    if len(client) == 2:
        return f"{client[0]}:{client[1]}"
    return str(client[0]) if len(client) == 1 else f"<???{client}???>"


def _content_length(response: ResponseSummary | None) -> str:
    if response is None:
        return "-"
    for name, value in response["headers"]:
        if name.lower() == b"content-length":
            return escape(value.decode("latin-1"))
    return "-"


class EscapingLogger(Logger):
    """hypercorn's Logger writing escaped fields (set as Config.logger_class)."""

    def atoms(
        self, request: WWWScope, response: ResponseSummary | None, request_time: float
    ) -> Mapping[str, str]:
        """The access log fields of one request, escaped."""
        return AccessFields(request, response, request_time)
