"""Transforms: the random perturbations applied to the image before each step of `construct`.

A **transform** is ``(key, image) -> image``, unbatched, with an explicit key; output shapes are static (they depend
only on the input shape): `pad`, `jitter`, `random_scale`, `random_rotate`. `standard_transforms()` is Lucid's list;
`apply_transforms` applies a sequence, each with its own key.

`random_scale` and `random_rotate` resample the image bilinearly (`_resample`) and are differentiable in reverse
mode through a custom vjp: the gradient is the exact transpose of the bilinear map, computed as a gather from the
output gradient (each input pixel collects from the few output pixels that sampled it) rather than the scatter-add
that autodiff makes of a gather, which XLA:CPU runs element by element.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
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
    """Lucid's jitter: crop (H - d, W - d) at a random offset drawn uniformly from 0..d (both ends included, as
    Lucid's ``random_crop`` and Lucent's ``jitter`` draw it) along each axis."""

    high = d + 1  # exclusive; a closure value of its own, so `describe_recipe` (cache keys) tells it from 0..d-1

    def apply(key, img):
        h, w, c = img.shape
        off = jax.random.randint(key, (2,), 0, high)
        return lax.dynamic_slice(img, (off[0], off[1], 0), (h - d, w - d, c))

    return apply


def _align_corners_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation weights with aligned corners: output i samples the input at
    ``i * (n_in - 1) / (n_out - 1)`` (torch's ``interpolate(..., align_corners=True)``)."""
    m = np.zeros((n_out, n_in))
    if n_out == 1 or n_in == 1:
        m[:, 0] = 1.0
        return m
    src = np.arange(n_out) * (n_in - 1) / (n_out - 1)
    lo = np.minimum(np.floor(src).astype(int), n_in - 2)
    frac = src - lo
    m[np.arange(n_out), lo] = 1.0 - frac
    m[np.arange(n_out), lo + 1] += frac
    return m


def resize(size) -> Transform:
    """Resize the image to `size` (an int for a square, or (height, width)), bilinear with aligned corners: what
    Lucent's ``render_vis(fixed_image_size=...)`` appends to the transforms (``torch.nn.Upsample(size,
    mode="bilinear", align_corners=True)``), so a network that needs a fixed input size (CIFAR-sized networks, or a
    small image on ImageNet ones) sees it. Uses no randomness; a linear map, exactly differentiable."""
    hw = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(v) for v in size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"resize takes a positive int or (height, width), got {size!r}")
    return _resize(hw)


@functools.lru_cache(maxsize=None)
def _resize(hw: tuple[int, int]) -> Transform:
    """`resize` to (height, width) `hw` (one object per size: equal transforms do not recompile `construct`)."""

    def apply(key, img):
        h, w, _ = img.shape
        ry = jnp.asarray(_align_corners_matrix(hw[0], h), img.dtype)
        rx = jnp.asarray(_align_corners_matrix(hw[1], w), img.dtype)
        return jnp.einsum("yh,hwc,xw->yxc", ry, img, rx, precision=lax.Precision.HIGHEST)

    return apply


# --------------------------------------------------------------------------------------------------------------
# Bilinear resampling by a linear map about the centre, with an exact transpose that is a gather
# --------------------------------------------------------------------------------------------------------------


def _centre(n: int) -> float:
    return (n - 1) / 2.0


def _sample_at(m: Array, qy: Array, qx: Array, c_from: tuple, c_to: tuple) -> tuple[Array, Array]:
    """``m @ (q - c_from) + c_to``, per coordinate, for a 2x2 matrix `m`."""
    dy, dx = qy - c_from[0], qx - c_from[1]
    return m[0, 0] * dy + m[0, 1] * dx + c_to[0], m[1, 0] * dy + m[1, 1] * dx + c_to[1]


def _pixels(img: Array, iy: Array, ix: Array) -> Array:
    """``img[iy, ix]`` with the indices clamped into the image: one gather of whole pixels from the flattened image
    (clamping in the gather itself is several times faster on XLA:CPU than the default out-of-bounds fill)."""
    h, w, c = img.shape
    flat = jnp.clip(iy, 0, h - 1) * w + jnp.clip(ix, 0, w - 1)
    return jnp.take(img.reshape(h * w, c), flat, axis=0, mode="clip")


def _materialized(x: Array) -> Array:
    """`x` itself, computed into a buffer of its own: ``x @ I`` over the channels.

    XLA:CPU fuses the computation of a gather's operand into the gather, recomputing it for every element
    gathered (`lax.optimization_barrier` does not stop it: XLA:CPU removes barriers before fusing). Where the
    operand is itself a resampled image (two resamplings with a transform between them, or the backward pass of
    the second feeding that of the first), that is 4 or 9 times another resampling per element: measured, the
    forward and backward passes of a scale, a jitter and a rotation in a row took 30x the time of the same with
    materialized operands. A matrix product is never fused into its consumers, and one with the identity costs
    about one pass over the image."""
    return jnp.einsum("hwc,cd->hwd", x, jnp.eye(x.shape[-1], dtype=x.dtype), precision=lax.Precision.HIGHEST)


