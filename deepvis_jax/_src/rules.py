"""Switches and ReLU rules: how one network definition computes, records, and replays its decisions.

Every network calls two operations whose behaviour is chosen by an `ops` object passed down the forward pass:
``ops.relu(x)`` and ``ops.max_pool(x, window, stride, padding)``. Three kinds of `ops` exist:

- `PLAIN`: ordinary ReLU and max pooling (classification, activation maximization).
- `Record`: the same values, and it records every max-pool's switches (`PoolSwitches`) and every ReLU's forward
  mask ``input > 0``, bottom to top: `forward` returns them as a `Switches` pytree.
- `Replay`: given those switches, each max-pool is a *gather at its switches* (a linear map of its input whose
  transpose is the unpooling: a value goes to its window's switch, overlapping windows add, padded positions are
  never chosen) and each ReLU carries the backward rule of a method through `jax.custom_vjp`:

  ====================  ======================================  =========================================
  method                ReLU backward (``g``: the cotangent)    known as
  ====================  ======================================  =========================================
  ``"deconv"``          ``relu(g)``                              Zeiler & Fergus's DeconvNet
  ``"guided"``          ``relu(g) * (x > 0)``                    guided backpropagation (Springenberg et al.)
  ``"gradient"``        ``g * (x > 0)``                          the ordinary gradient (saliency)
  ====================  ======================================  =========================================

  A projection is then the vjp of the replayed forward pass: convolutions, BatchNorm and residual additions are
  transposed by autodiff, for any graph. Nothing in the backward pass depends on the replayed forward values (the
  masks come from the switches), so XLA drops the forward computation.

Switch convention: ``index[n, i, j, c]`` is the argmax's offset ``di * window + dj`` inside window ``(i, j)`` of
the (padded) input, row-major; ties keep the first maximum, NaN counts as the maximum (PyTorch's CPU kernels).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from .windows import slice_window as _slice_map
from .windows import window_inside as _valid

Array = jax.Array

METHODS = ("deconv", "guided", "gradient")


# --------------------------------------------------------------------------------------------------------------
# Switch pytrees
# --------------------------------------------------------------------------------------------------------------


@struct.dataclass
class PoolSwitches:
    """Switches of one max-pool: ``index`` (N, h, w, C) int32, the argmax's row-major offset ``di * kw + dj`` in
    its (kh, kw) window.

    ``in_hw`` (the pool's input size: floor mode loses it), ``window``, ``stride`` and ``padding`` are static, in
    the compact forms of `pool_geometry` (an int where both axes agree, as torch's square pools give).
    """

    index: Array
    in_hw: tuple = struct.field(pytree_node=False)
    window: int | tuple = struct.field(pytree_node=False)
    stride: int | tuple = struct.field(pytree_node=False)
    padding: int | tuple = struct.field(pytree_node=False, default=0)

    def geometry(self) -> tuple[tuple[int, int], tuple[int, int], tuple[tuple[int, int], tuple[int, int]]]:
        """``((kh, kw), (sh, sw), ((top, bottom), (left, right)))``: the pool's window, stride and padding."""
        return pool_geometry(self.window, self.stride, self.padding)


@struct.dataclass
class Switches:
    """Every max-pool's switches below a layer, bottom to top; ``input_hw`` (static) is the image size.

    ``relus``: the forward mask ``input > 0`` (bool, shaped like the ReLU's input) of every ReLU up to and
    including the layer's own, bottom to top (in the order the forward pass applies them); ``"guided"`` and
    ``"gradient"`` projections need them, the DeconvNet does not.
    """

    pools: tuple  # tuple[PoolSwitches, ...]
    input_hw: tuple = struct.field(pytree_node=False)
    relus: tuple = ()  # tuple[bool Array, ...]


# --------------------------------------------------------------------------------------------------------------
# Max pooling: plain, with switches, gathered at switches, and its transpose
# --------------------------------------------------------------------------------------------------------------


Pair = tuple[int, int]
Pads = tuple[Pair, Pair]


def _ints(v, what: str, n: int, low: int) -> tuple:
    """`v` (an int, or a sequence of `n` ints) as a tuple of `n` ints >= `low`; ValueError otherwise."""
    items = (v,) * n if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
    try:
        items = tuple(items)
        ok = len(items) == n and all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in items)
    except TypeError:
        ok = False
    if not ok or any(a < low for a in items):
        raise ValueError(f"max-pool {what} must be an int >= {low} or {n} such ints, got {v!r}")
    return tuple(int(a) for a in items)


def pool_geometry(window, stride, padding=0) -> tuple[Pair, Pair, Pads]:
    """A max-pool's ``window`` and ``stride`` (an int, or an (h, w) pair) and ``padding`` (an int; an (h, w) pair,
    as torch writes it; or ``((top, bottom), (left, right))``, whose extra bottom/right rows and columns express
    torch's ``ceil_mode``: `pool_padding`) as ``((kh, kw), (sh, sw), ((top, bottom), (left, right)))``."""
    kh, kw = _ints(window, "window", 2, 1)
    sh, sw = _ints(stride, "stride", 2, 1)
    if isinstance(padding, (int, np.integer)) or (
        isinstance(padding, (tuple, list)) and all(isinstance(p, (int, np.integer)) for p in padding)
    ):
        ph, pw = _ints(padding, "padding", 2, 0)
        pads = ((ph, ph), (pw, pw))
    else:
        try:
            pads = tuple(_ints(p, "padding", 2, 0) for p in padding)
        except (TypeError, ValueError):
            pads = ()
        if len(pads) != 2:
            raise ValueError(f"max-pool padding must be an int, an (h, w) pair or ((top, bottom), (left, right)); "
                             f"got {padding!r}")  # fmt: skip
    return (kh, kw), (sh, sw), pads


def _compact(pair):
    """An int where both axes agree (how PoolSwitches stores what torch's square pools give), else the pair."""
    return pair[0] if pair[0] == pair[1] and not isinstance(pair[0], tuple) else pair


def _compact_padding(pads: Pads):
    (t, b), (l, r) = pads
    return t if t == b == l == r else pads


def _describe(geometry: tuple) -> str:
    """'3x3/2' (window/stride), with ' padding ((0, 1), (0, 1))' where the pool pads."""
    (kh, kw), (sh, sw), pads = geometry
    text = f"{kh}x{kw}/{sh if sh == sw else (sh, sw)}"
    return text + (f" padding {pads}" if any(any(p) for p in pads) else "")


def pool_output_hw(in_hw: Sequence[int], window, stride, padding=0) -> Pair:
    """The output size (h, w) of a max-pool on an `in_hw` map (floor of the padded map's windows)."""
    (kh, kw), (sh, sw), ((t, b), (l, r)) = pool_geometry(window, stride, padding)
    return (in_hw[0] + t + b - kh) // sh + 1, (in_hw[1] + l + r - kw) // sw + 1


def pool_padding(in_hw: Sequence[int], window, stride, padding=0, ceil_mode: bool = False) -> Pads:
    """torch's ``max_pool2d(window, stride, padding, ceil_mode=ceil_mode)`` on an `in_hw` map as the
    ``((top, bottom), (left, right))`` padding that gives the same output with floor rounding: ceil mode adds
    bottom/right rows and columns (padded positions never win) for every extra window torch keeps (one that starts
    inside the input or its top/left padding)."""
    (kh, kw), (sh, sw), pads = pool_geometry(window, stride, padding)
    if not ceil_mode:
        return pads
    out = []
    for n, k, s, (lo, hi) in zip(in_hw, (kh, kw), (sh, sw), pads):
        size = -(-(n + lo + hi - k) // s) + 1  # ceil
        if (size - 1) * s >= n + lo:  # torch drops a last window that starts in the bottom/right padding
            size -= 1
        out.append((lo, max(hi, (size - 1) * s + k - n - lo)))
    return tuple(out)


def _window_slice(x: Array, di: int, dj: int, h: int, w: int, stride: Pair) -> Array:
    """x[:, di + sh*i, dj + sw*j] for i < h, j < w."""
    n, _, _, c = x.shape
    sh, sw = stride
    end = (n, di + sh * (h - 1) + 1, dj + sw * (w - 1) + 1, c)
    return lax.slice(x, (0, di, dj, 0), end, (1, sh, sw, 1))


def _pad(x: Array, pads: Pads, value) -> Array:
    (t, b), (l, r) = pads
    if not (t or b or l or r):
        return x
    return lax.pad(x, jnp.asarray(value, x.dtype), ((0, 0, 0), (t, b, 0), (l, r, 0), (0, 0, 0)))


def max_pool(x: Array, window, stride, padding=0) -> Array:
    """torch.nn.MaxPool2d(window, stride, padding) (floor mode) on NHWC; padded positions never win.

    `window` and `stride`: an int or an (h, w) pair; `padding`: an int, an (h, w) pair or ((top, bottom),
    (left, right)) (ceil mode: `pool_padding`). Differentiated through its switches: the tangent is
    `gather_at_switches` of the input's tangent, so the gradient is the switch unpooling (`unpool`: each window's
    cotangent goes to its first maximum, as PyTorch's max_pool2d backward does). XLA's own gradient of a max
    `reduce_window` (select-and-scatter) is exact too but much slower on CPU.

    The value is a separable maximum of strided slices (over the window's rows, then its columns), the same numbers
    as a max `reduce_window`, which XLA:CPU runs slower at AlexNet's 3x3/2 pools (`python -m benchmarks --only
    profile` shows what the pools cost in a whole program).
    """
    return _max_pool(x, *pool_geometry(window, stride, padding))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _max_pool(x: Array, window: Pair, stride: Pair, pads: Pads) -> Array:
    h, w = pool_output_hw(x.shape[1:3], window, stride, pads)
    if h < 1 or w < 1:
        raise ValueError(f"a {window[0]}x{window[1]} max-pool with padding {pads} has no window on a "
                         f"{x.shape[1]}x{x.shape[2]} map; use a larger input")  # fmt: skip
    xp = _pad(x, pads, -jnp.inf)
    n, _, wp, c = xp.shape
    (kh, kw), (sh, sw) = window, stride
    span_h, span_w = sh * (h - 1) + 1, sw * (w - 1) + 1
    rows = [lax.slice(xp, (0, i, 0, 0), (n, i + span_h, wp, c), (1, sh, 1, 1)) for i in range(kh)]
    rows = functools.reduce(jnp.maximum, rows)
    cols = [lax.slice(rows, (0, 0, j, 0), (n, h, j + span_w, c), (1, 1, sw, 1)) for j in range(kw)]
    return functools.reduce(jnp.maximum, cols)


@_max_pool.defjvp
def _max_pool_jvp(window, stride, pads, primals, tangents):
    (x,), (dx,) = primals, tangents
    y, switches = max_pool_with_switches(x, window, stride, pads)
    return y, gather_at_switches(dx, switches)


def max_pool_with_switches(x: Array, window, stride, padding=0) -> tuple[Array, PoolSwitches]:
    """torch.nn.MaxPool2d(window, stride, padding) on NHWC (floor mode; forms as in `max_pool`), and its
    switches."""
    (kh, kw), (sh, sw), pads = pool_geometry(window, stride, padding)
    H, W = x.shape[1:3]
    h, w = pool_output_hw((H, W), (kh, kw), (sh, sw), pads)
    if h < 1 or w < 1:
        raise ValueError(f"a {kh}x{kw} max-pool with padding {pads} has no window on a {H}x{W} map; "
                         "use a larger input")  # fmt: skip
    xp = _pad(x, pads, -jnp.inf)
    best = _window_slice(xp, 0, 0, h, w, (sh, sw))
    index = jnp.zeros(best.shape, jnp.int32)
    for k in range(1, kh * kw):
        v = _window_slice(xp, k // kw, k % kw, h, w, (sh, sw))
        take = (v > best) | jnp.isnan(v)  # strict: ties keep the first maximum
        best = jnp.where(take, v, best)
        index = jnp.where(take, jnp.int32(k), index)
    sw_ = PoolSwitches(index=index, in_hw=(H, W), window=_compact((kh, kw)), stride=_compact((sh, sw)),
                       padding=_compact_padding(pads))  # fmt: skip
    return best, sw_


def gather_at_switches(x: Array, switches: PoolSwitches) -> Array:
    """Each window's value at its recorded switch: max pooling with the decisions fixed, a linear map of `x`."""
    n, h, w, c = switches.index.shape
    (kh, kw), stride, pads = switches.geometry()
    xp = _pad(x, pads, 0)
    zero = jnp.zeros((), x.dtype)
    out = jnp.zeros((x.shape[0], h, w, c), x.dtype)
    for k in range(kh * kw):
        out = out + jnp.where(switches.index == k, _window_slice(xp, k // kw, k % kw, h, w, stride), zero)
    return out


def unpool(signal: Array, switches: PoolSwitches) -> Array:
    """Transpose of max pooling (of `gather_at_switches`): each value goes to its window's switch; overlapping
    windows add; padded positions receive nothing."""
    n, h, w, c = signal.shape
    (kh, kw), (sh, sw), ((t, b), (l, r)) = switches.geometry()
    H, W = switches.in_hw[0] + t + b, switches.in_hw[1] + l + r
    out = jnp.zeros((n, H, W, c), signal.dtype)
    zero = jnp.zeros((), signal.dtype)
    for k in range(kh * kw):
        di, dj = k // kw, k % kw
        v = jnp.where(switches.index == k, signal, zero)
        pad = ((0, 0, 0), (di, H - di - sh * (h - 1) - 1, sh - 1), (dj, W - dj - sw * (w - 1) - 1, sw - 1), (0, 0, 0))
        out = out + lax.pad(v, zero, pad)
    return out[:, t : H - b, l : W - r] if (t or b or l or r) else out


# --------------------------------------------------------------------------------------------------------------
# ReLU with a method's backward rule
# --------------------------------------------------------------------------------------------------------------


@jax.custom_vjp
def deconv_relu(x: Array) -> Array:
    """relu(x), whose backward rectifies the cotangent: relu(g) (the DeconvNet)."""
    return jax.nn.relu(x)


deconv_relu.defvjp(lambda x: (jax.nn.relu(x), None), lambda _, g: (jax.nn.relu(g),))


@jax.custom_vjp
def guided_relu(x: Array, mask: Array) -> Array:
    """relu(x), whose backward is relu(g) where the recorded forward `mask` (input > 0) holds (guided backprop)."""
    return jax.nn.relu(x)


guided_relu.defvjp(
    lambda x, mask: (jax.nn.relu(x), mask),
    lambda mask, g: (jnp.where(mask, jax.nn.relu(g), jnp.zeros((), g.dtype)), None),
)


@jax.custom_vjp
def gradient_relu(x: Array, mask: Array) -> Array:
    """relu(x), whose backward is g where the recorded forward `mask` holds: the ordinary gradient, with the
    decision taken from the recorded forward pass rather than from the replayed values."""
    return jax.nn.relu(x)


gradient_relu.defvjp(
    lambda x, mask: (jax.nn.relu(x), mask),
    lambda mask, g: (jnp.where(mask, g, jnp.zeros((), g.dtype)), None),
)


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")


# --------------------------------------------------------------------------------------------------------------
# The three kinds of ops a network's forward pass runs with
# --------------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------------
# Activations other than ReLU (graph networks): the values, as torch computes them
# --------------------------------------------------------------------------------------------------------------


def _hardtanh(x: Array, min_val: float = -1.0, max_val: float = 1.0) -> Array:
    return jnp.clip(x, jnp.asarray(min_val, x.dtype), jnp.asarray(max_val, x.dtype))


def _leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
    return jnp.where(x > 0, x, x * jnp.asarray(negative_slope, x.dtype))


def _elu(x: Array, alpha: float = 1.0) -> Array:
    return jnp.where(x > 0, x, jnp.asarray(alpha, x.dtype) * jnp.expm1(jnp.minimum(x, 0)))


def _gelu(x: Array, approximate: str = "none") -> Array:
    return jax.nn.gelu(x, approximate=approximate == "tanh")


def _silu(x: Array) -> Array:
    return x * jax.nn.sigmoid(x)


def _hardswish(x: Array) -> Array:
    return x * jnp.clip(x + 3, 0, 6) / 6


ACTIVATIONS = {
    "hardtanh": _hardtanh,  # ReLU6 is hardtanh(0, 6)
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "gelu": _gelu,
    "silu": _silu,
    "hardswish": _hardswish,
}
"""The rectifier-like activations other than ReLU that ``ops.activation(x, kind, **params)`` computes (graph
networks keep each as one op), by their torch names; ``params`` are torch's arguments (``min_val``/``max_val``,
``negative_slope``, ``alpha``, ``approximate``)."""


class Plain:
    """Ordinary values: ReLU, max pooling, activations and other nonlinearities as the network computes them.

    The interface every `ops` object has (networks call nothing else that depends on the method):

    - ``relu(x, channels=None)``: a ReLU.
    - ``max_pool(x, window, stride, padding=0)``: torch's max pooling on NHWC.
    - ``activation(x, kind, **params)``: a rectifier-like activation other than ReLU (`ACTIVATIONS`), which a
      projection method may give its own backward rule.
    - ``linearized(fn, *args)``: ``fn(*args)`` for any other function that is nonlinear in the data (gates such as
      ``x * sigmoid(s)``, normalizations, softmax, products of two data tensors): projections pass its true
      gradient, taken at the recorded forward point.
    """

    def relu(self, x: Array, channels: Array | None = None) -> Array:
        return jax.nn.relu(x)

    def max_pool(self, x: Array, window, stride, padding=0) -> Array:
        return max_pool(x, window, stride, padding)

    def activation(self, x: Array, kind: str, **params) -> Array:
        return ACTIVATIONS[kind](x, **params)

    def linearized(self, fn, *args) -> Array:
        return fn(*args)


PLAIN = Plain()


class Record(Plain):
    """Plain values; records each max-pool's switches and each ReLU's forward mask, in order."""

    def __init__(self):
        self.pools: list[PoolSwitches] = []
        self.relus: list[Array] = []

    def relu(self, x: Array, channels: Array | None = None) -> Array:
        self.relus.append(x > 0)
        return jax.nn.relu(x)

    def max_pool(self, x: Array, window, stride, padding=0) -> Array:
        y, sw = max_pool_with_switches(x, window, stride, padding)
        self.pools.append(sw)
        return y

    def switches(self, input_hw: Sequence[int]) -> Switches:
        return Switches(pools=tuple(self.pools), input_hw=tuple(int(d) for d in input_hw), relus=tuple(self.relus))


class Replay(Plain):
    """Max-pools gather at the recorded switches; ReLUs carry `method`'s backward rule (masks from the record).

    ``relu(x, channels)``: a ReLU computed for only those output channels (the top of `project_channels`) uses
    those channels of its recorded mask.
    """

    def __init__(self, switches: Switches, method: str):
        check_method(method)
        self.pools, self.relus, self.method = list(switches.pools), list(switches.relus), method
        self.n_pools = self.n_relus = 0

    def relu(self, x: Array, channels: Array | None = None) -> Array:
        i, self.n_relus = self.n_relus, self.n_relus + 1
        if self.method == "deconv":
            return deconv_relu(x)
        mask = self.relus[i] if channels is None else self.relus[i][..., channels]
        return (guided_relu if self.method == "guided" else gradient_relu)(x, mask)

    def max_pool(self, x: Array, window, stride, padding=0) -> Array:
        sw = self.pools[self.n_pools]
        self.n_pools += 1
        want = pool_geometry(window, stride, padding)
        if (sw.geometry(), tuple(sw.in_hw)) != (want, tuple(x.shape[1:3])):
            raise ValueError(
                f"max-pool {self.n_pools} of these switches was recorded as {_describe(sw.geometry())} on a "
                f"{sw.in_hw[0]}x{sw.in_hw[1]} map, but this network pools {_describe(want)} on {x.shape[1]}x"
                f"{x.shape[2]}; record the switches with forward() on the same model and input size"
            )
        return gather_at_switches(x, sw)


class Shapes(Plain):
    """Plain values; records the spatial size of every ReLU's map and every max-pool's input and output, in the
    order the forward pass calls them (the geometry `CropReplay` needs)."""

    def __init__(self):
        self.calls: list[tuple] = []

    def relu(self, x: Array, channels: Array | None = None) -> Array:
        self.calls.append(("relu", tuple(x.shape[1:3])))
        return jax.nn.relu(x)

    def max_pool(self, x: Array, window, stride, padding=0) -> Array:
        y = max_pool(x, window, stride, padding)
        self.calls.append(("pool", tuple(x.shape[1:3]), tuple(y.shape[1:3])))
        return y


class _Window:
    """The geometry of a crop: `geometry` lists, in call order, each ReLU's and max-pool's map sizes on the whole
    image with their cumulative strides, and `offset` (traced, a multiple of every stride) is the crop's top-left
    corner in the image. Every ReLU's and pool's output is zeroed where the crop lies outside the whole image's
    map: there the whole network has padding, not units."""

    def _window(self, geometry: tuple, offset: Array) -> None:
        self.geometry, self.offset, self.n_calls = geometry, offset, 0

    def _next(self, kind: str) -> tuple:
        call = self.geometry[self.n_calls]
        self.n_calls += 1
        assert call[0] == kind, (call, kind)  # the same network, called in the same order
        return call


class CropRecord(_Window, Record):
    """`Record` on a crop of the input (see `_Window`): inside a unit's receptive field it records the whole
    image's switches and masks. A pool reads -inf outside the whole map (the padding a padded pool sees)."""

    def __init__(self, geometry: tuple, offset: Array):
        super().__init__()
        self._window(geometry, offset)

    def relu(self, x: Array, channels: Array | None = None) -> Array:
        _, full, stride = self._next("relu")
        x = jnp.where(_valid(self.offset // stride, tuple(x.shape[1:3]), full), x, jnp.zeros((), x.dtype))
        return super().relu(x, channels)

    def max_pool(self, x: Array, window, stride, padding=0) -> Array:
        _, full_in, full_out, out_stride = self._next("pool")
        _, (sh, sw), _ = pool_geometry(window, stride, padding)
        in_stride = out_stride // sh if sh == sw else jnp.asarray([out_stride // sh, out_stride // sw], self.offset.dtype)
        inside = _valid(self.offset // in_stride, tuple(x.shape[1:3]), full_in)
        y = super().max_pool(jnp.where(inside, x, jnp.asarray(-jnp.inf, x.dtype)), window, stride, padding)
        return jnp.where(_valid(self.offset // out_stride, tuple(y.shape[1:3]), full_out), y, jnp.zeros((), y.dtype))


class CropReplay(_Window, Replay):
    """`Replay` on a window of the input (a crop holding one unit's receptive field) instead of the whole image.

    `switches` are the whole image's (each max-pool gathers at them read at the crop's window, each ReLU takes the
    window of its recorded mask), or with ``local=True`` the crop's own, recorded by `CropRecord`. Outputs outside
    the whole map are zeroed (see `_Window`). Inside the unit's receptive field every switch, mask and weight is
    the same as on the whole image, so the vjp from that unit is the same projection, computed on the crop.
    """

    def __init__(self, switches: Switches, method: str, geometry: tuple, offset: Array, local: bool = False):
        super().__init__(switches, method)
        self._window(geometry, offset)
        self.local = local

    def relu(self, x: Array, channels: Array | None = None) -> Array:
        _, full, stride = self._next("relu")
        start = self.offset // stride
        size = tuple(x.shape[1:3])
        if self.method != "deconv" and not self.local:  # the rules read the masks: take their window
            i = self.n_relus
            self.relus[i] = _slice_map(self.relus[i], start, size, False)
        y = super().relu(x, channels)
        return jnp.where(_valid(start, size, full), y, jnp.zeros((), y.dtype))

    def max_pool(self, x: Array, window, stride, padding=0) -> Array:
        _, _, full_out, out_stride = self._next("pool")
        start = self.offset // out_stride
        if not self.local:
            sw = self.pools[self.n_pools]
            index = _slice_map(sw.index, start, pool_output_hw(x.shape[1:3], window, stride, padding), 0)
            self.pools[self.n_pools] = sw.replace(index=index, in_hw=tuple(x.shape[1:3]))
        y = super().max_pool(x, window, stride, padding)
        return jnp.where(_valid(start, tuple(y.shape[1:3]), full_out), y, jnp.zeros((), y.dtype))
