"""The op table of graph networks: one small pure JAX function per core ATen op that `torch.export` captures.

`OPS` maps an op's name (the ATen op without ``aten.`` and ``.default``: ``"convolution"``, ``"add.Tensor"``,
``"max_pool2d_with_indices"``; Python's arithmetic on sizes as ``"sym.mul"``; ``"getitem"``) to ``fn(ctx, *args,
**kwargs)``, with torch's argument order and defaults. The interpreter (`graph.py`) resolves the arguments (other
nodes' values, static constants) and calls it.

Layouts. A 4-D image tensor that torch holds as NCHW is held here as an `Img`: the same tensor stored NHWC, the
library's layout and what XLA:CPU convolves fastest. Ops that know about layouts (convolution, pooling, BatchNorm,
elementwise arithmetic, activations, concatenation, slicing, padding, reductions) keep `Img` values as they are;
every other op (view, matmul, index, ...) sees the logical NCHW tensor (`logical`). ``permute(x, [0, 2, 3, 1])``
of an `Img` is its storage itself, and ``permute(y, [0, 3, 1, 2])`` of a 4-D tensor is an `Img` of it, so the
channels-last blocks of ConvNeXt and Swin cost no transposes. Convolution weights are stored HWIO (`Hwio`).

Nonlinearities. Every ReLU, rectifier-like activation and max-pool goes through the ``ops`` object of `rules.py`
(``ops.relu``, ``ops.activation``, ``ops.max_pool``); every other op that is nonlinear in the data (sigmoid,
softmax, layer norm, the product of two data tensors, ...) through ``ctx.nonlinear``, which calls
``ops.linearized`` when its inputs depend on the image (and computes it plainly when they are constants).
Float dtypes named in the graph (``full(..., dtype=float32)``) mean the model's float dtype, so that a float64
model stays float64.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..pooling import pool_padding
from .layers import adaptive_avg_pool, conv2d

Array = jax.Array


class Img(NamedTuple):
    """A logical NCHW tensor stored NHWC (``a``)."""

    a: Array


class Hwio(NamedTuple):
    """A convolution weight, logically (O, I, kh, kw), stored (kh, kw, I, O) (``a``)."""

    a: Array


class Perm(NamedTuple):
    """A tensor whose last two axes torch swapped (``permute``): logically ``transpose(a, dims)``. Kept lazy so that
    a matrix product reads it through its dimension numbers (XLA:CPU would otherwise copy a linear layer's
    weight on every call)."""

    a: Array
    dims: tuple


class DType(NamedTuple):
    """A torch dtype named in an op's arguments (``"float32"``, ``"int64"``, ``"bool"``)."""

    name: str


def logical(v: Any) -> Any:
    """The tensor torch would hold: `Img` -> NCHW, `Hwio` -> OIHW; anything else as it is."""
    if isinstance(v, Img):
        return jnp.transpose(v.a, (0, 3, 1, 2))
    if isinstance(v, Hwio):
        return jnp.transpose(v.a, (3, 2, 0, 1))
    if isinstance(v, Perm):
        return jnp.transpose(v.a, v.dims)
    return v


def as_img(v: Any) -> Img:
    """An `Img` of a 4-D NCHW tensor."""
    if isinstance(v, Img):
        return v
    v = logical(v)
    if jnp.ndim(v) != 4:
        raise ValueError(f"expected a 4-D NCHW tensor, got shape {jnp.shape(v)}")
    return Img(jnp.transpose(v, (0, 2, 3, 1)))


NHWC_AXIS = (0, 3, 1, 2)  # the NHWC axis of each NCHW axis


def _rank(v: Any) -> int:
    if isinstance(v, Perm):
        return v.a.ndim
    return 4 if isinstance(v, (Img, Hwio)) else int(jnp.ndim(v))


def logical_shape(v: Any) -> tuple[int, ...]:
    if isinstance(v, Img):
        n, h, w, c = v.a.shape
        return (n, c, h, w)
    if isinstance(v, Hwio):
        kh, kw, i, o = v.a.shape
        return (o, i, kh, kw)
    if isinstance(v, Perm):
        return tuple(v.a.shape[d] for d in v.dims)
    return tuple(jnp.shape(v))


