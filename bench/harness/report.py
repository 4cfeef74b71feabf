"""Facts about the machine, the rows of the results table, results.json and results.md."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PACKAGES = ("hypercorn", "quart", "quart-auth", "asyncpg", "anthropic", "httpx2", "redis")


@dataclass(frozen=True)
class Row:
    """One line of the Markdown table: a figure beside its reference, and the issue's target."""

    case: str
    measure: str
    figure: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""


def percent(value: float | None) -> str:
    """0.253 -> '25.3 %'; '-' when unknown."""
    return "-" if value is None or math.isnan(value) else f"{value * 100:.1f} %"


def number(value: float | None, unit: str = "", digits: int = 1) -> str:
    """A figure with its unit; '-' when unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}{(' ' + unit) if unit else ''}"


def verdict(met: bool | None) -> str:
    """How a figure compares with its target (printed, never asserted)."""
    return "-" if met is None else ("met" if met else "not met")


def machine_facts(tools: dict[str, str | None]) -> dict[str, object]:
    """What the figures depend on: CPU, memory, load, versions, commit."""
    return {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_mb": _memory_mb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "packages": {name: _version(name) for name in PACKAGES},
        "tools": tools,
        "commit": _commit(),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        ["git", "-C", str(root), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


def markdown_table(rows: list[Row], header: str, notes: Sequence[str] = ()) -> str:
    """The table for README's Performance section, with the notes (profiles) below it."""
    lines = [
        header,
        "",
        "| case | measure | figure | beside (same run) | ratio | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = (row.case, row.measure, row.figure, row.reference, row.ratio, row.target)
        lines.append("| " + " | ".join(cells) + f" | {row.verdict} |")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def write_results(folder: Path, results: dict[str, object], rows: list[Row], table: str) -> None:
    """bench/results.json (every figure) and bench/results.md (the table)."""
    results = {**results, "table": [asdict(row) for row in rows]}
    (folder / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (folder / "results.md").write_text(table)


def timestamp() -> str:
    """Now, in UTC, to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