def _hat(d: Array) -> Array:
    return jnp.maximum(1.0 - jnp.abs(d), 0.0)


def _resample_impl(img: Array, m: Array, fill: float, materialize: bool = False) -> Array:
    """Output pixel q samples `img` bilinearly at ``s(q) = m @ (q - c) + c`` (c: the centre of the image, pixel
    centres at integers); each of the four taps that falls outside the image reads `fill`. `materialize`: see
    `_materialized`."""
    h, w, _ = img.shape
    img = _materialized(img) if materialize else img
    c = (_centre(h), _centre(w))
    qy, qx = jnp.arange(h, dtype=img.dtype)[:, None], jnp.arange(w, dtype=img.dtype)[None, :]
    sy, sx = _sample_at(m, qy, qx, c, c)
    y0, x0 = jnp.floor(sy), jnp.floor(sx)
    fy, fx = sy - y0, sx - x0
    iy, ix = y0.astype(jnp.int32), x0.astype(jnp.int32)
    fill = jnp.asarray(fill, img.dtype)

    taps = []
    for a, wy in ((0, 1.0 - fy), (1, fy)):
        for b, wx in ((0, 1.0 - fx), (1, fx)):
            yy, xx = iy + a, ix + b
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            v = jnp.where(inside[:, :, None], _pixels(img, yy, xx), fill)
            taps.append((wy * wx)[:, :, None] * v)
    return sum(taps[1:], taps[0])


def _resample_transpose(g: Array, m: Array, radius: int, materialize: bool = False) -> Array:
    """The transpose of `_resample_impl`'s linear part, applied to `g`, as a gather.

    Input pixel p receives ``sum_q hat(s(q) - p) g[q]`` (hat: the bilinear weight, a product of triangles), and
    ``hat(s(q) - p) > 0`` only where ``|m (q - t)| < 1`` per axis, ``t = m^-1 (p - c) + c`` the point p maps to:
    the output pixels within `radius` of ``round(t)`` along each axis (`radius` >= ``ceil(e + 1/2) - 1``, e the
    largest row sum of ``|m^-1|``). Each weight is computed from ``s(q)`` exactly as the forward pass computes it.
    `materialize`: see `_materialized`.
    """
    h, w, _ = g.shape
    g = _materialized(g) if materialize else g
    c = (_centre(h), _centre(w))
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    m_inv = jnp.stack([jnp.stack([m[1, 1], -m[0, 1]]), jnp.stack([-m[1, 0], m[0, 0]])]) / det
    py, px = jnp.arange(h, dtype=g.dtype)[:, None], jnp.arange(w, dtype=g.dtype)[None, :]
    ty, tx = _sample_at(m_inv, py, px, c, c)
    ry, rx = jnp.floor(ty + 0.5).astype(jnp.int32), jnp.floor(tx + 0.5).astype(jnp.int32)

    terms = []
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            qy, qx = ry + dy, rx + dx
            inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
            sy, sx = _sample_at(m, qy.astype(g.dtype), qx.astype(g.dtype), c, c)
            wgt = jnp.where(inside, _hat(sy - py) * _hat(sx - px), 0.0)
            terms.append(wgt[:, :, None] * _pixels(g, qy, qx))
    return sum(terms[1:], terms[0])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _resample(img: Array, m: Array, fill: float, radius: int, materialize: bool) -> Array:
    """`_resample_impl` with `_resample_transpose` as its vjp (`radius`: `_radius`)."""
    return _resample_impl(img, m, fill, materialize)


def _resample_fwd(img, m, fill, radius, materialize):
    return _resample_impl(img, m, fill, materialize), m


def _resample_bwd(fill, radius, materialize, m, g):
    # no gradient flows to the map itself: transforms draw it from a key
    return _resample_transpose(g, m, radius, materialize), jnp.zeros_like(m)


_resample.defvjp(_resample_fwd, _resample_bwd)


def _radius(extent: float) -> int:
    """How many candidate output pixels on each side of ``round(t)`` the transpose gathers, per axis, for a map
    whose ``|m^-1|`` has row sums at most `extent` (see `_resample_transpose`)."""
    return max(0, math.ceil(extent + 0.5 + 1e-6) - 1)


