"""Activation maximization: synthesize an image that drives a filter, by gradient ascent (`construct`).

`construct` runs the whole optimization as one jit-compiled program: ``lax.scan`` over the steps, vmapped over the
filters, with an optax optimizer. Filter indices, the seed and the step count are traced inputs, so changing them
does not recompile. Filter ``f`` draws all its randomness from ``jax.random.fold_in(jax.random.key(seed), f)``.

It composes the pieces of its sibling modules (an objective, a parameterization, transforms) with the regularizers
defined here (`l2_penalty`, `tv_penalty`); `recipe` holds the default recipe's constants and ``preset="seed"``,
the original PyTorch class's recipe (a small pixel image grown in stages); `memory` the default batch size.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from ..batching import batches, pad_batch
from ..checks import check_int, check_number
from ..compile import jit
from ..nets import Model, denormalize, layer_hw, layer_name, normalize
from .objectives import Objective
from .memory import MEMORY_BUDGET, default_batch_size
from .param import BatchParameterization, Parameterization, _hw
from .recipe import CONTRAST, LR, grow_stage, box_blur, resolve_recipe, seed_sizes
from .transforms import Transform, apply_transforms, transformed_hw

Array = jax.Array


# --------------------------------------------------------------------------------------------------------------
# Regularizers (on the [0, 1] image, before transforms)
# --------------------------------------------------------------------------------------------------------------


def l2_penalty(img: Array) -> Array:
    """The penalty `construct(l2=...)` weighs: the mean squared distance from grey, ``mean((img - 0.5)^2)``.
    (Lucid's ``L2``, ``sqrt(eps + sum x^2)``, is the objective `dv.objectives.l2`.)"""
    return jnp.mean(jnp.square(img - 0.5))


def tv_penalty(img: Array) -> Array:
    """The total variation `construct(tv=...)` weighs: the MEAN absolute difference between vertical neighbours
    plus that between horizontal neighbours, on the [0, 1] image. (Lucid's ``total_variation``, the sum, is the
    objective `dv.objectives.total_variation`.)"""
    return jnp.mean(jnp.abs(img[1:] - img[:-1])) + jnp.mean(jnp.abs(img[:, 1:] - img[:, :-1]))


# --------------------------------------------------------------------------------------------------------------
# The compiled optimization
# --------------------------------------------------------------------------------------------------------------


class _Spec(NamedTuple):
    """Everything static about one run (hashable): changing any of it compiles a new program."""

    objective: Objective
    param: Parameterization | BatchParameterization
    transforms: tuple
    optimizer: optax.GradientTransformation
    size: Any  # an int (square) or (H, W): what the parameterization's init takes
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


def image_key(seed, target, repeat) -> Array:
    """The PRNG key of the `repeat`-th repetition (0: the first) of filter `target` in one call: `filter_key` for
    the first, ``fold_in(filter_key(seed, target), repeat)`` for the others (so four images of one filter, as a
    `diversity` run asks, start from four different noises)."""
    key = filter_key(seed, target)
    again = jax.random.key_data(jax.random.fold_in(key, repeat))
    return jax.random.wrap_key_data(jnp.where(repeat > 0, again, jax.random.key_data(key)))


@functools.partial(jit, static_argnames=("spec", "dtype"))
def _init(spec: _Spec, dtype, seed: Array, filters: Array, repeats: Array, start: Any = None) -> _State:
    _TRACES["init"] += 1
    h, w = _hw(spec.size)
    keys = jax.vmap(lambda f, r: jax.random.split(image_key(seed, f, r)))(filters, repeats)
    if isinstance(spec.param, BatchParameterization):  # one set of parameters for the batch, one optimizer state
        params = spec.param.init(keys[:, 0], spec.size, dtype)
        n = filters.shape[0]
        img = jnp.zeros((n, h, w, 3), dtype) if spec.keep_best else jnp.zeros((n,), dtype)
        return _State(params, spec.optimizer.init(params), keys[:, 1], img, jnp.full((n,), -jnp.inf, dtype))

    def one(k, p0):
        k_init, k_run = k[0], k[1]
        params = spec.param.init(k_init, spec.size, dtype) if p0 is None else p0
        img = jnp.zeros((h, w, 3), dtype) if spec.keep_best else jnp.zeros((), dtype)
        return _State(params, spec.optimizer.init(params), k_run, img, jnp.asarray(-jnp.inf, dtype))

    return jax.vmap(one)(keys, start)


def _to_input(spec: _Spec, img: Array) -> Array:
    return img if spec.normalized else normalize(img)


def _regularizers(spec: _Spec, img: Array) -> Array:
    reg = 0.0
    if spec.l2:
        reg = reg + spec.l2 * l2_penalty(img)
    if spec.tv:
        reg = reg + spec.tv * tv_penalty(img)
    return reg


def _image01(spec: _Spec, img: Array) -> Array:
    """The [0, 1] image objectives on "input" read (the seed recipe's parameters are the normalized input)."""
    return denormalize(img) if spec.normalized else img


def _blur(spec: _Spec, t: Array, params: Any) -> Any:
    if not spec.blur_every:
        return params
    return lax.cond((t + 1) % spec.blur_every == 0, lambda p: spec.param.blur(p, spec.blur_sigma), lambda p: p,
                    params)  # fmt: skip


def _keep(t: Array, steps: Array, new, old):
    """`new` for a step numbered below `steps`, else `old` (a select, see `_run_chunk`)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(t < steps, a, b), new, old)


@functools.partial(jit, static_argnames=("spec",))
def _run_chunk(spec: _Spec, model: Model, state: _State, filters: Array, step0: Array, steps: Array) -> _State:
    """`spec.chunk` optimization steps (steps numbered >= `steps` are skipped), vmapped over filters; a batch
    objective's images are optimized jointly (`_run_chunk_joint`)."""
    _TRACES["chunk"] += 1
    if spec.objective.is_batch or isinstance(spec.param, BatchParameterization):
        return _run_chunk_joint(spec, model, state, filters, step0, steps)

    def step(f, t, s: _State) -> _State:
        key, sub = jax.random.split(s.key)

        def loss(params):
            img = spec.param.to_image(params)
            x = _to_input(spec, apply_transforms(spec.transforms, sub, img))
            value = spec.objective.value(model, x, _image01(spec, img), f)
            return _regularizers(spec, img) - value, (value, img)

        grads, (value, img) = jax.grad(loss, has_aux=True)(s.params)
        updates, opt_state = spec.optimizer.update(grads, s.opt_state, s.params)
        params = _blur(spec, t, optax.apply_updates(s.params, updates))
        best_image, best_value = s.best_image, s.best_value
        if spec.keep_best:  # the image just scored (before this update), kept when it beats the best so far
            better = value > best_value
            best_image, best_value = jnp.where(better, img, best_image), jnp.where(better, value, best_value)
        return _State(params, opt_state, key, best_image, best_value)

    def one(f, s: _State) -> _State:
        def body(s, i):
            t = step0 + i
            return _keep(t, steps, step(f, t, s), s), None

        # Fully unrolled, and the skip is a select rather than a lax.cond: on XLA:CPU a convolution inside a while
        # or conditional body runs about 1.6x slower than in straight-line code (measured: 64 steps of 8 filters on
        # AlexNet conv3 at 224 px, 17.4 s rolled or under cond, 10.9 s unrolled with a select). The price is that
        # skipped steps (numbered >= `steps`, only in the last chunk) are computed and discarded.
        return lax.scan(body, s, jnp.arange(spec.chunk), unroll=True)[0]

    return jax.vmap(one)(filters, state)


def _run_chunk_joint(spec: _Spec, model: Model, state: _State, filters: Array, step0: Array, steps: Array) -> _State:
    """`_run_chunk` for a batch objective: one loss over the whole batch (the objective's batch value minus the
    mean of the images' regularizers), each image's own key, transforms and optimizer state (vmapped), one
    best value shared by the batch (`keep_best` keeps the best batch). A `BatchParameterization` is one pytree for
    the batch, updated by one optimizer (Lucid's way), and has no blur."""
    shared = isinstance(spec.param, BatchParameterization)
    to_images = spec.param.to_images if shared else jax.vmap(spec.param.to_image)

    def step(t, s: _State) -> _State:
        keys = jax.vmap(jax.random.split)(s.key)
        key, sub = keys[:, 0], keys[:, 1]

        def loss(params):
            img = to_images(params)
            x = jax.vmap(lambda k, im: _to_input(spec, apply_transforms(spec.transforms, k, im)))(sub, img)
            value = spec.objective.batch_value(model, x, _image01(spec, img), filters)
            reg = jnp.mean(jax.vmap(lambda im: _regularizers(spec, im))(img)) if spec.l2 or spec.tv else 0.0
            return reg - value, (value, img)

        grads, (value, img) = jax.grad(loss, has_aux=True)(s.params)
        if shared:
            updates, opt_state = spec.optimizer.update(grads, s.opt_state, s.params)
            params = optax.apply_updates(s.params, updates)
        else:
            updates, opt_state = jax.vmap(spec.optimizer.update)(grads, s.opt_state, s.params)
            params = jax.vmap(lambda p: _blur(spec, t, p))(optax.apply_updates(s.params, updates))
        best_image, best_value = s.best_image, s.best_value
        if spec.keep_best:
            better = value > best_value[0]
            best_image = jnp.where(better, img, best_image)
            best_value = jnp.where(better, jnp.broadcast_to(value, best_value.shape), best_value)
        return _State(params, opt_state, key, best_image, best_value)

    def body(s, i):
        t = step0 + i
        return _keep(t, steps, step(t, s), s), None

    return lax.scan(body, state, jnp.arange(spec.chunk), unroll=True)[0]


@functools.partial(jit, static_argnames=("spec",))
def _images(spec: _Spec, state: _State) -> Array:
    if spec.keep_best:
        return state.best_image
    if isinstance(spec.param, BatchParameterization):
        return spec.param.to_images(state.params)
    return jax.vmap(spec.param.to_image)(state.params)


def _optimize(spec: _Spec, model: Model, filters: Array, repeats: Array, seed: Array, steps: int, bar: Any = None,
              start: Any = None, snapshots: Sequence[int] = ()) -> tuple[_State, list]:  # fmt: skip
    """`steps` steps of one batch of filters, chunk after chunk; `bar` (a tqdm bar or None) advances by steps.

    Returns the final state and, for each step count in `snapshots`, the images after that many steps. A snapshot
    inside a chunk runs that chunk once more from its start with the step count set to the snapshot: the same
    program on the same inputs as a run of that many steps, so its images are bitwise those of that run."""
    state = _init(spec, np.dtype(model.dtype), seed, filters, repeats, start)
    steps_arr = jnp.asarray(steps, jnp.int32)
    shots = []
    for c in range(-(-steps // spec.chunk)):
        lo, hi = c * spec.chunk, min((c + 1) * spec.chunk, steps)
        step0 = jnp.asarray(lo, jnp.int32)
        for t in snapshots:
            if lo < t < hi:
                part = _run_chunk(spec, model, state, filters, step0, jnp.asarray(t, jnp.int32))
                shots.append((t, np.asarray(_images(spec, part))))
        state = _run_chunk(spec, model, state, filters, step0, steps_arr)
        shots += [(t, np.asarray(_images(spec, state))) for t in snapshots if t == hi]
        if bar is not None:
            jax.block_until_ready(state.params)
            bar.update(min(spec.chunk, steps - c * spec.chunk))
    return state, [img for _, img in sorted(shots, key=lambda ti: ti[0])]


# --------------------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------------------


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


def _parse_thresholds(thresholds, steps: int, preset) -> tuple[int, ...]:
    """`thresholds` as increasing positive ints ending at `steps`; () for None."""
    if thresholds is None:
        return ()
    if preset is not None:
        raise ValueError("thresholds snapshot one run; preset='seed' runs in stages: leave thresholds unset")
    arr = np.atleast_1d(np.asarray(thresholds))
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) or arr.min() < 1 \
            or np.any(np.diff(arr) <= 0):
        raise ValueError(f"thresholds must be increasing positive step counts, e.g. (64, 128, 256), got {thresholds!r}")
    if int(arr[-1]) != steps:
        raise ValueError(f"steps={steps} differs from max(thresholds)={int(arr[-1])}: leave steps unset")
    return tuple(int(t) for t in arr)


def _parse_size(image_size, seed_recipe: bool):
    """`image_size` as construct's parameterizations take it: an int S (square) or (H, W) with H != W."""
    if isinstance(image_size, (tuple, list)):
        if len(image_size) != 2:
            raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
        h, w = (check_int("image_size", v) for v in image_size)
        if h == w:
            return h
        if seed_recipe:
            raise ValueError(f"preset='seed' grows square images: give image_size an int, got {image_size!r}")
        return (h, w)
    return check_int("image_size", image_size)


def _check_size(model: Model, name: str, transforms: tuple, size, dtype) -> None:
    """Raise ValueError when the transformed image is too small to reach layer `name`."""
    hw = transformed_hw(transforms, _hw(size))
    try:
        layer_hw(model, name, hw)
    except ValueError as e:
        raise ValueError(f"image_size={size} (transformed: {hw[0]}x{hw[1]} px) is too small to reach {name} "
                         f"of {model.arch.name}") from e  # fmt: skip


def construct(
    model: Model,
    layer,
    filters,
    *,
    steps: int | None = None,
    lr: float | None = None,
    image_size: int | tuple[int, int] | None = None,
    seed: int = 0,
    param: str | Parameterization | BatchParameterization | None = None,
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
    thresholds: Sequence[int] | None = None,
) -> np.ndarray:
    """Synthesize, for each of `filters`, an image that maximizes it: ``(len(filters), S, S, 3)`` in [0, 1]
    (``(len(filters), H, W, 3)`` for ``image_size=(H, W)``).

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
    grey, `l2_penalty`), `tv` (total variation, `tv_penalty`: means, not Lucid's sums; Lucid's penalties are the
    objectives `dv.objectives.l2` and `dv.objectives.total_variation`), a Gaussian blur of `blur_sigma` pixels
    every `blur_every` steps, and `keep_best` (return the best-scoring image seen instead of the last). The blur
    acts on the parameters (`Parameterization.blur`): for ``"pixel"`` the pre-sigmoid array, for ``"fft"`` the
    spectrum, so it is periodic (wraps around the edges) and blurs the logits of the image, not the image itself
    as Yosinski et al. (2015) did; the objective `dv.objectives.blur_input_each_step` is Lucid's blur of the image.

    `image_size` is an int S (square images) or (H, W) (the FFT image then takes Lucid's frequencies for H x W;
    the CPPN and ``preset="seed"`` are square only). `param` may also be a `dv.param.BatchParameterization`
    (`dv.param.aligned`: images sharing Lucid's low-resolution tensors), optimized jointly like a batch objective,
    with one optimizer over its parameters.

    A batch objective (`dv.objectives.diversity`, `alignment`, `channel_interpolate`, or a sum containing one)
    optimizes all of `filters`' images jointly, as one batch (so `batch_size` must not split them): the loss is
    the objective's value on the batch (Lucid's: per-image terms such as `channel` averaged over the images) minus
    the mean of the images' `l2` and `tv` penalties.

    `thresholds`: step counts (increasing); the result is then ``(len(thresholds), len(filters), S, S, 3)``, the
    images after each count, and the run lasts ``max(thresholds)`` steps (`steps`, if given, must equal it). Each
    snapshot is bitwise the result of the same call with ``steps=t`` when t >= `chunk` (a shorter run compiles a
    shorter chunk: pass ``chunk=t`` to it for the same program).

    ``preset="seed"`` is the original PyTorch class's recipe: a 56 px pixel image (uniform noise 150..179/255)
    optimized for `steps` = 20 Adam steps (lr 0.1, weight decay 1e-6, no transforms), then resized by 1.2x
    (bicubic) and box-blurred (`blur_size`), stage after stage up to `image_size`; one compiled program per size.
    `image_size` defaults to 224, or to the one size of a network that takes one (``model.input_size``; its side
    when square, for the seed recipe's square images); for such a network a final `transforms.resize` to that size is appended when the transforms end elsewhere.

    Filter ``f`` takes its randomness from ``jax.random.fold_in(jax.random.key(seed), f)``, so an image does not
    depend on which other filters are computed with it; a filter asked for again in the same call takes, for its
    k-th repetition, ``fold_in`` of that key with k (`image_key`). The steps run in one compiled program (an unrolled
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
    if thresholds is not None and steps is None:
        try:
            steps = int(np.max(np.asarray(thresholds)))
        except (TypeError, ValueError):
            pass  # _parse_thresholds names the problem
    r = resolve_recipe(name, preset=preset, steps=steps, lr=lr, param=param, decorrelate=decorrelate,
                       transforms=transforms, objective=objective, optimizer=optimizer)  # fmt: skip
    seed_recipe, steps, objective, param_, transforms_, optimizer, normalized = (
        r.seed_stages, r.steps, r.objective, r.param, r.transforms, r.optimizer, r.normalized)
    fixed = getattr(model.arch, "fixed_hw", None)  # a network that takes one size (model.input_size)
    if image_size is None:  # 224, or that one size (its square side for the seed recipe's square images)
        square = fixed is not None and fixed[0] == fixed[1]
        image_size = tuple(fixed) if fixed is not None and (square or not seed_recipe) else 224
    image_size = _parse_size(image_size, seed_recipe)
    if fixed is not None and transformed_hw(transforms_, _hw(image_size)) != tuple(fixed):
        from .transforms import resize  # what Lucent's fixed_image_size does: the network sees its one size

        transforms_ = (*transforms_, resize(tuple(fixed)))
    seed = check_int("seed", seed, low=None)
    l2, tv, blur_sigma = (check_number(n, v) for n, v in (("l2", l2), ("tv", tv), ("blur_sigma", blur_sigma)))
    blur_every = check_int("blur_every", blur_every, low=0)
    blur_size, chunk = check_int("blur_size", blur_size), check_int("chunk", chunk)
    batch_size = check_int("batch_size", batch_size, optional=True)
    if blur_every and not blur_sigma > 0:
        raise ValueError("blur_every needs blur_sigma > 0")
    shared_param = isinstance(param_, BatchParameterization)
    if shared_param and blur_every:
        raise ValueError("a BatchParameterization (dv.param.aligned) has no blur: leave blur_every unset")
    snapshots = _parse_thresholds(thresholds, steps, preset)
    ids = _parse_filters(filters, objective.targets(model))
    dtype = np.dtype(model.dtype)
    seed_arr = jnp.asarray(seed, jnp.int32)

    def spec_for(size):
        _check_size(model, name, transforms_, size, dtype)
        return _Spec(objective, param_, transforms_, optimizer, size, float(l2), float(tv), int(blur_every),
                     float(blur_sigma), bool(keep_best), int(min(chunk, steps)), normalized)  # fmt: skip

    spec_for(image_size)  # a size too small for the layer fails before any computing
    if objective.is_batch or shared_param:
        what = "a batch objective" if objective.is_batch else "a BatchParameterization"
        if batch_size is not None and batch_size < len(ids):
            raise ValueError(f"{what} optimizes its {len(ids)} images jointly: batch_size={batch_size} "
                             "would split them; leave batch_size unset")  # fmt: skip
        batch_size = len(ids)
    if batch_size is None:
        batch_size = default_batch_size(model, name, image_size, transforms_)
    k, width = batches(len(ids), int(batch_size))
    padded = pad_batch(ids, k * width)
    repeats = np.asarray([np.count_nonzero(padded[:i] == f) for i, f in enumerate(padded)], np.int32)
    sizes = seed_sizes(int(image_size)) if seed_recipe else [image_size]
    per_batch = len(sizes) if seed_recipe else -(-steps // int(min(chunk, steps)))
    bar = None
    if verbose and k * per_batch > 1:
        from tqdm.auto import tqdm

        bar = (tqdm(total=k * len(sizes), desc="construct (seed stages)", unit="stage") if seed_recipe
               else tqdm(total=k * steps, desc="construct", unit="step"))  # fmt: skip
    out, shots = [], []
    for b in range(k):
        filters_arr = jnp.asarray(padded[b * width : (b + 1) * width])
        repeats_arr = jnp.asarray(repeats[b * width : (b + 1) * width])
        if not seed_recipe:
            state, snaps = _optimize(spec_for(image_size), model, filters_arr, repeats_arr, seed_arr, steps, bar, None,
                                     snapshots)  # fmt: skip
            out.append(np.asarray(_images(spec_for(image_size), state)))
            shots.append(np.stack(snaps) if snaps else None)
            continue
        start = None
        for i, size in enumerate(sizes):
            spec = spec_for(size)
            state, _ = _optimize(spec, model, filters_arr, repeats_arr, seed_arr, steps, None, start)
            if i + 1 < len(sizes):
                start = grow_stage(state.params, sizes[i + 1], int(blur_size))
            if bar is not None:
                jax.block_until_ready(state.params)
                bar.update(1)
        out.append(np.asarray(jnp.clip(denormalize(_images(spec, state)), 0.0, 1.0)))
    if bar is not None:
        bar.close()
    if snapshots:
        return np.concatenate(shots, axis=1)[:, : len(ids)]
    return np.concatenate(out)[: len(ids)]


# `box_blur`, `seed_sizes`, `batches` and the constants are re-exported: construct's public and tested helpers
__all__ = ["CONTRAST", "LR", "MEMORY_BUDGET", "batches", "box_blur", "construct", "default_batch_size", "filter_key",
           "l2_penalty", "seed_sizes", "tv_penalty"]  # fmt: skip
