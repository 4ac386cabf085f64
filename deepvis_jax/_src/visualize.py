"""`visualize`: a layer's activations for an image (or a batch) and the projections of its strongest channels.

Built on `deconv`: one forward pass records the switches, then each chosen channel is projected (its strongest
unit on the crop that holds its receptive field, or its whole map) in one jit-compiled, vmapped program.
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
from .batching import pad_batch
from .checks import check_choice, check_int
from .deconv import forward, project_channels, project_units
from .input_size import fit_images
from .nets import Layer, Model, layer_hw, layer_name, normalize
from .rules import METHODS, Switches

Array = jax.Array

MODES = ("max", "all")
RANKS = ("max", "mean")


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
        projections = project_units(model, switches, units, a[rows, cols, channels], name, method)
    else:  # every signal has one non-zero channel: project through the top_k selected filters only, in one vmap
        signals = _signals(a, channels, mode)
        projections = jax.vmap(lambda s: project_channels(model, switches, s, channels, name, method))(signals)[:, 0]
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
    act, switches = forward(model, _as_input(model, image)[None], name)
    a = act[0]
    channels, scores, projections = _one_image(model, a, switches, name, top_k, mode, rank, method)
    return Visualization(a, channels, scores, projections, layer=name, mode=mode, rank=rank, method=method)


@functools.partial(jit, static_argnames=("name", "top_k", "mode", "rank", "method"))
def _visualize_batch(
    model: Model, images: Array, name: str, top_k: int, mode: str, rank: str, method: str = "deconv"
) -> Visualization:
    """A chunk of B images: one forward pass, then each image's top-k and projections, all B x top_k in one
    vmapped program (each image sees only its own switches, exactly as `_visualize` does)."""
    act, switches = forward(model, _as_input(model, images), name)

    def one(a, sw):  # sw: one image's switches without their batch axis; `_one_image` wants N = 1
        return _one_image(model, a, jax.tree_util.tree_map(lambda l: l[None], sw), name, top_k, mode, rank, method)

    channels, scores, projections = jax.vmap(one)(act, switches)
    return Visualization(act, channels, scores, projections, layer=name, mode=mode, rank=rank, method=method)


def visualize_chunk(model: Model, images: Any, name: str, top_k: int, mode: str, rank: str, method: str,
                    size: int) -> Visualization:  # fmt: skip
    """`visualize` of n <= `size` images (n, H, W, 3) as one compiled chunk of exactly `size` images: a shorter
    (ragged) chunk is padded (`pad_batch`), the padding's results dropped, so every chunk of one size, image size,
    layer and options runs the same compiled program. Arguments are not checked (`check_options` checks them)."""
    n = images.shape[0]
    r = _visualize_batch(model, pad_batch(images, size), name, top_k, mode, rank, method)
    return r if n == size else r[:n]


def check_options(model: Model, layer: Layer, top_k: Any, mode: str, rank: str, method: str) -> tuple[str, int]:
    """(layer name, top_k) after checking `visualize`'s options; ValueError naming the bad one."""
    name = layer_name(model, layer)
    check_choice("mode", mode, MODES)
    check_choice("rank", rank, RANKS)
    check_choice("method", method, METHODS)
    n_channels = model.arch.channels(name)
    return name, check_int("top_k", top_k, high=n_channels, what=f"{name} has {n_channels} channels")


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


