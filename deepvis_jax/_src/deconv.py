"""Zeiler & Fergus's DeconvNet, guided backpropagation and gradients: `forward`, `project`, `visualize`.

`forward` runs the network up to a layer with `rules.Record` ops and returns the layer's activation with a
`Switches` pytree: every max-pool's switches and every ReLU's forward mask below it. `project` is the vjp of the
same forward pass replayed with `rules.Replay` ops: each max-pool gathers at its switches (so its transpose is the
unpooling) and each ReLU's backward is the method's rule, ``relu(g)`` (``"deconv"``), ``relu(g) * (x > 0)``
(``"guided"``) or ``g * (x > 0)`` (``"gradient"``). Convolutions (their exact transposes, no bias), BatchNorm (its
eval scale) and residual additions are transposed by autodiff. For the DeconvNet this is Zeiler & Fergus §2.1;
each method equals PyTorch autograd with every ReLU's backward replaced by its rule (Captum's Deconvolution,
GuidedBackprop, and Saliency without the absolute value).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from .nets import Layer, Model, check_input, layer_hw, layer_name, normalize
from .rules import METHODS, Record, Replay, Switches, check_method

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


@functools.partial(jax.jit, static_argnames=("layer",))
def forward(model: Model, x: Array, layer: Layer) -> tuple[Array, Switches]:
    """Run `model` on normalized NHWC `x` up to `layer` (after its ReLU); nothing above is computed.

    Returns ``(activation (N, h, w, C), switches)``: the layer's output, equal to ``model.apply(x, upto=layer)``,
    and a `Switches` pytree with every max-pool below the layer and every ReLU's forward mask up to it.
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


@functools.partial(jax.jit, static_argnames=("layer", "method"))
def project(model: Model, switches: Switches, signal: Array, layer: Layer, method: str = "deconv") -> Array:
    """Projection of `signal` (shaped like `layer`'s activation) to input space, (N, H, W, 3).

    The vjp of the forward pass up to `layer` in which every max-pool is fixed to its recorded `switches` (from
    ``forward(model, x, layer)``) and every ReLU's backward is `method`'s rule: ``relu(g)`` (``"deconv"``, the
    DeconvNet), ``relu(g) * (input > 0)`` (``"guided"`` backprop) or ``g * (input > 0)`` (``"gradient"``: the vjp
    of ``model.apply(x, upto=layer)``). So going down, BatchNorm multiplies by its eval scale, each conv applies its
    exact transpose (no bias), each max-pool unpools through its switches. Pure and linear between rectifications;
    vmap it over signals sharing one set of switches with ``in_axes=(None, None, 0, None)``.
    """
    name = layer_name(model, layer)
    _check_projection(model, switches, signal, name, None, method)
    return _project(model, switches, signal, name, method)


@functools.partial(jax.jit, static_argnames=("layer", "method"))
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
    projections = jax.vmap(lambda s: _project(model, switches, s, name, method, channels))(signals)[:, 0]
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
    """Activations of `layer` for one RGB image and projections of its `top_k` strongest channels.

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
    check_method(method)
    n_channels = model.arch.channels(name)
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
    layer_hw(model, name, image.shape[:2])
    return _visualize(model, image, name, int(top_k), mode, rank, method)


__all__ = ["METHODS", "forward", "project", "project_channels", "visualize", "Visualization"]
