"""Smoke test: the benchmark scripts still run and check their results (quick mode, one benchmark)."""

import json

from benchmarks.__main__ import main


def test_quick_classify_benchmark_runs_and_checks(capsys):
    assert main(["--quick", "--only", "classify", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (alexnet, vgg16) = out["results"]
    for row in (alexnet, vgg16):
        assert row["check"].startswith("logits rel") and row["ratio"] > 0
        assert float(row["check"].split()[-1]) < 1e-4  # torch and JAX agreed, so the timing counted


def test_check_mode_calls_each_timed_callable_once(monkeypatch):
    """`python -m benchmarks --check` (CI): each timed callable runs once, its result is the one checked."""
    from benchmarks import _harness

    calls = []

    def fn():
        calls.append(1)
        return len(calls)

    monkeypatch.setattr(_harness, "CHECK_ONLY", True)
    first, steady, out = _harness.time_jax(fn, repeats=5)
    assert calls == [1] and out == 1 and steady == first
    _, out = _harness.time_torch(fn, repeats=5, warmup=lambda: None)
    assert len(calls) == 2 and out == 2
    monkeypatch.setattr(_harness, "CHECK_ONLY", False)
    _harness.time_jax(fn, repeats=3)
    assert len(calls) == 2 + 1 + 1 + 3  # first call, warm-up, repeats


def test_ci_runs_every_benchmark_check():
    """.ci/run runs the checks of every benchmark (no --only), with --check."""
    from pathlib import Path

    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    lines = [ln.strip() for ln in ci.splitlines()
             if "python -m benchmarks" in ln and not ln.strip().startswith(("#", "echo"))]
    assert lines and all(ln.endswith("python -m benchmarks --check") for ln in lines), lines


def test_objective_check_fails_a_different_optimization():
    """A float32 optimization is checked by its objective's gain: a run that gained less (or a wrong filter's)
    fails the timing; rounding-level differences pass."""
    import numpy as np
    import pytest

    from benchmarks._harness import objective_check

    start, torch_ = np.array([0.0, 0.1]), np.array([3.0, 2.1])
    assert objective_check("f32", torch_ * (1 + 1e-3), torch_, start, 2e-2).startswith("f32 gain rel")
    with pytest.raises(AssertionError, match="timing is void"):
        objective_check("f32", np.array([3.0, 1.5]), torch_, start, 2e-2)
