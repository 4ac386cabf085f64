"""The two fast backward passes (issue 15): max pooling differentiated through its switches, and strided
convolutions over few channels differentiated through space to depth. Both against torch autograd in float64,
with `jax.test_util.check_grads` for their custom JVPs. And float64 convolutions on CPU as matrix products (issue
25): against torch and XLA's own convolution."""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
import torch

from deepvis_jax._src.nets.layers import (
    SPACE_TO_DEPTH_MAX_CHANNELS,
    conv2d,
    conv_general,
    matmul_conv,
    space_to_depth_conv,
    xla_conv2d,
    xla_conv_general,
)
from deepvis_jax._src.rules import max_pool
from reference import assert_close, nchw, nhwc


@pytest.mark.parametrize("window,stride,padding", [(3, 2, 0), (2, 2, 0), (3, 2, 1)])
def test_max_pool_gradient_is_torch_autograd_with_ties(window, stride, padding):
    """Small integers (ties everywhere, negative values so padding could only lose): the gradient goes to each
    window's first maximum, exactly as torch's max_pool2d backward."""
    rng = np.random.default_rng(window + padding)
    x = rng.integers(-2, 3, (2, 11, 9, 4)).astype(np.float64)
    with jax.enable_x64(True):
        y, vjp = jax.vjp(lambda v: max_pool(v, window, stride, padding), jnp.asarray(x))
        g = rng.standard_normal(y.shape)
        (ours,) = vjp(jnp.asarray(g))
        xt = nchw(x).requires_grad_(True)
        torch.nn.functional.max_pool2d(xt, window, stride, padding).backward(nchw(g))
        np.testing.assert_array_equal(y, nhwc(torch.nn.functional.max_pool2d(nchw(x), window, stride, padding)))
        np.testing.assert_array_equal(ours, nhwc(xt.grad))
        smooth = jnp.asarray(rng.standard_normal((2, 11, 9, 4)))  # no ties: finite differences are valid
        jax.test_util.check_grads(lambda v: max_pool(v, window, stride, padding), (smooth,), order=2,
                                  modes=("fwd", "rev"))  # fmt: skip


CONVS = [(11, 4, 2, 3), (7, 2, 3, 3), (5, 3, 1, 2), (3, 2, 1, 4), (4, 4, 0, 3)]  # kernel, stride, padding, channels


@pytest.mark.parametrize("kernel,stride,padding,channels", CONVS)
def test_space_to_depth_conv_equals_torch_conv_and_its_gradients(kernel, stride, padding, channels):
    """`xla_conv2d` in float64 (what float32 runs; a float64 `conv2d` on CPU is `matmul_conv`, tested below)."""
    assert channels * stride * stride <= SPACE_TO_DEPTH_MAX_CHANNELS  # xla_conv2d takes the space-to-depth path
    rng = np.random.default_rng(kernel * 10 + stride)
    x = rng.standard_normal((2, 23, 30, channels))  # odd sizes: the last rows are not read by every stride
    k = rng.standard_normal((kernel, kernel, channels, 5))
    with jax.enable_x64(True):
        xt = nchw(x).requires_grad_(True)
        kt = torch.from_numpy(k.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
        ref = torch.nn.functional.conv2d(xt, kt, stride=stride, padding=padding)
        g = rng.standard_normal(ref.shape)
        ref.backward(torch.from_numpy(g))
        np.testing.assert_allclose(space_to_depth_conv(jnp.asarray(x), jnp.asarray(k), stride, padding),
                                   nhwc(ref), rtol=1e-12, atol=1e-12 * np.abs(nhwc(ref)).max())  # fmt: skip
        y, vjp = jax.vjp(lambda v, w: xla_conv2d(v, w, stride, padding), jnp.asarray(x), jnp.asarray(k))
        np.testing.assert_allclose(y, nhwc(ref), rtol=1e-12, atol=1e-12 * np.abs(nhwc(ref)).max())
        dx, dk = vjp(jnp.asarray(g.transpose(0, 2, 3, 1)))
        np.testing.assert_allclose(dx, nhwc(xt.grad), rtol=1e-12, atol=1e-12 * np.abs(xt.grad.numpy()).max())
        np.testing.assert_allclose(dk, kt.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-12,
                                   atol=1e-12 * np.abs(kt.grad.numpy()).max())  # fmt: skip
        # the custom JVP: both modes, second order (forward-over-reverse works too)
        jax.test_util.check_grads(lambda v, w: xla_conv2d(v, w, stride, padding), (jnp.asarray(x[:1, :12, :13]),
                                  jnp.asarray(k)), order=2, modes=("fwd", "rev"))  # fmt: skip


def test_space_to_depth_gradient_is_a_stride_one_transpose():
    """What makes it fast: the input gradient of AlexNet's conv1 contains no lhs-dilated (strided transposed)
    convolution any more."""
    x = jnp.zeros((1, 67, 67, 3))
    k = jnp.zeros((11, 11, 3, 64))
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda v: jnp.sum(conv2d(v, k, 4, 2))))(x))
    assert "lhs_dilation=(4, 4)" not in jaxpr and "conv_general_dilated" in jaxpr
    wide = str(jax.make_jaxpr(jax.grad(lambda v: jnp.sum(conv2d(v, jnp.zeros((3, 3, 64, 8)), 2, 1))))(
        jnp.zeros((1, 16, 16, 64))))  # 64 channels x 2 x 2 > 64: the plain strided conv
    assert "lhs_dilation=(2, 2)" in wide


