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
