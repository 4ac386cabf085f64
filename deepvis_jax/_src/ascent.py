"""Activation maximization: synthesize an image that drives a filter, by gradient ascent (`construct`).

Built from small pure pieces, each made by a factory that closes over its hyperparameters (the optax pattern):

- an **objective** is ``fn(model, x, target) -> scalar`` for ONE image ``x`` (H, W, 3), already ImageNet-normalized,
  and one traced integer ``target`` (the filter index; `construct` vmaps over filters). Objectives add and scale:
  ``channel("conv3") - 0.5 * neuron("conv3")``.
- a **parameterization** is ``(init(key, size, dtype) -> params, to_image(params) -> (S, S, 3) in [0, 1],
  blur(params, sigma) -> params)``: plain pixels, or Lucid's scaled FFT spectrum with decorrelated colour.
- a **transform** is ``(key, image) -> image``, unbatched, with an explicit key: `pad`, `jitter`, `random_scale`,
  `random_rotate`; `standard_transforms()` is Lucid's list.

`construct` runs the whole optimization as one jit-compiled program: ``lax.scan`` over the steps, vmapped over the
filters, with an optax optimizer. Filter indices, the seed and the step count are traced inputs, so changing them
does not recompile. Filter ``f`` draws all its randomness from ``jax.random.fold_in(jax.random.key(seed), f)``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Hashable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from .models import Model, denormalize, feature_shapes, layer_channels, layer_name, normalize

Array = jax.Array

# --------------------------------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
    """A quantity to maximize: ``fn(model, x, target) -> scalar`` for one normalized image x (H, W, 3).

    ``targets(model)`` gives how many target indices are valid (filters of a layer, classes), or None when the
    objective ignores the target. Objectives compose: ``a + b``, ``a - b``, ``2.0 * a``, ``-a``. Two objectives made
    by the same factory with the same arguments compare equal, so reusing them does not recompile `construct`.
    """

    fn: Callable[[Model, Array, Array], Array]
    targets: Callable[[Model], int | None] = lambda model: None
    key: Hashable = None  # identity for equality/hashing; None means the object itself

    def __call__(self, model: Model, x: Array, target: Array) -> Array:
        return self.fn(model, x, target)

    def _id(self):
        return self.key if self.key is not None else ("id", id(self))

    def __eq__(self, other):
        return isinstance(other, Objective) and self._id() == other._id()

    def __hash__(self):
        return hash(self._id())

    def __add__(self, other: Objective) -> Objective:
        return combine((1.0, 1.0), (self, other))

    def __sub__(self, other: Objective) -> Objective:
        return combine((1.0, -1.0), (self, other))

    def __mul__(self, weight: float) -> Objective:
        return combine((float(weight),), (self,))

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return combine((-1.0,), (self,))


def combine(weights: Sequence[float], objectives: Sequence[Objective]) -> Objective:
    """The weighted sum ``sum_i weights[i] * objectives[i]``."""
    weights, objectives = tuple(float(w) for w in weights), tuple(objectives)
    if len(weights) != len(objectives) or not objectives:
        raise ValueError(f"combine needs as many weights as objectives (got {len(weights)} and {len(objectives)})")

    def fn(model, x, target):
        return sum(w * o(model, x, target) for w, o in zip(weights, objectives))

    def targets(model):
        counts = [n for n in (o.targets(model) for o in objectives) if n is not None]
        return min(counts) if counts else None

    return Objective(fn, targets, ("sum", weights, tuple(o._id() for o in objectives)))


def _layer_activation(model: Model, x: Array, layer, target: Array, pre_relu: bool) -> Array:
    """(h, w) map of channel `target` of `layer` for one image; the layer's conv computes only that channel."""
    name = layer_name(model, layer)
    channels = jnp.reshape(target, (1,)).astype(jnp.int32)
    return model.apply(x[None], upto=name, channels=channels, pre_relu=pre_relu)[0, :, :, 0]


def channel(layer, pre_relu: bool = True, contrast: float = 0.0) -> Objective:
    """Mean activation of channel ``target`` of conv `layer` (name or 1-based index), before its ReLU by default,
    minus `contrast` times the largest mean activation among the layer's other channels.

    Pre-ReLU is the default because a channel that starts negative everywhere has zero gradient after the ReLU.
    With ``contrast > 0`` the image must excite the target more than any other channel, not merely a lot (on
    trained VGG16 a plain channel mean leaves low-gain conv3_3 filters behind channels of higher gain); the whole
    layer is then computed instead of the target channel alone.
    """
    contrast = float(contrast)

    def fn(model, x, t):
        if not contrast:
            return jnp.mean(_layer_activation(model, x, layer, t, pre_relu))
        means = jnp.mean(model.apply(x[None], upto=layer_name(model, layer), pre_relu=pre_relu)[0], axis=(0, 1))
        others = jnp.where(jnp.arange(means.shape[0]) == t, -jnp.inf, means)
        return means[t] - contrast * jnp.max(others)

    key = ("channel", layer, bool(pre_relu)) + ((contrast,) if contrast else ())
    return Objective(fn, lambda model: layer_channels(model, layer), key)


