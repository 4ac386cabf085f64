"""The winners' pictures: each winner's projection (DeconvNet, guided or gradient) on the crop that holds its
receptive field, and the same window cut from its image (`atlas_project`)."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from ..batching import pad_batch
from ..compile import jit
from ..deconv import project_units
from ..nets import Model, normalize
from ..rules import check_method
from ..windows import slice_window
from .result import Atlas
from .sources import indexed
from .topk import AXIS, make_mesh, put, to_host


@functools.partial(jit, static_argnames=("name", "size", "method"))
def _project_winners(model, images, rows, cols, chans, values, tops, lefts, *, name: str, size: int,
                     method: str = "deconv"):  # fmt: skip
    """Each winner's projection (`method`) on the crop holding its receptive field, and its image patch."""
    x = normalize(images.astype(model.dtype) / 255.0)
    units = jnp.stack([jnp.arange(images.shape[0]), rows, cols, chans], axis=1)
    # forward and projection on each winner's receptive-field crop only
    recon = project_units(model, x, units, values.astype(model.dtype), name, method, crop_to_field=True)
    # the same window of each image (zero outside it)
    window = lambda a, t, l: slice_window(a[None], jnp.stack([t, l]), (size, size), 0)[0]  # noqa: E731
    patches = jax.vmap(window)(images, tops, lefts)
    return recon.astype(jnp.float32), patches


def atlas_project(
    model: Model,
    result: Atlas,
    images: Any,
    *,
    channels: Sequence[int] | None = None,
    batch_size: int = 32,
    devices: Sequence[Any] | None = None,
    size: int = 224,
    method: str = "deconv",
) -> Atlas:
    """Fill in ``projections`` and ``patches`` of `result` for `channels` (default: all).

    `images` must give the stream's images by index: a sequence of arrays, a folder (as passed to `atlas`), or
    the source `atlas` used internally. Each winner's unit (its activation as the signal) is projected with
    ``project_units(model, images, ..., method, crop_to_field=True)`` (`method`: ``"deconv"``, the DeconvNet, by
    default; ``"guided"`` or ``"gradient"``), whose forward pass (for the switches) and projection both run on the
    crop holding the unit's receptive field only; it returns that field's window (``result.receptive_field``), and
    the same window is cropped from the image.
    """
    check_method(method)
    name, k = result.layer, result.values.shape[1]
    source = indexed(images, size)
    n_ch = result.values.shape[0]
    chans = np.arange(n_ch) if channels is None else np.asarray(list(channels), np.int64).reshape(-1)
    if chans.size and (chans.min() < 0 or chans.max() >= n_ch):
        raise ValueError(f"channels must be in 0..{n_ch - 1} for {name}, got {channels!r}")
    r = result.receptive_field.size
    mesh = make_mesh(devices)
    batch = -(-batch_size // mesh.size) * mesh.size
    entries = [(i, c, j) for i, c in enumerate(chans) for j in range(k) if result.image_index[c, j] >= 0]
    projections = np.zeros((len(chans), k, r, r, 3), np.float32)
    patches = np.zeros((len(chans), k, r, r, 3), np.uint8)
    images_cache: dict[int, np.ndarray] = {}
    for s in range(0, len(entries), batch):
        chunk = entries[s : s + batch]
        pad = pad_batch(chunk, batch)
        idx = [int(result.image_index[c, j]) for _, c, j in pad]
        for i in set(idx) - set(images_cache):
            images_cache[i] = source.fetch(i)
        imgs = np.stack([images_cache[i] for i in idx])
        pos = np.array([result.position[c, j] for _, c, j in pad], np.int32)
        rf = result.receptive_field
        args = (
            pos[:, 0], pos[:, 1], np.array([c for _, c, _ in pad], np.int32),
            np.array([result.values[c, j] for _, c, j in pad], np.float32),
            (rf.offset + rf.stride * pos[:, 0]).astype(np.int32), (rf.offset + rf.stride * pos[:, 1]).astype(np.int32),
        )  # fmt: skip
        proj, patch = _project_winners(model, put(mesh, imgs, P(AXIS)), *(put(mesh, a, P(AXIS)) for a in args),
                                       name=name, size=r, method=method)  # fmt: skip
        proj, patch = to_host(proj), to_host(patch)
        for t, (i, c, j) in enumerate(chunk):
            projections[i, j], patches[i, j] = proj[t], patch[t]
        if len(images_cache) > 4 * batch:
            images_cache.clear()
    return result._replace(channels=chans, projections=projections, patches=patches)
