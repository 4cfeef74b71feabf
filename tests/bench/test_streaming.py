"""Matching the app's first streamed chunk to the upstream's first delta."""

from __future__ import annotations

from bench.cases.streaming import first_text_at
from bench.harness.upstream import prompt_of


def test_first_chunk_carrying_the_text_plain_or_escaped() -> None:
    chunks = [[1.0, "event: start\ndata: {}\n\n"], [2.0, 'data: {"text": "## \\u00c9t\\u00e9"}']]
    assert first_text_at(chunks, "## Été") == (2.0, False)
    assert first_text_at([[3.0, "data: ## Été"]], "## Été") == (3.0, False)


def test_first_data_line_when_no_chunk_carries_the_text() -> None:
    chunks = [[1.0, ": keep-alive\n\n"], [2.0, "data: {}\n\n"]]
    assert first_text_at(chunks, "absent") == (2.0, True)
    assert first_text_at([[1.0, ": comment"]], "absent") == (None, False)


def test_prompt_of_the_upstream_wire() -> None:
    body = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "yo"}]}'
    assert prompt_of(body) == "yo"
    blocks = b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}'
    assert prompt_of(blocks) == "a"
    assert prompt_of(b"not json") == ""