def neuron(layer, y: int | None = None, x: int | None = None, pre_relu: bool = True) -> Objective:
    """One unit: channel ``target`` of `layer` at feature-map position (y, x), the centre by default."""

    def fn(model, img, t):
        a = _layer_activation(model, img, layer, t, pre_relu)
        h, w = a.shape
        return a[h // 2 if y is None else y, w // 2 if x is None else x]

    return Objective(fn, lambda model: layer_channels(model, layer), ("neuron", layer, y, x, bool(pre_relu)))


def class_logit(index: int | None = None) -> Objective:
    """The logit of class `index`, or of class ``target`` when `index` is None (then filters are class indices)."""

    def fn(model, x, t):
        logits = model.apply(x[None])[0]
        return logits[t] if index is None else logits[index]

    return Objective(fn, (lambda model: model.arch.num_classes) if index is None else (lambda model: None),
                     ("class_logit", index))  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# Parameterizations
# --------------------------------------------------------------------------------------------------------------

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


def _periodic_blur(x: Array, sigma) -> Array:
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

    return Parameterization(init, to_image, _periodic_blur)


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


# --------------------------------------------------------------------------------------------------------------
# Transforms: (key, image (H, W, 3)) -> image, shapes static
# --------------------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------------------
# Regularizers (on the [0, 1] image, before transforms)
# --------------------------------------------------------------------------------------------------------------


def l2_penalty(img: Array) -> Array:
    """Mean squared distance from grey: ``mean((img - 0.5)^2)``."""
    return jnp.mean(jnp.square(img - 0.5))


def total_variation(img: Array) -> Array:
    """Anisotropic total variation: mean absolute difference between vertical and horizontal neighbours."""
    return jnp.mean(jnp.abs(img[1:] - img[:-1])) + jnp.mean(jnp.abs(img[:, 1:] - img[:, :-1]))


def box_blur(img: Array, size: int) -> Array:
    """`cv2.blur(img, (size, size))` on (H, W, C): mean over a size x size window, borders reflected (REFLECT_101)."""
    if size <= 1:
        return img
    lo, hi = (size - 1) // 2, size // 2
    x = jnp.pad(img, ((lo, hi), (lo, hi), (0, 0)), mode="reflect")
    s = lax.reduce_window(x, 0.0, lax.add, (size, size, 1), (1, 1, 1), "VALID")
    return s / (size * size)


# --------------------------------------------------------------------------------------------------------------
# The compiled optimization
# --------------------------------------------------------------------------------------------------------------


class _Spec(NamedTuple):
    """Everything static about one run (hashable): changing any of it compiles a new program."""

    objective: Objective
    param: Parameterization
    transforms: tuple
    optimizer: optax.GradientTransformation
    size: int
    l2: float
    tv: float
    blur_every: int
    blur_sigma: float
    keep_best: bool
    chunk: int
    normalized: bool  # the seed recipe: to_image gives the normalized input itself (no squash)


class _State(NamedTuple):
    params: Any
    opt_state: Any
    key: Array
    best_image: Array
    best_value: Array


_TRACES = {"init": 0, "chunk": 0}  # how many times each program was traced (tests assert no recompilation)


def filter_key(seed, target) -> Array:
    """The PRNG key of filter `target`: ``fold_in(key(seed), target)``: independent of the other filters asked."""
    return jax.random.fold_in(jax.random.key(seed), target)


@functools.partial(jax.jit, static_argnames=("spec", "dtype"))
def _init(spec: _Spec, dtype, seed: Array, filters: Array, start: Any = None) -> _State:
    _TRACES["init"] += 1

    def one(f, p0):
        k_init, k_run = jax.random.split(filter_key(seed, f))
        params = spec.param.init(k_init, spec.size, dtype) if p0 is None else p0
        img = jnp.zeros((spec.size, spec.size, 3), dtype) if spec.keep_best else jnp.zeros((), dtype)
        return _State(params, spec.optimizer.init(params), k_run, img, jnp.asarray(-jnp.inf, dtype))

    return jax.vmap(one)(filters, start)


def _to_input(spec: _Spec, img: Array) -> Array:
    return img if spec.normalized else normalize(img)


@functools.partial(jax.jit, static_argnames=("spec",))
def _run_chunk(spec: _Spec, model: Model, state: _State, filters: Array, step0: Array, steps: Array) -> _State:
    """`spec.chunk` optimization steps (steps numbered >= `steps` are skipped), vmapped over filters."""
    _TRACES["chunk"] += 1

    def step(f, t, s: _State) -> _State:
        key, sub = jax.random.split(s.key)

        def loss(params):
            img = spec.param.to_image(params)
            value = spec.objective(model, _to_input(spec, apply_transforms(spec.transforms, sub, img)), f)
            reg = 0.0
            if spec.l2:
                reg = reg + spec.l2 * l2_penalty(img)
            if spec.tv:
                reg = reg + spec.tv * total_variation(img)
            return reg - value, (value, img)

        grads, (value, img) = jax.grad(loss, has_aux=True)(s.params)
        updates, opt_state = spec.optimizer.update(grads, s.opt_state, s.params)
        params = optax.apply_updates(s.params, updates)
        if spec.blur_every:
            params = lax.cond((t + 1) % spec.blur_every == 0, lambda p: spec.param.blur(p, spec.blur_sigma),
                              lambda p: p, params)  # fmt: skip
        best_image, best_value = s.best_image, s.best_value
        if spec.keep_best:  # the image just scored (before this update), kept when it beats the best so far
            better = value > best_value
            best_image, best_value = jnp.where(better, img, best_image), jnp.where(better, value, best_value)
        return _State(params, opt_state, key, best_image, best_value)

    def one(f, s: _State) -> _State:
        def body(s, i):
            t = step0 + i
            new = step(f, t, s)
            return jax.tree_util.tree_map(lambda a, b: jnp.where(t < steps, a, b), new, s), None

        # Fully unrolled, and the skip is a select rather than a lax.cond: on XLA:CPU a convolution inside a while
        # or conditional body runs about 1.6x slower than in straight-line code (measured: 64 steps of 8 filters on
        # AlexNet conv3 at 224 px, 17.4 s rolled or under cond, 10.9 s unrolled with a select). The price is that
        # skipped steps (numbered >= `steps`, only in the last chunk) are computed and discarded.
        return lax.scan(body, s, jnp.arange(spec.chunk), unroll=True)[0]

    return jax.vmap(one)(filters, state)


@functools.partial(jax.jit, static_argnames=("spec",))
def _images(spec: _Spec, state: _State) -> Array:
    if spec.keep_best:
        return state.best_image
    return jax.vmap(spec.param.to_image)(state.params)


def _optimize(spec: _Spec, model: Model, filters: Array, seed: Array, steps: int, verbose: bool,
              start: Any = None, desc: str = "construct") -> _State:  # fmt: skip
    state = _init(spec, np.dtype(model.dtype), seed, filters, start)
    n_chunks = -(-steps // spec.chunk)
    bar = None
    if verbose and n_chunks > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, unit="step")
    steps_arr = jnp.asarray(steps, jnp.int32)
    for c in range(n_chunks):
        state = _run_chunk(spec, model, state, filters, jnp.asarray(c * spec.chunk, jnp.int32), steps_arr)
        if bar is not None:
            jax.block_until_ready(state.params)
            bar.update(min(spec.chunk, steps - c * spec.chunk))
    if bar is not None:
        bar.close()
    return state


# --------------------------------------------------------------------------------------------------------------
# The seed's recipe: small pixel image grown in stages
# --------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _seed_pixels() -> Parameterization:
    """The seed class's image: the normalized network input itself, starting as uniform integer noise 150..179 / 255."""

    def init(key, size, dtype=jnp.float32):
        img = jnp.floor(jax.random.uniform(key, (size, size, 3), dtype, 150.0, 180.0)) / 255.0
        return normalize(img)

    return Parameterization(init, lambda p: p, _periodic_blur)


def seed_sizes(image_size: int, start: int = 56, factor: float = 1.2) -> list[int]:
    """Stage sizes of the seed recipe: `start`, then ``int(factor * size)`` until `image_size` (the last, exact)."""
    sizes = [min(start, image_size)]
    while sizes[-1] < image_size:
        sizes.append(min(int(factor * sizes[-1]), image_size))
    return sizes


@functools.partial(jax.jit, static_argnames=("size", "blur"))
def _grow(params: Array, size: int, blur: int) -> Array:
    """Between stages: back to RGB, bicubic resize to `size`, box blur, normalized again (vmapped over filters)."""

    def one(p):
        img = jax.image.resize(denormalize(p), (size, size, 3), "cubic")
        return normalize(box_blur(img, blur))

    return jax.vmap(one)(params)


# --------------------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------------------


# The default recipe's constants, measured on trained VGG16 (see `construct`).
LR = 0.02
CONTRAST = 0.5


@functools.lru_cache(maxsize=None)
def _adam(lr: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """Adam, with torch.optim.Adam's `weight_decay` (an L2 term added to the gradient) when non-zero."""
    if weight_decay:
        return optax.chain(optax.add_decayed_weights(weight_decay), optax.scale_by_adam(), optax.scale(-lr))
    return optax.adam(lr)


def _parse_filters(filters, n: int | None) -> np.ndarray:
    try:
        arr = np.atleast_1d(np.asarray(filters))
    except ValueError as e:  # ragged input
        raise ValueError(f"filters must be an int or a sequence of ints, got {filters!r}") from e
    if arr.size == 0 or arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"filters must be an int or a non-empty sequence of ints, got {filters!r}")
    if n is not None and (arr.min() < 0 or arr.max() >= n):
        bad = int(arr[(arr < 0) | (arr >= n)][0])
        raise ValueError(f"filter {bad} out of range: valid filters are 0..{n - 1}")
    return arr.astype(np.int32)


def _check_size(model: Model, name: str, transforms: tuple, size: int, dtype) -> None:
    """Raise ValueError when the transformed image is too small to reach layer `name`."""
    out = jax.eval_shape(lambda k, x: apply_transforms(transforms, k, x), jax.random.key(0),
                         jax.ShapeDtypeStruct((size, size, 3), dtype))  # fmt: skip
    arch = model.arch
    try:
        feature_shapes(arch._replace(features=arch.features[: arch.top_index(name) + 1]), out.shape[:2])
    except ValueError as e:
        raise ValueError(f"image_size={size} (transformed: {out.shape[0]} px) is too small to reach {name} "
                         f"of {arch.name}") from e  # fmt: skip


def construct(
    model: Model,
    layer,
    filters,
    *,
    steps: int | None = None,
    lr: float | None = None,
    image_size: int = 224,
    seed: int = 0,
    param: str | Parameterization | None = None,
    decorrelate: bool | None = None,
    transforms: str | Sequence[Transform] | None = None,
    objective: Objective | None = None,
    optimizer: optax.GradientTransformation | None = None,
    l2: float = 0.0,
    tv: float = 0.0,
    blur_every: int = 0,
    blur_sigma: float = 0.5,
    keep_best: bool = False,
    preset: str | None = None,
    blur_size: int = 5,
    verbose: bool = True,
    chunk: int = 8,
) -> np.ndarray:
    """Synthesize, for each of `filters`, an image that maximizes it: ``(len(filters), S, S, 3)`` in [0, 1].

    The result is a numpy array of the model's dtype (float32, or float64 for a float64 model under x64).

    The default recipe is Lucid's -- `steps` = 256 Adam steps on an FFT parameterization with decorrelated colour
    (``param="fft"``, ``decorrelate=True``) through `standard_transforms` -- with two changes measured on trained
    VGG16 (Keras's ImageNet convolutions, 128 px): `lr` = 0.02 instead of 0.05 (0.05 drove 4-10% of the pixel
    values to within 0.02 of 0 or 1) and the objective ``channel(layer, contrast=0.5)``: the channel's mean
    pre-ReLU activation minus half the strongest other channel's (with the plain mean, only 1 of 4 random conv3_3
    filters became the strongest channel of its layer; with the contrast, 4 of 4, and 4 of 4 at conv4_3 and
    conv5_3). ``param="pixel"`` optimizes plain pixels squashed by a
    sigmoid; `transforms` is ``"standard"``, ``"none"`` or a sequence of transforms; `objective` replaces the
    default (then `filters` are its target indices); `optimizer` replaces Adam. Regularizers: `l2` (distance from
    grey), `tv` (total variation), a periodic Gaussian blur of `blur_sigma` pixels every `blur_every` steps
    (Yosinski et al. 2015), and `keep_best` (return the best-scoring image seen instead of the last).

    ``preset="seed"`` is the original PyTorch class's recipe: a 56 px pixel image (uniform noise 150..179/255)
    optimized for `steps` = 20 Adam steps (lr 0.1, weight decay 1e-6, no transforms), then resized by 1.2x
    (bicubic) and box-blurred (`blur_size`), stage after stage up to `image_size`; one compiled program per size.

    Filter ``f`` takes its randomness from ``jax.random.fold_in(jax.random.key(seed), f)``, so an image does not
    depend on which other filters are computed with it. The steps run in one compiled program (an unrolled
    ``lax.scan`` of `chunk` steps, vmapped over filters), called once per chunk so a progress bar can advance
    (`verbose`); filters, seed and step count are traced, so changing them does not recompile. A step count that
    is not a multiple of `chunk` computes and discards the rest of the last chunk.
    """
    if not isinstance(model, Model):
        raise ValueError(f"model must be a deepvis_jax Model, got {type(model).__name__}")
    name = layer_name(model, layer)
    if preset not in (None, "seed"):
        raise ValueError(f"unknown preset {preset!r}; use None or 'seed'")
    seed_recipe = preset == "seed"
    if seed_recipe:
        given = {"param": param, "decorrelate": decorrelate, "transforms": transforms}
        clash = [k for k, v in given.items() if v is not None]
        if clash:
            raise ValueError(f"preset='seed' fixes {clash[0]}; leave it unset")
    steps = (20 if seed_recipe else 256) if steps is None else steps
    lr = (0.1 if seed_recipe else LR) if lr is None else lr
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not isinstance(image_size, (int, np.integer)) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    for opt_name, v in (("l2", l2), ("tv", tv), ("blur_sigma", blur_sigma)):
        if not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{opt_name} must be a number >= 0, got {v!r}")
    for opt_name, v in (("blur_every", blur_every), ("blur_size", blur_size), ("chunk", chunk)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < (0 if opt_name == "blur_every" else 1):
            raise ValueError(f"{opt_name} must be an int >= {0 if opt_name == 'blur_every' else 1}, got {v!r}")
    if blur_every and not blur_sigma > 0:
        raise ValueError("blur_every needs blur_sigma > 0")
    if objective is None:
        objective = channel(name) if seed_recipe else channel(name, contrast=CONTRAST)
    elif not isinstance(objective, Objective):
        raise ValueError(f"objective must be an Objective (channel, neuron, class_logit, ...), got {objective!r}")
    ids = _parse_filters(filters, objective.targets(model))
    if optimizer is None:
        optimizer = _adam(float(lr), 1e-6 if seed_recipe else 0.0)

    if seed_recipe:
        param_, transforms_, normalized = _seed_pixels(), (), True
    else:
        decorrelate = True if decorrelate is None else decorrelate
        if param is None or param == "fft":
            param_ = fft(decorrelate=bool(decorrelate))
        elif param == "pixel":
            param_ = pixel(decorrelate=bool(decorrelate))
        elif isinstance(param, Parameterization):
            param_ = param
        else:
            raise ValueError(f"unknown param {param!r}; use 'fft', 'pixel' or a Parameterization")
        if transforms is None or (isinstance(transforms, str) and transforms == "standard"):
            transforms_ = standard_transforms()
        elif isinstance(transforms, str) and transforms == "none":
            transforms_ = ()
        elif isinstance(transforms, str) or not all(callable(t) for t in transforms):
            raise ValueError(f"transforms must be 'standard', 'none' or a sequence of transforms, got {transforms!r}")
        else:
            transforms_ = tuple(transforms)
        normalized = False
    dtype = np.dtype(model.dtype)
    filters_arr, seed_arr = jnp.asarray(ids), jnp.asarray(seed, jnp.int32)

    def spec_for(size):
        _check_size(model, name, transforms_, size, dtype)
        return _Spec(objective, param_, transforms_, optimizer, int(size), float(l2), float(tv), int(blur_every),
                     float(blur_sigma), bool(keep_best), int(min(chunk, steps)), normalized)  # fmt: skip

    if not seed_recipe:
        state = _optimize(spec_for(image_size), model, filters_arr, seed_arr, steps, verbose)
        return np.asarray(_images(spec_for(image_size), state))

    sizes = seed_sizes(int(image_size))
    bar = None
    if verbose and len(sizes) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(sizes), desc="construct (seed stages)", unit="stage")
    start = None
    for i, size in enumerate(sizes):
        spec = spec_for(size)
        state = _optimize(spec, model, filters_arr, seed_arr, steps, False, start)
        if i + 1 < len(sizes):
            start = _grow(state.params, sizes[i + 1], int(blur_size))
        if bar is not None:
            jax.block_until_ready(state.params)
            bar.update(1)
    if bar is not None:
        bar.close()
    return np.asarray(jnp.clip(denormalize(_images(spec, state)), 0.0, 1.0))
