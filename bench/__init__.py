"""Benchmarks: the pipeline's own cost beside Claude's. `python -m bench` prints figures.

Nothing here is a test: every figure is a ratio or a distribution measured in one
run on this machine, written to `bench/results.json` beside its target.
"""
