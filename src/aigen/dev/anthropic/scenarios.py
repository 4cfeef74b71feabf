"""Scripted behaviors: the queue, prompt directives, their options, and how a stream is planned."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aigen.dev.anthropic.answers import split_evenly, text_chunks
from aigen.dev.anthropic.protocol import ERRORS_BY_STATUS, FakeApiError

DELTAS_BEFORE_FAULT = 2
STALL_SECONDS = 3600.0
PACED_DELTAS = 10
PACED_INTERVAL_SECONDS = 0.5
DIRECTIVE_PATTERN = re.compile(r"\[fake:(\w+)(?:=([^\]]*))?\]")
STREAM_FAULTS = frozenset({"stream_stall", "stream_disconnect", "stream_error"})
DIRECTIVE_ALIASES = {
    "stall": "stream_stall",
    "disconnect": "stream_disconnect",
    "paced": "stream_paced",
}
# The comma-separated values a directive may carry, in order (``reply`` takes its value whole).
DIRECTIVE_FIELDS: dict[str, tuple[str, ...]] = {
    "fail": ("status",),
    "delay": ("seconds",),
    "stream_stall": ("seconds", "after", "resume"),
    "stream_disconnect": ("after",),
    "stream_error": ("status", "after"),
    "stream_paced": ("deltas", "interval"),
}
MALFORMED_BODY = "<html><body><h1>502 Bad Gateway</h1><p>upstream hiccup</p></body></html>"
MALFORMED_JSON_BODY = '{"id": "msg_truncated", "type": "message", "content": [{"type": "te'


# --- options of each behavior --------------------------------------------------------------------


def _number(behavior: dict[str, Any], name: str, default: float) -> float:
    value = behavior.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{behavior['type']}.{name} must be a non-negative number")
    return float(value)


def _count(behavior: dict[str, Any], name: str, default: int, minimum: int = 0) -> int:
    value = behavior.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{behavior['type']}.{name} must be an integer of at least {minimum}")
    return value


def _flag(behavior: dict[str, Any], name: str) -> bool:
    value = behavior.get(name, False)
    if not isinstance(value, bool):
        raise ValueError(f"{behavior['type']}.{name} must be true or false")
    return value


def _string(behavior: dict[str, Any], name: str, default: str | None) -> str | None:
    value = behavior.get(name, default)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{behavior['type']}.{name} must be a string")
    return value


def _fail_options(behavior: dict[str, Any]) -> dict[str, Any]:
    status = behavior.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError("fail.status must be an HTTP error status between 400 and 599")
    return {
        "status": status,
        "message": _string(behavior, "message", None),
        "error_code": _string(behavior, "error_code", None),
        "retry_after": _number(behavior, "retry_after", 1.0) if status == 429 else None,
    }


def _stream_options(behavior: dict[str, Any]) -> dict[str, Any]:
    """What every stream fault takes: where it breaks off, and optionally the answer text."""
    return {
        "after": _count(behavior, "after", DELTAS_BEFORE_FAULT),
        "text": _string(behavior, "text", None),
    }


def _stream_error_options(behavior: dict[str, Any]) -> dict[str, Any]:
    status = behavior.get("status", 529)
    if status not in ERRORS_BY_STATUS:
        raise ValueError(f"stream_error.status must be one of {sorted(ERRORS_BY_STATUS)}")
    options = {"status": status, "message": _string(behavior, "message", None)}
    return options | _stream_options(behavior)


def _stream_stall_options(behavior: dict[str, Any]) -> dict[str, Any]:
    options = {"seconds": _number(behavior, "seconds", STALL_SECONDS)}
    return options | {"resume": _flag(behavior, "resume")} | _stream_options(behavior)


BEHAVIOR_OPTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "fail": _fail_options,
    "delay": lambda b: {"seconds": _number(b, "seconds", 1.0)},
    "malformed": lambda b: {
        "body": _string(b, "body", None),
        "content_type": _string(b, "content_type", "text/html; charset=utf-8"),
    },
    "reply": lambda b: {"text": _string(b, "text", None) or ""},
    "stream_stall": _stream_stall_options,
    "stream_disconnect": _stream_options,
    "stream_error": _stream_error_options,
    "stream_paced": lambda b: {
        "deltas": _count(b, "deltas", PACED_DELTAS, minimum=1),
        "interval": _number(b, "interval", PACED_INTERVAL_SECONDS),
        "text": _string(b, "text", None),
    },
}


def normalize_behavior(raw: Any) -> tuple[dict[str, Any], int]:
    """Validate one scenario behavior; return it with defaults filled in, and its ``times``."""
    if not isinstance(raw, dict) or raw.get("type") not in BEHAVIOR_OPTIONS:
        raise ValueError(f"behavior type must be one of {sorted(BEHAVIOR_OPTIONS)}: {raw!r}")
    times = raw.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError("times must be a positive integer")
    options = BEHAVIOR_OPTIONS[raw["type"]](raw)
    return {"type": raw["type"]} | {k: v for k, v in options.items() if v is not None}, times


# --- the queue and prompt directives -----------------------------------------------------------


class BehaviorQueue:
    """Behaviors queued for the next calls, each with the number of calls it still applies to."""

    def __init__(self) -> None:
        self._entries: deque[list[Any]] = deque()

    def replace(self, raw: list[Any]) -> None:
        """Validate every behavior, then replace the queue with them (ValueError if one is bad)."""
        self._entries = deque(list(normalize_behavior(item)) for item in raw)

    def pop(self) -> dict[str, Any] | None:
        """Take the next queued behavior, counting down its ``times``."""
        if not self._entries:
            return None
        entry = self._entries[0]
        entry[1] -= 1
        if entry[1] <= 0:
            self._entries.popleft()
        return entry[0]

    def clear(self) -> None:
        """Drop every queued behavior."""
        self._entries.clear()

    def listing(self) -> list[dict[str, Any]]:
        """The queued behaviors with their remaining ``times``."""
        return [{**behavior, "times": times} for behavior, times in self._entries]


def behavior_from_directive(prompt: str) -> dict[str, Any] | None:
    """Turn the first ``[fake:name=value]`` in a prompt into a behavior, if there is one."""
    match = DIRECTIVE_PATTERN.search(prompt)
    if match is None:
        return None
    kind = DIRECTIVE_ALIASES.get(match.group(1), match.group(1))
    raw: dict[str, Any] = {"type": kind}
    value = match.group(2)
    try:
        if value is not None and kind == "reply":
            raw["text"] = value
        elif value is not None:
            raw |= _directive_fields(kind, value)
        return normalize_behavior(raw)[0]
    except ValueError as error:
        raise FakeApiError(400, f"fake directive {match.group(0)}: {error}") from error


def _directive_fields(kind: str, value: str) -> dict[str, Any]:
    """Map ``a,b,c`` onto the kind's fields in order; an empty value keeps the default."""
    names = DIRECTIVE_FIELDS.get(kind, ())
    values = value.split(",")
    if names and len(values) > len(names):
        raise ValueError(f"takes at most {len(names)} value(s): {', '.join(names)}")
    return {name: _directive_value(text) for name, text in zip(names, values, strict=False) if text}


