"""Pieces of the benchmark harness: processes, load generators, samplers, reports."""