def check_float64_conv(x, k, torch_conv, ours, xla, rng) -> str:
    """`ours(x, k)` jitted with both its gradients (no convolution left in the compiled program) and `xla(x, k)`
    (XLA's float64 convolution): value and both gradients elementwise at 1e-12 against ``torch_conv`` (NCHW input,
    OIHW kernel) and each other. Call under ``jax.enable_x64``. Returns the compiled program's text."""
    xt = nchw(x).requires_grad_(True)
    kt = torch.from_numpy(k.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
    ref = torch_conv(xt, kt)
    g = rng.standard_normal(ref.shape).transpose(0, 2, 3, 1)
    ref.backward(nchw(g))
    expected = (nhwc(ref), nhwc(xt.grad), kt.grad.numpy().transpose(2, 3, 1, 0))
    args = (jnp.asarray(x), jnp.asarray(k), jnp.asarray(g))

    def value_and_grads(conv):
        y, vjp = jax.vjp(conv, *args[:2])
        return (y, *vjp(args[2]))

    compiled = jax.jit(lambda x, k, g: value_and_grads(ours)).lower(*args).compile()
    assert "convolution(" not in compiled.as_text()
    for name, a, b, e in zip(["value", "input gradient", "kernel gradient"], compiled(*args), value_and_grads(xla),
                             expected, strict=True):  # fmt: skip
        assert a.dtype == jnp.float64
        assert_close(a, e, 1e-12, err_msg=f"{name} vs torch")
        assert_close(a, b, 1e-12, err_msg=f"{name} vs XLA's convolution")
    return compiled.as_text()


# kernel, stride, padding, input channels: AlexNet's conv1 and conv2, VGG's 3x3, a ResNet's stem, 3x3/2 and 1x1/2
MATMUL_CONVS = [(11, 4, 2, 3), (5, 1, 2, 6), (3, 1, 1, 7), (7, 2, 3, 3), (3, 2, 1, 5), (1, 2, 0, 6)]


@pytest.mark.parametrize("kernel,stride,padding,channels", MATMUL_CONVS)
def test_float64_conv_is_matmul_conv_equal_to_torch_and_xla(kernel, stride, padding, channels):
    """A float64 `conv2d` compiled for CPU is `matmul_conv` (no convolution left in the compiled program); its
    value and both gradients equal torch's conv2d and XLA's own float64 convolution elementwise at 1e-12."""
    rng = np.random.default_rng(kernel * 10 + stride + channels)
    x = rng.standard_normal((2, 23, 30, channels))  # odd sizes: the last rows are not read by every stride
    k = rng.standard_normal((kernel, kernel, channels, 4))
    with jax.enable_x64(True):
        check_float64_conv(x, k, lambda v, w: torch.nn.functional.conv2d(v, w, stride=stride, padding=padding),
                           lambda v, w: conv2d(v, w, stride, padding), lambda v, w: xla_conv2d(v, w, stride, padding),
                           rng)  # fmt: skip
        same = [jax.jit(f, static_argnums=(2, 3))(jnp.asarray(x), jnp.asarray(k), stride, padding)
                for f in (matmul_conv, conv2d)]  # fmt: skip
        np.testing.assert_array_equal(*same)  # the same program: bitwise the same value


def test_float32_conv_stays_xla_convolution():
    """Only float64 takes the matrix products: float32 compiles to XLA's convolution, as before."""
    f = jax.jit(lambda x, k: conv2d(x, k, 1, 1))
    assert "convolution(" in f.lower(jnp.zeros((1, 8, 8, 3)), jnp.zeros((3, 3, 3, 4))).compile().as_text()


# stride, padding ((top, bottom), (left, right)), dilation, groups, input channels, output channels: the options
# of torch's conv2d graph networks use, two cases covering all (grouped as ResNeXt with per-axis stride and
# dilation and asymmetric padding; depthwise with a channel multiplier of 2 as MobileNet's with one)
GENERAL_CONVS = [((2, 1), ((1, 2), (0, 3)), (2, 1), 2, 4, 6), (2, ((1, 1), (2, 1)), (1, 2), 3, 3, 6)]


@pytest.mark.parametrize("stride,padding,dilation,groups,channels,out", GENERAL_CONVS)
def test_float64_conv_general_is_matmul_conv_equal_to_torch_and_xla(stride, padding, dilation, groups, channels,
                                                                     out):  # fmt: skip
    """`conv_general` in float64 on CPU (`matmul_conv` with strides, dilation, groups, asymmetric padding): value
    and both gradients equal to torch's conv2d (after F.pad) and to XLA's float64 convolution at 1e-12."""
    rng = np.random.default_rng(groups * 10 + channels)
    x = rng.standard_normal((2, 11, 13, channels))
    k = rng.standard_normal((3, 3, channels // groups, out))
    ((top, bottom), (left, right)) = padding
    conv_args = (stride, padding, dilation, groups)

    def torch_conv(v, w):
        return torch.nn.functional.conv2d(torch.nn.functional.pad(v, (left, right, top, bottom)), w, stride=stride,
                                          dilation=dilation, groups=groups)  # fmt: skip

    with jax.enable_x64(True):
        text = check_float64_conv(x, k, torch_conv, lambda v, w: conv_general(v, w, *conv_args),
                                  lambda v, w: xla_conv_general(v, w, *conv_args), rng)  # fmt: skip
        if groups == channels:  # depthwise: sums of products, no matrix product either
            assert " dot(" not in text
        same = [jax.jit(f, static_argnums=(2, 3, 4, 5))(jnp.asarray(x), jnp.asarray(k), *conv_args)
                for f in (matmul_conv, conv_general)]  # fmt: skip
        np.testing.assert_array_equal(*same)  # the same program: bitwise the same value


def test_float32_depthwise_conv_general_is_the_sum_over_taps():
    """A float32 depthwise `conv_general` compiled for CPU is `matmul_conv`'s sum over taps (no convolution in the
    program; XLA:CPU's own depthwise convolution is 10-50x slower), equal to torch's conv2d: value and input
    gradient, 1e-5 relative; other float32 convolutions stay XLA's."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 15, 17, 6)).astype(np.float32)
    k = rng.standard_normal((5, 5, 1, 12)).astype(np.float32)  # channel multiplier 2, as MobileNet's with one
    g = rng.standard_normal((2, 8, 9, 12)).astype(np.float32)
    f = jax.jit(lambda v, w: conv_general(v, w, 2, 2, 1, 6))
    assert "convolution(" not in f.lower(jnp.asarray(x), jnp.asarray(k)).compile().as_text()
    y, vjp = jax.vjp(lambda v: f(v, jnp.asarray(k)), jnp.asarray(x))
    xt = nchw(x).requires_grad_(True)
    yt = torch.nn.functional.conv2d(xt, torch.from_numpy(k.transpose(3, 2, 0, 1).copy()), stride=2, padding=2,
                                    groups=6)  # fmt: skip
    (gx,) = torch.autograd.grad(yt, xt, nchw(g))
    assert_close(y, nhwc(yt), 1e-5, err_msg="value")
    assert_close(vjp(jnp.asarray(g))[0], nhwc(gx), 1e-5, err_msg="input gradient")
    grouped = jax.jit(lambda v, w: conv_general(v, w, 1, 1, 1, 2))
    assert "convolution(" in grouped.lower(jnp.zeros((1, 8, 8, 4)), jnp.zeros((3, 3, 2, 4))).compile().as_text()
