"""Timing and reporting shared by the benchmarks.

Every benchmark copies the same weights into both frameworks, checks that both give the same answer (so a fast
wrong answer cannot win), warms up untimed, blocks until results are ready, reports the compile time (first call
minus steady state) separately and the median of the repeats, and the ratio torch / jax (> 1: JAX is faster).

``python -m benchmarks --check`` sets `CHECK_ONLY`: every benchmark runs its quick case, each timed callable once
(no warm-up, one repeat), so the correctness checks on the timed outputs run at the smallest sizes (CI's stage).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import jax
import numpy as np

CHECK_ONLY = False  # python -m benchmarks --check: one call of each timed callable, the checks unchanged


@dataclass
class Row:
    name: str
    jax_s: float  # median steady-state seconds per call
    torch_s: float
    compile_s: float  # first JAX call minus the steady-state median
    check: str  # what was compared and the largest difference seen
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.torch_s / self.jax_s

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def _block(out):
    return jax.tree_util.tree_map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, out)


def time_jax(fn: Callable[[], Any], repeats: int, warmup: bool = True) -> tuple[float, float, Any]:
    """(first-call seconds, steady-state median seconds, result) of a JAX callable. ``warmup=False`` skips the
    second untimed call (for long calls, where the first one already compiled and warmed up)."""
    if CHECK_ONLY:
        repeats, warmup = 0, False
    t0 = time.perf_counter()
    out = _block(fn())
    first = time.perf_counter() - t0
    if warmup:
        _block(fn())  # untimed warm-up beyond compilation
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times) if times else first, out


def time_torch(fn: Callable[[], Any], repeats: int, warmup: Callable[[], Any] | None = None) -> tuple[float, Any]:
    """(steady-state median seconds, result) of a torch callable, after one untimed warm-up (`fn` itself, or a
    shorter `warmup` callable doing the same work on less data; the result is then the last timed call's)."""
    if CHECK_ONLY:
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out
    out = fn() if warmup is None else warmup()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (out if warmup is None else res)


def max_rel(a, b) -> float:
    """max |a - b| / max |b|: the difference relative to the reference's scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def checked(name: str, err: float, tol: float) -> str:
    if not err <= tol:
        raise AssertionError(f"{name}: JAX and PyTorch disagree (max rel {err:.2e} > {tol:.0e}); timing is void")
    return f"{name} rel {err:.1e}"


def objective_check(name: str, jax_scores, torch_scores, start_scores, tol: float) -> str:
    """A float32 optimization's timed result, where the two frameworks' runs diverge pixel by pixel (Adam's
    first step is lr * sign(gradient): a gradient within rounding of zero flips a pixel's step, and the
    difference grows), checked by what it optimizes: each image's objective, scored by the same float64 network,
    must gain the same within `tol` of the gain (|jax - torch| / |torch - start|)."""
    j, t, s = (np.asarray(a, np.float64) for a in (jax_scores, torch_scores, start_scores))
    err = float(np.max(np.abs(j - t) / np.maximum(np.abs(t - s), 1e-30)))
    if not err <= tol:
        raise AssertionError(f"{name}: JAX and PyTorch reach different objectives (gain differs by {err:.2e} > "
                             f"{tol:.0e}); timing is void")  # fmt: skip
    return f"{name} gain rel {err:.1e}"


def table(rows: list[Row]) -> str:
    head = f"{'benchmark':44} {'jax ms':>10} {'torch ms':>10} {'torch/jax':>10} {'compile s':>10}  check"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.name:44} {r.jax_s * 1e3:10.1f} {r.torch_s * 1e3:10.1f} {r.ratio:9.2f}x {r.compile_s:10.2f}  {r.check}"
        )
        for k, v in r.extra.items():
            lines.append(f"{'':46}{k}: {v}")
    return "\n".join(lines)