def _axis(dim: int, rank: int) -> int:
    return dim + rank if dim < 0 else dim


class Ctx:
    """What an op sees besides its arguments: the `ops` object, the model's float dtype, which of the node's
    positional arguments depend on the image, and (for crops) the node's geometry. Set by the interpreter."""

    def __init__(self, ops, dtype, crop=None):
        self.ops, self.dtype, self.crop = ops, dtype, crop
        self.data: tuple = ()  # per positional argument: does it depend on the image
        self.node_op = ""

    def is_data(self, k: int) -> bool:
        return k < len(self.data) and self.data[k]

    def full_hw(self) -> tuple[int, int] | None:
        """On a crop: the whole image's map size of the node's first input; None when not on a crop."""
        return None if self.crop is None else self.crop.full_in_hw()

    def window(self, a: Array, size: tuple, fill) -> Array:
        """On a crop: the window of `a` (a map of the whole image's size, NHWC) at the node's output place."""
        return self.crop.window(a, size, fill)

    def dtype_of(self, d: DType | None, default=None):
        """A graph dtype as a JAX dtype: floats are the model's dtype; 64-bit ints only with x64 on."""
        if d is None:
            return default
        if d.name in ("float16", "bfloat16", "float32", "float64"):
            return self.dtype
        return jax.dtypes.canonicalize_dtype(np.dtype(d.name))

    def nonlinear(self, fn: Callable, *args):
        """``fn(*args)`` through ``ops.linearized`` when the node depends on the image (projections then pass its
        true gradient at the recorded point), plainly otherwise. `Img` arguments and results keep their layout."""
        if not any(self.data):
            return fn(*args)
        args = tuple(a if isinstance(a, Img) else logical(a) for a in args)  # arrays for the record
        img_in = [isinstance(a, Img) for a in args]
        img_out = []

        def arrays_fn(*arrays):
            out = fn(*(Img(a) if m else a for a, m in zip(arrays, img_in)))
            img_out[:] = [isinstance(out, Img)]
            return out.a if isinstance(out, Img) else out

        y = self.ops.linearized(arrays_fn, *(a.a if m else a for a, m in zip(args, img_in)))
        return Img(y) if img_out and img_out[0] else y


OPS: dict[str, Callable] = {}


def op(*names: str):
    def register(fn):
        for n in names:
            OPS[n] = fn
        return fn

    return register


# --------------------------------------------------------------------------------------------------------------
# Elementwise arithmetic, layout-aware
# --------------------------------------------------------------------------------------------------------------


def _nhwc_operand(v: Any) -> Any:
    """An operand broadcast against an `Img`, in NHWC: scalars stay; a tensor of rank <= 4 gets leading unit axes
    (torch's broadcasting) and its last three axes moved to H, W, C."""
    if isinstance(v, Img):
        return v.a
    if _rank(v) == 0:
        return v
    v = jnp.reshape(v, (1,) * (4 - jnp.ndim(v)) + tuple(jnp.shape(v)))
    return jnp.transpose(v, (0, 2, 3, 1))


def _same_rank(args) -> tuple:
    """Tensors given leading unit axes up to the largest rank (torch's broadcasting; JAX may refuse implicit rank
    promotion); scalars as they are."""
    rank = max((_rank(a) for a in args), default=0)
    return tuple(a if _rank(a) in (0, rank) else jnp.reshape(a, (1,) * (rank - _rank(a)) + tuple(jnp.shape(a)))
                 for a in args)  # fmt: skip


def elementwise(fn: Callable, *args) -> Any:
    """``fn`` of tensors (and scalars) with torch's broadcasting; `Img` in, `Img` out when every operand has rank
    at most 4."""
    if any(isinstance(a, Img) for a in args):
        if all(_rank(a) <= 4 for a in args):
            return Img(fn(*(_nhwc_operand(a) for a in args)))
        args = tuple(logical(a) for a in args)
    return fn(*_same_rank(args))


