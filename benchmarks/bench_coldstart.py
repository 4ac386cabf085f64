"""cold start: wall time of a whole `deepvis visualize --weights random --layer 3` process, first run (empty
compilation cache) and with a warm cache, against the PyTorch reference script doing the same job
(benchmarks/torch_visualize.py)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._harness import Row


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def run(quick: bool) -> list[Row]:
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"

        def deepvis(i: int) -> list[str]:
            return [sys.executable, "-m", "deepvis_jax", "visualize", "--weights", "random", "--layer", "3",
                    "--out", str(tmp / f"jax{i}"), "--cache-dir", str(cache)]  # fmt: skip

        first = _wall(deepvis(0))  # empty cache: compiles
        if not any(cache.rglob("*")):
            raise AssertionError("the first deepvis run left nothing in its compilation cache")
        warm = statistics.median(_wall(deepvis(i + 1)) for i in range(repeats))
        for i in range(1 + repeats):
            if not (tmp / f"jax{i}" / "conv3_projections.png").is_file():
                raise AssertionError("deepvis visualize did not write its projection sheet")
        ref = [sys.executable, "-m", "benchmarks.torch_visualize", str(tmp / "torch")]
        _wall(ref)  # warm the file-system cache for torch's import too
        torch_s = statistics.median(_wall(ref) for _ in range(repeats))
    return [Row("cold start: deepvis visualize process (warm cache)", warm, torch_s, first - warm,
                "both wrote their PNGs", {"first run, empty cache (s)": f"{first:.2f}"})]  # fmt: skip
