"""Recording and replaying on a crop of the input that holds one unit's receptive field (`project_units`): the
geometry of every op's map on the whole image (`window_geometry`, from two `rules.Shapes` traces; `cone_geometry`
for a unit's cone) and `CropRecord` / `CropReplay`, which read the whole image's switches and records at the
crop's place, so a projection on the crop equals the whole image's inside the field.

Two kinds of crop. A *box* (`window_geometry`): the field plus a stride's slack, aligned to the layer's stride,
computed with the network's own padded convolutions, so every map below is box-sized. A *cone*
(`cone_geometry`, AlexNet and VGG): exactly the field, with every convolution unpadded, so each map below holds
only the positions the unit depends on (3x3 under a 3x3 conv, growing layer by layer down to the field); the
whole network's padding is then the zeros the window reads outside each map."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from .nets.alexnet_vgg import Architecture, Conv, MaxPool, ReLU
from .pooling import compact_padding, pool_geometry, pool_output_hw
from .rules import Record, Replay, Switches
from .windows import slice_window, window_inside

Array = jax.Array


def window_geometry(calls: Sequence[tuple], grown: Sequence[tuple], stride: int) -> tuple:
    """The geometry of `_Window` from `Shapes` calls on an image (`calls`) and on one `stride` pixels larger
    (`grown`), `stride` being the layer's cumulative stride: each call's map sizes on the image with their own
    cumulative strides (a map grows by ``stride / its stride``). A linearized function's 4-D argument that does
    not grow like a map (attention weights, a pooled vector) gets None: it is read whole."""

    def stride_of(a, b):
        growth = (b[0] - a[0], b[1] - a[1])
        assert growth[0] == growth[1] and stride % growth[0] == 0, (a, b, stride)
        return stride // growth[0]

    def map_stride(a, b):
        if a is None or b is None or b[0] - a[0] != b[1] - a[1] or b[0] <= a[0] or stride % (b[0] - a[0]):
            return None
        return a, stride // (b[0] - a[0])

    geometry = []
    for a, b in zip(calls, grown):
        if a[0] in ("relu", "act"):
            geometry.append((a[0], a[1], stride_of(a[1], b[1]), 0))
        elif a[0] == "lin":
            geometry.append(("lin", tuple(map_stride(p, q) for p, q in zip(a[1], b[1]))))
        else:
            geometry.append(("pool", a[1], a[2], stride_of(a[2], b[2]), 0, 0))
    return tuple(geometry)


def cone_geometry(arch: Architecture, name: str, hw: Sequence[int]) -> tuple:
    """`window_geometry` for a unit's cone in AlexNet or VGG on an `hw` image: each ReLU's map size on the
    image, its cumulative stride and its offset (the input pixel, relative to the image, where its position 0's
    field starts: minus the padding above it), and each max-pool's input and output maps alike. The cone's window
    is the unit's field, starting at ``stride * row + offset`` of the layer's field; there each map's window
    starts at ``(start - offset) // stride`` of its own."""
    geometry, stride, off, full = [], 1, 0, tuple(int(d) for d in hw)
    for op in arch.features[: arch.top_index(name) + 1]:
        if isinstance(op, ReLU):
            geometry.append(("relu", full, stride, off))
        elif isinstance(op, (Conv, MaxPool)):
            k, s, p = (op.kernel, op.stride, op.padding) if isinstance(op, Conv) else (op.window, op.stride, 0)
            below, full = full, tuple((n + 2 * p - k) // s + 1 for n in full)
            below_off, off, stride = off, off - stride * p, stride * s
            if isinstance(op, MaxPool):
                geometry.append(("pool", below, full, stride, below_off, off))
    return tuple(geometry)


class _Window:
    """The geometry of a crop: `geometry` lists, in call order, each ReLU's, activation's and max-pool's map sizes
    on the whole image with their cumulative strides, and each linearized function's map arguments
    (`window_geometry`); `offset` (traced) is the crop's top-left corner in the image: a box's is a multiple of
    every stride, a cone's is where the unit's field starts (it may be negative).
    Every ReLU's, activation's and pool's output is zeroed where the crop lies outside the whole image's map: there
    the whole network has padding, not units. With ``cone=True`` (a `cone_geometry`) the network's convolutions
    run unpadded (`valid_convs`), each map's window starting at its own offset.

    A geometry may leave out the activations and linearized functions (a graph interpreter that zeroes its maps
    itself): those calls are then computed as on the whole image, from the crop's own records (``local=True``)."""

    def _window(self, geometry: tuple, offset: Array, cone: bool) -> None:
        self.geometry, self.offset, self.n_calls, self.valid_convs = geometry, offset, 0, cone

    def _start(self, stride, off: int = 0) -> Array:
        """Where the crop starts in a map of cumulative stride `stride` whose position 0 starts at input `off`."""
        return (self.offset - off) // stride

    def _next(self, kind: str) -> tuple:
        call = self.geometry[self.n_calls]
        self.n_calls += 1
        assert call[0] == kind, (call, kind)  # the same network, called in the same order
        return call

    def _optional(self, kind: str) -> tuple | None:
        """The next call's geometry if the geometry describes calls of this kind ("act", "lin"), else None."""
        if self.n_calls < len(self.geometry) and self.geometry[self.n_calls][0] == kind:
            return self._next(kind)
        return None


class CropRecord(_Window, Record):
    """`Record` on a crop of the input (see `_Window`): inside a unit's receptive field it records the whole
    image's switches and masks. A pool reads -inf outside the whole map (the padding a padded pool sees)."""

    def __init__(self, geometry: tuple, offset: Array, cone: bool = False):
        super().__init__()
        self._window(geometry, offset, cone)

    def relu(self, x: Array, channels: Array | None = None) -> Array:
        _, full, stride, off = self._next("relu")
        x = jnp.where(window_inside(self._start(stride, off), tuple(x.shape[1:3]), full), x, jnp.zeros((), x.dtype))
        return super().relu(x, channels)

    def max_pool(self, x: Array, window, stride, padding=0) -> Array:
        _, full_in, full_out, out_stride, off_in, off_out = self._next("pool")
        _, (sh, sw), _ = pool_geometry(window, stride, padding)
        in_stride = out_stride // sh
        if sh != sw:
            in_stride = jnp.asarray([out_stride // sh, out_stride // sw], self.offset.dtype)
        inside = window_inside(self._start(in_stride, off_in), tuple(x.shape[1:3]), full_in)
        y = super().max_pool(jnp.where(inside, x, jnp.asarray(-jnp.inf, x.dtype)), window, stride, padding)
        inside = window_inside(self._start(out_stride, off_out), tuple(y.shape[1:3]), full_out)
        return jnp.where(inside, y, jnp.zeros((), y.dtype))

    def activation(self, x: Array, kind: str, channels: Array | None = None, **params) -> Array:
        call = self._optional("act")
        if call is None:
            return super().activation(x, kind, channels, **params)
        inside = window_inside(self._start(call[2], call[3]), tuple(x.shape[1:3]), call[1])
        y = super().activation(jnp.where(inside, x, jnp.zeros((), x.dtype)), kind, channels, **params)
        return jnp.where(inside, y, jnp.zeros((), y.dtype))

    def linearized(self, fn, *args):
        self._optional("lin")
        return super().linearized(fn, *args)


class CropReplay(_Window, Replay):
    """`Replay` on a window of the input (a crop holding one unit's receptive field) instead of the whole image.

    `switches` are the whole image's (each max-pool gathers at them read at the crop's window, each ReLU and
    activation takes the window of its record, each linearized function the windows of its map arguments), or
    with ``local=True`` the crop's own, recorded by `CropRecord`. Outputs outside the whole map are zeroed (see
    `_Window`). Inside the unit's receptive field every switch, record and weight is the same as on the whole
    image, so the vjp from that unit is the same projection, computed on the crop.
    """

    def __init__(self, switches: Switches, method: str, geometry: tuple, offset: Array, local: bool = False,
                 cone: bool = False):  # fmt: skip
        super().__init__(switches, method)
        self._window(geometry, offset, cone)
        self.local = local

    def relu(self, x: Array, channels: Array | None = None) -> Array:
        _, full, stride, off = self._next("relu")
        start = self._start(stride, off)
        size = tuple(x.shape[1:3])
        i = self.n_relus
        if self.method != "deconv" and not self.local and i < len(self.relus):  # the rule reads the mask's window
            self.relus[i] = slice_window(self.relus[i], start, size, False)  # (a missing mask: Replay says so)
        y = super().relu(x, channels)
        return jnp.where(window_inside(start, size, full), y, jnp.zeros((), y.dtype))

    def max_pool(self, x: Array, window, stride, padding=0) -> Array:
        _, _, full_out, out_stride, _, off_out = self._next("pool")
        start = self._start(out_stride, off_out)
        if not self.local:
            sw = self.pools[self.n_pools]
            index = slice_window(sw.index, start, pool_output_hw(x.shape[1:3], window, stride, padding), 0)
            pads = pool_geometry(window, stride, padding)[2]
            if [p[0] for p in pads] == [p[0] for p in sw.geometry()[2]]:  # a ceil-mode pool pads a crop's bottom and
                sw = sw.replace(padding=compact_padding(pads))  # right edges by the crop's own size
            self.pools[self.n_pools] = sw.replace(index=index, in_hw=tuple(x.shape[1:3]))
        y = super().max_pool(x, window, stride, padding)
        return jnp.where(window_inside(start, tuple(y.shape[1:3]), full_out), y, jnp.zeros((), y.dtype))

    def activation(self, x: Array, kind: str, channels: Array | None = None, **params) -> Array:
        call = self._optional("act")
        if call is None:
            self._uncut(f"{kind} activation")
            return super().activation(x, kind, channels, **params)
        start, size = self._start(call[2], call[3]), tuple(x.shape[1:3])
        i = self.n_records
        if not self.local and i < len(self.records):  # the rule reads the recorded input: take its window
            self.records[i] = (slice_window(self.records[i][0], start, size, 0),)
        y = super().activation(x, kind, channels, **params)
        return jnp.where(window_inside(start, size, call[1]), y, jnp.zeros((), y.dtype))

    def linearized(self, fn, *args):
        call = self._optional("lin")
        if call is None:
            self._uncut("linearized function")
            return super().linearized(fn, *args)
        i = self.n_records
        if not self.local and i < len(self.records):  # the recorded arguments' windows, where they are maps
            self.records[i] = tuple(
                r if r is None or m is None else slice_window(r, self.offset // m[1], tuple(a.shape[1:3]), 0)
                for r, a, m in zip(self.records[i], args, call[1])
            )
        return super().linearized(fn, *args)

    def _uncut(self, what: str) -> None:
        """A call the geometry does not describe can replay only the crop's own records."""
        if not self.local:
            raise ValueError(f"this crop's geometry does not describe the network's {what} calls, so the whole "
                             "image's records cannot be cut to the crop; record on the crop (project_units "
                             "with images) or give the geometry of every activation and linearized call "
                             "(rules.window_geometry)")  # fmt: skip
