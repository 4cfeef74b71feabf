"""A local stand-in for the Anthropic Messages API, with faults that can be switched on at run time.

The real ``anthropic`` SDK works against it unchanged::

    with FakeAnthropicServer() as fake:                      # or: python -m aigen.dev.anthropic
        client = AsyncAnthropic(base_url=fake.base_url, api_key="anything")
        fake.set_scenario([{"type": "fail", "status": 529, "times": 2}])

``POST /v1/messages`` answers deterministic Markdown derived from the last user message and the
model, as JSON or (``"stream": true``) as Anthropic's server-sent events. Token counts use one
rule everywhere: a token is a run of word characters or one punctuation character, each with the
whitespace before it (``"Hello, world!"`` is 4 tokens); ``input_tokens`` counts the system prompt
and every turn.

Behaviors, queued by ``POST /_fake/scenario {"behaviors": [...]}`` (each with optional
``"times": n``) and consumed in order by valid /v1/messages calls:

- ``{"type": "fail", "status": 529}``: Anthropic's error JSON for the status (optional
  ``message``, ``error_code``; ``retry_after`` seconds for 429, default 1).
- ``{"type": "delay", "seconds": 3}``: sleep, then answer normally.
- ``{"type": "malformed"}``: 200 with an HTML body (``"content_type": "application/json"``
  sends truncated JSON instead; ``body`` sets the exact text).
- ``{"type": "reply", "text": "..."}``: answer this text instead (``max_tokens`` still applies).
- ``{"type": "stream_stall"}``: send the first events, then nothing for ``seconds`` (an hour).
- ``{"type": "stream_disconnect"}``: send the first events, then drop the connection.
- ``{"type": "stream_error", "status": 529}``: send the first events, then an ``error`` event.
- ``{"type": "stream_paced", "deltas": 10, "interval": 0.5}``: stream the answer as exactly
  ``deltas`` text deltas (fewer only if it has fewer characters), each sent ``interval`` seconds
  after the one before (the first one too); a non-streaming call answers after the same time.

"The first events" are the stream's opening events and ``after`` text deltas (default 2). After a
``stream_stall``, the connection drops unless ``"resume": true``, which sends the rest of the
answer normally. Every ``stream_*`` behavior takes an optional ``text`` to answer instead.

A non-streaming call stalls or drops its connection for the stream faults. With the queue empty,
a prompt directive applies to that call: ``[fake:fail=529]``, ``[fake:delay=3]``,
``[fake:malformed]``, ``[fake:stall]``, ``[fake:disconnect]``, ``[fake:stream_error]``,
``[fake:reply=text]``, ``[fake:paced]``. Stream directives take their options in order, comma
separated (an empty one keeps its default): ``[fake:stall=SECONDS,AFTER,RESUME]``
(``[fake:stall=2,1,true]``), ``[fake:disconnect=AFTER]``, ``[fake:stream_error=STATUS,AFTER]``,
``[fake:paced=DELTAS,INTERVAL]`` (``[fake:paced=20,0.25]``). ``DELETE /_fake/scenario`` empties
the queue, ``GET /_fake/requests`` lists the calls received and ``DELETE /_fake/requests``
forgets them. Each logged streamed call also says how its stream ended, ``"stream_outcome"``:
``"completed"``, ``"client_closed"`` (the client went away first, as an SDK stream closed early
does) or ``"fault"`` (a stream fault ended it), ``null`` while it runs; and ``"deltas_sent"``,
the text deltas the server sent (both ``null`` when no stream was sent).
"""

from aigen.dev.anthropic.answers import Reply, compose_reply, count_tokens, finish_reply, tokenize
from aigen.dev.anthropic.app import create_fake_anthropic_app
from aigen.dev.anthropic.protocol import FakeApiError, MessagesRequest, parse_messages_request
from aigen.dev.anthropic.scenarios import behavior_from_directive, normalize_behavior
from aigen.dev.anthropic.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    FakeAnthropicAdmin,
    FakeAnthropicServer,
    main,
    parse_args,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "FakeAnthropicAdmin",
    "FakeAnthropicServer",
    "FakeApiError",
    "MessagesRequest",
    "Reply",
    "behavior_from_directive",
    "compose_reply",
    "count_tokens",
    "create_fake_anthropic_app",
    "finish_reply",
    "main",
    "normalize_behavior",
    "parse_args",
    "parse_messages_request",
    "tokenize",
]