@op("add.Tensor", "add.Scalar")
def _add(ctx, a, b, alpha=1):
    return elementwise(lambda x, y: x + (y if alpha == 1 else y * alpha), a, b)


@op("sub.Tensor", "sub.Scalar")
def _sub(ctx, a, b, alpha=1):
    return elementwise(lambda x, y: x - (y if alpha == 1 else y * alpha), a, b)


@op("rsub.Scalar", "rsub.Tensor")
def _rsub(ctx, a, b, alpha=1):
    return elementwise(lambda x, y: y - (x if alpha == 1 else x * alpha), a, b)


@op("mul.Tensor", "mul.Scalar")
def _mul(ctx, a, b):
    if ctx.is_data(0) and ctx.is_data(1):  # the product of two data tensors (a gate): linearized
        return ctx.nonlinear(lambda x, y: elementwise(jnp.multiply, x, y), a, b)
    return elementwise(jnp.multiply, a, b)


def _true_divide(x, y):
    return x / y


@op("div.Tensor", "div.Scalar")
def _div(ctx, a, b):
    if ctx.is_data(1):  # dividing by data is nonlinear
        return ctx.nonlinear(lambda x, y: elementwise(_true_divide, x, y), a, b)
    return elementwise(_true_divide, a, b)


@op("div.Tensor_mode", "div.Scalar_mode")
def _div_mode(ctx, a, b, rounding_mode=None):
    fn = {None: _true_divide, "floor": jnp.floor_divide, "trunc": lambda x, y: jnp.trunc(x / y)}[rounding_mode]
    if rounding_mode is None and ctx.is_data(1):
        return ctx.nonlinear(lambda x, y: elementwise(fn, x, y), a, b)
    return elementwise(fn, a, b)


@op("neg")
def _neg(ctx, x):
    return elementwise(jnp.negative, x)


def _unary_nonlinear(fn):
    return lambda ctx, x: ctx.nonlinear(lambda v: elementwise(fn, v), x)


for _name, _fn in {
    "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "exp": jnp.exp, "log": jnp.log, "sqrt": jnp.sqrt,
    "rsqrt": lax.rsqrt, "reciprocal": jnp.reciprocal, "erf": jax.scipy.special.erf, "abs": jnp.abs,
    "sin": jnp.sin, "cos": jnp.cos, "log1p": jnp.log1p, "expm1": jnp.expm1,
    "hardsigmoid": lambda x: jnp.clip(x + 3, 0, 6) / 6,  # torch: relu6(x + 3) / 6
}.items():  # fmt: skip
    OPS[_name] = _unary_nonlinear(_fn)

for _name, _fn in {"sign": jnp.sign, "floor": jnp.floor, "ceil": jnp.ceil, "round": jnp.round,
                   "trunc": jnp.trunc, "logical_not": jnp.logical_not, "bitwise_not": jnp.invert,
                   "isnan": jnp.isnan, "isinf": jnp.isinf}.items():  # fmt: skip
    OPS[_name] = (lambda f: lambda ctx, x: elementwise(f, x))(_fn)  # piecewise constant: no gradient to pass

for _name, _fn in {"eq": jnp.equal, "ne": jnp.not_equal, "lt": jnp.less, "le": jnp.less_equal,
                   "gt": jnp.greater, "ge": jnp.greater_equal, "logical_and": jnp.logical_and,
                   "logical_or": jnp.logical_or, "bitwise_and": jnp.bitwise_and, "bitwise_or": jnp.bitwise_or,
                   "fmod": jnp.fmod, "remainder": jnp.remainder, "floor_divide": jnp.floor_divide}.items():  # fmt: skip
    for _overload in ("Tensor", "Scalar", "default"):
        OPS[f"{_name}.{_overload}" if _overload != "default" else _name] = (
            lambda f: lambda ctx, a, b: elementwise(f, a, b))(_fn)  # fmt: skip


@op("pow.Tensor_Scalar", "pow.Tensor_Tensor", "pow.Scalar")
def _pow(ctx, a, b):
    return ctx.nonlinear(lambda x, y: elementwise(jnp.power, x, y), a, b)


