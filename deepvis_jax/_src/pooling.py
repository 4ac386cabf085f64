"""Max pooling as torch computes it, its switches, and its transpose: the decisions a DeconvNet records and replays.

- `max_pool`: torch.nn.MaxPool2d on NHWC, differentiated through its switches.
- `max_pool_with_switches`: the same values and the switches (`PoolSwitches`).
- `gather_at_switches`: max pooling with the decisions fixed (a linear map); `unpool`: its transpose.

Every form torch writes a pool in: `window` and `stride` an int or an (h, w) pair; `padding` an int, an (h, w)
pair, or ``((top, bottom), (left, right))``, whose extra bottom/right rows and columns express ``ceil_mode``
(`pool_padding`). Padded positions never win.

Switch convention: ``index[n, i, j, c]`` is the argmax's offset ``di * kw + dj`` inside window ``(i, j)`` of the
(padded) input, row-major; ties keep the first maximum, NaN counts as the maximum (PyTorch's CPU kernels).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

Array = jax.Array


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


def compact_padding(pads: Pads):
    (t, b), (l, r) = pads
    return t if t == b == l == r else pads


def describe_pool(geometry: tuple) -> str:
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
                       padding=compact_padding(pads))  # fmt: skip
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
