"""Server-sent events: a generation's stream as `text/event-stream`, each event sent as it comes.

Quart hands each chunk of an async-iterable body to hypercorn, which writes it at once; nothing
here compresses or buffers. `X-Accel-Buffering: no` asks nginx-like proxies not to buffer either.
"""

from __future__ import annotations

import asyncio
import json

from quart import Response, request

from aigen.core.streaming import GenerationStream, KeepAlive, StreamEvent

EVENT_STREAM = "text/event-stream"
KEEPALIVE_COMMENT = b": keep-alive\n\n"


def accepts_event_stream() -> bool:
    """Whether the Accept header names text/event-stream itself (not merely */*)."""
    return any(value == EVENT_STREAM and quality > 0 for value, quality in request.accept_mimetypes)


def encode_event(event: StreamEvent) -> bytes:
    """One event as SSE: `event: <name>` and one `data:` line of JSON; a comment to keep alive."""
    if isinstance(event, KeepAlive):
        return KEEPALIVE_COMMENT
    data = json.dumps(event.data(), ensure_ascii=False, separators=(",", ":"))
    return f"event: {event.name}\ndata: {data}\n\n".encode()


class EventStreamBody:
    """The response body: the stream's events, encoded; closing it early stops the stream.

    Quart closes the body when the client disconnects while it is sent; a client gone before
    the body started is seen by `event_stream_response`'s hook on the request's task instead.
    """

    def __init__(self, stream: GenerationStream) -> None:
        self._stream = stream
        self._events = stream.events()

    def __aiter__(self) -> EventStreamBody:
        return self

    async def __anext__(self) -> bytes:
        return encode_event(await anext(self._events))

    async def aclose(self) -> None:
        """Stop the stream unless it has ended (called by Quart when the response is over)."""
        self._stream.close()
        await self._events.aclose()


def event_stream_response(stream: GenerationStream) -> Response:
    """200 text/event-stream for an opened stream, never cached nor buffered on the way.

    Called by the view, in the request's task, which then sends the response: when that task
    ends, however (the body sent, or cancelled because the client left, even while the head
    was being written and before the body began), the stream stops reading Claude; after a
    normal end that is a no-op.
    """
    request_task = asyncio.current_task()
    if request_task is not None:
        request_task.add_done_callback(lambda _: stream.close())
    response = Response(EventStreamBody(stream), content_type=f"{EVENT_STREAM}; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"  # as every /api/* answer: never cached
    response.headers["X-Accel-Buffering"] = "no"
    # The stream bounds itself by the upstream timeout; Quart's own 60 s would cut long answers.
    response.timeout = None
    return response
