"""Benchmarks of the connector: each module is a script (`python bench/<name>.py [--quick]`).

Importing a module runs nothing; its core measurement function is what the
smoke test (`tests/bench/test_bench_smoke.py`) calls at a tiny size.
"""
