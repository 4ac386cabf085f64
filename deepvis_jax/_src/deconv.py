"""Zeiler & Fergus's DeconvNet, guided backpropagation and gradients: `forward`, `project`, `visualize`.

`forward` runs the network up to a layer with `rules.Record` ops and returns the layer's activation with a
`Switches` pytree: every max-pool's switches and every ReLU's forward mask below it. `project` is the vjp of the
same forward pass replayed with `rules.Replay` ops: each max-pool gathers at its switches (so its transpose is the
unpooling) and each ReLU's backward is the method's rule, ``relu(g)`` (``"deconv"``), ``relu(g) * (x > 0)``
(``"guided"``) or ``g * (x > 0)`` (``"gradient"``). Convolutions (their exact transposes, no bias), BatchNorm (its
eval scale) and residual additions are transposed by autodiff. For the DeconvNet this is Zeiler & Fergus §2.1;
each method equals PyTorch autograd with every ReLU's backward replaced by its rule (Captum's Deconvolution,
GuidedBackprop, and Saliency without the absolute value). Graph networks' other nonlinearities (GELU, SiLU, gates,
softmax, ...) follow the table in `rules.py` (docs/projection-rules.md).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from .compile import jit
from .nets import GraphArchitecture, Layer, Model, check_input, layer_hw, layer_name, normalize, receptive_field
from .rules import (
    METHODS,
    CropRecord,
    CropReplay,
    Record,
    Replay,
    Shapes,
    Switches,
    _slice_map,
    _valid,
    check_method,
    window_geometry,
)

Array = jax.Array

MODES = ("max", "all")
RANKS = ("max", "mean")


# --------------------------------------------------------------------------------------------------------------
# forward / project
# --------------------------------------------------------------------------------------------------------------


def _forward(model: Model, x: Array, name: str) -> tuple[Array, Switches]:
    input_hw = (int(x.shape[1]), int(x.shape[2]))
    layer_hw(model, name, input_hw)  # a clear error when the input is too small for the layer
    ops = Record()
    act = model.apply(x, upto=name, ops=ops)
    return act, ops.switches(input_hw)


@functools.partial(jit, static_argnames=("layer",))
def forward(model: Model, x: Array, layer: Layer) -> tuple[Array, Switches]:
    """Run `model` on normalized NHWC `x` up to `layer` (after its ReLU); nothing above is computed.

    Returns ``(activation (N, h, w, C), switches)``: the layer's output, equal to ``model.apply(x, upto=layer)``,
    and a `Switches` pytree with every max-pool below the layer and every ReLU's forward mask up to it (and, for
    networks with other nonlinearities, what their projection rules read).
    """
    check_input(x)
    return _forward(model, x, layer_name(model, layer))


def _check_projection(
    model: Model, switches: Switches, signal: Any, name: str, channels: int | None, method: str
) -> None:
    """Check the switches and the signal against what `forward` records at `name` for this input size."""
    check_method(method)
    arch = model.arch
    n = switches.pools[0].index.shape[0] if switches.pools else getattr(signal, "shape", (None,))[0]
    spec = jax.ShapeDtypeStruct((n or 1, *switches.input_hw, 3), model.dtype)
    act, want = jax.eval_shape(lambda m, x: _forward(m, x, name), model, spec)
    if len(switches.pools) != len(want.pools):
        raise ValueError(
            f"these switches hold {len(switches.pools)} max-pools, but {name} of {arch.name} has {len(want.pools)} "
            "below it; record them with forward() at the same layer"
        )
    if method != "deconv" and len(switches.relus) != len(want.relus):
        raise ValueError(
            f"method {method!r} needs the forward ReLU masks: these switches hold {len(switches.relus)}, but {name} "
            f"of {arch.name} has {len(want.relus)} ReLUs up to it; record them with forward() at the same layer"
        )
    if len(switches.records) != len(want.records):
        raise ValueError(
            f"these switches hold {len(switches.records)} records of activations and other nonlinearities, but "
            f"{name} of {arch.name} has {len(want.records)} up to it; record them with forward() at the same layer"
        )
    _, h, w, c = act.shape
    c = c if channels is None else channels
    if getattr(signal, "shape", None) != (n, h, w, c):
        raise ValueError(
            f"expected a signal shaped like {name}'s activation {(n, h, w, c)}, got {getattr(signal, 'shape', None)}"
        )


def _project(model: Model, switches: Switches, signal: Array, name: str, method: str,
             channels: Array | None = None) -> Array:  # fmt: skip
    """The vjp of the replayed forward pass up to `name` (only `channels` of its top when given)."""
    x0 = jnp.zeros((signal.shape[0], *switches.input_hw, 3), model.dtype)

    def replay(x):
        return model.apply(x, upto=name, channels=channels, ops=Replay(switches, method))

    _, vjp = jax.vjp(replay, x0)
    return vjp(signal.astype(model.dtype))[0]


@functools.partial(jit, static_argnames=("layer", "method"))
def project(model: Model, switches: Switches, signal: Array, layer: Layer, method: str = "deconv") -> Array:
    """Projection of `signal` (shaped like `layer`'s activation) to input space, (N, H, W, 3).

    The vjp of the forward pass up to `layer` in which every max-pool is fixed to its recorded `switches` (from
    ``forward(model, x, layer)``) and every ReLU's backward is `method`'s rule: ``relu(g)`` (``"deconv"``, the
    DeconvNet), ``relu(g) * (input > 0)`` (``"guided"`` backprop) or ``g * (input > 0)`` (``"gradient"``: the vjp
    of ``model.apply(x, upto=layer)``). So going down, BatchNorm multiplies by its eval scale, each conv applies its
    exact transpose (no bias), each max-pool unpools through its switches; other nonlinearities follow the table
    in `rules.py`. Pure and linear between rectifications;
    vmap it over signals sharing one set of switches with ``in_axes=(None, None, 0, None)``.
    """
    name = layer_name(model, layer)
    _check_projection(model, switches, signal, name, None, method)
    return _project(model, switches, signal, name, method)


@functools.partial(jit, static_argnames=("layer", "method"))
def project_channels(
    model: Model, switches: Switches, signal: Array, channels: Array, layer: Layer, method: str = "deconv"
) -> Array:
    """`project` of a signal that is zero outside `channels`: `signal` (N, h, w, K) holds those K channels.

    Equals ``project(model, switches, full, layer, method)`` where ``full[..., channels] = signal``, but the top
    conv uses only those K filters (most of a top layer's cost when K is much smaller than C).
    """
    name = layer_name(model, layer)
    _check_projection(model, switches, signal, name, channels.shape[0], method)
    return _project(model, switches, signal, name, method, channels)


# --------------------------------------------------------------------------------------------------------------
# Single units, on the crop that holds their receptive field
# --------------------------------------------------------------------------------------------------------------

_GEOMETRY: dict = {}


def _geometry(model: Model, name: str, hw: tuple[int, int]) -> tuple:
    """Each ReLU's and activation's map, each max-pool's input/output maps and each linearized function's map
    arguments on an `hw` image, in call order, with their cumulative strides (`rules.window_geometry`, from a
    second trace at ``hw + stride``)."""
    key = (model.arch, name, tuple(hw))
    if key not in _GEOMETRY:
        _, stride, _ = receptive_field(model, name)

        def calls(h, w):
            ops = Shapes()
            jax.eval_shape(lambda m, x: m.apply(x, upto=name, ops=ops), model,
                           jax.ShapeDtypeStruct((1, h, w, 3), model.dtype))  # fmt: skip
            return ops.calls

        _GEOMETRY[key] = window_geometry(calls(*hw), calls(hw[0] + stride, hw[1] + stride), stride)
    return _GEOMETRY[key]


def crop_geometry(model: Model, name: str, hw: tuple[int, int]) -> tuple[tuple[int, int], int, int, int]:
    """The crop `project_units` computes on: its (height, width), and the unit's receptive field size, stride and
    offset. A crop is `size + stride - 1` pixels (the field, and the slack to start at a multiple of the stride),
    or the whole image along an axis where that is not smaller. A graph network's layer whose field is the whole
    image (or a graph that takes one image size) uses the whole image (`GraphArchitecture.crops`)."""
    size, stride, offset = receptive_field(model, name, hw)
    side = size + stride - 1
    if isinstance(model.arch, GraphArchitecture) and not model.arch.crops(name):
        side = max(hw)
    return (min(side, hw[0]), min(side, hw[1])), size, stride, offset


def _project_unit(model, source, unit, value, name, method, crop_to_field):
    """One unit's projection: (H, W, 3), or (R, R, 3) with `crop_to_field` (its receptive field's window).
    `source`: the whole images' `Switches`, or the normalized images (N, H, W, 3), whose crop is then run forward
    too (recording the crop's own switches)."""
    from_images = not isinstance(source, Switches)
    H, W = source.shape[1:3] if from_images else source.input_hw
    (hc, wc), size, stride, offset = crop_geometry(model, name, (H, W))
    n, row, col, channel = unit[0], unit[1], unit[2], unit[3]
    first = -(offset // stride)  # how many strides the field starts before its unit: ceil(-offset / stride)
    tops = jnp.stack([stride * (row - first) if hc < H else 0 * row, stride * (col - first) if wc < W else 0 * col])
    one = jax.tree_util.tree_map(lambda a: lax.dynamic_index_in_dim(a, n, 0, keepdims=True), source)
    channels = jnp.reshape(channel, (1,))
    graph = isinstance(model.arch, GraphArchitecture)
    if graph and (hc, wc) == (H, W):  # the whole image: the plain record and replay
        def record_ops():
            return Record()

        def replay_ops():
            return Replay(one, method)

        extra = {}
    else:  # a crop; a graph network also zeroes every map outside the whole image's map (its `crop` argument)
        geometry = _geometry(model, name, (H, W))

        def record_ops():
            return CropRecord(geometry, tops)

        def replay_ops():
            return CropReplay(one, method, geometry, tops, local=from_images)

        extra = {"crop": (tops, (H, W))} if graph else {}
    if from_images:  # the crop's forward pass records the switches and masks the projection reads
        record = record_ops()
        model.apply(_slice_map(one, tops, (hc, wc), 0), upto=name, ops=record, **extra)
        one = record.switches((hc, wc))

    def replay(x):
        return model.apply(x, upto=name, channels=channels, ops=replay_ops(), **extra)

    x0 = jnp.zeros((1, hc, wc, 3), model.dtype)
    out, vjp = jax.vjp(replay, x0)
    at = (row - tops[0] // stride, col - tops[1] // stride)
    signal = jnp.zeros(out.shape, model.dtype).at[0, at[0], at[1], 0].set(value.astype(model.dtype))
    (crop,) = vjp(signal)
    if crop_to_field:  # the field's window: it starts `offset` pixels from the unit's stride position
        canvas_hw, origin = (size, size), (stride * row + offset, stride * col + offset)
    else:
        canvas_hw, origin = (H, W), (0, 0)
    # place the crop on a canvas framed by a crop-sized margin, then cut the canvas out (clipping the image edges)
    canvas = jnp.zeros((canvas_hw[0] + 2 * hc, canvas_hw[1] + 2 * wc, 3), model.dtype)
    zero = jnp.zeros((), tops.dtype)  # one index dtype (int64 literals under x64)
    canvas = lax.dynamic_update_slice(canvas, crop[0], (tops[0] - origin[0] + hc, tops[1] - origin[1] + wc, zero))
    out = canvas[hc : hc + canvas_hw[0], wc : wc + canvas_hw[1]]
    if crop_to_field:  # zero outside the image, as the whole image's projection is
        inside = _valid(jnp.stack(origin), (size, size), (H, W))[0]
        out = jnp.where(inside, out, jnp.zeros((), out.dtype))
    return out


@functools.partial(jit, static_argnames=("layer", "method", "crop_to_field"))
def project_units(model: Model, source: Switches | Array, units: Array, values: Array, layer: Layer,
                  method: str = "deconv", crop_to_field: bool = False) -> Array:  # fmt: skip
    """Projections of single units, each computed on the crop of the input that holds its receptive field.

    `source`: the `Switches` that ``forward(model, x, layer)`` recorded on images ``x``, or those normalized
    images ``x`` (N, H, W, 3) themselves: then each unit's forward pass runs on its crop as well (recording the
    switches and masks inside its field, which equal the whole image's), and nothing runs on the whole image.
    `units` (K, 4) int: (image n, row, col, channel) in `layer`'s map; `values` (K,): the signal at each unit (its
    activation, for the paper's figures). Returns (K, H, W, 3): the same as ``project`` of a signal that is
    `values[k]` at unit k and zero elsewhere (float64: to rounding), but each unit's vjp runs on a crop of
    ``receptive field + stride - 1`` pixels aligned to the layer's cumulative stride, so that every pool and
    strided conv sees the windows it sees on the whole image; where the field runs past the image, the crop's ReLU
    and pool outputs are zeroed as the whole network's padding is. With ``crop_to_field=True`` each projection is
    returned as its receptive field's window (K, R, R, 3), zero outside the image (what the atlas shows).
    Vmapped over the K units.
    """
    name = layer_name(model, layer)
    check_method(method)
    if getattr(units, "ndim", None) != 2 or units.shape[1] != 4:
        raise ValueError("units must be shaped (K, 4): (image, row, col, channel) each; "
                         f"got {getattr(units, 'shape', None)}")
    if getattr(values, "shape", None) != units.shape[:1]:
        raise ValueError(f"values must be shaped ({units.shape[0]},), one per unit; "
                         f"got {getattr(values, 'shape', None)}")
    if not isinstance(source, Switches):  # switches missing masks or records: Replay says so in one line
        check_input(source)
    return jax.vmap(lambda u, v: _project_unit(model, source, u, v, name, method, crop_to_field))(
        units.astype(jnp.int32), values)


# --------------------------------------------------------------------------------------------------------------
# visualize
# --------------------------------------------------------------------------------------------------------------


@struct.dataclass
class Visualization:
    """What `visualize` returns (jax arrays): for one image and one layer,

    - ``activations`` (h, w, C): every channel's map (after ReLU);
    - ``channels`` (top_k,) int32: the strongest channels, strongest first; ``scores`` (top_k,): their max
      (or mean) activation;
    - ``projections`` (top_k, H, W, 3): their projections (DeconvNet, guided backprop or gradient) in
      (normalized) input space;
    - ``layer`` (static): the layer's name; ``mode``/``rank``/``method`` (static): how they were made.

    For a batch of N images every array has a leading N axis: ``activations`` (N, h, w, C), ``channels`` and
    ``scores`` (N, top_k), ``projections`` (N, top_k, H, W, 3); ``r[i]`` is image i's result (shaped as for one
    image) and ``len(r)`` is N.
    """

    activations: Array
    channels: Array
    scores: Array
    projections: Array
    layer: str = struct.field(pytree_node=False)
    mode: str = struct.field(pytree_node=False, default="max")
    rank: str = struct.field(pytree_node=False, default="max")
    method: str = struct.field(pytree_node=False, default="deconv")

    @property
    def batched(self) -> bool:
        """True for a batch's result (leading N axis), False for one image's."""
        return self.channels.ndim == 2

    def __bool__(self) -> bool:
        return True

    def __len__(self) -> int:
        if not self.batched:
            raise TypeError("the result of one image has no length; a batch's result has a leading N axis")
        return int(self.channels.shape[0])

    def __getitem__(self, i) -> "Visualization":
        """Image ``i``'s result of a batch (an int), or a sub-batch (a slice)."""
        if not self.batched:
            raise TypeError("the result of one image cannot be indexed; visualize a batch (N, H, W, 3) for that")
        return jax.tree_util.tree_map(lambda a: a[i], self)


def _signals(a: Array, channels: Array, mode: str) -> Array:
    """(top_k, 1, h, w, top_k) signals from the layer's activation `a` (h, w, C): signal k in slot k only."""
    maps = jnp.transpose(a[:, :, channels], (2, 0, 1))  # (K, h, w)
    k, h, w = maps.shape
    if mode == "max":
        flat = maps.reshape(k, h * w)
        j = jnp.argmax(flat, axis=1)
        peak = jnp.take_along_axis(flat, j[:, None], axis=1)  # (K, 1)
        maps = (jax.nn.one_hot(j, h * w, dtype=flat.dtype) * peak).reshape(k, h, w)
    eye = jnp.eye(k, dtype=maps.dtype)
    return maps.reshape(k, 1, h, w, 1) * eye.reshape(k, 1, 1, 1, k)


def _one_image(model: Model, a: Array, switches: Switches, name: str, top_k: int, mode: str, rank: str,
               method: str) -> tuple[Array, Array, Array]:  # fmt: skip
    """One image's (channels, scores, projections) from its activation `a` (h, w, C) and its switches (N = 1)."""
    score = jnp.max(a, axis=(0, 1)) if rank == "max" else jnp.mean(a, axis=(0, 1))
    scores, channels = lax.top_k(score, top_k)
    if mode == "max":  # single units: each on the crop that holds its receptive field, all in one vmap
        flat = jnp.argmax(a[:, :, channels].reshape(-1, top_k), axis=0)
        rows, cols = flat // a.shape[1], flat % a.shape[1]
        units = jnp.stack([jnp.zeros_like(rows), rows, cols, channels], axis=1)
        projections = jax.vmap(lambda u, v: _project_unit(model, switches, u, v, name, method, False))(
            units, a[rows, cols, channels])
    else:  # every signal has one non-zero channel: project through the top_k selected filters only, in one vmap
        signals = _signals(a, channels, mode)
        projections = jax.vmap(lambda s: _project(model, switches, s, name, method, channels))(signals)[:, 0]
    return channels, scores, projections


def _as_input(model: Model, images: Array) -> Array:
    """RGB images (uint8, or float in [0, 1]; any leading axes) -> normalized, in the model's dtype."""
    x = images.astype(model.dtype)
    if not jnp.issubdtype(images.dtype, jnp.floating):
        x = x / 255
    return normalize(x)


@functools.partial(jit, static_argnames=("name", "top_k", "mode", "rank", "method"))
def _visualize(
    model: Model, image: Array, name: str, top_k: int, mode: str, rank: str, method: str = "deconv"
) -> Visualization:
    act, switches = _forward(model, _as_input(model, image)[None], name)
    a = act[0]
    channels, scores, projections = _one_image(model, a, switches, name, top_k, mode, rank, method)
    return Visualization(a, channels, scores, projections, layer=name, mode=mode, rank=rank, method=method)


@functools.partial(jit, static_argnames=("name", "top_k", "mode", "rank", "method"))
def _visualize_batch(
    model: Model, images: Array, name: str, top_k: int, mode: str, rank: str, method: str = "deconv"
) -> Visualization:
    """A chunk of B images: one forward pass, then each image's top-k and projections, all B x top_k in one
    vmapped program (each image sees only its own switches, exactly as `_visualize` does)."""
    act, switches = _forward(model, _as_input(model, images), name)

    def one(a, sw):  # sw: one image's switches without their batch axis; `_one_image` wants N = 1
        return _one_image(model, a, jax.tree_util.tree_map(lambda l: l[None], sw), name, top_k, mode, rank, method)

    channels, scores, projections = jax.vmap(one)(act, switches)
    return Visualization(act, channels, scores, projections, layer=name, mode=mode, rank=rank, method=method)


def visualize_chunk(model: Model, images: Any, name: str, top_k: int, mode: str, rank: str, method: str,
                    size: int) -> Visualization:  # fmt: skip
    """`visualize` of n <= `size` images (n, H, W, 3) as one compiled chunk of exactly `size` images: a shorter
    (ragged) chunk is padded with zero images, whose results are dropped, so every chunk of one size, image size,
    layer and options runs the same compiled program. Arguments are not checked (`visualize` checks them)."""
    n = images.shape[0]
    if not 1 <= n <= size:
        raise ValueError(f"a chunk holds 1..{size} images, got {n}")
    if n < size:
        xp = np if isinstance(images, np.ndarray) else jnp
        images = xp.concatenate([images, xp.zeros((size - n, *images.shape[1:]), images.dtype)])
    r = _visualize_batch(model, images, name, top_k, mode, rank, method)
    return r if n == size else r[:n]


def _check_images(images: Any) -> Any:
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        images = np.asarray(images)
    if images.ndim not in (3, 4) or images.shape[-1] != 3:
        raise ValueError(
            "expected one RGB image shaped (H, W, 3) or a batch shaped (N, H, W, 3), uint8 or float in [0, 1], "
            f"got shape {tuple(images.shape)}"
        )
    if not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"expected a uint8 or float image, got dtype {images.dtype}")
    if images.ndim == 4 and images.shape[0] == 0:
        raise ValueError("expected at least one image, got an empty batch (0, H, W, 3)")
    return images


def visualize(
    model: Model,
    image: Any,
    layer: Layer,
    top_k: int = 9,
    mode: str = "max",
    rank: str = "max",
    method: str = "deconv",
    batch_size: int = 8,
):
    """Activations of `layer` for one RGB image, or a batch, and projections of each image's `top_k` strongest
    channels.

    `image`: (H, W, 3), or a batch (N, H, W, 3) of one size, uint8 or float in [0, 1] (normalized here).
    `rank`: ``"max"`` (the paper) or ``"mean"`` (the original class) activation per channel. `mode`: ``"max"``
    projects each channel's single strongest unit, ``"all"`` its whole map weighted by its own activations.
    `method`: ``"deconv"`` (the DeconvNet), ``"guided"`` (guided backprop) or ``"gradient"`` (see `project`).
    One image: one forward pass and one jit-compiled, vmapped projection of all channels. A batch: chunks of
    `batch_size` images (the last one padded to that size, so it reuses the compiled program), each chunk one
    forward pass and all its images' ``top_k`` projections in one compiled, vmapped program; memory grows with
    `batch_size`, not N. Each image's result equals `visualize` of that image alone. Returns a `Visualization`
    of jax arrays, with a leading N axis for a batch.
    """
    name = layer_name(model, layer)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of: {', '.join(MODES)}")
    if rank not in RANKS:
        raise ValueError(f"unknown rank {rank!r}; use one of: {', '.join(RANKS)}")
    check_method(method)
    n_channels = model.arch.channels(name)
    if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or not 1 <= top_k <= n_channels:
        raise ValueError(f"top_k must be an int in 1..{n_channels} ({name} has {n_channels} channels), got {top_k!r}")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    images = _check_images(image)
    layer_hw(model, name, images.shape[-3:-1])
    if images.ndim == 3:
        return _visualize(model, images, name, int(top_k), mode, rank, method)
    n = images.shape[0]
    size = min(int(batch_size), n)  # a batch smaller than one chunk is not padded
    parts = [visualize_chunk(model, images[s : s + size], name, int(top_k), mode, rank, method, size)
             for s in range(0, n, size)]  # fmt: skip
    if len(parts) == 1:
        return parts[0]
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *parts)


__all__ = ["METHODS", "forward", "project", "project_channels", "project_units", "visualize", "Visualization"]
