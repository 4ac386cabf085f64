"""Image parameterizations: how `construct` represents the image it optimizes.

A **parameterization** is ``(init(key, size, dtype) -> params, to_image(params) -> (S, S, 3) in [0, 1],
blur(params, sigma) -> params)``: plain pixels (`pixel`), or Lucid's scaled FFT spectrum with decorrelated colour
(`fft`). Also the colour-decorrelation matrix and the Fourier helpers they share, among them the periodic Gaussian
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

    ``init(key, size, dtype) -> params``; ``to_image(params) -> (size, size, 3)`` RGB in [0, 1];
    ``blur(params, sigma) -> params`` blurs the represented image with a periodic Gaussian of `sigma` pixels.
    """

    init: Callable[[Array, int, Any], Any]
    to_image: Callable[[Any], Array]
    blur: Callable[[Any, float], Any]


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
        return sd * jax.random.normal(key, (size, size, 3), dtype)

    def to_image(p):
        return jax.nn.sigmoid(decorrelate_color(p) if decorrelate else p)

    return Parameterization(init, to_image, periodic_blur)


@functools.lru_cache(maxsize=None)
def fft(sd: float = 0.01, decay_power: float = 1.0, decorrelate: bool = True) -> Parameterization:
    """Lucid's Fourier parameterization: the image is a spectrum scaled by 1/f, in decorrelated colour.

    ``params`` holds the real and imaginary parts of the ``rfft2`` coefficients, shape (2, 3, S, S // 2 + 1),
    drawn N(0, sd^2). Each coefficient at radial frequency f (cycles/pixel) is scaled by
    ``1 / max(f, 1 / S) ** decay_power``; then ``irfft2`` (orthonormal), divided by 4 (Lucid's constant),
    mapped through the colour matrix when `decorrelate`, and squashed by a sigmoid.
    """

    def init(key, size, dtype=jnp.float32):
        return sd * jax.random.normal(key, (2, 3, size, size // 2 + 1), dtype)

    def to_image(p):
        _, _, h, wf = p.shape
        w = h  # square images
        scale = 1.0 / np.maximum(rfft2_freqs(h, w), 1.0 / max(h, w)) ** decay_power
        spec = (p[0] + 1j * p[1]) * jnp.asarray(scale, p.dtype)[None]
        x = jnp.fft.irfft2(spec, s=(h, w), axes=(1, 2), norm="ortho").astype(p.dtype)
        x = jnp.transpose(x, (1, 2, 0)) / 4.0
        return jax.nn.sigmoid(decorrelate_color(x) if decorrelate else x)

    def blur(p, sigma):
        h = p.shape[2]
        return p * _gaussian_transfer(h, h, sigma, p.dtype)[None, None]

    return Parameterization(init, to_image, blur)
