"""The dataset-scale atlas (Zeiler & Fergus Fig. 2): each channel's top-k activations over a stream of images.

`atlas` streams images through the network in fixed-size batches whose batch axis is sharded over a 1-D device
mesh (`jax.sharding.Mesh`, `jax.shard_map`): every device takes the per-channel top-k of its shard, the candidates
are all-gathered and merged with the running top-k, which stays replicated on the devices. The order is total --
larger activation first, then smaller image index, then smaller position (row-major) -- so the result does not
depend on the batch size or on the number of devices. The state is ``(C, k)`` arrays whatever the number of
images, and can be checkpointed (atomically, ``.npz``) and resumed. Afterwards each winner is projected (DeconvNet
"max" mode: its activation as the signal at its unit) by `project_units` on the crop of its image that holds its
receptive field (forward pass for the switches included), and the same window is cut from the image.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .compile import jit
from .deconv import project_units
from .images import list_images, read_ahead, square
from .nets import Layer, Model, ReceptiveField, layer_channels, layer_hw, layer_name, normalize, receptive_field
from .rules import _slice_map, check_method

Array = jax.Array

AXIS = "data"
NONE = np.iinfo(np.int32).max  # image index / position of an empty slot (sorts after every real candidate)
STATE_VERSION = 1


# --------------------------------------------------------------------------------------------------------------
# Receptive fields
# --------------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------------
# The running top-k: state and its jit-compiled, sharded update
# --------------------------------------------------------------------------------------------------------------


class TopK(NamedTuple):
    """Per-channel top-k, best first: ``values`` (C, k) float32, ``index`` (C, k) int32 image index, ``position``
    (C, k) int32 row-major position in the layer's map. Empty slots hold ``(-inf, NONE, NONE)``."""

    values: Any
    index: Any
    position: Any


def init_topk(channels: int, k: int) -> TopK:
    return TopK(
        np.full((channels, k), -np.inf, np.float32),
        np.full((channels, k), NONE, np.int32),
        np.full((channels, k), NONE, np.int32),
    )


def _select(cand: TopK, k: int) -> TopK:
    """The first `k` candidates (along the last axis) in the total order (-value, index, position)."""
    neg, index, position = lax.sort((-cand.values, cand.index, cand.position), dimension=-1, num_keys=3)
    return TopK(-neg[:, :k], index[:, :k], position[:, :k])


def _activations(model: Model, name: str, images: Array, micro: int) -> Array:
    """The layer's activations, computed `micro` images at a time: the same shapes (hence the same floating-point
    results) on every device, whatever the batch size and the device count."""
    b = images.shape[0]

    def run(chunk):
        return model.apply(normalize(chunk.astype(model.dtype) / 255.0), upto=name).astype(jnp.float32)

    # a Python loop (unrolled in the compiled program), not lax.map: XLA:CPU runs convolutions inside a while body
    # about 1.6x slower than in straight-line code
    return jnp.concatenate([run(images[i : i + micro]) for i in range(0, b, micro)])