@dataclasses.dataclass(frozen=True)
class _Resampling:
    """`random_scale` or `random_rotate`: resample the image bilinearly at ``m (q - c) + c``, with ``m`` drawn from
    the key, keeping its shape; samples beyond the image read `fill`. A transform like any other (called as
    ``t(key, image)``); `apply_transforms` composes consecutive ones into a single resampling."""

    kind: str  # "scale" | "rotate"
    values: tuple  # the zoom factors or angles (degrees) drawn from, uniformly
    fill: float

    def matrix(self, key: Array, dtype) -> Array:
        """The 2x2 ``m`` drawn from `key`: output pixel q samples the input at ``m (q - c) + c``."""
        v = jax.random.choice(key, jnp.asarray(self.values, dtype))
        if self.kind == "scale":
            return jnp.eye(2, dtype=dtype) / v
        # the inverse rotation of the output pixel's offset from the centre: positive angles turn the picture
        # counterclockwise as displayed (90 degrees is np.rot90)
        a = v * (jnp.pi / 180.0)
        cos, sin = jnp.cos(a), jnp.sin(a)
        return jnp.stack([jnp.stack([cos, sin]), jnp.stack([-sin, cos])])

    def extent(self) -> float:
        """The largest row sum of ``|m^-1|`` over the values drawn from."""
        if self.kind == "scale":
            return max(self.values)
        return max(abs(math.cos(math.radians(a))) + abs(math.sin(math.radians(a))) for a in self.values)

    def __call__(self, key: Array, img: Array) -> Array:
        # called alone, it cannot know whether another resampling feeds it or is fed by it: materialize
        return _resample(img, self.matrix(key, img.dtype), self.fill, _radius(self.extent()), True)


def random_scale(scales: Sequence[float], fill: float = 0.5) -> Transform:
    """Zoom about the centre by a factor s drawn uniformly from `scales`, keeping the shape: output pixel q is the
    bilinear sample of the input at ``(q - c) / s + c`` (c the image centre, pixel centres at integers); samples
    beyond the image read `fill` (grey by default, as `pad`). Differentiable in reverse mode only (a custom vjp:
    the exact transpose of the bilinear map)."""
    scales = tuple(float(s) for s in scales)
    if not scales or not min(scales) > 0:
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales!r}")
    return _Resampling("scale", scales, float(fill))


def random_rotate(angles: Sequence[float], fill: float = 0.5) -> Transform:
    """Rotate about the centre by an angle in degrees drawn uniformly from `angles` (counterclockwise as
    displayed), keeping the shape: bilinear, samples beyond the image read `fill` (grey by default, as `pad`).
    Differentiable in reverse mode only (a custom vjp: the exact transpose of the bilinear map)."""
    angles = tuple(float(a) for a in angles)
    if not angles:
        raise ValueError("angles must be a non-empty sequence of numbers (degrees)")
    return _Resampling("rotate", angles, float(fill))


def standard_transforms() -> tuple[Transform, ...]:
    """Lucid's `standard_transforms`: pad 12 (grey), jitter 8, scale 0.9..1.1, rotate -10..10 degrees, jitter 4."""
    return (
        pad(12),
        jitter(8),
        random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
        random_rotate(list(range(-10, 11)) + 5 * [0]),
        jitter(4),
    )


@functools.lru_cache(maxsize=256)
def transformed_hw(transforms: tuple, hw: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of an (h, w, 3) image after `transforms` (a hashable tuple), traced once per argument pair
    and cached (`construct` asks on every call)."""
    out = jax.eval_shape(lambda k, x: apply_transforms(transforms, k, x), jax.random.key(0),
                         jax.ShapeDtypeStruct((*hw, 3), jnp.float32))  # fmt: skip
    return tuple(out.shape[:2])


def _continues(transforms: Sequence[Transform], i: int) -> bool:
    """Whether transforms[i] is a resampling that `apply_transforms` composes with the one before it."""
    t, before = transforms[i], transforms[i - 1] if i else None
    return isinstance(t, _Resampling) and isinstance(before, _Resampling) and before.fill == t.fill


def apply_transforms(transforms: Sequence[Transform], key: Array, img: Array) -> Array:
    """Apply `transforms` in order, each with its own key split from `key`.

    Consecutive `random_scale` / `random_rotate` with the same fill (the standard list's scale and rotation) are
    applied as one resampling: each draws its map from its own key as it would alone, and the image is sampled
    once, bilinearly, at the composed map (one interpolation instead of one per transform: a little sharper, and
    half the work)."""
    if not transforms:
        return img
    keys = jax.random.split(key, len(transforms))
    runs = sum(isinstance(t, _Resampling) and not _continues(transforms, i) for i, t in enumerate(transforms))
    i = 0
    while i < len(transforms):
        t = transforms[i]
        if not isinstance(t, _Resampling):
            img = t(keys[i], img)
            i += 1
            continue
        m, extent = t.matrix(keys[i], img.dtype), t.extent()
        i += 1
        while i < len(transforms) and _continues(transforms, i):
            # output q of the later one samples at m_later (q - c) + c, where the earlier one samples at m (. - c) + c
            m = jnp.matmul(m, transforms[i].matrix(keys[i], img.dtype), precision=lax.Precision.HIGHEST)
            extent *= transforms[i].extent()  # row-sum norms are submultiplicative
            i += 1
        img = _resample(img, m, t.fill, _radius(extent), runs > 1)  # `_materialized`: only between resamplings
    return img
