"""The layers every network here is built from: torch.nn.Conv2d, BatchNorm2d (eval) and AdaptiveAvgPool2d in NHWC.

ReLU and max pooling are not here: a network calls them through its `ops` (see `rules.py`), so that the same
definition classifies, records switches, and replays them for projections.
"""

from __future__ import annotations

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


def conv2d(x: Array, kernel: Array, stride: int, padding: int) -> Array:
    """NHWC x HWIO convolution with symmetric zero padding, as torch.nn.Conv2d (no bias)."""
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


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
