"""How good is an attribution map: the deletion and insertion curves of RISE (Petsiuk et al. 2018) with their
areas, and Captum's `infidelity` and `sensitivity_max` (Yeh et al. 2019), with explicit PRNG keys.

All four are pure batched functions of normalized NHWC images (jit-compiled at their entry; `jax.jit` and
`jax.vmap` compose): every image has its own map, target and curve, and the perturbed or partly deleted images run
vmapped in chunks inside a `lax.scan`, so memory is bounded by `chunk` images per input image.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..checks import check_choice, check_int
from ..compile import jit
from ..nets import Model
from .core import scores
from .methods import _prepare

Array = jax.Array

BLUR_SIZE, BLUR_SIGMA = 11, 5.0  # RISE's blurred substrate: an 11 x 11 Gaussian of standard deviation 5


# ----------------------------------------------------------------------------------------------------------------
# Deletion and insertion (RISE)
# ----------------------------------------------------------------------------------------------------------------


def gaussian_kernel(size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """The normalized 1-D Gaussian ``exp(-k^2 / (2 sigma^2))``, ``k = -(size // 2) .. size // 2``, summing to 1
    (the blur is its outer product with itself, applied to each colour)."""
    k = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(k * k) / (2.0 * sigma * sigma))
    return g / g.sum()


def blur(x: Array, size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> Array:
    """`x` (N, H, W, 3) blurred by the separable `gaussian_kernel` with zero padding (the output keeps the size):
    the insertion curve's default substrate (RISE's blurred image)."""
    g = jnp.asarray(gaussian_kernel(size, sigma), x.dtype)
    c = x.shape[-1]
    dn = ("NHWC", "HWIO", "NHWC")
    kh = jnp.tile(g.reshape(size, 1, 1, 1), (1, 1, 1, c))
    kw = jnp.tile(g.reshape(1, size, 1, 1), (1, 1, 1, c))
    pad = size // 2
    y = lax.conv_general_dilated(x, kh, (1, 1), ((pad, pad), (0, 0)), dimension_numbers=dn, feature_group_count=c,
                                 precision=lax.Precision.HIGHEST)  # fmt: skip
    return lax.conv_general_dilated(y, kw, (1, 1), ((0, 0), (pad, pad)), dimension_numbers=dn, feature_group_count=c,
                                    precision=lax.Precision.HIGHEST)  # fmt: skip


def counts(pixels: int, steps: int) -> np.ndarray:
    """How many pixels are removed (deletion) or inserted (insertion) at each of the ``steps + 1`` points of a
    curve: ``(i * pixels) // steps`` for ``i = 0 .. steps`` (RISE's ``i * step`` when `steps` divides `pixels`)."""
    return (np.arange(steps + 1) * pixels) // steps


def trapezoid_area(curve: Array) -> Array:
    """The area under curves (..., P) sampled at P evenly spaced points of [0, 1], by the trapezoid rule: ``(sum -
    first / 2 - last / 2) / (P - 1)`` (RISE's `auc`)."""
    return (jnp.sum(curve, axis=-1) - 0.5 * (curve[..., 0] + curve[..., -1])) / (curve.shape[-1] - 1)


@functools.partial(jit, static_argnames=("steps", "chunk"))
def _causal_curve(model, x, target, maps, substrate, steps, insert, chunk):
    n, h, w, _ = x.shape
    order = jnp.argsort(-maps.reshape(n, h * w), axis=1, stable=True)  # most important first; ties: lower index
    rank = jnp.zeros((n, h * w), jnp.int32).at[jnp.arange(n)[:, None], order].set(jnp.arange(h * w, dtype=jnp.int32))
    rank = rank.reshape(n, h, w, 1)
    count = counts(h * w, steps)
    pad = -len(count) % chunk
    count = jnp.asarray(np.concatenate([count, np.repeat(count[-1:], pad)]).reshape(-1, chunk), jnp.int32)
    start, finish = jnp.where(insert, substrate, x), jnp.where(insert, x, substrate)  # one program for both

    def step(_, cs):
        def one(c):  # the images with the c most important pixels changed from `start` to `finish`
            return scores(model, jnp.where(rank < c, finish, start), target)

        return None, jax.vmap(one)(cs)  # (chunk, N)

    _, s = lax.scan(step, None, count)
    curve = jnp.moveaxis(s.reshape(-1, n)[: steps + 1], 0, 1)  # (N, steps + 1)
    return curve, trapezoid_area(curve)


