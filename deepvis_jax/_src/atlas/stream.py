"""`atlas`: each channel's top-k activations of a layer over a stream of images (Zeiler & Fergus Fig. 2).

The images go through the network in fixed-size batches, sharded over the devices (`topk.update`); the running
top-k can be checkpointed and resumed (`checkpoint`); afterwards each winner is projected (`project`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from ..batching import pad_batch
from ..checks import check_int
from ..digest import weights_digest
from ..nets import Layer, Model, layer_channels, layer_name
from .checkpoint import load_state, run_record, save_state, saved_record
from .project import atlas_project
from .result import Atlas, make_result
from .sources import Folder, Stream
from .topk import AXIS, NONE, TopK, init_topk, local_rows, make_mesh, put, to_host, update


def atlas(
    model: Model,
    images: Iterable[Any] | str | os.PathLike,
    layer: Layer,
    *,
    top_k: int = 9,
    batch_size: int = 32,
    micro_batch: int = 8,
    size: int = 224,
    channels: Sequence[int] | None = None,
    project: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 20,
    resume: bool = False,
    progress: bool = True,
    devices: Sequence[Any] | None = None,
    workers: int | None = None,
) -> Atlas:
    """Each channel's `top_k` strongest activations of `layer` over a stream of images, projected and cropped.

    `images`: an iterable of RGB arrays (uint8 HxWx3, or float in [0, 1]), all the same size, numbered in order;
    or a folder, whose image files (sorted by path) are read as `load_image` reads them by a thread pool, resized
    so the shorter side is `size` and center-cropped to ``size x size``. Batches of `batch_size` (rounded up to a
    multiple of ``micro_batch`` times the device count) are sharded over `devices` (default: all, of all
    processes); each device runs the network `micro_batch` images at a time, so the result is bitwise the same for
    any device count and batch size (on the same platform). Ties: smaller image index, then smaller position. With
    `checkpoint` the state is written there every `checkpoint_every` batches and at the end; ``resume=True``
    continues from it (an iterable must yield the same images again from the start; those already counted are
    skipped), and refuses a checkpoint of another run: other weights, layer, k, image size, or a folder whose
    files changed. ``project=False`` skips the projections and patches; `channels` limits them. Memory: the state
    is (C, top_k); a one-shot iterable also keeps the images that are current winners (at most C * top_k) for the
    projections.
    """
    name = layer_name(model, layer)
    n_ch = layer_channels(model, name)
    k, batch_size, micro = (check_int(n, v) for n, v in (("top_k", top_k), ("batch_size", batch_size),
                                                         ("micro_batch", micro_batch)))  # fmt: skip
    mesh = make_mesh(devices)
    batch = -(-batch_size // (mesh.size * micro)) * mesh.size * micro
    rows = local_rows(mesh, batch)

    is_folder = isinstance(images, (str, os.PathLike))
    source = Folder(images, size, workers) if is_folder else Stream(images)
    total = len(source) if is_folder else (len(images) if hasattr(images, "__len__") else None)
    digest = weights_digest(model) if checkpoint is not None else None

    def record(image_shape) -> dict:
        return run_record(model.arch.name, digest, name, k, image_shape, source if is_folder else None)

    state, consumed, meta = init_topk(n_ch, k), 0, None
    if is_folder:
        meta = record(source.shape[:2])
    resuming = resume and checkpoint is not None and Path(checkpoint).exists()
    if resuming:  # an iterable's image size is checked against its first image below
        meta = meta or record(saved_record(checkpoint)["image_shape"])
        state, consumed = load_state(checkpoint, meta)
    host = TopK(*(np.asarray(a) for a in state))
    if not is_folder:
        winners = set(host.index[host.index != NONE].ravel().tolist())
        source.keep = winners.__contains__

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=consumed, unit="img", desc=f"atlas {name}",
               disable=not progress or jax.process_index() != 0, dynamic_ncols=True)  # fmt: skip
    writer = jax.process_index() == 0
    state = TopK(*(put(mesh, np.array(a), P()) for a in host))
    cache_limit = n_ch * k + 4 * batch
    done = 0
    try:
        for first, imgs in source.batches(consumed, batch, rows):
            n = len(imgs)
            if meta is None:
                meta = record(imgs.shape[1:3])
            elif list(imgs.shape[1:3]) != meta["image_shape"]:
                raise ValueError(f"images are {imgs.shape[2]}x{imgs.shape[1]}, but the checkpoint was made with "
                                 f"{meta['image_shape'][1]}x{meta['image_shape'][0]} images")  # fmt: skip
            index = np.full((batch,), -1, np.int32)
            index[:n] = np.arange(first, first + n, dtype=np.int32)
            imgs = pad_batch(imgs, batch)  # the padding's index is -1: it never wins
            state = update(model, state, put(mesh, imgs, P(AXIS)), put(mesh, index, P(AXIS)), name=name, k=k,
                           mesh=mesh, micro=micro)  # fmt: skip
            consumed, done = first + n, done + 1
            bar.update(n)
            if not is_folder and len(source.cache) > cache_limit:
                source.prune(set(to_host(state.index).ravel().tolist()))
            if checkpoint is not None and writer and done % checkpoint_every == 0:
                save_state(checkpoint, state, consumed, meta)
    finally:
        bar.close()
    if meta is None:
        raise ValueError("no images to process" if consumed == 0 else "no new images after the checkpoint")
    if checkpoint is not None and writer:
        save_state(checkpoint, state, consumed, meta)

    result = make_result(model, name, TopK(*(to_host(a) for a in state)), consumed, tuple(meta["image_shape"]),
                         tuple(str(f) for f in source.files) if is_folder else None)  # fmt: skip
    if not project:
        return result
    return atlas_project(model, result, source, channels=channels, batch_size=batch_size, devices=devices)
