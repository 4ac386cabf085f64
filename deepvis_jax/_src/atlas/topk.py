"""The running top-k of every channel of several layers and its jit-compiled update, sharded over a 1-D mesh.

Each batch runs through the network once, up to the deepest layer, and its batch axis is sharded over the mesh
(`jax.shard_map`): every device takes each layer's per-channel top-k of its shard, the candidates are
all-gathered and merged with the running top-k, which stays replicated. The order is total -- larger activation
first, then smaller image index, then smaller position (row-major) -- so the result does not depend on the batch
size or on the number of devices. A candidate is every unit, or (``per_image``) each image's strongest unit per
channel, so that a channel's top-k are k distinct images. The state is ``(C, k)`` arrays per layer whatever the
number of images.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..compile import jit
from ..nets import Model, layer_activations, normalize

Array = jax.Array

AXIS = "data"
NONE = np.iinfo(np.int32).max  # image index / position of an empty slot (sorts after every real candidate)


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


def _reduce(act: Array, per_image: bool) -> tuple[Array, Array | None]:
    """A layer's candidates from its activations (b, h, w, C): ``(values, position)``: every unit, values
    (C, b * h * w) in flat order (image, row, col) and position None (it follows from the order); or with
    `per_image` (C, b) each, each image's maximum and its first row-major argmax (an image's strongest unit: ties
    go to the smaller position)."""
    b, h, w, c = act.shape
    v = jnp.transpose(act, (3, 0, 1, 2)).reshape(c, b, h * w)
    v = jnp.where(v == 0, jnp.float32(0), v)  # one zero: -0.0 and 0.0 must tie
    if per_image:
        return jnp.max(v, axis=2), jnp.argmax(v, axis=2).astype(jnp.int32)
    return v.reshape(c, b * h * w), None


def _activations(model: Model, names: tuple[str, ...], images: Array, micro: int, per_image: bool) -> list:
    """Each layer's candidates (`_reduce`) of one batch, the network run once up to the deepest of `names`,
    `micro` images at a time: the same shapes (hence the same floating-point results) on every device, whatever
    the batch size and the device count."""
    b = images.shape[0]

    def run(chunk):
        acts = layer_activations(model, normalize(chunk.astype(model.dtype) / 255.0), names)
        return [_reduce(acts[n].astype(jnp.float32), per_image) for n in names]

    # a Python loop (unrolled in the compiled program), not lax.map: XLA:CPU runs convolutions inside a while body
    # slower than in straight-line code
    chunks = [run(images[i : i + micro]) for i in range(0, b, micro)]
    cat = lambda parts: None if parts[0] is None else jnp.concatenate(parts, axis=1)  # noqa: E731
    return [tuple(cat([ch[li][j] for ch in chunks]) for j in range(2)) for li in range(len(names))]


def _batch_topk(values: Array, position: Array | None, index: Array, k: int) -> TopK:
    """Per-channel top-k of one layer's candidates of one (shard of a) batch (`_reduce`); `index` (b,) holds image
    indices, -1 for padding. The candidates are in (image, position) order, so the top-k's ties (lower flat index
    first, as `lax.top_k` documents) follow the total order."""
    per = values.shape[1] // index.shape[0]  # candidates per image: 1, or h * w
    image = jnp.repeat(index, per)
    valid = image >= 0
    v = jnp.where(valid.reshape(1, -1), values, -jnp.inf)
    top, flat = lax.top_k(v, min(k, v.shape[1]))
    ok = valid[flat]
    pos = flat % per if position is None else jnp.take_along_axis(position, flat, axis=1)
    return TopK(top, jnp.where(ok, image[flat], NONE).astype(jnp.int32), jnp.where(ok, pos, NONE).astype(jnp.int32))


@functools.partial(jit, static_argnames=("names", "k", "mesh", "micro", "per_image"))
def update(model: Model, states: tuple, images: Array, index: Array, *, names: tuple[str, ...], k: int, mesh: Mesh,
           micro: int, per_image: bool = True) -> tuple:  # fmt: skip
    """Merge one batch (batch axis sharded over `mesh`) into the replicated running top-k of each layer of
    `names` (`states`: one `TopK` per layer), the network run once up to the deepest. ``per_image``: each image
    is a candidate once per channel, at its strongest unit (an image lies in one batch only, so the batch's
    per-image maximum is its maximum over the stream); otherwise every unit is."""

    def local(model, states, images, index):
        out = []
        for state, (values, position) in zip(states, _activations(model, names, images, micro, per_image)):
            cand = _batch_topk(values, position, index, k)
            cand = TopK(*(lax.all_gather(a, AXIS, axis=1, tiled=True) for a in cand))  # (C, devices * k)
            both = TopK(*(jnp.concatenate([s, c], axis=1) for s, c in zip(state, cand)))
            out.append(_select(both, k))
        return tuple(out)

    specs = (P(), P(), P(AXIS), P(AXIS))
    return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P(), check_vma=False)(
        model, tuple(states), images, index
    )


def make_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh (axis ``"data"``) over `devices`, by default every device of every process."""
    return Mesh(np.asarray(list(devices) if devices is not None else jax.devices()), (AXIS,))


def put(mesh: Mesh, global_batch: np.ndarray, spec: P) -> Array:
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


def to_host(a: Array) -> np.ndarray:
    """A global array as numpy on every process (replicated: the local copy; sharded: gathered)."""
    if a.is_fully_addressable:
        return np.asarray(a)
    if a.is_fully_replicated:
        return np.asarray(a.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(a, tiled=True))


def local_rows(mesh: Mesh, batch: int) -> tuple[int, int]:
    """The rows of a `batch`-image batch that this process's devices hold (all of them on one process)."""
    rows_map = NamedSharding(mesh, P(AXIS)).addressable_devices_indices_map((batch,))
    spans = sorted(idx[0].indices(batch)[:2] for idx in rows_map.values())
    return spans[0][0], spans[-1][1]
