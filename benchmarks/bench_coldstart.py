"""cold start: wall time of a whole `deepvis visualize --weights FILE --layer 3 --image IMAGE` process, first run
(empty compilation cache) and with a warm cache, against the PyTorch reference script doing the same job
(benchmarks/torch_visualize.py).

Both processes read the same AlexNet weights (seeded torchvision init: a converted .msgpack for deepvis, the state
dict for torch) and the same 224 x 224 image (the astronaut, resized once before the timing), so their printed
results are checked: the same top-9 channels of conv3, in order, with the same strongest activations (float32,
`F32_TOL` of the largest), and both wrote their PNGs.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import converters
import deepvis_jax as dv

from . import _harness
from ._harness import Row, checked, max_rel
from ._models import torch_model

F32_TOL = 1e-4  # peak-relative; deepvis prints 5 significant digits (measured 2.5e-5)
ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - t0, res.stdout


def _deepvis_result(stdout: str) -> tuple[list[int], list[float]]:
    """The top channels and their scores from `deepvis visualize`'s "  channel C  score S" lines."""
    pairs = re.findall(r"^\s*channel\s+(\d+)\s+score\s+(\S+)", stdout, re.M)
    return [int(c) for c, _ in pairs], [float(s) for _, s in pairs]


def _torch_result(stdout: str) -> tuple[list[int], list[float]]:
    lines = dict(line.split(":", 1) for line in stdout.splitlines() if ":" in line)
    return eval(lines["top channels"]), eval(lines["scores"])  # noqa: S307 -- two lists our own script printed


def run(quick: bool) -> list[Row]:
    repeats = 1 if quick or _harness.CHECK_ONLY else 3
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        image = tmp / "astronaut224.png"
        Image.open(ROOT / "deepvis_jax" / "data" / "astronaut.jpg").convert("RGB").resize((224, 224)).save(image)
        tm = torch_model("alexnet")
        torch.save(tm.state_dict(), tmp / "alexnet.pt")
        dv.save_model(converters.from_torchvision(tm), tmp / "alexnet.msgpack")

        def deepvis(i: int) -> list[str]:
            return [sys.executable, "-m", "deepvis_jax", "visualize", "--weights", str(tmp / "alexnet.msgpack"),
                    "--layer", "3", "--image", str(image), "--out", str(tmp / f"jax{i}"),
                    "--cache-dir", str(cache)]  # fmt: skip

        first, out = _run(deepvis(0))  # empty cache: compiles
        if not any(cache.rglob("*")):
            raise AssertionError("the first deepvis run left nothing in its compilation cache")
        warm = [_run(deepvis(i + 1)) for i in range(repeats)]
        for i in range(1 + repeats):
            if not (tmp / f"jax{i}" / "conv3_projections.png").is_file():
                raise AssertionError("deepvis visualize did not write its projection sheet")
        ref = [sys.executable, "-m", "benchmarks.torch_visualize", str(tmp / "torch"), str(image),
               str(tmp / "alexnet.pt")]  # fmt: skip
        if not _harness.CHECK_ONLY:
            _run(ref)  # warm the file-system cache for torch's import too
        runs = [_run(ref) for _ in range(repeats)]
        if not (tmp / "torch" / "projections.png").is_file():
            raise AssertionError("the torch script did not write its projections")
        theirs = _torch_result(runs[-1][1])
        err = 0.0
        for stdout in [out] + [o for _, o in warm]:
            ours = _deepvis_result(stdout)
            if ours[0] != theirs[0]:
                raise AssertionError(f"deepvis chose channels {ours[0]}, torch {theirs[0]}; timing is void")
            err = max(err, max_rel(ours[1], theirs[1]))
    # deepvis prints 5 significant digits: its scores are within 5e-5 of themselves
    check = "top-9 channels equal; " + checked("scores", err, F32_TOL) + "; both wrote their PNGs"
    warm_s = statistics.median(t for t, _ in warm)
    return [Row("cold start: deepvis visualize process (warm cache)", warm_s, statistics.median(t for t, _ in runs),
                first - warm_s, check, {"first run, empty cache (s)": f"{first:.2f}"})]  # fmt: skip
