"""The op table of graph networks: one small pure JAX function per core ATen op that `torch.export` captures.

`OPS` maps an op's name (the ATen op without ``aten.`` and ``.default``: ``"convolution"``, ``"add.Tensor"``,
``"max_pool2d_with_indices"``; Python's arithmetic on sizes as ``"sym.mul"``; ``"getitem"``) to ``fn(ctx, *args,
**kwargs)``, with torch's argument order and defaults. The interpreter (`interpreter.py`) resolves the arguments (other
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

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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


def swap_last(n: int) -> tuple:
    """The permutation of `n` axes that swaps the last two (what a `Perm` records for a matrix's transpose)."""
    return tuple(range(n - 2)) + (n - 1, n - 2)


class Bcast(NamedTuple):
    """A constant that torch expanded over new leading axes (a view in torch): logically ``broadcast_to(a, lead +
    shape(a))``. Kept lazy so that a batched matrix product reads it once (torch's matmul of a transposed 3-D input
    by a linear layer's weight is ``bmm(x, expand(w))``: materialized, ViT-B/16's in-projection weight becomes a
    197 x 768 x 2304 copy per layer, 2.8 GB in float64)."""

    a: Any
    lead: tuple


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
    if isinstance(v, Bcast):
        inner = logical(v.a)
        return jnp.broadcast_to(inner, (*v.lead, *jnp.shape(inner)))
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


def rank_of(v: Any) -> int:
    if isinstance(v, Perm):
        return v.a.ndim
    if isinstance(v, Bcast):
        return len(v.lead) + rank_of(v.a)
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
    if isinstance(v, Bcast):
        return (*v.lead, *logical_shape(v.a))
    return tuple(jnp.shape(v))


def axis_of(dim: int, rank: int) -> int:
    return dim + rank if dim < 0 else dim


def pairs(v, n: int = 2) -> tuple:
    v = tuple(v) if isinstance(v, (list, tuple)) else (v,)
    return v * n if len(v) == 1 else v


def _nhwc_operand(v: Any) -> Any:
    """An operand broadcast against an `Img`, in NHWC: scalars stay; a tensor of rank <= 4 gets leading unit axes
    (torch's broadcasting) and its last three axes moved to H, W, C."""
    if isinstance(v, Img):
        return v.a
    if rank_of(v) == 0:
        return v
    v = jnp.reshape(v, (1,) * (4 - jnp.ndim(v)) + tuple(jnp.shape(v)))
    return jnp.transpose(v, (0, 2, 3, 1))


def _same_rank(args) -> tuple:
    """Tensors given leading unit axes up to the largest rank (torch's broadcasting; JAX may refuse implicit rank
    promotion); scalars as they are."""
    rank = max((rank_of(a) for a in args), default=0)
    return tuple(a if rank_of(a) in (0, rank) else jnp.reshape(a, (1,) * (rank - rank_of(a)) + tuple(jnp.shape(a)))
                 for a in args)  # fmt: skip


def elementwise(fn: Callable, *args) -> Any:
    """``fn`` of tensors (and scalars) with torch's broadcasting; `Img` in, `Img` out when every operand has rank
    at most 4."""
    args = tuple(a if isinstance(a, Img) else logical(a) for a in args)  # a lazy `Perm` (attention's k^T) too
    if any(isinstance(a, Img) for a in args):
        if all(rank_of(a) <= 4 for a in args):
            return Img(fn(*(_nhwc_operand(a) for a in args)))
        args = tuple(logical(a) for a in args)
    return fn(*_same_rank(args))


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


# The ops that are activations: they go through ``ops.activation`` (or ``ops.relu``), and a layer ending in one
# has a pre-activation value.
ACTIVATION_OPS = frozenset({"relu", "hardtanh", "leaky_relu", "elu", "gelu", "silu", "hardswish"})

OPS: dict[str, Callable] = {}


def op(*names: str):
    def register(fn):
        for n in names:
            OPS[n] = fn
        return fn

    return register
