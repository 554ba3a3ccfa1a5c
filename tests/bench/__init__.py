"""Benchmarks: each `bench_<name>.py` has `run() -> dict`; `python -m tests.bench` runs them."""
