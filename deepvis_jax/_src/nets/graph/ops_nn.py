"""Graph ops: convolution, normalization, pooling, resampling, reductions, softmax and matrix products."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ...pooling import pool_padding
from ..layers import adaptive_avg_pool, conv2d, conv_general
from .values import (NHWC_AXIS, Bcast, Hwio, Img, Perm, as_img, axis_of, elementwise, logical, op, pairs, rank_of,
                     swap_last)

Array = jax.Array


# --------------------------------------------------------------------------------------------------------------
# Convolution, normalization, pooling, resampling
# --------------------------------------------------------------------------------------------------------------


@op("convolution")
def _convolution(ctx, x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    if rank_of(x) != 4:  # 1-d or 3-d convolutions: on the logical tensor
        return _conv_nd(logical(x), logical(weight), bias, stride, padding, dilation, transposed, output_padding,
                        groups)  # fmt: skip
    x = as_img(x).a
    k = weight.a if isinstance(weight, Hwio) else jnp.transpose(weight, (2, 3, 1, 0))
    (sh, sw), (ph, pw), (dh, dw) = pairs(stride), pairs(padding), pairs(dilation)
    if transposed:
        y = _conv_transpose(x, k, (sh, sw), (ph, pw), (dh, dw), pairs(output_padding), groups)
    elif groups == 1 and sh == sw and ph == pw and dh == dw == 1:
        y = conv2d(x, k, sh, ph)  # the library's convolution (its fast input gradient for strided stems)
    else:
        y = conv_general(x, k, (sh, sw), ((ph, ph), (pw, pw)), (dh, dw), groups)  # float64, depthwise: see conv_general
    if bias is not None:
        y = y + bias.reshape(1, 1, 1, -1)
    return Img(y)


def _conv_transpose(x, k, stride, padding, dilation, output_padding, groups):
    """torch's conv_transpose2d on NHWC with an HWIO-stored (kh, kw, O/groups, I) weight (torch's (I, O/g, kh, kw))."""
    if groups != 1:
        raise NotImplementedError("grouped transposed convolutions have no JAX lowering here")
    kh, kw = k.shape[:2]
    flipped = jnp.flip(k, (0, 1)).transpose(0, 1, 3, 2)  # (kh, kw, I, O)
    pads = [(d * (kk - 1) - p, d * (kk - 1) - p + op) for kk, p, d, op in zip((kh, kw), padding, dilation,
                                                                              output_padding)]  # fmt: skip
    return lax.conv_general_dilated(x, flipped, (1, 1), pads, lhs_dilation=stride, rhs_dilation=dilation,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip


def _conv_nd(x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    if transposed:
        raise NotImplementedError(f"transposed {x.ndim - 2}-d convolutions have no JAX lowering here")
    n = x.ndim - 2
    spec = "NC" + "DHW"[3 - n :]
    y = lax.conv_general_dilated(x, w, pairs(stride, n), [(p, p) for p in pairs(padding, n)],
                                 rhs_dilation=pairs(dilation, n), feature_group_count=groups,
                                 dimension_numbers=(spec, "OI" + spec[2:], spec))  # fmt: skip
    if bias is not None:
        y = y + bias.reshape((1, -1) + (1,) * n)
    return y


def _channel_vector(v, x) -> Any:
    """A per-channel vector shaped to broadcast against `x` (an `Img`, or a logical tensor with channels at 1)."""
    if isinstance(x, Img):
        return v.reshape(1, 1, 1, -1)
    return v.reshape((1, -1) + (1,) * (jnp.ndim(x) - 2))


@op("_native_batch_norm_legit_no_training")
def _batch_norm(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
    """BatchNorm in eval mode as a scale and a shift (linear in the data)."""
    scale = lax.rsqrt(running_var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -running_mean * scale
    if bias is not None:
        shift = shift + bias
    arr = x.a if isinstance(x, Img) else logical(x)
    y = arr * _channel_vector(scale, x) + _channel_vector(shift, x)
    return (Img(y) if isinstance(x, Img) else y), None, None


@op("native_layer_norm")
def _layer_norm(ctx, x, normalized_shape, weight, bias, eps):
    axes = tuple(range(-len(normalized_shape), 0))

    def norm(v):
        mean = jnp.mean(v, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(v - mean), axis=axes, keepdims=True)
        return (v - mean) * lax.rsqrt(var + eps)

    y = ctx.nonlinear(norm, logical(x))
    if weight is not None:
        y = elementwise(jnp.multiply, y, weight)
    if bias is not None:
        y = elementwise(jnp.add, y, bias)
    return y, None, None


@op("native_group_norm")
def _group_norm(ctx, x, weight, bias, n, c, hxw, group, eps):
    def norm(v):
        v = logical(v)
        g = v.reshape(v.shape[0], group, -1)
        mean = jnp.mean(g, axis=2, keepdims=True)
        var = jnp.mean(jnp.square(g - mean), axis=2, keepdims=True)
        return ((g - mean) * lax.rsqrt(var + eps)).reshape(v.shape)

    y = ctx.nonlinear(norm, logical(x))
    if weight is not None:
        y = y * _channel_vector(weight, y)
    if bias is not None:
        y = y + _channel_vector(bias, y)
    return y, None, None


@op("max_pool2d_with_indices")
def _max_pool(ctx, x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    """torch's max pooling through ``ops.max_pool``; ceil mode as extra bottom/right padding (`pool_padding`)."""
    x = as_img(x)
    kernel = pairs(kernel_size)
    stride = pairs(stride) if stride else kernel
    if pairs(dilation) != (1, 1):
        raise NotImplementedError("dilated max pooling has no JAX lowering here")
    pads = pool_padding(x.a.shape[1:3], kernel, stride, pairs(padding), ceil_mode)
    return Img(ctx.ops.max_pool(x.a, kernel, stride, pads)), None