@op("maximum", "minimum")
def _maximum(ctx, a, b):
    fn = jnp.maximum if ctx.node_op == "maximum" else jnp.minimum
    return ctx.nonlinear(lambda x, y: elementwise(fn, x, y), a, b)


@op("clamp", "clamp.Tensor", "clamp_min", "clamp_max")
def _clamp(ctx, x, min=None, max=None):
    if ctx.node_op == "clamp_max":
        min, max = None, min

    def fn(v):
        return elementwise(lambda u: jnp.clip(u, min, max), v)

    return ctx.nonlinear(fn, x)


@op("where.self", "where.ScalarOther", "where.ScalarSelf", "where.Scalar")
def _where(ctx, cond, a, b):
    if ctx.is_data(0):  # a data-dependent choice: linearized, the condition passed as a float argument
        def fn(c, x, y):
            return elementwise(lambda cc, xx, yy: jnp.where(cc > 0.5, xx, yy), c, x, y)

        c = elementwise(lambda v: v.astype(ctx.dtype), cond)
        return ctx.nonlinear(fn, c, a, b)
    return elementwise(jnp.where, cond, a, b)


# --------------------------------------------------------------------------------------------------------------
# Rectifiers and activations: through ops
# --------------------------------------------------------------------------------------------------------------


def _through_ops(x, fn):
    return Img(fn(x.a)) if isinstance(x, Img) else fn(logical(x))


@op("relu")
def _relu(ctx, x):
    return _through_ops(x, ctx.ops.relu)


@op("hardtanh")
def _hardtanh(ctx, x, min_val=-1.0, max_val=1.0):
    return _through_ops(x, lambda a: ctx.ops.activation(a, "hardtanh", min_val=min_val, max_val=max_val))


@op("leaky_relu")
def _leaky_relu(ctx, x, negative_slope=0.01):
    return _through_ops(x, lambda a: ctx.ops.activation(a, "leaky_relu", negative_slope=negative_slope))


@op("elu")
def _elu(ctx, x, alpha=1.0, scale=1.0, input_scale=1.0):
    if scale == 1 and input_scale == 1:
        return _through_ops(x, lambda a: ctx.ops.activation(a, "elu", alpha=alpha))

    def selu_like(v):
        return elementwise(lambda u: scale * jnp.where(u > 0, u, alpha * jnp.expm1(jnp.minimum(u, 0) * input_scale)), v)

    return ctx.nonlinear(selu_like, x)


@op("gelu")
def _gelu(ctx, x, approximate="none"):
    return _through_ops(x, lambda a: ctx.ops.activation(a, "gelu", approximate=approximate))


@op("silu")
def _silu(ctx, x):
    return _through_ops(x, lambda a: ctx.ops.activation(a, "silu"))


@op("hardswish")
def _hardswish(ctx, x):
    return _through_ops(x, lambda a: ctx.ops.activation(a, "hardswish"))


ACTIVATION_OPS = frozenset({"relu", "hardtanh", "leaky_relu", "elu", "gelu", "silu", "hardswish"})
"""Ops whose input a layer's ``pre_relu`` output is (when the layer's output node is one of them)."""


# --------------------------------------------------------------------------------------------------------------
# Convolution, normalization, pooling, resampling
# --------------------------------------------------------------------------------------------------------------


def _pairs(v, n: int = 2) -> tuple:
    v = tuple(v) if isinstance(v, (list, tuple)) else (v,)
    return v * n if len(v) == 1 else v