def _visualize_units(model: Model, image: Any, layer: Layer, units: Any, method: str) -> Visualization:
    """`visualize(..., units=...)`: the given units' projections (see there)."""
    name = layer_name(model, layer)
    check_choice("method", method, METHODS)
    images = fit_images(model, _check_images(image))
    h, w = layer_hw(model, name, images.shape[-3:-1])
    c = model.arch.channels(name)
    u = np.asarray(units)
    if u.ndim != 2 or u.shape[1] != 3 or u.shape[0] == 0 or not np.issubdtype(u.dtype, np.integer):
        raise ValueError(f"units must be a non-empty list of (y, x, c) integer triples, got {units!r}"[:200])
    bad = [tuple(int(v) for v in t) for t in u if not (0 <= t[0] < h and 0 <= t[1] < w and 0 <= t[2] < c)]
    if bad:
        raise ValueError(f"unit {bad[0]} is outside {name}'s map of {h}x{w} and {c} channels")
    batch = images if images.ndim == 4 else images[None]
    x = _as_input(model, jnp.asarray(batch))
    act, switches = forward(model, x, name)
    results = []
    for i in range(batch.shape[0]):
        ui = jnp.asarray(np.concatenate([np.full((len(u), 1), i), u], 1), jnp.int32)
        values = act[i][tuple(u.T)]
        proj = project_units(model, switches, ui, values, name, method)
        results.append(Visualization(act[i], jnp.asarray(u[:, 2], jnp.int32), values, proj, layer=name,
                                     method=method))  # fmt: skip
    if images.ndim == 3:
        return results[0]
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *results)


def visualize(
    model: Model,
    image: Any,
    layer: Layer,
    top_k: int = 9,
    mode: str = "max",
    rank: str = "max",
    method: str = "deconv",
    batch_size: int = 8,
    units: Any = None,
):
    """Activations of `layer` for one RGB image, or a batch, and projections of each image's `top_k` strongest
    channels.

    `image`: (H, W, 3), or a batch (N, H, W, 3) of one size, uint8 or float in [0, 1] (normalized here). A
    network that takes one size (``model.input_size``) gets the images resized and center-cropped to it first
    (`input_size.fit`: the rule of `square`), and the results are at that size.
    `rank`: ``"max"`` (the paper) or ``"mean"`` (the original class) activation per channel. `mode`: ``"max"``
    projects each channel's single strongest unit, ``"all"`` its whole map weighted by its own activations.
    `method`: ``"deconv"`` (the DeconvNet), ``"guided"`` (guided backprop) or ``"gradient"`` (see `project`).
    One image: one forward pass and one jit-compiled, vmapped projection of all channels. A batch: chunks of
    `batch_size` images (the last one padded to that size, so it reuses the compiled program), each chunk one
    forward pass and all its images' ``top_k`` projections in one compiled, vmapped program; memory grows with
    `batch_size`, not N. Each image's result equals `visualize` of that image alone. Returns a `Visualization`
    of jax arrays, with a leading N axis for a batch.

    `units`: instead of the top-k channels, project these units, a list of ``(y, x, c)`` of the layer's map (the
    same for every image of a batch), each by its own activation (as "max" mode projects a channel's strongest
    unit), through `project_units` (on its receptive field's crop where the layer's field is local): then
    ``channels`` are the units' channels, ``scores`` their activations and ``projections`` (len(units), H, W, 3).
    `top_k`, `mode` and `rank` are not used. E.g. a graph network's ``"output"`` layer (its output map: a
    segmentation or text-probability map) and its strongest unit.
    """
    if units is not None:
        return _visualize_units(model, image, layer, units, method)
    name, top_k = check_options(model, layer, top_k, mode, rank, method)
    batch_size = check_int("batch_size", batch_size)
    images = fit_images(model, _check_images(image))  # a one-size network: resized to model.input_size
    layer_hw(model, name, images.shape[-3:-1])
    if images.ndim == 3:
        return _visualize(model, images, name, top_k, mode, rank, method)
    n = images.shape[0]
    size = min(batch_size, n)  # a batch smaller than one chunk is not padded
    parts = [visualize_chunk(model, images[s : s + size], name, top_k, mode, rank, method, size)
             for s in range(0, n, size)]  # fmt: skip
    if len(parts) == 1:
        return parts[0]
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *parts)


__all__ = ["MODES", "RANKS", "Visualization", "check_options", "visualize", "visualize_chunk"]
