"""The layers every network here is built from: torch.nn.Conv2d, BatchNorm2d (eval) and AdaptiveAvgPool2d in NHWC.

ReLU and max pooling are not here: a network calls them through its `ops` (see `rules.py`), so that the same
definition classifies, records switches, and replays them for projections.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array

BN_EPS = 1e-5

# torchvision's initialization of VGG and ResNet convs: kaiming normal (fan_out, relu); linears N(0, 0.01).
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
dense_init = nn.initializers.normal(0.01)


def _conv(x: Array, kernel: Array, stride: int, padding: int) -> Array:
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def space_to_depth_conv(x: Array, kernel: Array, stride: int, padding: int) -> Array:
    """The same convolution as ``conv2d(x, kernel, stride, padding)``, computed as a stride-1 convolution of the
    input folded ``stride x stride`` into its channels (space to depth) with the kernel folded alike.

    Its transpose (the input gradient) is then a stride-1 transposed convolution. XLA:CPU computes the transpose of
    a strided convolution with few input channels (AlexNet's 11x11/4 conv1, a ResNet's 7x7/2 stem) as a
    dilated convolution far below its forward speed; this one runs at about forward speed.
    """
    n, H, W, C = x.shape
    kh, kw, _, O = kernel.shape
    s = stride
    oh, ow = (H + 2 * padding - kh) // s + 1, (W + 2 * padding - kw) // s + 1
    KH, KW = -(-kh // s), -(-kw // s)  # the kernel, in blocks of s x s
    Hb, Wb = oh + KH - 1, ow + KW - 1  # the input rows and columns the output reads, in blocks
    xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (padding, s * Hb - H - padding, 0),
                                              (padding, s * Wb - W - padding, 0), (0, 0, 0)))  # fmt: skip
    xs = xp.reshape(n, Hb, s, Wb, s, C).transpose(0, 1, 3, 2, 4, 5).reshape(n, Hb, Wb, s * s * C)
    kp = jnp.pad(kernel, ((0, s * KH - kh), (0, s * KW - kw), (0, 0), (0, 0)))
    ks = kp.reshape(KH, s, KW, s, C, O).transpose(0, 2, 1, 3, 4, 5).reshape(KH, KW, s * s * C, O)
    return _conv(xs, ks, 1, 0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _strided_conv(x: Array, kernel: Array, stride: int, padding: int) -> Array:
    return _conv(x, kernel, stride, padding)


@_strided_conv.defjvp
def _strided_conv_jvp(stride, padding, primals, tangents):
    """The value by the plain strided convolution; the tangent in x through `space_to_depth_conv`, so that
    reverse mode transposes a stride-1 convolution."""
    (x, kernel), (dx, dkernel) = primals, tangents
    return _conv(x, kernel, stride, padding), (space_to_depth_conv(dx, kernel, stride, padding)
                                               + _conv(x, dkernel, stride, padding))  # fmt: skip


# Space to depth pays off when the folded input stays narrow: AlexNet's conv1 (3 x 4 x 4 = 48 channels) and a
# ResNet's stem (3 x 2 x 2) gain 1.3-2.5x on their input gradient; a 3x3/2 conv over 64 channels loses.
SPACE_TO_DEPTH_MAX_CHANNELS = 64


def _pair(v) -> tuple:
    return (v, v) if isinstance(v, int) else tuple(v)


def _pads(padding) -> tuple:
    """``p``, ``(ph, pw)`` or ``((top, bottom), (left, right))`` as the last."""
    return tuple(_pair(p) for p in _pair(padding))


def matmul_conv(x: Array, kernel: Array, stride, padding, dilation=1, groups: int = 1) -> Array:
    """The same convolution as ``conv_general(x, kernel, stride, padding, dilation, groups)``, computed as one
    matrix product: every output position's input window, read by a single gather (im2col), times the kernel
    reshaped to a matrix (per group: a batched product). A depthwise convolution (one input channel per group)
    is instead a sum over the kernel's taps of strided slices of the input times per-channel weights.

    What float64 convolutions run as on CPU. XLA:CPU calls a library kernel (Eigen, YNNPACK, oneDNN) only for
    float32 and float16 convolutions; any other type, float64 included, becomes a loop nest of its own, 10-100x
    slower than this on VGG's and AlexNet's layers, while its matrix products call Eigen's GEMM at float64 too.
    Gradients by autodiff (the gather transposes to a scatter-add). Memory: the windows hold kh * kw times the
    input map (its gradient as much in reverse mode).
    """
    kh, kw, Cg, O = kernel.shape
    (sh, sw), (dh, dw), ((top, bottom), (left, right)) = _pair(stride), _pair(dilation), _pads(padding)
    xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)))
    n, H, W, C = xp.shape
    oh, ow = (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1
    if groups > 1 and Cg == 1:  # output channel g * m + r reads input channel g
        m = O // groups
        h, w = sh * (oh - 1) + 1, sw * (ow - 1) + 1  # the rows and columns one tap's strided slice spans
        taps = [lax.slice(xp, (0, i * dh, j * dw, 0), (n, i * dh + h, j * dw + w, C), (1, sh, sw, 1))
                for i in range(kh) for j in range(kw)]  # fmt: skip
        weights = kernel.reshape(kh * kw, 1, 1, 1, O)
        return sum((jnp.repeat(t, m, axis=-1) if m > 1 else t) * weights[i] for i, t in enumerate(taps))
    rows = sh * np.arange(oh)[:, None, None, None] + dh * np.arange(kh)[None, None, :, None]  # (oh, 1, kh, 1)
    cols = sw * np.arange(ow)[None, :, None, None] + dw * np.arange(kw)[None, None, None, :]  # (1, ow, 1, kw)
    windows = xp[:, rows, cols]  # (n, oh, ow, kh, kw, C)
    if groups == 1:
        return jnp.dot(windows.reshape(n, oh, ow, kh * kw * Cg), kernel.reshape(kh * kw * Cg, O))
    windows = windows.reshape(n, oh, ow, kh, kw, groups, Cg)  # input channel g * Cg + c, output g * O/groups + o
    y = jnp.einsum("nyxhwgc,hwcgo->nyxgo", windows, kernel.reshape(kh, kw, Cg, groups, O // groups))
    return y.reshape(n, oh, ow, O)


def xla_conv2d(x: Array, kernel: Array, stride: int, padding: int) -> Array:
    """`conv2d` as XLA's convolution, the strided ones over few channels differentiated through
    `space_to_depth_conv`: what every float32 convolution runs as."""
    if stride > 1 and x.shape[-1] * stride * stride <= SPACE_TO_DEPTH_MAX_CHANNELS:
        return _strided_conv(x, kernel, stride, padding)
    return _conv(x, kernel, stride, padding)


def _kernel_exceeds_map(x: Array, kernel: Array) -> bool:
    """Whether the kernel is taller or wider than the input map (a ResNet's 3x3 convs on layer4's 2x2 maps at 64 px).
    XLA:CPU runs such a convolution 30-80x slower than `matmul_conv` (512 channels, 2x2 maps, batch 64: 3.6 s
    against 44 ms; torch 127 ms), so on CPU those go through `matmul_conv` in every dtype."""
    return kernel.shape[0] > x.shape[1] or kernel.shape[1] > x.shape[2]


def conv2d(x: Array, kernel: Array, stride: int, padding: int) -> Array:
    """NHWC x HWIO convolution with symmetric zero padding, as torch.nn.Conv2d (no bias).

    A strided convolution over few input channels differentiates through `space_to_depth_conv` (same values;
    a faster input gradient on CPU). A float64 convolution compiled for CPU is `matmul_conv` (the same values to
    rounding: XLA:CPU has no float64 convolution kernel), on other platforms XLA's convolution; so is, on CPU, a
    convolution whose kernel exceeds its input map (`_kernel_exceeds_map`)."""
    if x.dtype == jnp.float64 or _kernel_exceeds_map(x, kernel):
        return lax.platform_dependent(x, kernel, cpu=functools.partial(matmul_conv, stride=stride, padding=padding),
                                      default=functools.partial(xla_conv2d, stride=stride, padding=padding))
    return xla_conv2d(x, kernel, stride, padding)


def xla_conv_general(x: Array, kernel: Array, stride, padding, dilation=1, groups: int = 1) -> Array:
    """`conv_general` as XLA's convolution."""
    return lax.conv_general_dilated(x, kernel, _pair(stride), _pads(padding), rhs_dilation=_pair(dilation),
                                    feature_group_count=groups, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_general(x: Array, kernel: Array, stride, padding, dilation=1, groups: int = 1) -> Array:
    """NHWC x HWIO convolution as torch's conv2d with ``groups`` (the kernel's I is the input channels / groups),
    per-axis ``stride`` and ``dilation`` (an int or ``(h, w)``) and zero ``padding`` (an int, ``(h, w)`` or
    ``((top, bottom), (left, right))``), no bias. XLA's convolution, except compiled for CPU: float64 as in
    `conv2d`, and a depthwise convolution (one input channel per group) in any dtype, by `matmul_conv`'s sum over
    taps (XLA:CPU's own depthwise convolution is far slower; docs/performance.md), and a kernel that exceeds its
    input map (`_kernel_exceeds_map`)."""
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if x.dtype == jnp.float64 or (groups > 1 and kernel.shape[2] == 1) or _kernel_exceeds_map(x, kernel):
        return lax.platform_dependent(x, kernel, cpu=functools.partial(matmul_conv, **args),
                                      default=functools.partial(xla_conv_general, **args))
    return xla_conv_general(x, kernel, **args)


def bn_scale_shift(params: dict, stats: dict) -> tuple[Array, Array]:
    """Eval-mode BatchNorm as y = x * scale + shift."""
    scale = params["scale"] * lax.rsqrt(stats["var"] + BN_EPS)
    return scale, params["bias"] - stats["mean"] * scale


def _adaptive_matrix(n: int, o: int, dtype) -> np.ndarray:
    """(o, n) averaging matrix of torch's AdaptiveAvgPool along one axis: bin i is [floor(i n/o), ceil((i+1) n/o))."""
    m = np.zeros((o, n), dtype=np.float64)
    for i in range(o):
        start, end = (i * n) // o, -((-(i + 1) * n) // o)
        m[i, start:end] = 1.0 / (end - start)
    return m.astype(dtype)


def adaptive_avg_pool(x: Array, size: tuple[int, int]) -> Array:
    """torch.nn.AdaptiveAvgPool2d(size) on NHWC; the identity when the input already has that size."""
    h, w = x.shape[1:3]
    if (h, w) == tuple(size):
        return x
    dtype = np.dtype(x.dtype)
    mh, mw = _adaptive_matrix(h, size[0], dtype), _adaptive_matrix(w, size[1], dtype)
    return jnp.einsum("ih,nhwc,jw->nijc", mh, x, mw, precision=lax.Precision.HIGHEST)


class Conv2d(nn.Module):
    """torch.nn.Conv2d in NHWC. `channels` computes only those output channels (used by `construct`)."""

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: Array, channels: Array | None = None) -> Array:
        kernel = self.param("kernel", conv_init, (self.kernel, self.kernel, x.shape[-1], self.features), x.dtype)
        if channels is not None:
            kernel = kernel[..., channels]
        y = conv2d(x, kernel, self.stride, self.padding)
        if not self.use_bias:
            return y
        bias = self.param("bias", nn.initializers.zeros, (self.features,), x.dtype)
        return y + (bias if channels is None else bias[channels]).reshape(1, 1, 1, -1)


class BatchNorm2d(nn.Module):
    """torch.nn.BatchNorm2d in eval mode (running statistics in the "batch_stats" collection)."""

    features: int

    @nn.compact
    def __call__(self, x: Array, channels: Array | None = None) -> Array:
        f, dt = self.features, x.dtype
        params = {"scale": self.param("scale", nn.initializers.ones, (f,), dt),
                  "bias": self.param("bias", nn.initializers.zeros, (f,), dt)}  # fmt: skip
        stats = {"mean": self.variable("batch_stats", "mean", jnp.zeros, (f,), dt).value,
                 "var": self.variable("batch_stats", "var", jnp.ones, (f,), dt).value}  # fmt: skip
        scale, shift = bn_scale_shift(params, stats)
        if channels is not None:
            scale, shift = scale[channels], shift[channels]
        return x * scale.reshape(1, 1, 1, -1) + shift.reshape(1, 1, 1, -1)
