"""`atlas`: each channel's top-k activations of one or several layers over a stream of images (Zeiler & Fergus
Fig. 2).

The images go through the network once, in fixed-size batches sharded over the devices, up to the deepest layer
asked for, and every layer's running top-k is updated in the same compiled program (`topk.update`); the running
top-k can be checkpointed and resumed (`checkpoint`); afterwards each winner is projected (`project`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from ..batching import pad_batch
from ..checks import check_int
from ..digest import weights_digest
from ..input_size import fit_iterable, side
from ..nets import Layer, Model, layer_channels, layer_name
from .checkpoint import load_state, run_record, save_state, saved_record
from .project import atlas_project, check_channels
from .result import Atlas, make_result
from .sources import Folder, Stream
from .topk import AXIS, NONE, TopK, init_topk, local_rows, make_mesh, put, to_host, update


def _layer_names(model: Model, layer: Layer | None, layers: Sequence[Layer] | None) -> list[str]:
    """The resolved, de-duplicated names of `layer` or `layers` (exactly one of them given)."""
    if (layer is None) == (layers is None):
        raise ValueError("atlas takes one layer or layers=, not both" if layer is not None else
                         "atlas needs a layer, or several as layers=[...]")  # fmt: skip
    if layers is not None:
        if isinstance(layers, (str, int, np.integer)) or not len(layers):
            raise ValueError(f"layers must be a non-empty list of layers, got {layers!r}; pass one as layer=")
        return list(dict.fromkeys(layer_name(model, a) for a in layers))
    if isinstance(layer, (list, tuple)):
        raise ValueError(f"layer must be one layer, got {layer!r}; pass several as layers=[...]")
    return [layer_name(model, layer)]


def _channels_of(model: Model, names: list[str], channels) -> dict[str, Sequence[int] | None]:
    """Each layer's `channels` to project: one sequence for every layer, or a mapping layer -> channels (a layer
    it leaves out: all)."""
    if isinstance(channels, Mapping):
        by_name = {layer_name(model, a): c for a, c in channels.items()}
        extra = [n for n in by_name if n not in names]
        if extra:
            raise ValueError(f"channels names {', '.join(extra)}, not one of the atlas's layers ({', '.join(names)})")
        out = {n: by_name.get(n) for n in names}
    else:
        out = {n: channels for n in names}
    for n, chans in out.items():  # before the pass, not after it
        check_channels(chans, layer_channels(model, n), n)
    return out


def atlas(
    model: Model,
    images: Iterable[Any] | str | os.PathLike,
    layer: Layer | None = None,
    *,
    layers: Sequence[Layer] | None = None,
    top_k: int = 9,
    per_image: bool = True,
    batch_size: int = 32,
    micro_batch: int = 8,
    size: int = 224,
    channels: Sequence[int] | Mapping[Layer, Sequence[int]] | None = None,
    project: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 20,
    resume: bool = False,
    progress: bool = True,
    devices: Sequence[Any] | None = None,
    workers: int | None = None,
) -> Atlas | dict[str, Atlas]:
    """Each channel's `top_k` strongest activations of `layer` over a stream of images, projected and cropped; with
    ``layers=[...]`` those of every layer, in one pass: a dict ``{layer name: Atlas}`` in the order given.

    `images`: an iterable of RGB arrays (uint8 HxWx3, or float in [0, 1]), all the same size, numbered in order;
    or a folder, whose image files (sorted by path) are read as `load_image` reads them by a thread pool, resized
    so the shorter side is `size` and center-cropped to ``size x size``. Each batch is read once and runs through
    the network once, up to the deepest of the layers; every layer's running top-k is updated in the same compiled
    program, so each layer's result is bitwise the one-layer run's. Batches of `batch_size` (rounded up to a
    multiple of ``micro_batch`` times the device count) are sharded over `devices` (default: all, of all
    processes); each device runs the network `micro_batch` images at a time, so the result is bitwise the same for
    any device count and batch size (on the same platform).

    ``per_image=True`` (the default): a channel's top-k are its k strongest *images*, each at its strongest unit;
    ``per_image=False``: its k strongest units, several of which may lie in one image. Ties: the larger
    activation, then the smaller image index, then the smaller row-major position.

    With `checkpoint` the state of every layer is written there every `checkpoint_every` batches and at the end;
    ``resume=True`` continues from it (an iterable must yield the same images again from the start; those already
    counted are skipped), and refuses a checkpoint of another run: other weights, layers, k, per_image, image
    size, or a folder whose files changed. ``project=False`` skips the projections and patches; `channels` limits
    them (one list for every layer, or a mapping layer -> channels). Memory: the state is (C, top_k) per layer; a
    one-shot iterable also keeps the images that are current winners (at most the sum of C * top_k) for the
    projections.
    """
    names = _layer_names(model, layer, layers)
    n_ch = {n: layer_channels(model, n) for n in names}
    chosen = _channels_of(model, names, channels)
    k, batch_size, micro = (check_int(n, v) for n, v in (("top_k", top_k), ("batch_size", batch_size),
                                                         ("micro_batch", micro_batch)))  # fmt: skip
    per_image = bool(per_image)
    mesh = make_mesh(devices)
    batch = -(-batch_size // (mesh.size * micro)) * mesh.size * micro
    rows = local_rows(mesh, batch)

    is_folder = isinstance(images, (str, os.PathLike))
    size = side(model, size)  # a network that takes one size: images are brought to model.input_size
    source = Folder(images, size, workers) if is_folder else Stream(fit_iterable(model, images))
    total = len(source) if is_folder else (len(images) if hasattr(images, "__len__") else None)
    digest = weights_digest(model) if checkpoint is not None else None

    def record(image_shape) -> dict:
        return run_record(model.arch.name, digest, names, k, per_image, image_shape, source if is_folder else None)

    states, consumed, meta = [init_topk(n_ch[n], k) for n in names], 0, None
    if is_folder:
        meta = record(source.shape[:2])
    resuming = resume and checkpoint is not None and Path(checkpoint).exists()
    if resuming:  # an iterable's image size is checked against its first image below
        meta = meta or record(saved_record(checkpoint)["image_shape"])
        states, consumed = load_state(checkpoint, meta)
    if not is_folder:
        winners = set().union(*(s.index[s.index != NONE].ravel().tolist() for s in states))
        source.keep = winners.__contains__

    from tqdm.auto import tqdm

    desc = f"atlas {names[0]}" if len(names) == 1 else f"atlas {len(names)} layers"
    bar = tqdm(total=total, initial=consumed, unit="img", desc=desc,
               disable=not progress or jax.process_index() != 0, dynamic_ncols=True)  # fmt: skip
    writer = jax.process_index() == 0
    states = tuple(TopK(*(put(mesh, np.array(a), P()) for a in s)) for s in states)
    cache_limit = sum(n_ch.values()) * k + 4 * batch
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
            states = update(model, states, put(mesh, imgs, P(AXIS)), put(mesh, index, P(AXIS)), names=tuple(names),
                            k=k, mesh=mesh, micro=micro, per_image=per_image)  # fmt: skip
            consumed, done = first + n, done + 1
            bar.update(n)
            if not is_folder and len(source.cache) > cache_limit:
                source.prune(set().union(*(to_host(s.index).ravel().tolist() for s in states)))
            if checkpoint is not None and writer and done % checkpoint_every == 0:
                save_state(checkpoint, states, consumed, meta)
    finally:
        bar.close()
    if meta is None:
        raise ValueError("no images to process" if consumed == 0 else "no new images after the checkpoint")
    if checkpoint is not None and writer:
        save_state(checkpoint, states, consumed, meta)

    files = tuple(str(f) for f in source.files) if is_folder else None
    results = {}
    for name, state in zip(names, states):
        result = make_result(model, name, TopK(*(to_host(a) for a in state)), consumed, tuple(meta["image_shape"]),
                             files, per_image)  # fmt: skip
        if project:
            result = atlas_project(model, result, source, channels=chosen[name], batch_size=batch_size,
                                   devices=devices)  # fmt: skip
        results[name] = result
    return results if layers is not None else results[names[0]]
