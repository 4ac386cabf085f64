"""Graph ops: elementwise arithmetic (layout-aware) and the activations, which go through `ops`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from .values import OPS, Img, elementwise, logical, op

Array = jax.Array


# --------------------------------------------------------------------------------------------------------------
# Elementwise arithmetic, layout-aware
# --------------------------------------------------------------------------------------------------------------


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


"""Ops whose input a layer's ``pre_relu`` output is (when the layer's output node is one of them)."""
