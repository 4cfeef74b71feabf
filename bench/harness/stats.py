"""Percentiles and latency summaries (nearest rank: every figure is a latency that happened)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 < q <= 100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean of latencies given in seconds, in milliseconds."""
    if not seconds:
        return {"count": 0}
    return {
        "count": len(seconds),
        "p50_ms": percentile(seconds, 50) * 1000,
        "p90_ms": percentile(seconds, 90) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "max_ms": max(seconds) * 1000,
        "mean_ms": sum(seconds) / len(seconds) * 1000,
    }


def ratio(part: float | None, whole: float | None) -> float | None:
    """part / whole, or None when either is missing or whole is 0."""
    if part is None or whole is None or not whole or math.isnan(part) or math.isnan(whole):
        return None
    return part / whole
