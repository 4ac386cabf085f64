"""Benchmarks: deepvis_jax against the same work in PyTorch eager, one process, same weights, checked results.

Run ``python -m benchmarks`` (``--quick`` for a short run, ``--json`` for machine-readable output).
"""
