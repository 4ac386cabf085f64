"""How deepvis_jax compiles its programs: `jit` is `jax.jit` with `COMPILER_OPTIONS`.

XLA:CPU hands convolutions to YNNPACK by default (``ynn_fusion`` in the compiled HLO). On the 2-core AVX-512 machine
this library is measured on, XLA's own (Eigen) convolutions run AlexNet's and VGG's layers as fast or faster:
AlexNet conv2 1.47x, VGG16 conv3_3 1.32x, conv1/3/4/5 1.05-1.1x (``python -m benchmarks --only profile`` times
both). `COMPILER_OPTIONS` turns the YNNPACK fusions off for the programs deepvis_jax compiles; the numbers are the
same convolutions, rounded as XLA:CPU rounds them without YNNPACK. Pass it to your own ``jax.jit(...,
compiler_options=dv.COMPILER_OPTIONS)`` for the same choice. ``DEEPVIS_XLA_CPU=default`` in the environment keeps
XLA's default instead (for a CPU where YNNPACK wins). Other backends ignore ``xla_cpu_`` options.

JAX accepts compiler options only on a top-level jit, so a library function called inside another trace (your own
``jax.jit``, ``grad`` or ``vmap`` around it) runs as a plain ``jax.jit``: it is then part of your program, compiled
with your options.
"""

from __future__ import annotations

import functools
import os

import jax

ENV = "DEEPVIS_XLA_CPU"
_CHOICES = ("eigen", "default")


def _options() -> dict:
    choice = os.environ.get(ENV, "eigen").strip().lower() or "eigen"
    if choice not in _CHOICES:
        raise ValueError(f"{ENV}={os.environ[ENV]!r} is not one of {', '.join(_CHOICES)}")
    return {"xla_cpu_experimental_ynn_fusion_type": ""} if choice == "eigen" else {}


COMPILER_OPTIONS: dict = _options()


try:  # no public API says whether a trace is active; without this, never risk the nested-jit error
    from jax._src.core import trace_ctx as _trace_ctx
except ImportError:
    _trace_ctx = None


def _top_level() -> bool:
    """Whether no trace (jit, grad, vmap, ...) is active: only then may a jit carry compiler options."""
    return bool(_trace_ctx is not None and hasattr(_trace_ctx, "is_top_level") and _trace_ctx.is_top_level())


def jit(fun=None, **kwargs):
    """`jax.jit` compiled with `COMPILER_OPTIONS` when called at the top level, a plain `jax.jit` inside another
    trace. ``_cache_size()`` counts the top-level programs (what the library's own calls compile)."""
    if fun is None:
        return functools.partial(jit, **kwargs)
    plain = jax.jit(fun, **kwargs)
    if not COMPILER_OPTIONS:
        return plain
    tuned = jax.jit(fun, compiler_options=COMPILER_OPTIONS, **kwargs)

    @functools.wraps(fun)
    def call(*args, **kw):
        return (tuned if _top_level() else plain)(*args, **kw)

    call._cache_size = tuned._cache_size
    return call
