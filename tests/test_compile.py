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
