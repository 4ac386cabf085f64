"""Occlusion sensitivity (Zeiler & Fergus §4.2, Fig. 7): slide a grey square over the image and watch the network.

For every position of the square the occluded image is run once; three maps come out: (a) the total activation
of one feature map of a layer, (b) the probability of one class, (c) the most probable class. All positions are
evaluated inside one jit-compiled program, `chunk` occluded images at a time (vmapped), so memory stays bounded.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .batching import batches, pad_batch
from .checks import check_int
from .compile import jit
from .input_size import fit_images
from .nets import IMAGENET_MEAN, Layer, Model, layer_channels, layer_name, layers, normalize

Array = jax.Array


class OcclusionResult(NamedTuple):
    """Maps over occluder positions; entry (i, j) is for the square whose top-left corner is (rows[i], cols[j])."""

    feature: np.ndarray  # (P, Q) total activation of feature map `channel` of `layer`
    probability: np.ndarray  # (P, Q) softmax probability of class `target`
    top_class: np.ndarray  # (P, Q) int, the most probable class
    rows: np.ndarray  # (P,) top-left row of each position
    cols: np.ndarray  # (Q,) top-left column of each position
    layer: str
    channel: int
    target: int
    patch: int
    baseline_feature: float  # the same quantities for the unoccluded image
    baseline_probability: float
    classifier: str = "trained"  # the model's record: "untrained" means (b) and (c) come from random weights


def _positions(size: int, patch: int, stride: int) -> np.ndarray:
    return np.arange(0, size - patch + 1, stride)


def _as_unit_float(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an RGB image shaped (H, W, 3), got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"expected a uint8 or float [0, 1] image, got dtype {img.dtype}")
    return img


def _measure(model, img01, layer, channel, target):
    logits, acts = model.apply(normalize(img01)[None], collect=True)
    feature = jnp.sum(acts[layer][0, :, :, channel])
    probs = jax.nn.softmax(logits[0])
    return feature, probs[target], jnp.argmax(probs)


@functools.partial(jit, static_argnames=("layer", "patch"))
def _occlusion_chunk(model, image01, fill, corners, occlude, layer, channel, target, patch):
    """(feature, probability, top class) for each corner of one chunk (K, 2): one vmapped, compiled batch.
    Where `occlude` (K,) is False the image is measured as it is (the unoccluded baseline rides in a chunk)."""
    square = jnp.broadcast_to(fill.reshape(1, 1, 3), (patch, patch, 3)).astype(image01.dtype)

    def one(corner, occ):
        zero = jnp.zeros((), corner.dtype)  # a literal 0 is int64 under jax_enable_x64: the indices must agree
        occluded = lax.dynamic_update_slice(image01, square, (corner[0], corner[1], zero))
        return _measure(model, jnp.where(occ, occluded, image01), layer, channel, target)

    return jax.vmap(one)(corners, occlude)


def _occlusion_maps(model, image01, fill, corners, layer, channel, target, patch, chunk):
    """All corners and the unoccluded image, in chunks of at most `chunk` images whose width pads the fewest
    (144 positions + 1 at chunk 32: 5 chunks of 29, not 5 of 32 with 15 wasted images); the last chunk is padded
    with repeats, so one compiled program serves all. A Python loop over compiled chunks rather than lax.map,
    whose while body XLA:CPU runs slower."""
    n = len(corners)
    count, width = batches(n + 1, chunk)
    items = np.concatenate([corners, corners[-1:]])  # the last item is the unoccluded image
    occlude = np.arange(count * width) < n
    items = pad_batch(items, count * width)
    parts = [_occlusion_chunk(model, image01, fill, items[i : i + width], occlude[i : i + width], layer, channel,
                              target, patch) for i in range(0, count * width, width)]  # fmt: skip
    feat, prob, top = (jnp.concatenate(p) for p in zip(*parts))
    return (feat[:n], prob[:n], top[:n]), (feat[n], prob[n], top[n])


def occlusion(
    model: Model,
    image,
    *,
    patch: int = 48,
    stride: int = 8,
    fill=IMAGENET_MEAN,
    layer: Layer | None = None,
    channel: int | None = None,
    target: int | None = None,
    chunk: int = 32,
) -> OcclusionResult:
    """Occlusion sensitivity maps of one RGB image (uint8 HxWx3, or float in [0, 1]).

    patch, stride: side of the square and its step, in pixels. fill: its RGB colour in [0, 1] (default the ImageNet
    mean, i.e. zero after normalization: the paper's grey). layer: conv layer of the feature map (default the top
    one); channel: its feature map (default the strongest, by max activation, on the unoccluded image). target:
    class whose probability is mapped (default the class predicted for the unoccluded image). chunk: occluded
    images evaluated at once, at most (bounds memory; the result does not depend on it; the chunks' width is
    chosen to pad the fewest images, as `construct` chooses its batches). For a model whose classifier is
    untrained (``model.classifier``, copied to ``result.classifier``) the class maps are computed but mean
    nothing; `occlusion_figure` leaves them out. A network that takes one size (``model.input_size``) gets the
    image resized and center-cropped to it first (the rule of `square`); the maps are then at that size.
    """
    img = fit_images(model, _as_unit_float(image))  # a one-size network: resized to model.input_size
    h, w = img.shape[:2]
    name = layer_name(model, layer if layer is not None else len(layers(model)))
    patch, stride, chunk = (check_int(arg, v) for arg, v in (("patch", patch), ("stride", stride), ("chunk", chunk)))
    if patch > min(h, w):
        raise ValueError(f"patch of {patch} px does not fit in a {h}x{w} image; use patch <= {min(h, w)}")
    fill = np.asarray(fill, np.float64).reshape(-1)
    if fill.size == 1:
        fill = np.repeat(fill, 3)
    if fill.size != 3 or not np.all((fill >= 0) & (fill <= 1)):
        raise ValueError(f"fill must be one grey level or an RGB triple in [0, 1], got {fill.tolist()}")
    n_ch = layer_channels(model, name)
    dtype = np.dtype(model.dtype)
    x = jnp.asarray(img, dtype)
    if channel is None or target is None:
        logits, acts = model.apply(normalize(x)[None], collect=True)
        if channel is None:
            channel = int(jnp.argmax(jnp.max(acts[name][0], axis=(0, 1))))
        if target is None:
            target = int(jnp.argmax(logits[0]))
    if not 0 <= channel < n_ch:
        raise ValueError(f"channel {channel} is out of range for {name}: use 0..{n_ch - 1}")
    n_cls = model.arch.num_classes
    if not 0 <= target < n_cls:
        raise ValueError(f"target class {target} is out of range: use 0..{n_cls - 1}")
    rows, cols = _positions(h, patch, stride), _positions(w, patch, stride)
    corners = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2).astype(np.int32)
    (feat, prob, top), (f0, p0, _) = _occlusion_maps(
        model, x, jnp.asarray(fill, dtype), corners, name, channel, target, patch, chunk
    )
    shape = (len(rows), len(cols))
    return OcclusionResult(
        feature=np.asarray(feat).reshape(shape),
        probability=np.asarray(prob).reshape(shape),
        top_class=np.asarray(top).reshape(shape),
        rows=rows,
        cols=cols,
        layer=name,
        channel=int(channel),
        target=int(target),
        patch=int(patch),
        baseline_feature=float(f0),
        baseline_probability=float(p0),
        classifier=model.classifier,
    )