def _directive_value(text: str) -> Any:
    if text.isdigit():
        return int(text)
    if re.fullmatch(r"\d*\.\d+", text):
        return float(text)
    return {"true": True, "false": False}.get(text, text)


# --- how a behavior shapes a streamed answer ---------------------------------------------------


@dataclass(frozen=True)
class StreamPlan:
    """How one streamed answer is cut into deltas, paced, and where a fault breaks it off."""

    chunks: list[str]
    interval: float
    pace_first: bool = False
    fault: dict[str, Any] | None = None

    @property
    def fault_at(self) -> int:
        """How many deltas go out before the fault (all of them without one)."""
        if self.fault is None:
            return len(self.chunks)
        return min(self.fault["after"], len(self.chunks))

    def pause_before(self, index: int) -> float:
        """Seconds to wait before sending delta number ``index`` (from 0)."""
        return self.interval if index or self.pace_first else 0.0


def plan_stream(behavior: dict[str, Any] | None, text: str, chunk_delay: float) -> StreamPlan:
    """Plan the deltas of a streamed answer under a behavior (or none)."""
    spec = behavior or {}
    if spec.get("type") == "stream_paced":
        return StreamPlan(split_evenly(text, spec["deltas"]), spec["interval"], pace_first=True)
    fault = spec if spec.get("type") in STREAM_FAULTS else None
    return StreamPlan(text_chunks(text), chunk_delay, fault=fault)


def plain_call_wait(behavior: dict[str, Any] | None) -> float:
    """Seconds a non-streaming call waits under a stream behavior (as long as the stream would)."""
    spec = behavior or {}
    if spec.get("type") == "stream_paced":
        return spec["deltas"] * spec["interval"]
    return spec["seconds"] if spec.get("type") == "stream_stall" else 0.0
