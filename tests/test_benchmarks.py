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
