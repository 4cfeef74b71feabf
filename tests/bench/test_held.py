"""Upstream calls in flight at once, from the stand-in's request log."""

from __future__ import annotations

import pytest
from bench.cases.held import upstream_peak


@pytest.mark.parametrize(
    ("arrivals", "expected"),
    [
        ([], 0),
        ([0.0], 1),
        ([0.0, 0.5, 1.0, 1.5], 2),  # each lasts 1 s: the one at 1.0 starts as the first ends
        ([0.0, 0.1, 0.2, 5.0, 5.1], 3),
        ([3.0, 0.0, 0.1, 2.0], 2),  # the log need not be in order
    ],
)
def test_upstream_peak(arrivals: list[float], expected: int) -> None:
    assert upstream_peak([{"time": at} for at in arrivals], 1.0) == expected
