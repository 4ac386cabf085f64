"""The running top-k of every channel and its jit-compiled update, sharded over a 1-D device mesh.

Each batch's batch axis is sharded over the mesh (`jax.shard_map`): every device takes the per-channel top-k of
its shard, the candidates are all-gathered and merged with the running top-k, which stays replicated. The order is
total -- larger activation first, then smaller image index, then smaller position (row-major) -- so the result
does not depend on the batch size or on the number of devices. The state is ``(C, k)`` arrays whatever the number
of images.
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
from ..nets import Model, normalize

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


def _activations(model: Model, name: str, images: Array, micro: int) -> Array:
    """The layer's activations, computed `micro` images at a time: the same shapes (hence the same floating-point
    results) on every device, whatever the batch size and the device count."""
    b = images.shape[0]

    def run(chunk):
        return model.apply(normalize(chunk.astype(model.dtype) / 255.0), upto=name).astype(jnp.float32)

    # a Python loop (unrolled in the compiled program), not lax.map: XLA:CPU runs convolutions inside a while body
    # slower than in straight-line code
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
def update(model: Model, state: TopK, images: Array, index: Array, *, name: str, k: int, mesh: Mesh, micro: int):
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