def _avg_divisor(H, W, kernel, stride, padding, count_include_pad, out_hw) -> np.ndarray:
    """torch's avg_pool2d divisor of every output position (static sizes): the window clipped to the padded input
    (count_include_pad) or to the input itself."""
    divs = []
    for size, k, s, p, out in zip((H, W), kernel, stride, padding, out_hw):
        start = np.arange(out) * s - p
        end = np.minimum(start + k, size + p)
        if count_include_pad:
            d = end - start
        else:
            d = np.minimum(end, size) - np.maximum(start, 0)
        divs.append(d)
    return np.outer(divs[0], divs[1])


@op("avg_pool2d")
def _avg_pool(ctx, x, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
              divisor_override=None):  # fmt: skip
    x = as_img(x).a
    kernel = pairs(kernel_size)
    stride = pairs(stride) if stride else kernel
    padding = pairs(padding)
    H, W = x.shape[1:3]
    pads = pool_padding((H, W), kernel, stride, padding, ceil_mode)
    # a numpy zero: a concrete identity, so that JAX uses its differentiable window sum
    summed = lax.reduce_window(x, np.zeros((), x.dtype), lax.add, (1, *kernel, 1), (1, *stride, 1),
                               ((0, 0), *pads, (0, 0)))  # fmt: skip
    if divisor_override:
        return Img(summed / divisor_override)
    full = ctx.full_hw() or (H, W)
    out_hw = summed.shape[1:3]
    if full == (H, W):
        div = _avg_divisor(H, W, kernel, stride, padding, count_include_pad, out_hw)
        return Img(summed / jnp.asarray(div, x.dtype)[None, :, :, None])
    # a crop: the divisor of the whole map's windows, at the crop's place in it
    full_pads = pool_padding(full, kernel, stride, padding, ceil_mode)
    full_out = tuple((n + a + b - k) // s + 1 for n, k, s, (a, b) in zip(full, kernel, stride, full_pads))
    div = _avg_divisor(*full, kernel, stride, padding, count_include_pad, full_out)
    div = ctx.window(jnp.asarray(div, x.dtype)[None, :, :, None], out_hw, 1.0)
    return Img(summed / div)


@op("_adaptive_avg_pool2d")
def _adaptive_avg(ctx, x, output_size):
    return Img(adaptive_avg_pool(as_img(x).a, tuple(pairs(output_size))))


def _nearest_index(n_in: int, n_out: int, scale) -> np.ndarray:
    s = (1.0 / scale) if scale else n_in / n_out
    return np.minimum(np.floor(np.arange(n_out) * s).astype(np.int64), n_in - 1)


@op("upsample_nearest2d.vec", "upsample_nearest2d")
def _upsample_nearest(ctx, x, output_size, scale_factors=None):
    x = as_img(x).a
    H, W = x.shape[1:3]
    scales = pairs(scale_factors) if scale_factors else (None, None)
    out = output_size or [int(math.floor(n * s)) for n, s in zip((H, W), scales)]
    rows = _nearest_index(H, out[0], scales[0])
    cols = _nearest_index(W, out[1], scales[1])
    return Img(jnp.take(jnp.take(x, rows, axis=1), cols, axis=2))


def _bilinear_matrix(n_in: int, n_out: int, align_corners: bool, scale, dtype) -> np.ndarray:
    """(n_out, n_in) interpolation weights of torch's bilinear upsampling along one axis."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        if align_corners:
            src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            s = (1.0 / scale) if scale else n_in / n_out
            src = max((i + 0.5) * s - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        m[i, i0] += 1 - lam
        m[i, i1] += lam
    return m.astype(dtype)


@op("upsample_bilinear2d.vec", "upsample_bilinear2d")
def _upsample_bilinear(ctx, x, output_size, align_corners, scale_factors=None):
    x = as_img(x).a
    H, W = x.shape[1:3]
    scales = pairs(scale_factors) if scale_factors else (None, None)
    out = output_size or [int(math.floor(n * s)) for n, s in zip((H, W), scales)]
    dt = np.dtype(x.dtype)
    mh = _bilinear_matrix(H, out[0], align_corners, scales[0], dt)
    mw = _bilinear_matrix(W, out[1], align_corners, scales[1], dt)
    return Img(jnp.einsum("ih,nhwc,jw->nijc", mh, x, mw, precision=lax.Precision.HIGHEST))


@op("constant_pad_nd")
def _pad(ctx, x, pad, value=0.0):
    rank = rank_of(x)
    widths = [(0, 0, 0)] * rank
    for i in range(len(pad) // 2):
        widths[rank - 1 - i] = (pad[2 * i], pad[2 * i + 1], 0)
    if isinstance(x, Img):
        nhwc = [(0, 0, 0)] * 4
        for d in range(4):
            nhwc[NHWC_AXIS[d]] = widths[d]
        return Img(lax.pad(x.a, jnp.asarray(value, x.a.dtype), nhwc))
    return lax.pad(x, jnp.asarray(value, x.dtype), widths)


# --------------------------------------------------------------------------------------------------------------
# Reductions, softmax, matrix products
# --------------------------------------------------------------------------------------------------------------


def _reduce(fn, x, dims, keepdim):
    rank = rank_of(x)
    dims = tuple(range(rank)) if dims is None or len(dims) == 0 else tuple(axis_of(d, rank) for d in dims)
    if isinstance(x, Img):
        y = Img(fn(x.a, axis=tuple(NHWC_AXIS[d] for d in dims), keepdims=True))
        return y if keepdim else jnp.squeeze(logical(y), dims)
    return fn(x, axis=dims, keepdims=keepdim)


@op("mean.dim", "mean.default", "mean")
def _mean(ctx, x, dim=None, keepdim=False, dtype=None):
    return _reduce(jnp.mean, x, dim, keepdim)


@op("sum.dim_IntList", "sum.default", "sum")
def _sum(ctx, x, dim=None, keepdim=False, dtype=None):
    return _reduce(jnp.sum, x, dim, keepdim)


@op("amax", "amin")
def _amax(ctx, x, dim=(), keepdim=False):
    fn = jnp.max if ctx.node_op == "amax" else jnp.min
    return ctx.nonlinear(lambda v: _reduce(fn, v, dim, keepdim), x)


@op("any.dim", "any.dims", "any.default", "any", "all.dim", "all.default", "all")
def _any(ctx, x, dim=None, keepdim=False):
    fn = jnp.any if ctx.node_op.startswith("any") else jnp.all
    return _reduce(fn, x, None if dim is None else pairs(dim, 1), keepdim)


@op("var.correction", "var.dim")
def _var(ctx, x, dim=None, correction=1, keepdim=False):
    def fn(v):
        v = logical(v)
        return jnp.var(v, axis=None if dim is None else tuple(dim), ddof=correction, keepdims=keepdim)

    return ctx.nonlinear(fn, x)


@op("_softmax", "_log_softmax")
def _softmax(ctx, x, dim, half_to_float=False):
    fn = jax.nn.softmax if ctx.node_op == "_softmax" else jax.nn.log_softmax
    return ctx.nonlinear(lambda v: fn(logical(v), axis=dim), x)


def _swapped(v) -> tuple[Array, bool]:
    """(array, whether the logical tensor is that array with its last two axes swapped)."""
    if isinstance(v, Perm):
        n = v.a.ndim
        if tuple(v.dims) == swap_last(n):
            return v.a, True
    return logical(v), False


def matmul(a, b) -> Array:
    """torch's mm / bmm of (..., M, K) and (..., K, N), reading a swapped operand through the dimension numbers and
    an expanded constant matrix (`Bcast`, either side) once, without its copies."""
    if isinstance(b, Bcast) and rank_of(b.a) == 2:
        (x, tx), (y, ty) = _swapped(a), _swapped(b.a)  # (..., M, K) by (K, N): the batch axes stay x's, in front
        nb = x.ndim - 2
        return lax.dot_general(x, y, (((nb if tx else nb + 1,), (1 if ty else 0,)), ((), ())))
    if isinstance(a, Bcast) and rank_of(a.a) == 2:  # (M, K) by (..., K, N): as (b^T a^T)^T
        b = logical(b)
        return jnp.swapaxes(matmul(Perm(b, swap_last(b.ndim)), Bcast(Perm(logical(a.a), (1, 0)), a.lead)), -1, -2)
    (x, tx), (y, ty) = _swapped(a), _swapped(b)
    nb = x.ndim - 2
    batch = tuple(range(nb))
    return lax.dot_general(x, y, (((nb if tx else nb + 1,), (nb + 1 if ty else nb,)), (batch, batch)))


@op("addmm")
def _addmm(ctx, bias, a, b, beta=1, alpha=1):
    if ctx.is_data(1) and ctx.is_data(2):
        prod = ctx.nonlinear(matmul, a, b)
    else:
        prod = matmul(a, b)
    return elementwise(jnp.add, bias if beta == 1 else beta * bias, prod if alpha == 1 else alpha * prod)


@op("mm", "bmm")
def _mm(ctx, a, b):
    if ctx.is_data(0) and ctx.is_data(1):
        return ctx.nonlinear(matmul, a, b)
    return matmul(a, b)
