"""Transforms: the random perturbations applied to the image before each step of `construct`.

A **transform** is ``(key, image) -> image``, unbatched, with an explicit key; output shapes are static (they depend
only on the input shape): `pad`, `jitter`, `random_scale`, `random_rotate`. `standard_transforms()` is Lucid's list;
`apply_transforms` applies a sequence, each with its own key.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


Transform = Callable[[Array, Array], Array]


@functools.lru_cache(maxsize=None)
def pad(width: int, value: float = 0.5) -> Transform:
    """Pad every side by `width` pixels of constant `value` (grey by default). Uses no randomness."""

    def apply(key, img):
        return jnp.pad(img, ((width, width), (width, width), (0, 0)), constant_values=value)

    return apply


@functools.lru_cache(maxsize=None)
def jitter(d: int) -> Transform:
    """Lucid's jitter: crop (H - d, W - d) at a random offset in [0, d) along each axis."""

    def apply(key, img):
        h, w, c = img.shape
        off = jax.random.randint(key, (2,), 0, d)
        return lax.dynamic_slice(img, (off[0], off[1], 0), (h - d, w - d, c))

    return apply


@functools.lru_cache(maxsize=None)
def _random_scale(scales: tuple) -> Transform:
    def apply(key, img):
        h, w, _ = img.shape
        s = jax.random.choice(key, jnp.asarray(scales, img.dtype))
        # zoom about the centre, output the same shape (static shapes under jit)
        t = jnp.stack([(1.0 - s) * h / 2.0, (1.0 - s) * w / 2.0])
        return jax.image.scale_and_translate(img, img.shape, (0, 1), jnp.stack([s, s]), t, "linear")

    return apply


def random_scale(scales: Sequence[float]) -> Transform:
    """Zoom about the centre by a factor drawn uniformly from `scales`, keeping the shape (bilinear)."""
    return _random_scale(tuple(float(s) for s in scales))


@functools.lru_cache(maxsize=None)
def _random_rotate(angles: tuple) -> Transform:
    def apply(key, img):
        h, w, c = img.shape
        a = jax.random.choice(key, jnp.asarray(angles, img.dtype)) * (jnp.pi / 180.0)
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        yy, xx = jnp.meshgrid(jnp.arange(h, dtype=img.dtype) - cy, jnp.arange(w, dtype=img.dtype) - cx,
                              indexing="ij")  # fmt: skip
        # output pixel (y, x) samples the input at the inverse rotation of its offset from the centre;
        # positive angles turn the picture counterclockwise as displayed (90 degrees is np.rot90)
        sy = jnp.cos(a) * yy + jnp.sin(a) * xx + cy
        sx = -jnp.sin(a) * yy + jnp.cos(a) * xx + cx
        rot = lambda ch: jax.scipy.ndimage.map_coordinates(ch, [sy, sx], order=1, mode="nearest")  # noqa: E731
        return jax.vmap(rot, in_axes=2, out_axes=2)(img)

    return apply


def random_rotate(angles: Sequence[float]) -> Transform:
    """Rotate about the centre by an angle in degrees drawn uniformly from `angles` (counterclockwise as displayed),
    keeping the shape; bilinear, edges extended."""
    return _random_rotate(tuple(float(a) for a in angles))


def standard_transforms() -> tuple[Transform, ...]:
    """Lucid's `standard_transforms`: pad 12 (grey), jitter 8, scale 0.9..1.1, rotate -10..10 degrees, jitter 4."""
    return (
        pad(12),
        jitter(8),
        random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
        random_rotate(list(range(-10, 11)) + 5 * [0]),
        jitter(4),
    )


def apply_transforms(transforms: Sequence[Transform], key: Array, img: Array) -> Array:
    """Apply `transforms` in order, each with its own key split from `key`."""
    if not transforms:
        return img
    for t, k in zip(transforms, jax.random.split(key, len(transforms))):
        img = t(k, img)
    return img
