"""Graph ops: shapes, views, indexing, constants, and Python's arithmetic on sizes."""

from __future__ import annotations

from typing import Any

import math
import operator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .values import (NHWC_AXIS, OPS, Bcast, DType, Hwio, Img, Perm, axis_of, elementwise, logical, logical_shape, op,
                     pairs, rank_of, swap_last)

Array = jax.Array


# --------------------------------------------------------------------------------------------------------------
# Shapes, views, indexing, constants
# --------------------------------------------------------------------------------------------------------------


@op("view", "_unsafe_view", "reshape")
def _view(ctx, x, shape):
    shape = tuple(int(d) for d in shape)
    if isinstance(x, Bcast) and shape == logical_shape(x):  # torch's matmul views its expanded operand as it is
        return x
    return jnp.reshape(logical(x), shape)


@op("permute")
def _permute(ctx, x, dims):
    dims = tuple(axis_of(d, rank_of(x)) for d in dims)
    if isinstance(x, Img) and dims == (0, 2, 3, 1):  # NCHW -> NHWC: the storage itself
        return x.a
    if not isinstance(x, (Img, Hwio, Perm, Bcast)) and dims == (0, 3, 1, 2):  # NHWC -> NCHW: an Img of it
        return Img(x)
    n = len(dims)
    if n >= 2 and not isinstance(x, (Img, Hwio, Perm, Bcast)) and dims == swap_last(n):
        return Perm(x, dims)  # a matrix product reads it as it is
    return jnp.transpose(logical(x), dims)


@op("expand")
def _expand(ctx, x, size, implicit=False):
    inner = x
    x = logical(x)
    lead = len(size) - x.ndim
    shape = [int(s) if s != -1 else x.shape[i - lead] for i, s in enumerate(size)]
    if lead > 0 and x.ndim == 2 and tuple(shape[lead:]) == x.shape and not ctx.is_data(0):
        return Bcast(inner if isinstance(inner, Perm) else x, tuple(shape[:lead]))  # read by `matmul` once
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
        return x.a, NHWC_AXIS[axis_of(dim, 4)]
    x = logical(x)
    return x, axis_of(dim, jnp.ndim(x))


def _rewrap(x, y):
    return Img(y) if isinstance(x, Img) else y


@op("cat")
def _cat(ctx, tensors, dim=0):
    tensors = [t for t in tensors if not (rank_of(t) == 1 and logical_shape(t)[0] == 0)]  # torch skips empty 1-d
    if all(isinstance(t, Img) for t in tensors):
        return Img(jnp.concatenate([t.a for t in tensors], axis=NHWC_AXIS[axis_of(dim, 4)]))
    tensors = [logical(t) for t in tensors]
    return jnp.concatenate(tensors, axis=axis_of(dim, tensors[0].ndim))


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
    return jnp.expand_dims(x, axis_of(dim, x.ndim + 1))


@op("squeeze.dims", "squeeze.dim", "squeeze.default", "squeeze")
def _squeeze(ctx, x, dim=None):
    x = logical(x)
    if dim is None:
        return jnp.squeeze(x)
    dims = tuple(axis_of(d, x.ndim) for d in pairs(dim, 1) if x.shape[axis_of(d, x.ndim)] == 1)
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
    index[axis_of(dim, x.ndim)] = slice(start, end, step)
    return x.at[tuple(index)].set(logical(src).astype(x.dtype))


@op("select_scatter")
def _select_scatter(ctx, x, src, dim, index):
    x = logical(x)
    idx = [slice(None)] * x.ndim
    idx[axis_of(dim, x.ndim)] = index
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
