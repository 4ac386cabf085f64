"""Peak memory of `construct`: VGG16 conv5_3 at 224 px with 1, 8 and 32 filters, each case in its own process.

Each case runs in a fresh subprocess (``python -m benchmarks.bench_memory CASE``) that reports its own peak resident
memory twice: the whole process's (VmHWM read before the reset below, and the larger of that and the peak after
it; not ``ru_maxrss``, which a child started by a large parent inherits from it across fork), which includes creating the
random-weight model (Flax's initializers peak at ~2.2 GB for VGG16's 138 M parameters, more than a trained model's
file takes to load), and the peak while `construct` runs (Linux's VmHWM, reset after the model is loaded: the
model's resident weights, compiling and every batch), and the seconds per filter-step of a second, steady-state call. The first call (compile + run) is untimed; it takes the
batch's width in filters, so the timed call runs the same compiled program. Random weights: memory and time
depend only on the shapes. The baseline, "4 filters in one batch", is what `construct` did before `batch_size`
(every filter vmapped into one program). Check: the timed call's first batch equals the warm-up's images bitwise
(the same filters, the same program), and every image is finite in [0, 1].
"""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import time

import numpy as np

from . import _harness
from ._harness import Row

ARCH, LAYER, SIZE, STEPS = "vgg16", "conv5_3", 224, 8  # one chunk of 8 steps (construct's default chunk)
# (label, number of filters, batch_size: None = construct's default)
CASES = (("4 filters, one batch (before)", 4, 4), ("1 filter", 1, None), ("8 filters", 8, None),
         ("32 filters", 32, None))  # fmt: skip
QUICK = dict(size=64, steps=2, cases=(("2 filters, one batch", 2, 2), ("1 filter", 1, None),
                                      ("4 filters, batch_size 2", 4, 2)))  # fmt: skip


def _case(n: int, batch_size: int | None, size: int, steps: int) -> dict:
    """Runs in the subprocess."""
    import jax

    import deepvis_jax as dv
    from deepvis_jax._src.batching import batches

    model = jax.block_until_ready(dv.load_model(ARCH, seed=0))
    gc.collect()
    load_peak = _peak()
    _reset_peak()
    filters = list(range(0, 2 * n, 2))
    b = dv.default_batch_size(model, LAYER, size) if batch_size is None else batch_size
    k, width = batches(n, b)
    kw = dict(steps=steps, image_size=size, seed=0, verbose=False, batch_size=b)
    t0 = time.perf_counter()
    warm = dv.construct(model, LAYER, filters[:width], **kw)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    imgs = dv.construct(model, LAYER, filters, **kw)
    seconds = time.perf_counter() - t0
    if not (np.array_equal(imgs[:width], warm) and np.isfinite(imgs).all() and 0 <= imgs.min() <= imgs.max() <= 1):
        raise AssertionError("construct: a batch's images changed between calls, or left [0, 1]; timing is void")
    peak = max(load_peak, _peak())
    return dict(n=n, batch_size=b, batches=k, width=width, seconds=seconds, first_s=first, peak_bytes=peak,
                construct_peak_bytes=_peak(), warm_filter_steps=width * steps,
                s_per_filter_step=seconds / (n * steps))  # fmt: skip


def _peak() -> int:
    """The process's peak resident memory since the last `_reset_peak` (VmHWM), in bytes."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # Linux: 5 resets VmHWM to the current resident size
        f.write("5")


def run(quick: bool) -> list[Row]:
    size, steps, cases = (QUICK["size"], QUICK["steps"], QUICK["cases"]) if quick else (SIZE, STEPS, CASES)
    if _harness.CHECK_ONLY:  # --check (CI): the batched case only, one VGG16 process instead of three
        cases = cases[2:]
    rows = []
    for label, n, batch_size in cases:
        cmd = [sys.executable, "-m", "benchmarks.bench_memory", str(n), str(batch_size), str(size), str(steps)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"memory case {label!r} failed:\n{res.stderr[-2000:]}")
        r = json.loads(res.stdout.strip().splitlines()[-1])
        compile_s = r["first_s"] - r["s_per_filter_step"] * r["warm_filter_steps"]
        name = f"construct memory {ARCH} {LAYER} {size}px, {label}"
        gb, construct_gb = r["peak_bytes"] / 2**30, r["construct_peak_bytes"] / 2**30
        check = f"batches of {r['width']}: images equal the warm-up's"
        extra = {"peak RSS while constructing, GB": round(construct_gb, 2), "process peak RSS, GB": round(gb, 2),
                 "batches": f"{r['batches']} x {r['width']}", "s per filter-step": round(r["s_per_filter_step"], 3)}
        print(f"  {label}: {extra}", file=sys.stderr, flush=True)  # each case as it ends (the 32-filter one is long)
        rows.append(Row(name, r["s_per_filter_step"], math.nan, compile_s, check, extra))
    return rows


if __name__ == "__main__":
    n, b, size, steps = sys.argv[1:5]
    print(json.dumps(_case(int(n), None if b == "None" else int(b), int(size), int(steps))))
