"""Reading wrk's figures (the line wrk.lua's done() prints)."""

from __future__ import annotations

import pytest
from bench.harness.wrk import parse_wrk_output

WRK_TEXT = """\
Running 5s test @ http://127.0.0.1:1234/healthz
  1 threads and 64 connections
Requests/sec:   1989.92
WRK_JSON {"requests": 10000, "duration_us": 5000000, "bytes": 7720622, "connect": 0, \
"read": 2, "write": 0, "status": 30, "timeout": 1, "p50_us": 12782, "p90_us": 29129, \
"p99_us": 69393, "max_us": 117167, "mean_us": 17446.3}
"""


def test_figures_are_read_from_the_marker_line() -> None:
    result = parse_wrk_output(WRK_TEXT, connections=64)
    assert result.requests == 10000 and result.seconds == 5.0
    assert result.rate == 2000.0
    assert result.ok_rate == (10000 - 30) / 5.0
    assert result.errors == {"read": 2, "status": 30, "timeout": 1}
    assert result.failed == 33
    assert result.latency_ms["p50_ms"] == 12.782
    assert result.latency_ms["p99_ms"] == 69.393
    assert result.to_json()["connections"] == 64


def test_output_without_figures_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no figures"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n", 1)
