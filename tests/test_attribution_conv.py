"""The CPU conv path Score-CAM's speed needed (docs/attribution.md, Speed): a float32 convolution whose kernel
exceeds its input map (a ResNet's 3x3 convs on layer4's 2x2 maps at 64 px, 1x1 at 32 px) compiles to `matmul_conv`
(no XLA convolution left: XLA:CPU ran those 30-80x slower), equal to torch's conv2d in value and input gradient;
a kernel that fits its map stays XLA's convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from deepvis_jax._src.nets.layers import conv2d, conv_general
from reference import assert_close, nchw, nhwc


@pytest.mark.parametrize("hw,padding,general", [(2, 1, False), (1, 1, False), (2, 1, True), (3, 1, False)])
def test_float32_conv_on_maps_smaller_than_the_kernel_is_a_matrix_product(hw, padding, general):
    rng = np.random.default_rng(hw)
    x = rng.standard_normal((3, hw, hw, 16)).astype(np.float32)
    k = (0.1 * rng.standard_normal((3, 3, 16, 8))).astype(np.float32)
    g = rng.standard_normal((3, hw, hw, 8)).astype(np.float32)
    f = jax.jit(lambda v, w: conv_general(v, w, 1, padding) if general else conv2d(v, w, 1, padding))
    text = f.lower(jnp.asarray(x), jnp.asarray(k)).compile().as_text()
    assert ("convolution(" in text) == (hw >= 3), text[:200]
    y, vjp = jax.vjp(lambda v: f(v, jnp.asarray(k)), jnp.asarray(x))
    xt = nchw(x).requires_grad_(True)
    yt = torch.nn.functional.conv2d(xt, torch.from_numpy(k.transpose(3, 2, 0, 1).copy()), padding=padding)
    (gx,) = torch.autograd.grad(yt, xt, nchw(g))
    assert_close(y, nhwc(yt), 1e-5, err_msg="value", elementwise=1e-4)
    assert_close(vjp(jnp.asarray(g))[0], nhwc(gx), 1e-5, err_msg="input gradient", elementwise=1e-4)
