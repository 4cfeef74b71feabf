"""Benchmarks of aigen: figures and ratios, never assertions (`make bench`, `python -m bench`)."""