def _substrate(x: Array, substrate) -> Array:
    if isinstance(substrate, str):
        check_choice("substrate", substrate, ("zeros", "blur"))
        return jnp.zeros_like(x) if substrate == "zeros" else blur(x)
    s = jnp.asarray(substrate, x.dtype)
    try:
        return jnp.broadcast_to(s, x.shape)
    except ValueError:
        raise ValueError(f"substrate shaped {s.shape} does not broadcast to the images {x.shape}: pass \"zeros\", "
                         "\"blur\" or an array of the images' shape") from None  # fmt: skip


def _causal(model, x, target, maps, steps, substrate, chunk, insert):
    x, t = _prepare(model, x, target)
    m = jnp.asarray(maps)
    if m.shape != x.shape[:3]:
        raise ValueError(f"the maps are shaped {m.shape}, the images {x.shape}: pass one (N, H, W) map per image "
                         "(dv.attribution.to_map for input-space attributions, upsample for a CAM)")  # fmt: skip
    steps = check_int("steps", steps, high=x.shape[1] * x.shape[2], what="at most the pixels of an image")
    chunk = min(check_int("chunk", chunk), steps + 1)
    return _causal_curve(model, x, t, m.astype(x.dtype), _substrate(x, substrate), steps, jnp.asarray(insert), chunk)


def deletion(model: Model, x: Array, target, maps: Array, steps: int = 100, substrate="zeros",
             chunk: int = 16) -> tuple[Array, Array]:  # fmt: skip
    """The deletion curve of RISE (Petsiuk et al. 2018): the target's score as the images' pixels are replaced by
    the `substrate`, most important first by `maps` (N, H, W) (ties: the lower row-major index first), at
    ``steps + 1`` points (`counts`: ``(i * H * W) // steps`` pixels, all three colours, at point i). The
    `substrate`: ``"zeros"`` (the normalized zero image, the mean colour: the paper's), ``"blur"`` (`blur`) or an
    array broadcast to `x`. Returns ``(curve (N, steps + 1), area (N,))``, the area by the trapezoid rule over
    [0, 1] (`trapezoid_area`): lower is better. Score with ``dv.targets.softmax(c)`` for the paper's probability.
    `chunk` points are scored at once, vmapped over the points of every image."""
    return _causal(model, x, target, maps, steps, substrate, chunk, insert=False)


def insertion(model: Model, x: Array, target, maps: Array, steps: int = 100, substrate="blur",
              chunk: int = 16) -> tuple[Array, Array]:  # fmt: skip
    """The insertion curve of RISE: the images start as the `substrate` (default ``"blur"``: the paper's blurred
    image) and get their own pixels back, most important first by `maps`, at ``steps + 1`` points as in
    `deletion`. Returns ``(curve (N, steps + 1), area (N,))``: higher is better."""
    return _causal(model, x, target, maps, steps, substrate, chunk, insert=True)


# ----------------------------------------------------------------------------------------------------------------
# Infidelity and sensitivity (Captum's definitions)
# ----------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def gaussian_perturbation(sigma: float = 0.003) -> Callable:
    """A perturbation for `infidelity`: ``fn(key, x) -> (I, x - I)`` with ``I = sigma * normal(key, x.shape)``
    (Captum's documented example, Yeh et al.'s noisy baseline). The same `sigma` returns the same function (a
    static argument of the compiled program)."""

    def perturb(key, x):
        noise = sigma * jax.random.normal(key, x.shape, x.dtype)
        return noise, x - noise

    return perturb


@functools.lru_cache(maxsize=None)
def uniform_perturbation(radius: float = 0.02) -> Callable:
    """A perturbation for `sensitivity_max`: ``fn(key, x) -> x + U(-radius, radius)`` (Captum's default)."""

    def perturb(key, x):
        return x + jax.random.uniform(key, x.shape, x.dtype, -radius, radius)

    return perturb


def _sample_chunks(key: Array, samples: int, chunk: int) -> tuple[Array, Array]:
    """The per-sample keys ``jax.random.split(key, samples)`` in (G, chunk) groups (the last padded by repeats),
    and the groups' 0/1 validity."""
    keys = jax.random.split(key, samples)
    pad = -samples % chunk
    keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], pad, axis=0)]).reshape(-1, chunk, *keys.shape[1:])
    valid = (jnp.arange(samples + pad) < samples).reshape(-1, chunk)
    return keys, valid


@functools.partial(jit, static_argnames=("perturb", "samples", "chunk"))
def _infidelity(model, x, target, attributions, key, perturb, samples, normalize, chunk):
    fx = scores(model, x, target)
    keys, valid = _sample_chunks(key, samples, chunk)

    def one(k):
        noise, perturbed = perturb(k, x)
        dot = jnp.sum((attributions * noise).reshape(x.shape[0], -1), axis=1)
        return dot, fx - scores(model, perturbed, target)

    def step(carry, kv):
        k, v = kv
        dot, diff = jax.vmap(one)(k)  # (chunk, N)
        v = v.astype(x.dtype)[:, None]
        terms = (dot * dot, dot * diff, diff * diff, (dot - diff) ** 2)
        return tuple(c + jnp.sum(v * t, axis=0) for c, t in zip(carry, terms)), None

    zero = jnp.zeros(x.shape[0], x.dtype)
    (aa, ad, dd, err), _ = lax.scan(step, (zero,) * 4, (keys, valid))
    beta = ad / jnp.where(aa == 0, 1.0, aa)  # Captum's safe_div
    return jnp.where(normalize, beta * beta * aa - 2.0 * beta * ad + dd, err) / samples  # one program for both


