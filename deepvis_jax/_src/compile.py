"""How deepvis_jax compiles its programs: `jit` is `jax.jit` with `COMPILER_OPTIONS`.

XLA:CPU hands convolutions to YNNPACK by default (``ynn_fusion`` in the compiled HLO). On the CPUs this library is
measured on, XLA's own (Eigen) convolutions run AlexNet's and VGG's layers as fast or faster (``python -m
benchmarks --only profile`` times both). `COMPILER_OPTIONS` turns the YNNPACK fusions off for the programs
deepvis_jax compiles; the numbers are the same convolutions, rounded as XLA:CPU rounds them without YNNPACK. Pass
it to your own ``jax.jit(..., compiler_options=dv.COMPILER_OPTIONS)`` for the same choice.
``DEEPVIS_XLA_CPU=default`` in the environment keeps XLA's default instead (for a CPU where YNNPACK wins). Other
backends ignore ``xla_cpu_`` options.

JAX accepts compiler options only on a top-level jit, so a library function called inside another trace (your own
``jax.jit``, ``grad`` or ``vmap`` around it) runs as a plain ``jax.jit``: it is then part of your program, compiled
with your options. Whether a trace is active is read from ``jax._src.core.trace_ctx`` (no public API says it); if a
jax release moves it, importing deepvis_jax warns that `COMPILER_OPTIONS` no longer apply, and every library
function runs as a plain ``jax.jit``.
"""

from __future__ import annotations

import functools
import os
import warnings

import jax

ENV = "DEEPVIS_XLA_CPU"
_CHOICES = ("eigen", "default")


def _options() -> dict:
    choice = os.environ.get(ENV, "eigen").strip().lower() or "eigen"
    if choice not in _CHOICES:
        raise ValueError(f"{ENV}={os.environ[ENV]!r} is not one of {', '.join(_CHOICES)}")
    return {"xla_cpu_experimental_ynn_fusion_type": ""} if choice == "eigen" else {}


COMPILER_OPTIONS: dict = _options()


def _find_trace_ctx():
    """JAX's trace state, if this jax has it where deepvis_jax looks (with the method it calls)."""
    try:
        from jax._src.core import trace_ctx
    except ImportError:
        return None
    return trace_ctx if callable(getattr(trace_ctx, "is_top_level", None)) else None


_trace_ctx = _find_trace_ctx()
if _trace_ctx is None and COMPILER_OPTIONS:
    warnings.warn(f"deepvis_jax: jax {jax.__version__} has no jax._src.core.trace_ctx.is_top_level, so deepvis_jax "
                  "cannot tell a top-level call from one inside a trace: its COMPILER_OPTIONS are not applied "
                  "(every program compiles with XLA's defaults); deepvis_jax is tested with the jax its pyproject.toml "
                  "asks for", RuntimeWarning, stacklevel=2)  # fmt: skip


def _top_level() -> bool:
    """Whether no trace (jit, grad, vmap, ...) is active: only then may a jit carry compiler options."""
    return bool(_trace_ctx is not None and _trace_ctx.is_top_level())


def jit(fun=None, **kwargs):
    """`jax.jit` compiled with `COMPILER_OPTIONS` when called at the top level, a plain `jax.jit` inside another
    trace. The result keeps the jitted function's ``lower``, ``trace`` and ``eval_shape`` (those of the top-level
    program, with the options); ``_cache_size()`` counts the top-level programs (what the library's own calls
    compile)."""
    if fun is None:
        return functools.partial(jit, **kwargs)
    plain = jax.jit(fun, **kwargs)
    if not COMPILER_OPTIONS or _trace_ctx is None:
        return plain
    tuned = jax.jit(fun, compiler_options=COMPILER_OPTIONS, **kwargs)

    @functools.wraps(fun)
    def call(*args, **kw):
        return (tuned if _top_level() else plain)(*args, **kw)

    call.lower, call.trace, call.eval_shape = tuned.lower, tuned.trace, tuned.eval_shape
    call._cache_size = tuned._cache_size
    return call