def _batch_topk(model: Model, name: str, k: int, images: Array, index: Array, micro: int) -> TopK:
    """Per-channel top-k of one (shard of a) batch; `index` (b,) holds image indices, -1 for padding."""
    act = _activations(model, name, images, micro)
    b, h, w, c = act.shape
    v = jnp.transpose(act, (3, 0, 1, 2)).reshape(c, b * h * w)  # flat order (image, row, col): the tie-break
    v = jnp.where(v == 0, jnp.float32(0), v)  # one zero: -0.0 and 0.0 must tie
    valid = jnp.repeat(index >= 0, h * w)
    v = jnp.where(valid.reshape(1, -1), v, -jnp.inf)
    values, flat = lax.top_k(v, min(k, b * h * w))  # ties: lower flat index first (documented)
    ok = valid[flat]
    return TopK(
        values,
        jnp.where(ok, index[flat // (h * w)], NONE).astype(jnp.int32),
        jnp.where(ok, flat % (h * w), NONE).astype(jnp.int32),
    )


@functools.partial(jit, static_argnames=("name", "k", "mesh", "micro"))
def _update(model: Model, state: TopK, images: Array, index: Array, *, name: str, k: int, mesh: Mesh, micro: int):
    """Merge one batch (batch axis sharded over `mesh`) into the replicated running top-k."""

    def local(model, state, images, index):
        cand = _batch_topk(model, name, k, images, index, micro)
        cand = TopK(*(lax.all_gather(a, AXIS, axis=1, tiled=True) for a in cand))  # (C, devices * k)
        both = TopK(*(jnp.concatenate([s, c], axis=1) for s, c in zip(state, cand)))
        return _select(both, k)

    specs = (P(), P(), P(AXIS), P(AXIS))
    return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P(), check_vma=False)(
        model, state, images, index
    )


def make_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh (axis ``"data"``) over `devices`, by default every device of every process."""
    return Mesh(np.asarray(list(devices) if devices is not None else jax.devices()), (AXIS,))


def _put(mesh: Mesh, global_batch: np.ndarray, spec: P) -> Array:
    """A global array from a host array every process holds in full; each process contributes its own part."""
    sharding = NamedSharding(mesh, spec)
    if jax.process_count() == 1:
        return jax.device_put(global_batch, sharding)
    if spec == P():
        return jax.make_array_from_process_local_data(sharding, global_batch, global_batch.shape)
    spans = sorted(idx[0].indices(len(global_batch))[:2]
                   for idx in sharding.addressable_devices_indices_map(global_batch.shape).values())  # fmt: skip
    lo, hi = spans[0][0], spans[-1][1]
    return jax.make_array_from_process_local_data(sharding, global_batch[lo:hi], global_batch.shape)


def _to_host(a: Array) -> np.ndarray:
    """A global array as numpy on every process (replicated: the local copy; sharded: gathered)."""
    if a.is_fully_addressable:
        return np.asarray(a)
    if a.is_fully_replicated:
        return np.asarray(a.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(a, tiled=True))


# --------------------------------------------------------------------------------------------------------------
# Image sources
# --------------------------------------------------------------------------------------------------------------


def _as_uint8(image: Any, i: int) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"image {i} has shape {a.shape}; expected RGB images shaped (H, W, 3)")
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        return np.clip(np.rint(a.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    raise ValueError(f"image {i} has dtype {a.dtype}; expected uint8 or float in [0, 1]")


def read_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """An image file as RGB uint8, its shorter side resized to `size` and center-cropped to ``size x size``."""
    from PIL import Image

    with Image.open(path) as im:
        return square(im.convert("RGB"), size)


class _Folder:
    """Files read and resized by a thread pool, a few batches ahead of the device."""

    def __init__(self, folder, size: int, workers: int | None):
        self.files = list_images(folder)
        self.size = size
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.shape = (size, size, 3)

    def __len__(self) -> int:
        return len(self.files)

    def batches(self, start: int, batch: int, rows: tuple[int, int]):
        """Yields ``(first index, images (n, H, W, 3))``; only `rows` of each batch are decoded (the rest zero)."""
        lo, hi = rows
        for first, n, results in read_ahead(self.files, lambda f: read_image(f, self.size), batch, start=start,
                                            rows=rows, workers=self.workers):  # fmt: skip
            out = np.zeros((n, *self.shape), np.uint8)
            for r, a in zip(range(lo, hi), results):
                if isinstance(a, BaseException):
                    raise a
                out[r] = a
            yield first, out

    def fetch(self, index: int) -> np.ndarray:
        return read_image(self.files[index], self.size)


class _Stream:
    """An iterable of arrays. Images that may still win are kept (bounded) for the projections afterwards."""

    def __init__(self, images: Iterable[Any]):
        self.images = images
        self.cache: dict[int, np.ndarray] = {}
        self.shape: tuple | None = None
        self.keep: Callable[[int], bool] = lambda i: True

    def _check(self, a: np.ndarray, i: int) -> np.ndarray:
        if self.shape is None:
            self.shape = a.shape
        elif a.shape != self.shape:
            raise ValueError(f"image {i} is {a.shape[1]}x{a.shape[0]}, image 0 was {self.shape[1]}x{self.shape[0]}; "
                             "all images must have the same size (resize them, or pass a folder)")  # fmt: skip
        return a

    def batches(self, start: int, batch: int, rows: tuple[int, int]):
        buf: list[np.ndarray] = []
        first = start
        for i, image in enumerate(self.images):
            a = self._check(_as_uint8(image, i), i)
            if i < start:  # already counted before the interruption; keep it only if it is a winner
                if self.keep(i):
                    self.cache[i] = a
                continue
            buf.append(a)
            self.cache[i] = a
            if len(buf) == batch:
                yield first, np.stack(buf)
                first, buf = first + batch, []
        if buf:
            yield first, np.stack(buf)

    def prune(self, winners: set) -> None:
        self.cache = {i: a for i, a in self.cache.items() if i in winners}

    def fetch(self, index: int) -> np.ndarray:
        return self.cache[index]


class _Indexed:
    """A sequence of arrays (or a folder) fetched by image index for `atlas_project`."""

    def __init__(self, images, size: int):
        self.get = (lambda i: read_image(images[i], size)) if _is_pathlike_seq(images) else (
            lambda i: _as_uint8(images[i], i))

    def fetch(self, index: int) -> np.ndarray:
        return self.get(index)


def _is_pathlike_seq(images) -> bool:
    return len(images) > 0 and isinstance(images[0], (str, os.PathLike))


# --------------------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------------------


def save_state(path: str | os.PathLike, state: TopK, consumed: int, meta: dict) -> None:
    """Write the running top-k atomically (a temporary file in the same folder, then `os.replace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, values=np.asarray(state.values), index=np.asarray(state.index),
                 position=np.asarray(state.position), consumed=np.int64(consumed),
                 meta=np.asarray(json.dumps({**meta, "version": STATE_VERSION})))  # fmt: skip
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_state(path: str | os.PathLike, meta: dict) -> tuple[TopK, int]:
    """Read a checkpoint written by `save_state`; ValueError if it belongs to another run (model, layer, k...)."""
    with np.load(path, allow_pickle=False) as z:
        saved = json.loads(str(z["meta"]))
        saved.pop("version", None)
        if saved != meta:
            diff = ", ".join(f"{k}: {saved.get(k)!r} there, {v!r} here" for k, v in meta.items() if saved.get(k) != v)
            raise ValueError(f"checkpoint {path} is from another atlas run ({diff}); delete it or start without resume")
        return TopK(z["values"], z["index"], z["position"]), int(z["consumed"])


# --------------------------------------------------------------------------------------------------------------
# Projections of the winners
# --------------------------------------------------------------------------------------------------------------


@functools.partial(jit, static_argnames=("name", "size", "method"))
def _project_winners(model, images, rows, cols, chans, values, tops, lefts, *, name: str, size: int,
                     method: str = "deconv"):  # fmt: skip
    """Each winner's projection (`method`) on the crop holding its receptive field, and its image patch."""
    x = normalize(images.astype(model.dtype) / 255.0)
    units = jnp.stack([jnp.arange(images.shape[0]), rows, cols, chans], axis=1)
    # forward and projection on each winner's receptive-field crop only
    recon = project_units(model, x, units, values.astype(model.dtype), name, method, crop_to_field=True)
    # the same window of each image (zero outside it)
    window = lambda a, t, l: _slice_map(a[None], jnp.stack([t, l]), (size, size), 0)[0]  # noqa: E731
    patches = jax.vmap(window)(images, tops, lefts)
    return recon.astype(jnp.float32), patches


# --------------------------------------------------------------------------------------------------------------
# The public calls
# --------------------------------------------------------------------------------------------------------------


class Atlas(NamedTuple):
    """The top-k atlas of one layer. Per channel c and rank j (best first):

    ``values[c, j]`` activation, ``image_index[c, j]`` index of the image in the stream (-1: fewer candidates than
    k), ``position[c, j]`` (row, col) in the layer's map, ``boxes[c, j]`` its receptive field in the image
    ``(top, bottom, left, right)`` (ends exclusive, clipped). For the channels in ``channels`` (C',):
    ``projections`` (C', k, R, R, 3) float32, the DeconvNet projection of the winner cropped to its receptive field
    (R = ``receptive_field.size``; zero outside the image), and ``patches`` (C', k, R, R, 3) uint8, the same window
    of the image. ``files`` names the images when they came from a folder.
    """

    layer: str
    values: np.ndarray
    image_index: np.ndarray
    position: np.ndarray
    boxes: np.ndarray
    num_images: int
    receptive_field: ReceptiveField
    image_shape: tuple
    channels: np.ndarray
    projections: np.ndarray | None
    patches: np.ndarray | None
    files: tuple | None = None


def _meta(model: Model, name: str, k: int, image_shape) -> dict:
    return {"model": model.arch.name, "layer": name, "top_k": int(k), "image_shape": [int(s) for s in image_shape]}


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
    or a folder, whose image files (sorted by path) are read by a thread pool, resized so the shorter side is
    `size` and center-cropped to ``size x size``. Batches of `batch_size` (rounded up to a multiple of
    ``micro_batch`` times the device count) are sharded over `devices` (default: all, of all processes); each
    device runs the network `micro_batch` images at a time, so the result is bitwise the same for any device count
    and batch size (on the same platform). Ties: smaller image index, then smaller position. With `checkpoint` the
    state is written there every `checkpoint_every` batches and at the end; ``resume=True`` continues from it (an
    iterable must yield the same images again from the start; those already counted are skipped). ``project=False``
    skips the projections and patches; `channels` limits them. Memory: the state is (C, top_k); a one-shot iterable
    also keeps the images that are current winners (at most C * top_k) for the projections.
    """
    name = layer_name(model, layer)
    k, n_ch = int(top_k), layer_channels(model, name)
    if k < 1 or batch_size < 1:
        raise ValueError(f"top_k and batch_size must be at least 1, got {top_k} and {batch_size}")
    mesh = make_mesh(devices)
    micro = int(micro_batch)
    if micro < 1:
        raise ValueError(f"micro_batch must be at least 1, got {micro_batch}")
    batch = -(-batch_size // (mesh.size * micro)) * mesh.size * micro
    sharding = NamedSharding(mesh, P(AXIS))
    rows_map = sharding.addressable_devices_indices_map((batch,))
    spans = sorted(idx[0].indices(batch)[:2] for idx in rows_map.values())
    rows = (spans[0][0], spans[-1][1])

    is_folder = isinstance(images, (str, os.PathLike))
    source = _Folder(images, size, workers) if is_folder else _Stream(images)
    total = len(source) if is_folder else (len(images) if hasattr(images, "__len__") else None)

    state, consumed = init_topk(n_ch, k), 0
    meta = None
    if is_folder:
        meta = _meta(model, name, k, source.shape[:2])
        if resume and checkpoint is not None and Path(checkpoint).exists():
            state, consumed = load_state(checkpoint, meta)
    elif resume and checkpoint is not None and Path(checkpoint).exists():
        with np.load(checkpoint, allow_pickle=False) as z:  # the shape is checked against the first image below
            shape = json.loads(str(z["meta"]))["image_shape"]
        meta = _meta(model, name, k, shape)
        state, consumed = load_state(checkpoint, meta)
    host = TopK(*(np.asarray(a) for a in state))
    if not is_folder:
        winners = set(host.index[host.index != NONE].ravel().tolist())
        source.keep = winners.__contains__

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=consumed, unit="img", desc=f"atlas {name}",
               disable=not progress or jax.process_index() != 0, dynamic_ncols=True)  # fmt: skip
    writer = jax.process_index() == 0
    state = TopK(*(_put(mesh, np.array(a), P()) for a in host))
    cache_limit = n_ch * k + 4 * batch
    done = 0
    try:
        for first, imgs in source.batches(consumed, batch, rows):
            n = len(imgs)
            if meta is None:
                meta = _meta(model, name, k, imgs.shape[1:3])
            elif list(imgs.shape[1:3]) != meta["image_shape"]:
                raise ValueError(f"images are {imgs.shape[2]}x{imgs.shape[1]}, but the checkpoint was made with "
                                 f"{meta['image_shape'][1]}x{meta['image_shape'][0]} images")  # fmt: skip
            index = np.full((batch,), -1, np.int32)
            index[:n] = np.arange(first, first + n, dtype=np.int32)
            if n < batch:
                imgs = np.concatenate([imgs, np.zeros((batch - n, *imgs.shape[1:]), np.uint8)])
            state = _update(model, state, _put(mesh, imgs, P(AXIS)), _put(mesh, index, P(AXIS)),
                            name=name, k=k, mesh=mesh, micro=micro)  # fmt: skip
            consumed, done = first + n, done + 1
            bar.update(n)
            if not is_folder and len(source.cache) > cache_limit:
                source.prune(set(_to_host(state.index).ravel().tolist()))
            if checkpoint is not None and writer and done % checkpoint_every == 0:
                save_state(checkpoint, state, consumed, meta)
    finally:
        bar.close()
    if meta is None:
        raise ValueError("no images to process" if consumed == 0 else "no new images after the checkpoint")
    if checkpoint is not None and writer:
        save_state(checkpoint, state, consumed, meta)

    result = _result(model, name, TopK(*(_to_host(a) for a in state)), consumed, tuple(meta["image_shape"]),
                     tuple(str(f) for f in source.files) if is_folder else None)  # fmt: skip
    if not project:
        return result
    return atlas_project(model, result, source, channels=channels, batch_size=batch_size, devices=devices)


def _result(model: Model, name: str, state: TopK, consumed: int, hw: tuple, files) -> Atlas:
    rf = receptive_field(model, name)
    h, w = hw
    _, mw = _layer_hw(model, name, hw)
    ok = state.index != NONE
    index = np.where(ok, state.index, -1).astype(np.int64)
    pos = np.where(ok, state.position, -1).astype(np.int64)
    position = np.stack([np.where(ok, pos // mw, -1), np.where(ok, pos % mw, -1)], axis=-1)
    boxes = np.full(position.shape[:2] + (4,), -1, np.int64)
    for c, j in zip(*np.nonzero(ok)):
        boxes[c, j] = rf.box(int(position[c, j, 0]), int(position[c, j, 1]), (h, w))
    values = np.where(ok, state.values, -np.inf).astype(np.float32)
    return Atlas(name, values, index, position, boxes, int(consumed), rf, (int(h), int(w)),
                 np.zeros((0,), np.int64), None, None, files)  # fmt: skip


def _layer_hw(model: Model, name: str, hw: Sequence[int]) -> tuple[int, int]:
    return layer_hw(model, name, hw)


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
    if isinstance(images, (str, os.PathLike)):
        source: Any = _Indexed(list_images(images), size)
    elif hasattr(images, "fetch"):
        source = images
    else:
        source = _Indexed(images, size)
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
        pad = chunk + [chunk[-1]] * (batch - len(chunk))
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
        proj, patch = _project_winners(model, _put(mesh, imgs, P(AXIS)), *(_put(mesh, a, P(AXIS)) for a in args),
                                       name=name, size=r, method=method)  # fmt: skip
        proj, patch = _to_host(proj), _to_host(patch)
        for t, (i, c, j) in enumerate(chunk):
            projections[i, j], patches[i, j] = proj[t], patch[t]
        if len(images_cache) > 4 * batch:
            images_cache.clear()
    return result._replace(channels=chans, projections=projections, patches=patches)
