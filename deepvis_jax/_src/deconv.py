"""Zeiler & Fergus's DeconvNet: a forward pass that records max-pooling switches, and the projection down.

`forward` runs the features up to a conv layer and returns its activation with a `Switches` pytree (one
`PoolSwitches` per max-pool below the layer, and the forward ReLU masks). `project` is the DeconvNet pass from
that layer to pixel space: an explicit backward walk over the same ops that rectifies at each ReLU (relu of the
signal, not masked by the forward), multiplies by BatchNorm's eval scale, applies each conv's exact transpose (no
bias), and unpools through the recorded switches. It equals PyTorch autograd with ReLU's backward replaced by
``relu(grad)``.

The same walk gives two more methods, chosen by ``method``; only the ReLU step differs:

- ``"deconv"``: ``relu(signal)`` (Zeiler & Fergus);
- ``"guided"``: ``relu(signal) * (forward input > 0)`` (guided backpropagation, Springenberg et al. 2014;
  Captum's GuidedBackprop);
- ``"gradient"``: ``signal * (forward input > 0)``, the ordinary vjp (saliency without the absolute value).

Switch convention: ``index[n, i, j, c]`` is the argmax's offset ``di * window + dj`` inside window ``(i, j)``
(row-major window order); ties keep the first maximum, NaN counts as the maximum (PyTorch's CPU kernels).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from deepvis_jax._src.images import min_image_size
from deepvis_jax._src.models import (
    Architecture,
    BatchNorm,
    Conv,
    Layer,
    MaxPool,
    Model,
    ReLU,
    bn_scale_shift,
    check_input,
    conv2d,
    feature_shapes,
    layer_name,
    normalize,
)

Array = jax.Array

MODES = ("max", "all")
METHODS = ("deconv", "guided", "gradient")
RANKS = ("max", "mean")


# --------------------------------------------------------------------------------------------------------------
# Switch pytrees
# --------------------------------------------------------------------------------------------------------------


@struct.dataclass
class PoolSwitches:
    """Switches of one max-pool: ``index`` (N, h, w, C) int32, the argmax's row-major offset in its window.

    ``in_hw`` (the pool's input size: floor mode loses it), ``window`` and ``stride`` are static.
    """

    index: Array
    in_hw: tuple = struct.field(pytree_node=False)
    window: int = struct.field(pytree_node=False)
    stride: int = struct.field(pytree_node=False)


@struct.dataclass
class Switches:
    """Every max-pool's switches below a layer, bottom to top; ``input_hw`` (static) is the image size.

    ``relus``: the forward mask ``input > 0`` (bool, shaped like the ReLU's input) of every ReLU up to and
    including the layer's own, bottom to top; ``"guided"`` and ``"gradient"`` projections need them.
    """

    pools: tuple  # tuple[PoolSwitches, ...]
    input_hw: tuple = struct.field(pytree_node=False)
    relus: tuple = ()  # tuple[bool Array, ...]


# --------------------------------------------------------------------------------------------------------------
# Pooling with switches, unpooling
# --------------------------------------------------------------------------------------------------------------


def _window_slice(x: Array, di: int, dj: int, h: int, w: int, stride: int) -> Array:
    """x[:, di + stride*i, dj + stride*j] for i < h, j < w."""
    n, _, _, c = x.shape
    end = (n, di + stride * (h - 1) + 1, dj + stride * (w - 1) + 1, c)
    return lax.slice(x, (0, di, dj, 0), end, (1, stride, stride, 1))


def max_pool_with_switches(x: Array, window: int, stride: int) -> tuple[Array, PoolSwitches]:
    """torch.nn.MaxPool2d(window, stride) on NHWC (no padding, floor mode), and its switches."""
    H, W = x.shape[1:3]
    h, w = (H - window) // stride + 1, (W - window) // stride + 1
    best = _window_slice(x, 0, 0, h, w, stride)
    index = jnp.zeros(best.shape, jnp.int32)
    for k in range(1, window * window):
        v = _window_slice(x, k // window, k % window, h, w, stride)
        take = (v > best) | jnp.isnan(v)  # strict: ties keep the first maximum
        best = jnp.where(take, v, best)
        index = jnp.where(take, jnp.int32(k), index)
    return best, PoolSwitches(index=index, in_hw=(H, W), window=window, stride=stride)


def unpool(signal: Array, switches: PoolSwitches) -> Array:
    """Transpose of max pooling: each value goes to its window's switch; overlapping windows add."""
    n, h, w, c = signal.shape
    H, W = switches.in_hw
    s, win = switches.stride, switches.window
    out = jnp.zeros((n, H, W, c), signal.dtype)
    zero = jnp.zeros((), signal.dtype)
    for k in range(win * win):
        di, dj = k // win, k % win
        v = jnp.where(switches.index == k, signal, zero)
        pad = ((0, 0, 0), (di, H - di - s * (h - 1) - 1, s - 1), (dj, W - dj - s * (w - 1) - 1, s - 1), (0, 0, 0))
        out = out + lax.pad(v, zero, pad)
    return out


# --------------------------------------------------------------------------------------------------------------
# forward / project
# --------------------------------------------------------------------------------------------------------------




def _bn_scale(model: Model, name: str) -> tuple[Array, Array]:
    return bn_scale_shift(model.params[name], model.variables["batch_stats"][name])


def layer_shapes(arch: Architecture, name: str, hw: Sequence[int]) -> list[tuple[int, int]]:
    """Input size of each op up to conv `name`'s ReLU, then the layer's output size; ValueError if too small."""
    sub = arch._replace(features=arch.features[: arch.top_index(name) + 1])
    try:
        return feature_shapes(sub, tuple(int(d) for d in hw))
    except ValueError:
        s = min_image_size(arch, name)
        raise ValueError(
            f"an input of {hw[0]}x{hw[1]} pixels is too small for layer {name} of {arch.name}: "
            f"its feature map vanishes; use at least {s}x{s} pixels"
        ) from None


def _forward(model: Model, x: Array, name: str) -> tuple[Array, Switches]:
    arch = model.arch
    input_hw = (int(x.shape[1]), int(x.shape[2]))
    layer_shapes(arch, name, input_hw)
    pools, relus = [], []
    for op in arch.features[: arch.top_index(name) + 1]:
        if isinstance(op, Conv):
            p = model.params[op.name]
            x = conv2d(x, p["kernel"], op.stride, op.padding) + p["bias"].reshape(1, 1, 1, -1)
        elif isinstance(op, BatchNorm):
            scale, shift = _bn_scale(model, op.name)
            x = x * scale.reshape(1, 1, 1, -1) + shift.reshape(1, 1, 1, -1)
        elif isinstance(op, ReLU):
            relus.append(x > 0)
            x = jax.nn.relu(x)
        else:
            x, sw = max_pool_with_switches(x, op.window, op.stride)
            pools.append(sw)
    return x, Switches(pools=tuple(pools), input_hw=input_hw, relus=tuple(relus))


@functools.partial(jax.jit, static_argnames=("layer",))
def forward(model: Model, x: Array, layer: Layer) -> tuple[Array, Switches]:
    """Run `model` on normalized NHWC `x` up to conv `layer` (after its ReLU); nothing above is computed.

    Returns ``(activation (N, h, w, C), switches)``: the layer's output, equal to ``model.apply(x, upto=layer)``,
    and a `Switches` pytree with every max-pool below the layer and every ReLU's forward mask up to it.
    """
    check_input(x)
    return _forward(model, x, layer_name(model, layer))


def _conv_transpose(y: Array, kernel: Array, stride: int, padding: int, in_hw: tuple[int, int]) -> Array:
    """Exact transpose of the bias-free ``conv2d(., kernel, stride, padding)`` whose input is ``in_hw`` large."""
    spec = jax.ShapeDtypeStruct((y.shape[0], *in_hw, kernel.shape[2]), y.dtype)
    (x,) = jax.linear_transpose(lambda v: conv2d(v, kernel, stride, padding), spec)(y)
    return x


def _relu_back(signal: Array, mask: Array | None, method: str) -> Array:
    """The backward step through one ReLU: rectify (deconv), mask (gradient), or both (guided)."""
    if method == "deconv":
        return jax.nn.relu(signal)
    zero = jnp.zeros((), signal.dtype)
    return jnp.where(mask, jax.nn.relu(signal) if method == "guided" else signal, zero)


def _descend(model: Model, switches: Switches, signal: Array, top: int, shapes, method: str) -> Array:
    """The backward pass of `method` through ``arch.features[top], ..., arch.features[0]``."""
    pools = list(switches.pools)
    relus = list(switches.relus[: sum(isinstance(op, ReLU) for op in model.arch.features[: top + 1])])
    for i in range(top, -1, -1):
        op = model.arch.features[i]
        if isinstance(op, ReLU):
            signal = _relu_back(signal, relus.pop() if method != "deconv" else None, method)
        elif isinstance(op, BatchNorm):
            scale, _ = _bn_scale(model, op.name)
            signal = signal * scale.reshape(1, 1, 1, -1)
        elif isinstance(op, Conv):
            signal = _conv_transpose(signal, model.params[op.name]["kernel"], op.stride, op.padding, shapes[i])
        else:
            signal = unpool(signal, pools.pop())
    return signal


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")


def _check_projection(
    model: Model, switches: Switches, signal: Any, name: str, channels: int | None, method: str = "deconv"
) -> list:
    _check_method(method)
    arch = model.arch
    shapes = layer_shapes(arch, name, switches.input_hw)
    n_pools = sum(isinstance(op, MaxPool) for op in arch.features[: arch.top_index(name) + 1])
    if len(switches.pools) != n_pools:
        raise ValueError(
            f"these switches hold {len(switches.pools)} max-pools, but {name} of {arch.name} has {n_pools} below "
            "it; record them with forward() at the same layer"
        )
    n_relus = sum(isinstance(op, ReLU) for op in arch.features[: arch.top_index(name) + 1])
    if method != "deconv" and len(switches.relus) != n_relus:
        raise ValueError(
            f"method {method!r} needs the forward ReLU masks: these switches hold {len(switches.relus)}, but {name} "
            f"of {arch.name} has {n_relus} ReLUs up to it; record them with forward() at the same layer"
        )
    h, w = shapes[-1]
    c = arch.conv(name).features if channels is None else channels
    n = switches.pools[0].index.shape[0] if switches.pools else getattr(signal, "shape", (None,))[0]
    if getattr(signal, "shape", None) != (n, h, w, c):
        raise ValueError(
            f"expected a signal shaped like {name}'s activation {(n, h, w, c)}, got {getattr(signal, 'shape', None)}"
        )
    return shapes


def _project(model: Model, switches: Switches, signal: Array, name: str, method: str = "deconv") -> Array:
    shapes = _check_projection(model, switches, signal, name, None, method)
    return _descend(model, switches, signal, model.arch.top_index(name), shapes, method)


@functools.partial(jax.jit, static_argnames=("layer", "method"))
def project(model: Model, switches: Switches, signal: Array, layer: Layer, method: str = "deconv") -> Array:
    """Projection of `signal` (shaped like `layer`'s activation) to input space, (N, H, W, 3).

    Going down: ReLU -> relu(signal) (``method="deconv"``, the DeconvNet), ``relu(signal) * (input > 0)``
    (``"guided"`` backprop) or ``signal * (input > 0)`` (``"gradient"``: the vjp of ``model.apply(x,
    upto=layer)``); BatchNorm -> times its eval scale; conv -> its exact transpose (no bias); max-pool -> unpool
    through `switches` (from ``forward(model, x, layer)``). Pure and linear between rectifications; vmap it over
    signals sharing one set of switches with ``in_axes=(None, None, 0, None)``.
    """
    return _project(model, switches, signal, layer_name(model, layer), method)


@functools.partial(jax.jit, static_argnames=("layer", "method"))
def project_channels(
    model: Model, switches: Switches, signal: Array, channels: Array, layer: Layer, method: str = "deconv"
) -> Array:
    """`project` of a signal that is zero outside `channels`: `signal` (N, h, w, K) holds those K channels.

    Equals ``project(model, switches, full, layer, method)`` where ``full[..., channels] = signal``, but the top
    conv's transpose uses only those K filters (most of a top layer's cost when K is much smaller than C).
    """
    name = layer_name(model, layer)
    arch = model.arch
    shapes = _check_projection(model, switches, signal, name, channels.shape[0], method)
    ci = arch.conv_op_index(name)
    for i in range(arch.top_index(name), ci, -1):
        op = arch.features[i]
        if isinstance(op, ReLU):  # the layer's own ReLU: the last mask
            mask = switches.relus[-1][..., channels] if method != "deconv" else None
            signal = _relu_back(signal, mask, method)
        else:  # the layer's BatchNorm
            scale, _ = _bn_scale(model, op.name)
            signal = signal * scale[channels].reshape(1, 1, 1, -1)
    op = arch.features[ci]
    signal = _conv_transpose(signal, model.params[name]["kernel"][..., channels], op.stride, op.padding, shapes[ci])
    return _descend(model, switches, signal, ci - 1, shapes, method)


# --------------------------------------------------------------------------------------------------------------
# visualize
# --------------------------------------------------------------------------------------------------------------


@struct.dataclass
class Visualization:
    """What `visualize` returns (jax arrays): for one image and one conv layer,

    - ``activations`` (h, w, C): every channel's map (after ReLU);
    - ``channels`` (top_k,) int32: the strongest channels, strongest first; ``scores`` (top_k,): their max
      (or mean) activation;
    - ``projections`` (top_k, H, W, 3): their projections (DeconvNet, guided backprop or gradient) in
      (normalized) input space;
    - ``layer`` (static): the layer's name; ``mode``/``rank``/``method`` (static): how they were made.
    """

    activations: Array
    channels: Array
    scores: Array
    projections: Array
    layer: str = struct.field(pytree_node=False)
    mode: str = struct.field(pytree_node=False, default="max")
    rank: str = struct.field(pytree_node=False, default="max")
    method: str = struct.field(pytree_node=False, default="deconv")


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


@functools.partial(jax.jit, static_argnames=("name", "top_k", "mode", "rank", "method"))
def _visualize(
    model: Model, image: Array, name: str, top_k: int, mode: str, rank: str, method: str = "deconv"
) -> Visualization:
    x = image.astype(model.dtype)
    if not jnp.issubdtype(image.dtype, jnp.floating):
        x = x / 255
    act, switches = _forward(model, normalize(x)[None], name)
    a = act[0]
    score = jnp.max(a, axis=(0, 1)) if rank == "max" else jnp.mean(a, axis=(0, 1))
    scores, channels = lax.top_k(score, top_k)
    signals = _signals(a, channels, mode)
    # every signal has one non-zero channel: project through the top_k selected filters only, all in one vmap
    projections = jax.vmap(project_channels, in_axes=(None, None, 0, None, None, None))(
        model, switches, signals, channels, name, method
    )[:, 0]
    return Visualization(a, channels, scores, projections, layer=name, mode=mode, rank=rank, method=method)


def visualize(
    model: Model,
    image: Any,
    layer: Layer,
    top_k: int = 9,
    mode: str = "max",
    rank: str = "max",
    method: str = "deconv",
):
    """Activations of conv `layer` for one RGB image and projections of its `top_k` strongest channels.

    `image`: (H, W, 3), uint8 or float in [0, 1] (normalized here). `rank`: ``"max"`` (the paper) or ``"mean"``
    (the original class) activation per channel. `mode`: ``"max"`` projects each channel's single strongest
    unit, ``"all"`` its whole map weighted by its own activations. `method`: ``"deconv"`` (the DeconvNet),
    ``"guided"`` (guided backprop) or ``"gradient"`` (see `project`). One forward pass and one jit-compiled,
    vmapped projection of all channels. Returns a `Visualization` of jax arrays.
    """
    name = layer_name(model, layer)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of: {', '.join(MODES)}")
    if rank not in RANKS:
        raise ValueError(f"unknown rank {rank!r}; use one of: {', '.join(RANKS)}")
    _check_method(method)
    n_channels = model.arch.conv(name).features
    if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or not 1 <= top_k <= n_channels:
        raise ValueError(f"top_k must be an int in 1..{n_channels} ({name} has {n_channels} channels), got {top_k!r}")
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"expected one RGB image shaped (H, W, 3), uint8 or float in [0, 1], got shape {tuple(image.shape)}"
        )
    if not (image.dtype == np.uint8 or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"expected a uint8 or float image, got dtype {image.dtype}")
    layer_shapes(model.arch, name, image.shape[:2])
    return _visualize(model, image, name, int(top_k), mode, rank, method)
