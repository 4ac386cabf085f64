"""Image parameterizations: how `construct` represents the image it optimizes.

A **parameterization** is ``(init(key, size, dtype) -> params, to_image(params) -> (S, S, 3) in [0, 1],
blur(params, sigma) -> params)``: plain pixels (`pixel`), or Lucid's scaled FFT spectrum with decorrelated colour
(`fft`), Lucid's CPPN (`cppn`), or a whole batch sharing Lucid's low-resolution tensors (`aligned`, `lowres`).
Also the colour-decorrelation matrix and the Fourier helpers they share, among them the periodic Gaussian
blur used for Yosinski-style regularization.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array


# Lucid's square root of the ImageNet colour correlation matrix (its SVD factor), columns normalized to max norm 1.
COLOR_CORRELATION_SVD_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float64)
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))


class Parameterization(NamedTuple):
    """Pure functions of an unbatched image parameterization.

    ``init(key, size, dtype) -> params``, `size` an int S (a square image; what a square `construct` call passes)
    or (H, W) (what a non-square call passes); ``to_image(params) -> (H, W, 3)`` RGB in [0, 1];
    ``blur(params, sigma) -> params`` blurs the represented image with a periodic Gaussian of `sigma` pixels.
    """

    init: Callable[[Array, int, Any], Any]
    to_image: Callable[[Any], Array]
    blur: Callable[[Any, float], Any]


def _hw(size) -> tuple[int, int]:
    """An image size, an int S (square) or (H, W), as (H, W)."""
    if isinstance(size, (tuple, list)):
        h, w = size
        return int(h), int(w)
    return int(size), int(size)


def decorrelate_color(x: Array) -> Array:
    """Map decorrelated colour coordinates to RGB: each pixel vector v becomes ``C @ v`` (Lucid's matrix)."""
    c = jnp.asarray(COLOR_CORRELATION, x.dtype)
    return jnp.einsum("hwk,ck->hwc", x, c, precision=lax.Precision.HIGHEST)


def rfft2_freqs(h: int, w: int) -> np.ndarray:
    """(h, w // 2 + 1) radial frequency, in cycles per pixel, of each `jnp.fft.rfft2` coefficient."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def _gaussian_transfer(h: int, w: int, sigma, dtype) -> Array:
    """Fourier transfer function of a Gaussian of `sigma` pixels: circular (periodic) blur when multiplied in."""
    f = jnp.asarray(rfft2_freqs(h, w), dtype)
    return jnp.exp(-2.0 * (jnp.pi * sigma * f) ** 2)


def periodic_blur(x: Array, sigma) -> Array:
    """Periodic Gaussian blur of an (H, W, C) array, computed in the Fourier domain."""
    h, w = x.shape[:2]
    spec = jnp.fft.rfft2(x, axes=(0, 1)) * _gaussian_transfer(h, w, sigma, x.dtype)[:, :, None]
    return jnp.fft.irfft2(spec, s=(h, w), axes=(0, 1)).astype(x.dtype)


@functools.lru_cache(maxsize=None)
def pixel(sd: float = 0.01, decorrelate: bool = False) -> Parameterization:
    """Plain pixels squashed into [0, 1]: ``image = sigmoid(C @ p)`` (or ``sigmoid(p)`` without decorrelation).

    ``p`` starts as N(0, sd^2) noise, so the first image is grey with faint noise.
    """

    def init(key, size, dtype=jnp.float32):
        return sd * jax.random.normal(key, (*_hw(size), 3), dtype)

    def to_image(p):
        return jax.nn.sigmoid(decorrelate_color(p) if decorrelate else p)

    return Parameterization(init, to_image, periodic_blur)


@functools.lru_cache(maxsize=None)
def fft(sd: float = 0.01, decay_power: float = 1.0, decorrelate: bool = True) -> Parameterization:
    """Lucid's Fourier parameterization: the image is a spectrum scaled by 1/f, in decorrelated colour.

    For a square image of S px, ``params`` holds the real and imaginary parts of the ``rfft2`` coefficients,
    shape (2, 3, S, S // 2 + 1), drawn N(0, sd^2); for an H x W image (H != W, ``size=(H, W)``) it is
    ``{"spectrum": (2, 3, H, W // 2 + 1), "grid": zeros((H, W, 0))}`` (``grid`` records the width). Each
    coefficient at radial frequency f (cycles/pixel, Lucid's ``rfft2d_freqs(H, W)``) is scaled by
    ``1 / max(f, 1 / max(H, W)) ** decay_power``; then ``irfft2`` (orthonormal), divided by 4 (Lucid's constant),
    mapped through the colour matrix when `decorrelate`, and squashed by a sigmoid (`fft_tensor`).
    """

    def init(key, size, dtype=jnp.float32):
        h, w = _hw(size)
        spectrum = sd * jax.random.normal(key, (2, 3, h, w // 2 + 1), dtype)
        return spectrum if h == w else {"spectrum": spectrum, "grid": jnp.zeros((h, w, 0), dtype)}

    def to_image(p):
        if isinstance(p, dict):
            x = fft_tensor(p["spectrum"], p["grid"].shape[1], decay_power)
        else:
            x = fft_tensor(p, p.shape[2], decay_power)  # square
        return jax.nn.sigmoid(decorrelate_color(x) if decorrelate else x)

    def blur(p, sigma):
        if isinstance(p, dict):
            h, w = p["grid"].shape[:2]
            return {"spectrum": p["spectrum"] * _gaussian_transfer(h, w, sigma, p["spectrum"].dtype)[None, None],
                    "grid": p["grid"]}  # fmt: skip
        h = p.shape[2]
        return p * _gaussian_transfer(h, h, sigma, p.dtype)[None, None]

    return Parameterization(init, to_image, blur)


def _composite_activation(x: Array) -> Array:
    """Lucid's CPPN activation: ``concat(atan(x) / 0.67, atan(x) ** 2 / 0.6)`` over the channels (the constants
    make each half about unit RMS for unit-normal input)."""
    a = jnp.arctan(x)
    return jnp.concatenate([a / 0.67, (a * a) / 0.6], axis=-1)


def cppn_coordinates(size: int, dtype=jnp.float32) -> Array:
    """(size, size, 2) input of the CPPN: Lucid's ``stack([x, y], -1)`` of ``meshgrid(r, r, indexing="ij")``, r
    ``linspace(-sqrt(3), sqrt(3), size)`` (unit standard deviation): channel 0 varies along the columns."""
    r = jnp.linspace(-(3.0**0.5), 3.0**0.5, size, dtype=dtype)
    y, x = jnp.meshgrid(r, r, indexing="ij")
    return jnp.stack([x, y], axis=-1)


@functools.lru_cache(maxsize=None)
def cppn(hidden: int = 24, layers: int = 8) -> Parameterization:
    """Lucid's CPPN image (Mordvintsev et al. 2018, "Differentiable Image Parameterizations"): a compositional
    pattern-producing network maps each pixel's coordinates (`cppn_coordinates`) through `layers` 1x1 layers of
    `hidden` units, each followed by `_composite_activation` (so the next layer reads 2 * `hidden` inputs), and a
    last 1x1 layer to RGB squashed by a sigmoid.

    The parameters are ``{"layers": [(W, b), ...], "grid": zeros((S, 0))}``: ``W`` (in, out) drawn Glorot-uniform
    (slim's ``conv2d`` default, as Lucid builds it), ``b`` zeros, the last ``W`` zeros (the first image is grey);
    ``grid`` holds no values, only the image size S in its shape. The image has no blur: ``construct(blur_every=)``
    with it raises ValueError. Lucid's notebook optimizes it with Adam at a small rate (0.005), no decorrelation.
    """
    hidden, layers = int(hidden), int(layers)
    if hidden < 1 or layers < 1:
        raise ValueError(f"cppn needs hidden >= 1 and layers >= 1, got hidden={hidden}, layers={layers}")

    def init(key, size, dtype=jnp.float32):
        h, w = _hw(size)
        if h != w:
            raise ValueError(f"the cppn parameterization makes square images (Lucid's): got {h}x{w}")
        size = h
        params, fan_in = [], 2
        for k in jax.random.split(key, layers):
            limit = np.sqrt(6.0 / (fan_in + hidden))
            params.append((jax.random.uniform(k, (fan_in, hidden), dtype, -limit, limit), jnp.zeros((hidden,), dtype)))
            fan_in = 2 * hidden
        params.append((jnp.zeros((fan_in, 3), dtype), jnp.zeros((3,), dtype)))
        return {"layers": params, "grid": jnp.zeros((size, 0), dtype)}

    def to_image(params):
        size, dtype = params["grid"].shape[0], params["grid"].dtype
        net = cppn_coordinates(size, dtype)
        *hidden_layers, (w_out, b_out) = params["layers"]
        for w, b in hidden_layers:
            net = _composite_activation(jnp.einsum("hwi,io->hwo", net, w, precision=lax.Precision.HIGHEST) + b[None, None])
        return jax.nn.sigmoid(jnp.einsum("hwi,io->hwo", net, w_out, precision=lax.Precision.HIGHEST) + b_out[None, None])

    def blur(params, sigma):
        raise ValueError("the cppn parameterization has no blur: leave construct's blur_every unset")

    return Parameterization(init, to_image, blur)


# --------------------------------------------------------------------------------------------------------------
# Lucid's low-resolution tensors, and a parameterization of the whole batch that shares them (aligned images)
# --------------------------------------------------------------------------------------------------------------


def _resize_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TF1's ``resize_bilinear`` (align_corners=False, no half-pixel centres) along one axis: output i reads
    ``src = i * (n_in / n_out)`` -- both computed in float32, as TF computes them -- between ``floor(src)`` and
    ``min(ceil(src), n_in - 1)`` with weight ``src - floor(src)`` on the upper one."""
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.arange(n_out, dtype=np.float32) * scale
    lo_f = np.floor(src)
    lo = np.maximum(lo_f.astype(np.int64), 0)
    hi = np.minimum(np.ceil(src).astype(np.int64), n_in - 1)
    return lo, hi, (src - lo_f).astype(np.float64)


def resize_bilinear_nd(t: Array, shape: tuple[int, ...]) -> Array:
    """Lucid's ``resize_bilinear_nd``: `t` resized to `shape` (same rank) by bilinear interpolation along every
    axis whose size changes, with TF1's ``resize_bilinear`` semantics (see `_resize_weights`: corners not aligned,
    the last rows repeat the edge). Lucid resizes two axes at a time; bilinear interpolation is separable, so one
    axis at a time gives the same values up to rounding."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != t.ndim:
        raise ValueError(f"resize_bilinear_nd: target shape {shape} has {len(shape)} axes, the tensor {t.ndim}")
    for axis, (n_in, n_out) in enumerate(zip(t.shape, shape)):
        if n_in == n_out:
            continue
        lo, hi, w = _resize_weights(n_in, n_out)
        a, b = jnp.take(t, lo, axis=axis), jnp.take(t, hi, axis=axis)
        w = jnp.asarray(w, t.dtype).reshape((1,) * axis + (-1,) + (1,) * (t.ndim - axis - 1))
        t = a + (b - a) * w
    return t


class LowRes(NamedTuple):
    """Lucid's ``lowres_tensor(shape, underlying_shape, offset, sd)``: a tensor of `shape` that is a tensor of
    `underlying_shape` resized bilinearly (`resize_bilinear_nd`), then shifted by `offset` (per axis: the result
    padded at the start with a mirror image of itself, edge included, and cut back to `shape`).

    ``init(key, dtype)`` draws the underlying tensor, N(0, sd^2); calling the object on it gives the tensor.
    """

    shape: tuple
    underlying_shape: tuple
    offset: tuple | None
    sd: float

    def init(self, key: Array, dtype=jnp.float32) -> Array:
        return self.sd * jax.random.normal(key, self.underlying_shape, dtype)

    def __call__(self, underlying: Array) -> Array:
        t = resize_bilinear_nd(underlying, self.shape)
        if self.offset is not None and any(self.offset):
            t = jnp.pad(t, [(o, 0) for o in self.offset], mode="symmetric")
            t = t[tuple(slice(0, s) for s in self.shape)]
        return t


def lowres(shape, underlying_shape, offset=None, sd: float = 0.01) -> LowRes:
    """Lucid's ``lowres_tensor``: a tensor of `shape` parameterized by a lower-resolution one of
    `underlying_shape` (same rank), resized bilinearly as Lucid does (`resize_bilinear_nd`).

    `offset` shifts the result along each axis (Lucid's): None or False no shift; an int that many entries; True
    half the ratio ``shape / underlying_shape`` (rounded down); a list gives one such value per axis. For images
    the shapes are (N, H, W, 3) (Lucid's NHWC); `aligned` adds such tensors, shared by all images of a batch, to
    each image's own FFT image.
    """
    try:
        shape = tuple(int(s) for s in shape)
        underlying_shape = tuple(int(s) for s in underlying_shape)
    except TypeError as e:
        raise TypeError(f"lowres: shape and underlying_shape must be sequences of ints, got {shape!r}, "
                        f"{underlying_shape!r}") from e  # fmt: skip
    if len(shape) != len(underlying_shape) or min(shape + underlying_shape) < 1:
        raise ValueError(f"lowres: shape {shape} and underlying_shape {underlying_shape} must have the same number "
                         "of axes, all positive")  # fmt: skip
    if offset is not None:
        offsets = list(offset) if isinstance(offset, (list, tuple)) else [offset] * len(shape)
        if len(offsets) != len(shape):
            raise ValueError(f"lowres: offset has {len(offsets)} entries for {len(shape)} axes")
        out = []
        for o, s, u in zip(offsets, shape, underlying_shape):
            if o is True:
                o = s / u / 2
            elif o is False:
                o = 0
            if int(o) < 0 or int(o) > s:
                raise ValueError(f"lowres: offset {o} outside 0..{s}")
            out.append(int(o))
        offset = tuple(out)
    return LowRes(shape, underlying_shape, offset, float(sd))


def fft_tensor(p: Array, w: int, decay_power: float = 1.0) -> Array:
    """The image the FFT parameterization represents before its colour matrix and sigmoid: `p` (2, 3, H, W // 2 + 1)
    scaled by ``1 / max(f, 1 / max(H, W)) ** decay_power``, ``irfft2`` (orthonormal) to (H, W, 3), divided by 4.
    Lucid's ``fft_image`` for even W and any H (its ``rfft2d_freqs`` with f in cycles per pixel along each axis, its
    ``sqrt(H W)`` scale times TF's unnormalized inverse being the orthonormal one); Lucent's for odd W (Lucid
    computes an odd width at W + 1 and crops; Lucent, and this, drop the extra frequency column)."""
    _, _, h, wf = p.shape
    if wf != w // 2 + 1:
        raise ValueError(f"an FFT spectrum of {wf} columns cannot make a {w} px wide image (needs {w // 2 + 1})")
    scale = 1.0 / np.maximum(rfft2_freqs(h, w), 1.0 / max(h, w)) ** decay_power
    spec = (p[0] + 1j * p[1]) * jnp.asarray(scale, p.dtype)[None]
    x = jnp.fft.irfft2(spec, s=(h, w), axes=(1, 2), norm="ortho").astype(p.dtype)
    return jnp.transpose(x, (1, 2, 0)) / 4.0


class BatchParameterization(NamedTuple):
    """A parameterization of a whole batch of images, some parameters shared by all of them.

    ``init(keys, size, dtype) -> params``: `keys` (N,) one PRNG key per image (the key a per-image
    parameterization would take), `size` an int or (H, W); ``to_images(params) -> (N, H, W, 3)`` in [0, 1].
    `construct` optimizes such a batch jointly, with one optimizer over all the parameters (Lucid's way); it has no
    blur (`blur_every`).
    """

    init: Callable[[Array, Any, Any], Any]
    to_images: Callable[[Any], Array]


def interpolation_lowres(n: int, size) -> tuple[LowRes, ...]:
    """The shared tensors of Lucid's aligned-interpolation notebook for `n` frames of `size` (int or (H, W)):
    ``(n, H, W, 3)`` tensors with underlying shapes (1, H/2, W/2, 3), (1, H/4, W/4, 3), (1, H/8, W/8, 3),
    (2, H/8, W/8, 3), (1, H/16, W/16, 3), (2, H/16, W/16, 3) (sizes rounded down, at least 1): the frames share
    their coarse structure, and the (2, ...) tensors, interpolated along the batch, blend it from the first frame
    to the last."""
    h, w = _hw(size)
    shape = (int(n), h, w, 3)
    under = [(1, 2), (1, 4), (1, 8), (2, 8), (1, 16), (2, 16)]
    return tuple(lowres(shape, (b, max(h // k, 1), max(w // k, 1), 3)) for b, k in under)


def aligned(shared=None, sd: float = 0.01, decay_power: float = 1.0, decorrelate: bool = True) -> BatchParameterization:
    """Images that share part of their parameters (Lucid's aligned-interpolation notebook): image n of the batch is
    ``sigmoid(C @ (fft_tensor(own_n) + sum_k shared_k[n]))``: its own FFT spectrum (`fft`'s, drawn from its own key)
    plus the low-resolution tensors `shared` (`lowres`, shape (N or 1, H, W, 3)), each ONE tensor for the whole
    batch. ``None`` takes `interpolation_lowres` for the batch and image size of the run. Shared tensor k is
    drawn from ``fold_in(keys[0], k + 1)``.

    ``params = {"own": (N, 2, 3, H, W // 2 + 1), "shared": [underlying_k, ...], "grid": zeros((H, W, 0))}``
    (``grid`` only records the image size).
    """
    given = None if shared is None else tuple(shared)
    if given is not None and not all(isinstance(s, LowRes) for s in given):
        raise TypeError("aligned: shared must be a sequence of dv.param.lowres(...) tensors")
    return _aligned(given, float(sd), float(decay_power), bool(decorrelate))


@functools.lru_cache(maxsize=None)
def _aligned(given, sd, decay_power, decorrelate) -> BatchParameterization:
    """`aligned`, cached: equal arguments give the same object (so `construct` does not recompile)."""

    def tensors(n, h, w):
        ts = interpolation_lowres(n, (h, w)) if given is None else given
        for t in ts:
            if len(t.shape) != 4 or t.shape[0] not in (1, n) or t.shape[1:] != (h, w, 3):
                raise ValueError(f"aligned: a shared tensor of shape {t.shape} does not fit a batch of {n} "
                                 f"{h}x{w} images: use shape ({n} or 1, {h}, {w}, 3)")  # fmt: skip
        return ts

    def init(keys, size, dtype=jnp.float32):
        h, w = _hw(size)
        ts = tensors(keys.shape[0], h, w)
        own = jax.vmap(lambda k: sd * jax.random.normal(k, (2, 3, h, w // 2 + 1), dtype))(keys)
        shared_ = [t.init(jax.random.fold_in(keys[0], i + 1), dtype) for i, t in enumerate(ts)]
        return {"own": own, "shared": shared_, "grid": jnp.zeros((h, w, 0), dtype)}

    def to_images(params):
        h, w = params["grid"].shape[:2]
        n = params["own"].shape[0]
        x = jax.vmap(lambda p: fft_tensor(p, w, decay_power))(params["own"])
        for t, u in zip(tensors(n, h, w), params["shared"]):
            x = x + t(u)
        return jax.nn.sigmoid(jax.vmap(decorrelate_color)(x) if decorrelate else x)

    return BatchParameterization(init, to_images)
