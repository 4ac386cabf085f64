"""`dv.COMPILER_OPTIONS`: the library compiles its programs with XLA:CPU's own convolutions (YNNPACK off) at the top
level, and its jitted functions still work inside a caller's jit, grad and vmap (JAX refuses compiler options on a
nested jit, so there they run as plain jits)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import deepvis_jax as dv


def _conv(x, k):
    return lax.conv_general_dilated(x, k, (1, 1), ((2, 2), (2, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU option")
def test_the_options_compile_convolutions_without_ynnpack():
    args = (jnp.zeros((2, 27, 27, 64)), jnp.zeros((5, 5, 64, 192)))
    ours = jax.jit(_conv, compiler_options=dv.COMPILER_OPTIONS).lower(*args).compile().as_text()
    assert "convolution(" in ours and "ynn_fusion" not in ours


@pytest.fixture(scope="module")
def alexnet():
    return dv.load_model("alexnet", seed=0)


def test_library_programs_run_inside_a_callers_trace(alexnet):
    x = dv.normalize(jnp.asarray(np.random.default_rng(0).uniform(0, 1, (2, 67, 67, 3)), jnp.float32))
    top = np.asarray(dv.classify(alexnet, x))  # top level: compiled with the options
    plain = np.asarray(jax.jit(alexnet.apply)(x))  # XLA's defaults
    np.testing.assert_allclose(top, plain, rtol=1e-5, atol=1e-5 * np.abs(plain).max())
    nested = jax.jit(lambda m, a: dv.classify(m, a))(alexnet, x)  # inside a jit: no compiler-options error
    np.testing.assert_allclose(nested, plain, rtol=1e-5, atol=1e-5 * np.abs(plain).max())
    grad = jax.grad(lambda a: dv.classify(alexnet, a)[0, 3])(x)
    want = jax.grad(lambda a: alexnet.apply(a)[0, 3])(x)
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    batched = jax.vmap(lambda a: dv.classify(alexnet, a[None])[0])(x)
    np.testing.assert_allclose(batched, plain, rtol=1e-5, atol=1e-5 * np.abs(plain).max())


@pytest.mark.parametrize("value, expect", [("default", "{}"), ("eigen", "{'xla_cpu_experimental_ynn_fusion_type': ''}"),
                                           ("bogus", "DEEPVIS_XLA_CPU='bogus' is not one of eigen, default")])  # fmt: skip
def test_the_environment_chooses_and_is_checked(value, expect):
    code = "import deepvis_jax as dv; print(dv.COMPILER_OPTIONS)"
    env = {**os.environ, "DEEPVIS_XLA_CPU": value, "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert expect in (r.stdout if value != "bogus" else r.stderr)
    assert (r.returncode != 0) == (value == "bogus")


def test_the_trace_state_lookup_works_with_the_installed_jax():
    """Smell 2: the lookup of JAX's trace state finds it in this jax, and tells the top level from a trace."""
    from deepvis_jax._src import compile as c

    assert c._trace_ctx is not None and c._top_level() is True
    seen = []
    jax.jit(lambda x: seen.append(c._top_level()) or x)(1.0)
    jax.grad(lambda x: seen.append(c._top_level()) or x)(1.0)
    jax.vmap(lambda x: seen.append(c._top_level()) or x)(jnp.ones(2))
    assert seen == [False, False, False]


def test_a_jax_without_the_trace_state_warns_at_import():
    """Smell 2: if a jax release moves `trace_ctx`, importing deepvis_jax says so, loudly, and still works."""
    code = """
import builtins, jax, numpy as np
real = builtins.__import__
def moved(name, globals=None, locals=None, fromlist=(), level=0):  # as if a jax release had moved it
    if name == "jax._src.core" and "trace_ctx" in (fromlist or ()):
        raise ImportError("cannot import name 'trace_ctx'")
    return real(name, globals, locals, fromlist, level)
builtins.__import__ = moved
import deepvis_jax as dv
builtins.__import__ = real
print(dv.classify(dv.load_model("alexnet"), dv.normalize(np.zeros((1, 63, 63, 3)))).shape)
"""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning: deepvis_jax: jax" in r.stderr and "COMPILER_OPTIONS are not applied" in r.stderr
    assert r.stdout.strip() == "(1, 1000)"


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU option")
def test_the_library_functions_keep_lower_trace_and_eval_shape(alexnet):
    """Smell 2: the wrapper that picks the compiled program keeps the jitted function's AOT methods, and a program
    lowered through them is compiled with the options."""
    x = jnp.zeros((1, 67, 67, 3))
    text = dv.classify.lower(alexnet, x).compile().as_text()
    assert "convolution(" in text and "ynn_fusion" not in text
    act, switches = dv.forward.eval_shape(alexnet, x, "conv2")
    assert act.shape == (1, 7, 7, 192) and isinstance(switches, dv.Switches)
    traced = dv.forward.trace(alexnet, x, "conv2")
    assert any(e.primitive.name == "conv_general_dilated" for e in traced.jaxpr.eqns)
