"""What the fake says: tokens, the deterministic Markdown answer, and its cut into deltas."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

TOKEN_PATTERN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")
TOKENS_PER_DELTA = 4
CODE_WORDS = frozenset({"code", "python", "function", "script", "example", "sql"})
ADVICE = (
    "Start with the smallest version that works, then measure.",
    "Write the failing test first; it tells you when you are done.",
    "Prefer boring, well-known tools over clever ones.",
    "Name things for what they are for, not how they work.",
    "Keep each step reversible until you are sure.",
    "Ask who will read this next, and write for them.",
)


@dataclass(frozen=True)
class Reply:
    """The answer text after stop sequences and ``max_tokens`` were applied."""

    text: str
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int


def tokenize(text: str) -> list[str]:
    """Split text into tokens whose concatenation is the text itself."""
    return TOKEN_PATTERN.findall(text)


def count_tokens(text: str) -> int:
    """Count tokens the way every usage number of this fake does."""
    return len(tokenize(text))


def compose_reply(prompt: str, model: str) -> str:
    """Return the Markdown answer for a prompt: a pure function of prompt and model."""
    digest = hashlib.sha256(f"{model}\n{prompt}".encode()).hexdigest()
    words = re.findall(r"\w+", prompt)
    heading = " ".join(words[:6]) or "An empty question"
    lines = [
        f"## {heading[0].upper()}{heading[1:]}",
        "",
        f"You asked: “{_first_line(prompt)}”. This answer comes from the local fake of the "
        f"Anthropic API, so the same prompt always gets the same reply.",
        "",
        f"- The prompt has **{len(words)} words** on {prompt.count(chr(10)) + 1} line(s).",
        f"- Its longest word is `{max(words, key=len, default='-')}`.",
        f"- {ADVICE[int(digest[:8], 16) % len(ADVICE)]}",
        f"- Fingerprint `{digest[:12]}` from model `{model}`.",
    ]
    if int(digest[8], 16) % 2 == 0 or CODE_WORDS.intersection(w.lower() for w in words):
        lines += ["", "```python", "def answer() -> str:", f'    return "{digest[:12]}"', "```"]
    return "\n".join(lines)


def _first_line(prompt: str, limit: int = 120) -> str:
    first = prompt.strip().splitlines()[0] if prompt.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def finish_reply(text: str, max_tokens: int, stop_sequences: Sequence[str] = ()) -> Reply:
    """Cut the text at the first stop sequence, then at ``max_tokens``."""
    hits = [(text.find(s), s) for s in stop_sequences if s and s in text]
    stop_sequence = min(hits)[1] if hits else None
    if stop_sequence is not None:
        text = text[: text.find(stop_sequence)]
    tokens = tokenize(text)
    if len(tokens) > max_tokens:
        return Reply("".join(tokens[:max_tokens]), "max_tokens", None, max_tokens)
    stop_reason = "end_turn" if stop_sequence is None else "stop_sequence"
    return Reply(text, stop_reason, stop_sequence, len(tokens))


def text_chunks(text: str) -> list[str]:
    """Split the reply into the pieces sent as ``text_delta`` events."""
    tokens = tokenize(text)
    return [
        "".join(tokens[at : at + TOKENS_PER_DELTA])
        for at in range(0, len(tokens), TOKENS_PER_DELTA)
    ]


def split_evenly(text: str, parts: int) -> list[str]:
    """Split text into ``parts`` pieces of whole tokens (of characters when tokens are too few).

    Fewer pieces come back only when the text has fewer characters than ``parts``.
    """
    units = tokenize(text)
    if len(units) < parts:
        units = list(text)
    count = min(parts, len(units))
    if count == 0:
        return []
    size, extra = divmod(len(units), count)
    bounds = [index * size + min(index, extra) for index in range(count + 1)]
    return ["".join(units[start:end]) for start, end in pairwise(bounds)]
