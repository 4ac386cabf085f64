"""Zeiler & Fergus's DeconvNet, guided backpropagation and gradients: `forward`, `project`, `visualize`.

`forward` runs the network up to a layer with `rules.Record` ops and returns the layer's activation with a
`Switches` pytree: every max-pool's switches and every ReLU's forward mask below it. `project` is the vjp of the
same forward pass replayed with `rules.Replay` ops: each max-pool gathers at its switches (so its transpose is the
unpooling) and each ReLU's backward is the method's rule, ``relu(g)`` (``"deconv"``), ``relu(g) * (x > 0)``
(``"guided"``) or ``g * (x > 0)`` (``"gradient"``). Convolutions (their exact transposes, no bias), BatchNorm (its
eval scale) and residual additions are transposed by autodiff. For the DeconvNet this is Zeiler & Fergus §2.1;
each method equals PyTorch autograd with every ReLU's backward replaced by its rule (Captum's Deconvolution,
GuidedBackprop, and Saliency without the absolute value). Graph networks' other nonlinearities (GELU, SiLU, gates,
softmax, ...) follow the table in `rules.py` (docs/projection-rules.md). `visualize.py` builds the high-level call
on these.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .compile import jit
from .crops import CropRecord, CropReplay, cone_geometry, window_geometry
from .nets import IMPORTED, Architecture, Layer, Model, check_input, layer_hw, layer_name, receptive_field
from .rules import METHODS, Record, Replay, Shapes, Switches, check_method
from .windows import slice_window, window_inside

Array = jax.Array


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
    arguments on an `hw` image, in call order, with their cumulative strides (`crops.window_geometry`, from a
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


def uses_cone(model: Model, name: str, hw: tuple[int, int]) -> bool:
    """Whether `project_units` computes `name`'s units on their cones (`crops.cone_geometry`): AlexNet and VGG
    where the unit's receptive field fits in the image (a larger field's cone would cost more than the image)."""
    return isinstance(model.arch, Architecture) and receptive_field(model, name).size <= min(hw)


def crop_geometry(model: Model, name: str, hw: tuple[int, int]) -> tuple[tuple[int, int], int, int, int]:
    """The crop `project_units` computes on: its (height, width), and the unit's receptive field size, stride and
    offset. A cone (`uses_cone`) is the field itself. A box is `size + stride - 1` pixels (the field, and the
    slack to start at a multiple of the stride), or the whole image along an axis where that is not smaller. A
    graph network's layer whose field is the whole image (or a graph that takes one image size) uses the whole
    image (`GraphArchitecture.crops`)."""
    size, stride, offset = receptive_field(model, name, hw)
    if uses_cone(model, name, hw):
        return (size, size), size, stride, offset
    side = size + stride - 1
    if isinstance(model.arch, IMPORTED) and not model.arch.crops(name):
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
    cone = uses_cone(model, name, (H, W))
    if cone:  # the field itself (it may start above or left of the image: the window reads zeros there)
        tops = jnp.stack([stride * row + offset, stride * col + offset])
    else:  # a box aligned to the stride; ceil(-offset / stride) strides before the unit
        first = -(offset // stride)
        tops = jnp.stack([stride * (row - first) if hc < H else 0 * row,
                          stride * (col - first) if wc < W else 0 * col])  # fmt: skip
    one = jax.tree_util.tree_map(lambda a: lax.dynamic_index_in_dim(a, n, 0, keepdims=True), source)
    channels = jnp.reshape(channel, (1,))
    graph = isinstance(model.arch, IMPORTED)
    if graph and (hc, wc) == (H, W):  # the whole image: the plain record and replay
        def record_ops():
            return Record()

        def replay_ops():
            return Replay(one, method)

        extra = {}
    else:  # a crop; a graph network also zeroes every map outside the whole image's map (its `crop` argument)
        geometry = cone_geometry(model.arch, name, (H, W)) if cone else _geometry(model, name, (H, W))

        def record_ops():
            return CropRecord(geometry, tops, cone=cone)

        def replay_ops():
            return CropReplay(one, method, geometry, tops, local=from_images, cone=cone)

        extra = {"crop": (tops, (H, W))} if graph else {}
    if from_images:  # the crop's forward pass records the switches and masks the projection reads
        record = record_ops()
        model.apply(slice_window(one, tops, (hc, wc), 0), upto=name, ops=record, **extra)
        one = record.switches((hc, wc))

    def replay(x):
        return model.apply(x, upto=name, channels=channels, ops=replay_ops(), **extra)

    x0 = jnp.zeros((1, hc, wc, 3), model.dtype)
    out, vjp = jax.vjp(replay, x0)
    at = (0, 0) if cone else (row - tops[0] // stride, col - tops[1] // stride)  # the unit in the top map
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
        inside = window_inside(jnp.stack(origin), (size, size), (H, W))[0]
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


__all__ = ["METHODS", "forward", "project", "project_channels", "project_units"]
