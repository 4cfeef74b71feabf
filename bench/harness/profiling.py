"""py-spy against a loaded worker, and where its samples fall in our code.

py-spy samples a running process from outside (no change to the app) and writes collapsed
stacks: one line per distinct stack, `frame;frame;...;frame COUNT`, each frame
`function (path:line)`. Idle threads are left out, so the samples are CPU work.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUR_CODE = "/src/aigen/"
FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")
RATE = 250
TOP = 15
EXTRA_WAIT = 60.0
# Threads py-spy does not recognise as idle: thread-pool workers waiting for work.
IDLE_LEAVES = (("_worker", "concurrent/futures/thread.py"), ("Condition.wait", "threading.py"))


@dataclass(frozen=True)
class Frame:
    """One frame of a sampled stack."""

    function: str
    path: str

    @property
    def ours(self) -> bool:
        """Code of the aigen package (not a library, not the benchmark)."""
        return OUR_CODE in self.path

    @property
    def label(self) -> str:
        """`function (where)`: aigen/... for our code, the library's folder otherwise."""
        return f"{self.function} ({short_path(self.path)})"


def short_path(path: str) -> str:
    """A path shortened to what tells the reader where the code lives."""
    for marker in (OUR_CODE, "/site-packages/", "/lib/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return ("aigen/" + tail) if marker == OUR_CODE else tail.lstrip("/").split("/", 1)[-1]
    return path.rsplit("/", 1)[-1]


def parse_frame(text: str) -> Frame:
    """Parse `function (path:line)`."""
    match = FRAME.match(text.strip())
    if match is None:
        return Frame(text.strip(), "")
    return Frame(match["function"], match["path"])


def read_collapsed(path: Path) -> list[tuple[list[Frame], int]]:
    """The stacks of a py-spy raw file (outermost frame first) with their sample counts."""
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append(([parse_frame(part) for part in stack.split(";")], int(count)))
    return stacks


def is_idle(frames: list[Frame]) -> bool:
    """A stack of a thread that only waits (py-spy counts some of these as active)."""
    leaf = frames[-1] if frames else Frame("", "")
    return any(leaf.function == name and leaf.path.endswith(path) for name, path in IDLE_LEAVES)


def summarise(stacks: Iterable[tuple[list[Frame], int]], top: int = TOP) -> dict[str, Any]:
    """Shares of busy samples: our functions (inclusive), what our code calls, leaf packages."""
    inclusive: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = idle = outside = 0
    for frames, count in stacks:
        if is_idle(frames):
            idle += count
            continue
        total += count
        outside += count if not any(frame.ours for frame in frames) else 0
        for label in {frame.label for frame in frames if frame.ours}:
            inclusive[label] += count
        ours = [index for index, frame in enumerate(frames) if frame.ours]
        if ours and ours[-1] + 1 < len(frames):
            callee = frames[ours[-1] + 1]
            calls[f"{frames[ours[-1]].label} -> {callee.label}"] += count
        elif ours:
            calls[f"{frames[ours[-1]].label} (itself)"] += count
        leaves[_package(frames[-1]) if frames else "?"] += count

    def shares(counter: Counter[str]) -> list[dict[str, object]]:
        return [
            {"where": label, "share": round(count / total, 4)}
            for label, count in counter.most_common(top)
        ]

    return {
        "samples": total,
        "idle_thread_samples_left_out": idle,
        "outside_our_code": round(outside / total, 4) if total else None,
        "our_functions_inclusive": shares(inclusive),
        "our_calls_into": shares(calls),
        "leaf_packages": shares(leaves),
    }


def _package(frame: Frame) -> str:
    if frame.ours:
        return "aigen"
    if "/site-packages/" in frame.path:
        return frame.path.split("/site-packages/", 1)[1].split("/", 1)[0]
    if "/lib/python3" in frame.path:
        return "stdlib:" + short_path(frame.path).split("/", 1)[0].removesuffix(".py")
    return frame.path.rsplit("/", 1)[-1] or frame.function


async def record(py_spy: str, pid: int, seconds: float, output: Path) -> str:
    """Sample `pid` for `seconds` into a collapsed-stack file; py-spy's last words."""
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(max(round(seconds), 1))]
    command += ["--rate", str(RATE), "--format", "raw", "--full-filenames", "-o", str(output)]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    text, _ = await asyncio.wait_for(process.communicate(), seconds + EXTRA_WAIT)
    lines = text.decode(errors="replace").strip().splitlines()
    return lines[0] if lines else ""
