"""Percentiles and summaries of the benchmark harness."""

from __future__ import annotations

import math

import pytest
from bench.harness.stats import latency_summary, percentile, ratio


@pytest.mark.parametrize(
    ("q", "expected"), [(50, 5.0), (90, 9.0), (99, 10.0), (100, 10.0), (1, 1.0), (10, 1.0)]
)
def test_percentile_is_the_nearest_rank(q: float, expected: float) -> None:
    values = [float(value) for value in range(10, 0, -1)]  # unsorted on purpose
    assert percentile(values, q) == expected


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


def test_latency_summary_is_in_milliseconds() -> None:
    summary = latency_summary([0.010, 0.020, 0.030, 0.040])
    assert summary["count"] == 4
    assert summary["p50_ms"] == pytest.approx(20.0)
    assert summary["p99_ms"] == pytest.approx(40.0)
    assert summary["max_ms"] == pytest.approx(40.0)
    assert summary["mean_ms"] == pytest.approx(25.0)
    assert latency_summary([]) == {"count": 0}


@pytest.mark.parametrize(
    ("part", "whole", "expected"),
    [(1.0, 4.0, 0.25), (1.0, 0.0, None), (None, 4.0, None), (1.0, None, None), (math.nan, 2, None)],
)
def test_ratio_is_none_when_a_side_is_missing(part, whole, expected) -> None:
    assert ratio(part, whole) == expected
