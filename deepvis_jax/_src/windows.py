"""Windows of feature maps at traced offsets: the crops the single-unit projections and the atlas compute on."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def slice_window(a: Array, start: Array, size: tuple, fill) -> Array:
    """a[:, start[0] : start[0] + size[0], start[1] : start[1] + size[1]], reading `fill` outside `a`."""
    h, w = size
    padded = lax.pad(a, jnp.asarray(fill, a.dtype), ((0, 0, 0), (h, h, 0), (w, w, 0), (0, 0, 0)))
    zero = jnp.zeros((), start.dtype)
    return lax.dynamic_slice(padded, (zero, start[0] + h, start[1] + w, zero), (a.shape[0], h, w, a.shape[3]))


def window_inside(start: Array, size: tuple, full: tuple) -> Array:
    """(1, h, w, 1) bool: which positions of a window at `start` (in a map of size `full`) lie inside the map."""
    rows = start[0] + jnp.arange(size[0])
    cols = start[1] + jnp.arange(size[1])
    ok = ((rows >= 0) & (rows < full[0]))[:, None] & ((cols >= 0) & (cols < full[1]))[None, :]
    return ok[None, :, :, None]