def infidelity(model: Model, x: Array, target, attributions: Array, key: Array, perturb: Callable | None = None,
               samples: int = 10, normalize: bool = False, chunk: int | None = None) -> Array:  # fmt: skip
    """Infidelity (Yeh et al. 2019) as Captum's `captum.metrics.infidelity` computes it, (N,): the mean over
    `samples` perturbations of ``(sum(attributions * I) - (f(x) - f(x_perturbed)))^2``, f the target's score.
    ``perturb(key, x) -> (I, x_perturbed)`` is a pure function of a PRNG key and the batch (default
    `gaussian_perturbation` (0.003)); sample s uses ``jax.random.split(key, samples)[s]``. `attributions`:
    (N, H, W, 3), or maps (N, H, W) broadcast over colour. ``normalize=True`` scales the attributions by Captum's
    optimal beta first. `chunk` samples run at once, vmapped (default: all)."""
    x, t = _prepare(model, x, target)
    a = jnp.asarray(attributions, x.dtype)
    if a.shape == x.shape[:3]:
        a = jnp.broadcast_to(a[..., None], x.shape)
    if a.shape != x.shape:
        raise ValueError(f"the attributions are shaped {a.shape}, the images {x.shape}: pass (N, H, W, 3) or "
                         "(N, H, W) (upsample a CAM to the image first)")  # fmt: skip
    samples = check_int("samples", samples)
    chunk = samples if chunk is None else min(check_int("chunk", chunk), samples)
    perturb = gaussian_perturbation() if perturb is None else perturb
    return _infidelity(model, x, t, a, key, perturb, samples, jnp.asarray(bool(normalize)), chunk)


@functools.partial(jit, static_argnames=("explain", "perturb", "samples", "chunk"))
def _sensitivity_max(explain, model, x, target, key, perturb, samples, chunk):
    n = x.shape[0]

    def flat_norm(e):
        e = e.reshape(n, -1)
        return jnp.sqrt(jnp.sum(e * e, axis=1))

    e0 = explain(model, x, target)
    base = flat_norm(e0)
    base = jnp.where(base == 0, 1.0, base)
    keys, valid = _sample_chunks(key, samples, chunk)

    def one(k):
        return flat_norm(explain(model, perturb(k, x), target) - e0) / base

    def step(best, kv):
        k, v = kv
        s = jax.vmap(one)(k)  # (chunk, N)
        return jnp.maximum(best, jnp.max(jnp.where(v[:, None], s, -jnp.inf), axis=0)), None

    best, _ = lax.scan(step, jnp.full((n,), -jnp.inf, base.dtype), (keys, valid))
    return best


def sensitivity_max(explain: Callable, model: Model, x: Array, target, key: Array, perturb: Callable | None = None,
                    samples: int = 10, chunk: int | None = None) -> Array:  # fmt: skip
    """Max-sensitivity (Yeh et al. 2019) as Captum's `captum.metrics.sensitivity_max` computes it, (N,): the
    largest, over `samples` perturbed inputs, of ``||e(x') - e(x)|| / ||e(x)||`` (a zero ``||e(x)||`` counts as 1),
    ``e = explain(model, x, target)`` any attribution function of this library (e.g. `saliency`; bind options with
    `functools.partial`, the same object each call so that the compiled program is reused). ``perturb(key, x) ->
    x'`` (default `uniform_perturbation` (0.02), Captum's default); sample s uses ``jax.random.split(key,
    samples)[s]``. The norm is Captum's default ``"fro"``: the L2 norm of the flattened explanation. `chunk`
    samples run at once, vmapped (default: all)."""
    x, t = _prepare(model, x, target)
    samples = check_int("samples", samples)
    chunk = samples if chunk is None else min(check_int("chunk", chunk), samples)
    perturb = uniform_perturbation() if perturb is None else perturb
    return _sensitivity_max(explain, model, x, t, key, perturb, samples, chunk)


__all__ = ["blur", "counts", "deletion", "gaussian_kernel", "gaussian_perturbation", "infidelity", "insertion",
           "sensitivity_max", "trapezoid_area", "uniform_perturbation"]  # fmt: skip