@op("convolution")
def _convolution(ctx, x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    if _rank(x) != 4:  # 1-d or 3-d convolutions: on the logical tensor
        return _conv_nd(logical(x), logical(weight), bias, stride, padding, dilation, transposed, output_padding,
                        groups)  # fmt: skip
    x = as_img(x).a
    k = weight.a if isinstance(weight, Hwio) else jnp.transpose(weight, (2, 3, 1, 0))
    (sh, sw), (ph, pw), (dh, dw) = _pairs(stride), _pairs(padding), _pairs(dilation)
    if transposed:
        y = _conv_transpose(x, k, (sh, sw), (ph, pw), (dh, dw), _pairs(output_padding), groups)
    elif groups == 1 and sh == sw and ph == pw and dh == dw == 1:
        y = conv2d(x, k, sh, ph)  # the library's convolution (its fast input gradient for strided stems)
    else:
        y = lax.conv_general_dilated(x, k, (sh, sw), ((ph, ph), (pw, pw)), rhs_dilation=(dh, dw),
                                     feature_group_count=groups, dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip
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
    y = lax.conv_general_dilated(x, w, _pairs(stride, n), [(p, p) for p in _pairs(padding, n)],
                                 rhs_dilation=_pairs(dilation, n), feature_group_count=groups,
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
    kernel = _pairs(kernel_size)
    stride = _pairs(stride) if stride else kernel
    if _pairs(dilation) != (1, 1):
        raise NotImplementedError("dilated max pooling has no JAX lowering here")
    pads = pool_padding(x.a.shape[1:3], kernel, stride, _pairs(padding), ceil_mode)
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
    kernel = _pairs(kernel_size)
    stride = _pairs(stride) if stride else kernel
    padding = _pairs(padding)
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
    return Img(adaptive_avg_pool(as_img(x).a, tuple(_pairs(output_size))))


def _nearest_index(n_in: int, n_out: int, scale) -> np.ndarray:
    s = (1.0 / scale) if scale else n_in / n_out
    return np.minimum(np.floor(np.arange(n_out) * s).astype(np.int64), n_in - 1)


@op("upsample_nearest2d.vec", "upsample_nearest2d")
def _upsample_nearest(ctx, x, output_size, scale_factors=None):
    x = as_img(x).a
    H, W = x.shape[1:3]
    scales = _pairs(scale_factors) if scale_factors else (None, None)
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
    scales = _pairs(scale_factors) if scale_factors else (None, None)
    out = output_size or [int(math.floor(n * s)) for n, s in zip((H, W), scales)]
    dt = np.dtype(x.dtype)
    mh = _bilinear_matrix(H, out[0], align_corners, scales[0], dt)
    mw = _bilinear_matrix(W, out[1], align_corners, scales[1], dt)
    return Img(jnp.einsum("ih,nhwc,jw->nijc", mh, x, mw, precision=lax.Precision.HIGHEST))


@op("constant_pad_nd")
def _pad(ctx, x, pad, value=0.0):
    rank = _rank(x)
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
    rank = _rank(x)
    dims = tuple(range(rank)) if dims is None or len(dims) == 0 else tuple(_axis(d, rank) for d in dims)
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
    return _reduce(fn, x, None if dim is None else _pairs(dim, 1), keepdim)


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
        if tuple(v.dims) == tuple(range(n - 2)) + (n - 1, n - 2):
            return v.a, True
    return logical(v), False


def matmul(a, b) -> Array:
    """torch's mm / bmm of (..., M, K) and (..., K, N), reading a swapped operand through the dimension numbers."""
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


# --------------------------------------------------------------------------------------------------------------
# Shapes, views, indexing, constants
# --------------------------------------------------------------------------------------------------------------


@op("view", "_unsafe_view", "reshape")
def _view(ctx, x, shape):
    return jnp.reshape(logical(x), tuple(int(d) for d in shape))


@op("permute")
def _permute(ctx, x, dims):
    dims = tuple(_axis(d, _rank(x)) for d in dims)
    if isinstance(x, Img) and dims == (0, 2, 3, 1):  # NCHW -> NHWC: the storage itself
        return x.a
    if not isinstance(x, (Img, Hwio, Perm)) and dims == (0, 3, 1, 2):  # NHWC -> NCHW: an Img of it
        return Img(x)
    n = len(dims)
    if n >= 2 and not isinstance(x, (Img, Hwio, Perm)) and dims == tuple(range(n - 2)) + (n - 1, n - 2):
        return Perm(x, dims)  # a matrix product reads it as it is
    return jnp.transpose(logical(x), dims)


@op("expand")
def _expand(ctx, x, size, implicit=False):
    x = logical(x)
    lead = len(size) - x.ndim
    shape = [int(s) if s != -1 else x.shape[i - lead] for i, s in enumerate(size)]
    return jnp.broadcast_to(x, shape)


@op("clone", "alias", "detach", "lift_fresh_copy", "contiguous")
def _identity(ctx, x, memory_format=None):
    return x


@op("_to_copy")
def _to_copy(ctx, x, dtype=None, layout=None, device=None, pin_memory=None, non_blocking=False,
             memory_format=None):  # fmt: skip
    if dtype is None:
        return x
    return elementwise(lambda v: v.astype(ctx.dtype_of(dtype)), x)


def _img_axis(x, dim: int) -> tuple[Any, int]:
    """(array, axis) for an op along logical axis `dim`: the storage axis of an `Img`, else the logical one."""
    if isinstance(x, Img):
        return x.a, NHWC_AXIS[_axis(dim, 4)]
    x = logical(x)
    return x, _axis(dim, jnp.ndim(x))


def _rewrap(x, y):
    return Img(y) if isinstance(x, Img) else y


@op("cat")
def _cat(ctx, tensors, dim=0):
    tensors = [t for t in tensors if not (_rank(t) == 1 and logical_shape(t)[0] == 0)]  # torch skips empty 1-d
    if all(isinstance(t, Img) for t in tensors):
        return Img(jnp.concatenate([t.a for t in tensors], axis=NHWC_AXIS[_axis(dim, 4)]))
    tensors = [logical(t) for t in tensors]
    return jnp.concatenate(tensors, axis=_axis(dim, tensors[0].ndim))


@op("slice.Tensor")
def _slice(ctx, x, dim=0, start=None, end=None, step=1):
    arr, axis = _img_axis(x, dim)
    index = [slice(None)] * arr.ndim
    index[axis] = slice(start, end, step)
    return _rewrap(x, arr[tuple(index)])


@op("select.int")
def _select(ctx, x, dim, index):
    return jnp.take(logical(x), index, axis=dim)


@op("split_with_sizes", "split.Tensor")
def _split(ctx, x, sizes, dim=0):
    arr, axis = _img_axis(x, dim)
    n = arr.shape[axis]
    if isinstance(sizes, int):  # split.Tensor: chunks of `sizes`
        sizes = [min(sizes, n - s) for s in range(0, n, sizes)]
    bounds = np.cumsum([0, *sizes])
    return [_rewrap(x, lax.slice_in_dim(arr, int(a), int(b), axis=axis)) for a, b in zip(bounds[:-1], bounds[1:])]


@op("unsqueeze")
def _unsqueeze(ctx, x, dim):
    x = logical(x)
    return jnp.expand_dims(x, _axis(dim, x.ndim + 1))


@op("squeeze.dims", "squeeze.dim", "squeeze.default", "squeeze")
def _squeeze(ctx, x, dim=None):
    x = logical(x)
    if dim is None:
        return jnp.squeeze(x)
    dims = tuple(_axis(d, x.ndim) for d in _pairs(dim, 1) if x.shape[_axis(d, x.ndim)] == 1)
    return jnp.squeeze(x, dims)


@op("flip")
def _flip(ctx, x, dims):
    return jnp.flip(logical(x), tuple(dims))


@op("roll")
def _roll(ctx, x, shifts, dims=()):
    return jnp.roll(logical(x), tuple(shifts), tuple(dims) or None)


@op("index.Tensor")
def _index(ctx, x, indices):
    return logical(x)[tuple(slice(None) if i is None else i for i in indices)]


@op("index_select")
def _index_select(ctx, x, dim, index):
    return jnp.take(logical(x), index, axis=dim)


@op("gather")
def _gather(ctx, x, dim, index, sparse_grad=False):
    return jnp.take_along_axis(logical(x), index, axis=dim)


@op("as_strided")
def _as_strided(ctx, x, size, stride, storage_offset=None):
    """torch's as_strided of a contiguous tensor: a gather from its flat storage."""
    flat = jnp.reshape(logical(x), (-1,))
    index = np.full(tuple(size), storage_offset or 0, np.int64)
    for axis, (n, s) in enumerate(zip(size, stride)):
        index = index + (np.arange(n) * s).reshape((1,) * axis + (n,) + (1,) * (len(size) - axis - 1))
    return jnp.take(flat, jnp.asarray(index.astype(np.int32)))


@op("slice_scatter")
def _slice_scatter(ctx, x, src, dim=0, start=None, end=None, step=1):
    x = logical(x)
    index = [slice(None)] * x.ndim
    index[_axis(dim, x.ndim)] = slice(start, end, step)
    return x.at[tuple(index)].set(logical(src).astype(x.dtype))


@op("select_scatter")
def _select_scatter(ctx, x, src, dim, index):
    x = logical(x)
    idx = [slice(None)] * x.ndim
    idx[_axis(dim, x.ndim)] = index
    return x.at[tuple(idx)].set(logical(src).astype(x.dtype))


@op("copy")
def _copy(ctx, x, src, non_blocking=False):
    shape = logical_shape(x)
    return jnp.broadcast_to(logical(src), shape).astype(logical(x).dtype)


@op("arange.start_step", "arange.start", "arange.default", "arange")
def _arange(ctx, *args, dtype=None, layout=None, device=None, pin_memory=None):
    dt = ctx.dtype_of(dtype) or (ctx.dtype if any(isinstance(a, float) for a in args) else ctx.dtype_of(DType("int64")))
    return jnp.arange(*args, dtype=dt)


@op("full", "new_full")
def _full(ctx, size, fill_value, *rest, dtype=None, layout=None, device=None, pin_memory=None):
    if ctx.node_op == "new_full":  # new_full(self, size, fill_value)
        size, fill_value = fill_value, rest[0]
    dt = ctx.dtype_of(dtype) or (ctx.dtype if isinstance(fill_value, float) else ctx.dtype_of(DType("int64")))
    return jnp.full(tuple(int(s) for s in size), fill_value, dt)


@op("full_like")
def _full_like(ctx, x, fill_value, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
    x = logical(x)
    return jnp.full(x.shape, fill_value, ctx.dtype_of(dtype, x.dtype))


@op("zeros_like", "ones_like", "empty_like")
def _zeros_like(ctx, x, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
    x = logical(x)
    return jnp.full(x.shape, 1 if ctx.node_op == "ones_like" else 0, ctx.dtype_of(dtype, x.dtype))


@op("empty.memory_format", "zeros", "ones")
def _empty(ctx, size, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
    return jnp.full(tuple(int(s) for s in size), 1 if ctx.node_op == "ones" else 0,
                    ctx.dtype_of(dtype) or ctx.dtype)  # fmt: skip


@op("scalar_tensor")
def _scalar_tensor(ctx, s, dtype=None, layout=None, device=None, pin_memory=None):
    return jnp.asarray(s, ctx.dtype_of(dtype) or ctx.dtype)


# --------------------------------------------------------------------------------------------------------------
# Python: tuples and sizes
# --------------------------------------------------------------------------------------------------------------


@op("getitem")
def _getitem(ctx, seq, i):
    return seq[i]


@op("sym_size.int")
def _sym_size(ctx, x, dim):
    return int(logical_shape(x)[dim])


@op("sym_numel")
def _sym_numel(ctx, x):
    return int(np.prod(logical_shape(x)))


for _name, _fn in {"mul": operator.mul, "add": operator.add, "sub": operator.sub, "floordiv": operator.floordiv,
                   "truediv": operator.truediv, "mod": operator.mod, "neg": operator.neg, "pow": operator.pow,
                   "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
                   "ge": operator.ge, "sym_max": max, "sym_min": min, "sym_float": float, "sym_int": int,
                   "sym_not": operator.not_, "ceil": math.ceil, "floor": math.floor,
                   "sym_sqrt": math.sqrt}.items():  # fmt: skip
    OPS[f"sym.{_name}"] = (lambda f: lambda ctx, *args: f(*args))(_fn)


__all__ = ["OPS", "ACTIVATION_OPS", "Ctx", "DType", "Hwio", "Img", "Perm", "as_img", "logical", "logical_shape"]
