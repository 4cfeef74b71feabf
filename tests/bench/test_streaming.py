"""Matching the app's first streamed chunk to the upstream's first delta."""

from __future__ import annotations

from bench.cases.streaming import first_text_at
from bench.harness.upstream import delta_text, prompt_of

DELTA = (
    b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0,'
    b' "delta": {"type": "text_delta", "text": "## \\u00c9t\\u00e9"}}\n\n'
)


def test_first_chunk_carrying_the_text_plain_or_escaped() -> None:
    chunks = [[1.0, "event: start\ndata: {}\n\n"], [2.0, 'data: {"text": "## \\u00c9t\\u00e9"}']]
    assert first_text_at(chunks, "## Été") == (2.0, False)
    assert first_text_at([[3.0, "data: ## Été"]], "## Été") == (3.0, False)


def test_first_data_line_when_no_chunk_carries_the_text() -> None:
    chunks = [[1.0, ": keep-alive\n\n"], [2.0, "data: {}\n\n"]]
    assert first_text_at(chunks, "absent") == (2.0, True)
    assert first_text_at([[1.0, ": comment"]], "absent") == (None, False)


def test_delta_text_and_prompt_of_the_upstream_wire() -> None:
    assert delta_text(b"event: ping\ndata: {}\n\n" + DELTA) == "## Été"
    assert delta_text(b"event: ping\ndata: {}\n\n") == ""
    body = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "yo"}]}'
    assert prompt_of(body) == "yo"
    blocks = b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}'
    assert prompt_of(blocks) == "a"
    assert prompt_of(b"not json") == ""
