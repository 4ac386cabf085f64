"""Activation maximization: synthesize an image that drives a filter, by gradient ascent (`construct`).

`construct` runs the whole optimization as one jit-compiled program: ``lax.scan`` over the steps, vmapped over the
filters, with an optax optimizer. Filter indices, the seed and the step count are traced inputs, so changing them
does not recompile. Filter ``f`` draws all its randomness from ``jax.random.fold_in(jax.random.key(seed), f)``.

It composes the pieces of its sibling modules (an objective, a parameterization, transforms) with the regularizers
defined here (`l2_penalty`, `total_variation`, and `box_blur` for the seed recipe); ``preset="seed"`` is the
original PyTorch class's recipe, a small pixel image grown in stages.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from ..compile import jit
from ..nets import Model, denormalize, layer_hw, layer_name, normalize
from .objectives import Objective, channel
from .param import Parameterization, _periodic_blur, fft, pixel
from .transforms import Transform, apply_transforms, standard_transforms, transformed_hw

Array = jax.Array


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


@functools.partial(jit, static_argnames=("spec", "dtype"))
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


@functools.partial(jit, static_argnames=("spec",))
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


@functools.partial(jit, static_argnames=("spec",))
def _images(spec: _Spec, state: _State) -> Array:
    if spec.keep_best:
        return state.best_image
    return jax.vmap(spec.param.to_image)(state.params)


def _optimize(spec: _Spec, model: Model, filters: Array, seed: Array, steps: int, bar: Any = None,
              start: Any = None) -> _State:  # fmt: skip
    """`steps` steps of one batch of filters, chunk after chunk; `bar` (a tqdm bar or None) advances by steps."""
    state = _init(spec, np.dtype(model.dtype), seed, filters, start)
    steps_arr = jnp.asarray(steps, jnp.int32)
    for c in range(-(-steps // spec.chunk)):
        state = _run_chunk(spec, model, state, filters, jnp.asarray(c * spec.chunk, jnp.int32), steps_arr)
        if bar is not None:
            jax.block_until_ready(state.params)
            bar.update(min(spec.chunk, steps - c * spec.chunk))
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


@functools.partial(jit, static_argnames=("size", "blur"))
def _grow(params: Array, size: int, blur: int) -> Array:
    """Between stages: back to RGB, bicubic resize to `size`, box blur, normalized again (vmapped over filters)."""

    def one(p):
        img = jax.image.resize(denormalize(p), (size, size, 3), "cubic")
        return normalize(box_blur(img, blur))

    return jax.vmap(one)(params)


# --------------------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------------------


# Working memory one batch of filters may take (XLA's temporary buffers of the compiled chunk), for the automatic
# `batch_size`. Measured at VGG16 conv5_3, 224 px, chunk 8 (`memory_analysis` of the compiled program): about 150 MB
# per filter plus 60 MB; the rule below estimates 178 MB, so 5 filters a batch (~0.8 GB of temporaries).
MEMORY_BUDGET = 1 << 30


_FORWARD_BYTES: dict = {}


def _forward_bytes(model: Model, name: str, hw: tuple, dtype) -> int:
    """Bytes of every intermediate array of one image's forward pass up to layer `name` (the outputs of its jaxpr's
    equations), cached per architecture, layer, size and dtype."""
    key = (model.arch, name, hw, np.dtype(dtype).name)
    if key not in _FORWARD_BYTES:
        shapes = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), model)
        x = jax.ShapeDtypeStruct((1, *hw, 3), dtype)
        jaxpr = jax.make_jaxpr(lambda m, x: m.apply(x, upto=name))(shapes, x)
        _FORWARD_BYTES[key] = sum(int(np.prod(v.aval.shape)) * np.dtype(v.aval.dtype).itemsize
                                  for e in jaxpr.eqns for v in e.outvars if hasattr(v.aval, "shape"))  # fmt: skip
    return _FORWARD_BYTES[key]


def default_batch_size(model: Model, layer, image_size: int = 224, transforms: Sequence[Transform] | None = None,
                       budget: int = MEMORY_BUDGET) -> int:  # fmt: skip
    """How many filters `construct` optimizes at once by default: ``max(1, budget // per_filter)``.

    ``per_filter`` is the size of every intermediate array of one image's forward pass up to `layer` at the
    transformed image size (default: `standard_transforms`), in the model's dtype: about what one filter's
    compiled chunk keeps alive (measured: 150 MB against an estimate of 178 MB at VGG16 conv5_3, 224 px, chunk 8).
    The default `budget` is `MEMORY_BUDGET` (1 GiB): VGG16 conv5_3 at 224 px gets 5, AlexNet conv3 at 224 px 195.
    """
    name = layer_name(model, layer)
    dtype = np.dtype(model.dtype)
    transforms = standard_transforms() if transforms is None else tuple(transforms)
    per_filter = _forward_bytes(model, name, transformed_hw(transforms, (image_size, image_size)), dtype)
    return max(1, int(budget // max(per_filter, 1)))


def batches(n: int, batch_size: int) -> tuple[int, int]:
    """(number of batches, filters per batch) for `n` filters at most `batch_size` at a time.

    The width is the one among ``ceil(3/4 batch_size) .. batch_size`` (at least 2 when n >= 2, at most n) that
    pads the fewest slots in the last batch, the widest on a tie: 32 filters at batch_size 5 run as 8 batches of
    4, not 7 of 5 with 3 padded slots."""
    hi = max(1, min(int(batch_size), n))
    lo = min(max(2, -(-3 * hi // 4)), hi)
    width = min(range(lo, hi + 1), key=lambda w: (-(-n // w) * w, -w))
    return -(-n // width), width


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
    hw = transformed_hw(transforms, (size, size))
    try:
        layer_hw(model, name, hw)
    except ValueError as e:
        raise ValueError(f"image_size={size} (transformed: {hw[0]} px) is too small to reach {name} "
                         f"of {model.arch.name}") from e  # fmt: skip


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
    batch_size: int | None = None,
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

    `batch_size` bounds how many filters run at once (the vmapped width of the program, which sets its memory):
    the filters run in batches of equal width (at most `batch_size`, chosen to pad the fewest slots: `batches`),
    one after the other through the same compiled program (the last batch padded by repeating its last filter). ``None`` takes
    `default_batch_size`: a 1 GiB budget over the forward activations of one image (VGG16 conv5_3 at 224 px:
    5 filters a batch; AlexNet conv3: 195). Batching does not change any filter's image: with 2 or more filters a
    batch the images are bitwise identical whatever the batch. A batch of one filter (``batch_size=1``, or a
    single filter) compiles differently in XLA and rounds differently in float32 (measured: ~2e-7 after 6 steps
    at 64 px, growing with Adam's normalized steps).
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
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
                                   or batch_size < 1):  # fmt: skip
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
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
    seed_arr = jnp.asarray(seed, jnp.int32)

    def spec_for(size):
        _check_size(model, name, transforms_, size, dtype)
        return _Spec(objective, param_, transforms_, optimizer, int(size), float(l2), float(tv), int(blur_every),
                     float(blur_sigma), bool(keep_best), int(min(chunk, steps)), normalized)  # fmt: skip

    spec_for(image_size)  # a size too small for the layer fails before any computing
    if batch_size is None:
        batch_size = default_batch_size(model, name, image_size, transforms_)
    k, width = batches(len(ids), int(batch_size))
    padded = np.concatenate([ids, np.full(k * width - len(ids), ids[-1], np.int32)])
    sizes = seed_sizes(int(image_size)) if seed_recipe else [int(image_size)]
    per_batch = len(sizes) if seed_recipe else -(-steps // int(min(chunk, steps)))
    bar = None
    if verbose and k * per_batch > 1:
        from tqdm.auto import tqdm

        bar = (tqdm(total=k * len(sizes), desc="construct (seed stages)", unit="stage") if seed_recipe
               else tqdm(total=k * steps, desc="construct", unit="step"))  # fmt: skip
    out = []
    for b in range(k):
        filters_arr = jnp.asarray(padded[b * width : (b + 1) * width])
        if not seed_recipe:
            state = _optimize(spec_for(image_size), model, filters_arr, seed_arr, steps, bar)
            out.append(np.asarray(_images(spec_for(image_size), state)))
            continue
        start = None
        for i, size in enumerate(sizes):
            spec = spec_for(size)
            state = _optimize(spec, model, filters_arr, seed_arr, steps, None, start)
            if i + 1 < len(sizes):
                start = _grow(state.params, sizes[i + 1], int(blur_size))
            if bar is not None:
                jax.block_until_ready(state.params)
                bar.update(1)
        out.append(np.asarray(jnp.clip(denormalize(_images(spec, state)), 0.0, 1.0)))
    if bar is not None:
        bar.close()
    return np.concatenate(out)[: len(ids)]
