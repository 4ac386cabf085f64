"""Objectives: what `construct` maximizes, with Lucid's and Lucent's objective set.

An **objective** has a value on a batch of images, and most also have a value on each image alone:

- a *per-image* objective is ``fn(model, x, target) -> scalar`` for ONE image ``x`` (H, W, 3), already
  ImageNet-normalized (and transformed, inside `construct`), and one traced integer ``target`` (the filter index;
  `construct` vmaps over filters). Its value on a batch is the mean (``reduce="mean"``) or the sum
  (``reduce="sum"``) of its per-image values, as Lucid reduces it (see each factory);
- a *batch* objective (`diversity`, `alignment`, `channel_interpolate`, and any sum that contains one) has only a
  value on the whole batch: `construct` then optimizes its images jointly.

Objectives on ``"input"`` (`l1`, `l2`, `total_variation`, `blur_input_each_step`, `input_diff`) read the image in
[0, 1] before the random transforms, as Lucid's and Lucent's ``T("input")`` does.

Objectives add, subtract, multiply and divide, with each other and with constants (`Objective`); `evaluate`
computes a value outside `construct`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import hashlib
from typing import Callable, Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..compile import jit
from ..nets import Model, denormalize, layer_channels, layer_name

Array = jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
    """A quantity to maximize.

    ``fn(model, x, target) -> scalar`` is its value on one normalized image x (H, W, 3), or None for a batch
    objective. ``targets(model)`` gives how many target indices are valid (filters of a layer, classes), or None
    when the objective ignores the target. ``batch_fn(model, xs, images, targets) -> scalar`` is its value on a
    batch (xs normalized, images the same in [0, 1] before transforms), or None: then the `reduce` ("mean" or
    "sum") of the per-image values. `reads` says what `fn` takes: ``"x"`` ``fn(model, x, t)``, ``"image"``
    ``fn(model, image01, t)``, ``"both"`` ``fn(model, x, image01, t)``.

    The algebra: ``a + b``, ``a - b``, ``a + 1.0``, ``2.0 * a``, ``a / 2``, ``-a``, ``a * b``, ``a / b``,
    ``sum([a, b])`` and ``Objective.sum([a, b])``. A sum or product is per-image when all its terms are (its batch
    value is then the same combination of the terms' batch values), a batch objective otherwise. Two objectives
    made by the same factory with the same arguments compare equal, so reusing them does not recompile
    `construct`.
    """

    fn: Callable | None
    targets: Callable[[Model], int | None] = lambda model: None
    key: Hashable = None  # identity for equality/hashing; None means the object itself
    batch_fn: Callable | None = None
    reduce: str = "mean"
    reads: str = "x"

    @property
    def is_batch(self) -> bool:
        """Whether the objective has only a value on the whole batch (its images are optimized jointly)."""
        return self.fn is None

    def __call__(self, model: Model, x: Array, target: Array, image: Array | None = None) -> Array:
        """The value on one normalized image `x`; `image` (the [0, 1] image objectives on "input" read) defaults to
        ``denormalize(x)``."""
        if self.fn is None:
            raise TypeError("a batch objective has no value on one image: use dv.objectives.evaluate(objective, "
                            "model, images, targets) on the batch")  # fmt: skip
        return self.value(model, x, denormalize(x) if image is None else image, target)

    def value(self, model: Model, x: Array, image: Array, target: Array) -> Array:
        """The per-image value on normalized (transformed) `x` and the [0, 1] `image` it came from."""
        if self.reads == "x":
            return self.fn(model, x, target)
        if self.reads == "image":
            return self.fn(model, image, target)
        return self.fn(model, x, image, target)

    def batch_value(self, model: Model, xs: Array, images: Array, targets: Array) -> Array:
        """The value on a batch: what `construct` maximizes for a batch objective (Lucid's objective on the batch).

        A batch objective's terms share the network: each layer's activations on `xs` are computed once
        (`_Shared`), so ``channel(l) - 1e2 * diversity(l)`` runs the network once, not once per term."""
        shared = _SHARED.get()
        if self.is_batch and (shared is None or not shared.holds(model, xs)):
            token = _SHARED.set(_Shared(model, xs))
            try:
                return self.batch_value(model, xs, images, targets)
            finally:
                _SHARED.reset(token)
        if self.batch_fn is not None:
            return self.batch_fn(model, xs, images, targets)
        if shared is not None and shared.holds(model, xs):  # a per-image term of a batch objective: image k reads
            def one(k, x, im, t):  # its activations from the batch's
                token = _IMAGE.set((k, x))
                try:
                    return self.value(model, x, im, t)
                finally:
                    _IMAGE.reset(token)

            values = jax.vmap(one)(jnp.arange(xs.shape[0]), xs, images, targets)
        else:
            values = jax.vmap(lambda x, im, t: self.value(model, x, im, t))(xs, images, targets)
        return jnp.sum(values) if self.reduce == "sum" else jnp.mean(values)

    def _id(self):
        return self.key if self.key is not None else ("id", id(self))

    def __eq__(self, other):
        return isinstance(other, Objective) and self._id() == other._id()

    def __hash__(self):
        return hash(self._id())

    def __add__(self, other) -> Objective:
        if isinstance(other, Objective):
            return _linear((1.0, 1.0), (self, other))
        if _is_number(other):
            return self if other == 0 else _linear((1.0,), (self,), float(other))
        return NotImplemented

    __radd__ = __add__

    def __sub__(self, other) -> Objective:
        if isinstance(other, Objective):
            return _linear((1.0, -1.0), (self, other))
        if _is_number(other):
            return self + (-float(other))
        return NotImplemented

    def __rsub__(self, other) -> Objective:
        if _is_number(other):
            return _linear((-1.0,), (self,), float(other))
        return NotImplemented

    def __mul__(self, other) -> Objective:
        if isinstance(other, Objective):
            return _product(self, other, "mul")
        if _is_number(other):
            return _linear((float(other),), (self,))
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, other) -> Objective:
        if isinstance(other, Objective):
            return _product(self, other, "div")
        if _is_number(other):
            if other == 0:
                raise ValueError("cannot divide an objective by 0")
            return _linear((1.0 / float(other),), (self,))
        return NotImplemented

    def __neg__(self) -> Objective:
        return _linear((-1.0,), (self,))

    @staticmethod
    def sum(objectives: Sequence[Objective]) -> Objective:
        """The sum of `objectives` (Lucent's ``Objective.sum``)."""
        objectives = tuple(objectives)
        return _linear((1.0,) * len(objectives), objectives)


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _min_targets(objectives):
    def targets(model):
        counts = [n for n in (o.targets(model) for o in objectives) if n is not None]
        return min(counts) if counts else None

    return targets


def _linear(weights: tuple, objectives: tuple, const: float = 0.0) -> Objective:
    """``const + sum_i weights[i] * objectives[i]``: per-image when every term is."""
    if len(weights) != len(objectives) or not objectives:
        raise ValueError(f"combine needs as many weights as objectives (got {len(weights)} and {len(objectives)})")
    if not all(isinstance(o, Objective) for o in objectives):
        raise TypeError("combine takes dv.objectives.Objective terms (channel, neuron, direction, ...)")

    def fn(model, x, image, target):
        return sum((w * o.value(model, x, image, target) for w, o in zip(weights, objectives)), const)

    def batch_fn(model, xs, images, targets):
        return sum((w * o.batch_value(model, xs, images, targets) for w, o in zip(weights, objectives)), const)

    per_image = not any(o.is_batch for o in objectives)
    key = ("sum", weights, tuple(o._id() for o in objectives)) + ((const,) if const else ())
    return Objective(fn if per_image else None, _min_targets(objectives), key, batch_fn, reads="both")


def _product(a: Objective, b: Objective, op: str) -> Objective:
    """``a * b`` or ``a / b`` of values (per image when both are per-image; on the batch, of the batch values)."""
    f = jnp.multiply if op == "mul" else jnp.divide

    def fn(model, x, image, target):
        return f(a.value(model, x, image, target), b.value(model, x, image, target))

    def batch_fn(model, xs, images, targets):
        return f(a.batch_value(model, xs, images, targets), b.batch_value(model, xs, images, targets))

    per_image = not (a.is_batch or b.is_batch)
    return Objective(fn if per_image else None, _min_targets((a, b)), (op, a._id(), b._id()), batch_fn, reads="both")


def combine(weights: Sequence[float], objectives: Sequence[Objective]) -> Objective:
    """The weighted sum ``sum_i weights[i] * objectives[i]``."""
    return _linear(tuple(float(w) for w in weights), tuple(objectives))


# --------------------------------------------------------------------------------------------------------------
# Reading activations
# --------------------------------------------------------------------------------------------------------------


class _Shared:
    """The activations one evaluation of a batch objective computes on its batch `xs`, one per (layer, pre_relu),
    read by all its terms: the batch terms whole (`_batch_acts`), the per-image terms image by image (`_acts`,
    `_layer_activation`, through `_IMAGE`)."""

    def __init__(self, model: Model, xs: Array):
        self.model, self.xs, self.acts = model, xs, {}

    def holds(self, model: Model, xs: Array) -> bool:
        return model is self.model and xs is self.xs

    def batch(self, layer, pre_relu: bool) -> Array:
        key = (layer_name(self.model, layer), bool(pre_relu))
        if key not in self.acts:
            self.acts[key] = self.model.apply(self.xs, upto=key[0], pre_relu=key[1])
        return self.acts[key]


_SHARED: contextvars.ContextVar[_Shared | None] = contextvars.ContextVar("deepvis_shared", default=None)
# inside a per-image term of a batch objective: (the image's index in the batch, the image as the term sees it)
_IMAGE: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("deepvis_image", default=None)


def _shared_image(model: Model, x: Array, layer, pre_relu: bool) -> Array | None:
    """`x`'s activations (h, w, C) from the batch's shared ones, when `x` is image k of the batch being evaluated."""
    shared, image = _SHARED.get(), _IMAGE.get()
    if shared is None or image is None or shared.model is not model or image[1] is not x:
        return None
    return shared.batch(layer, pre_relu)[image[0]]


def _layer_activation(model: Model, x: Array, layer, target: Array, pre_relu: bool) -> Array:
    """(h, w) map of channel `target` of `layer` for one image; the layer's conv computes only that channel (or,
    in a batch objective, it is read from the batch's shared activations)."""
    a = _shared_image(model, x, layer, pre_relu)
    if a is not None:
        return a[:, :, target]
    name = layer_name(model, layer)
    channels = jnp.reshape(target, (1,)).astype(jnp.int32)
    return model.apply(x[None], upto=name, channels=channels, pre_relu=pre_relu)[0, :, :, 0]


def _acts(model: Model, x: Array, layer, pre_relu: bool) -> Array:
    """(h, w, C): every channel of `layer` for one normalized image."""
    a = _shared_image(model, x, layer, pre_relu)
    if a is not None:
        return a
    return model.apply(x[None], upto=layer_name(model, layer), pre_relu=pre_relu)[0]


def _batch_acts(model: Model, xs: Array, layer, pre_relu: bool) -> Array:
    """(N, h, w, C): every channel of `layer` for a batch of normalized images (shared by a batch objective's
    terms)."""
    shared = _SHARED.get()
    if shared is not None and shared.holds(model, xs):
        return shared.batch(layer, pre_relu)
    return model.apply(xs, upto=layer_name(model, layer), pre_relu=pre_relu)


def _position(a: Array, y: int | None, x: int | None, what: str) -> tuple[int, int]:
    """The (y, x) feature-map position (the centre for None, Lucid's and Lucent's choice); ValueError outside."""
    h, w = a.shape[:2]
    yy, xx = h // 2 if y is None else y, w // 2 if x is None else x
    if not (0 <= yy < h and 0 <= xx < w):
        raise ValueError(f"{what}: position (y={yy}, x={xx}) is outside the {h}x{w} feature map; "
                         f"use 0 <= y < {h} and 0 <= x < {w} (or None for the centre)")  # fmt: skip
    return yy, xx


def _check_position_arg(name: str, v) -> int | None:
    if v is None:
        return None
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
        raise TypeError(f"{name} must be an int feature-map position or None, got {v!r}")
    return int(v)


def _vector(name: str, v) -> tuple[np.ndarray, tuple]:
    """A 1-D float64 copy of `v` and a hashable digest of it (so equal factories compare equal)."""
    arr = np.asarray(v, np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector (one value per channel), got shape {arr.shape}")
    return arr, (arr.shape, hashlib.blake2b(arr.tobytes(), digest_size=12).hexdigest())


def _check_channels(model: Model, layer, v: np.ndarray, name: str) -> None:
    c = layer_channels(model, layer)
    if v.shape[0] != c:
        raise ValueError(f"{name} has {v.shape[0]} values but {layer_name(model, layer)} has {c} channels")


def _input_or_layer(model: Model, x: Array, image: Array, layer, pre_relu: bool) -> Array:
    return image if layer == "input" else _acts(model, x, layer, pre_relu)


def _check_layer_arg(layer, factory: str):
    if isinstance(layer, (str, int, np.integer)) and not isinstance(layer, bool):
        return layer
    penalty = {"total_variation": "; the mean penalty construct(tv=) weighs is dv.objectives.tv_penalty(image)",
               "l2": "; the mean penalty construct(l2=) weighs is dv.objectives.l2_penalty(image)"}.get(factory, "")
    raise TypeError(f"{factory}(layer) takes a layer name, a 1-based conv index or 'input', got "
                    f"{type(layer).__name__}: it makes an Objective (evaluate it with dv.objectives.evaluate)"
                    f"{penalty}")  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# Channels, neurons, classes
# --------------------------------------------------------------------------------------------------------------


def channel(layer, pre_relu: bool = True, contrast: float = 0.0) -> Objective:
    """Mean activation of channel ``target`` of `layer` (name or 1-based index), before its ReLU by default,
    minus `contrast` times the largest mean activation among the layer's other channels.

    Pre-ReLU is the default because a channel that starts negative everywhere has zero gradient after the ReLU.
    With ``contrast > 0`` the image must excite the target more than any other channel, not merely a lot (on
    trained VGG16 a plain channel mean leaves low-gain conv3_3 filters behind channels of higher gain); the whole
    layer is then computed instead of the target channel alone. On a batch: the mean (Lucid's and Lucent's
    ``channel``).
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
    """One unit: channel ``target`` of `layer` at feature-map position (y, x), the centre ``(h // 2, w // 2)`` by
    default (Lucid's and Lucent's). A position outside the feature map raises ValueError when the objective is
    first evaluated (the map's size depends on the image). On a batch: the sum (Lucid's; Lucent's ``neuron``
    averages over the batch)."""
    y, x = _check_position_arg("y", y), _check_position_arg("x", x)

    def fn(model, img, t):
        a = _layer_activation(model, img, layer, t, pre_relu)
        return a[_position(a, y, x, f"neuron({layer!r})")]

    return Objective(fn, lambda model: layer_channels(model, layer), ("neuron", layer, y, x, bool(pre_relu)),
                     reduce="sum")  # fmt: skip


def class_logit(index: int | None = None) -> Objective:
    """The logit of class `index`, or of class ``target`` when `index` is None (then filters are class indices).
    On a batch: the sum (Lucid's ``class_logit``)."""

    def fn(model, x, t):
        logits = model.apply(x[None])[0]
        return logits[t] if index is None else logits[index]

    return Objective(fn, (lambda model: model.arch.num_classes) if index is None else (lambda model: None),
                     ("class_logit", index), reduce="sum")  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# Directions and weighted channels
# --------------------------------------------------------------------------------------------------------------


def _along_channels(v: np.ndarray, a: Array) -> Array:
    """The per-channel vector `v` shaped to multiply `a` (..., C), in `a`'s dtype."""
    return jnp.asarray(v, a.dtype).reshape((1,) * (a.ndim - 1) + (-1,))


def _dot_cossim(a: Array, v: np.ndarray, cossim_pow: float, cosine: bool) -> Array:
    """Per position (..., C) against v (C,): Lucent's cosine, or Lucid's ``dot * max(0.1, cossim) ** pow``."""
    v = _along_channels(v, a)
    dot = jnp.sum(a * v, axis=-1)
    if cosine:  # torch.nn.CosineSimilarity(dim=1), eps 1e-8
        return dot / jnp.maximum(jnp.sqrt(jnp.sum(a * a, axis=-1)) * jnp.sqrt(jnp.sum(v * v)), 1e-8)
    if not cossim_pow:
        return dot
    eps = 1e-4  # Lucid's _dot_cossim
    cossim = dot / (eps + jnp.sqrt(jnp.sum(a * a, axis=-1))) / (eps + jnp.sqrt(jnp.sum(v * v)))
    return dot * jnp.maximum(0.1, cossim) ** cossim_pow


def direction(layer, vector, cossim_pow: float = 0.0, cosine: bool = False, pre_relu: bool = True) -> Objective:
    """A direction in `layer`'s activation space: the mean over positions of ``a . vector`` (Lucid's
    ``direction``), times ``max(0.1, cos) ** cossim_pow`` when `cossim_pow` > 0 (Lucid's ``_dot_cossim``, eps
    1e-4); ``cosine=True``: the mean cosine similarity of each position's activation vector with `vector`
    (Lucent's ``direction``, eps 1e-8; Lucid's ``direction_cossim`` up to its eps). Ignores the target. On a
    batch: the mean."""
    vec, digest = _vector("vector", vector)
    cossim_pow, cosine = float(cossim_pow), bool(cosine)

    def fn(model, x, t):
        a = _acts(model, x, layer, pre_relu)
        _check_channels(model, layer, vec, "direction's vector")
        return jnp.mean(_dot_cossim(a, vec, cossim_pow, cosine))

    return Objective(fn, key=("direction", layer, digest, cossim_pow, cosine, bool(pre_relu)))


def direction_neuron(layer, vector, y: int | None = None, x: int | None = None, cossim_pow: float = 0.0,
                     cosine: bool = False, pre_relu: bool = True) -> Objective:  # fmt: skip
    """`direction` at one feature-map position (y, x), the centre by default (Lucid's and Lucent's
    ``direction_neuron``). Ignores the target. On a batch: the mean."""
    vec, digest = _vector("vector", vector)
    y, x, cossim_pow, cosine = _check_position_arg("y", y), _check_position_arg("x", x), float(cossim_pow), bool(cosine)

    def fn(model, img, t):
        a = _acts(model, img, layer, pre_relu)
        _check_channels(model, layer, vec, "direction_neuron's vector")
        return _dot_cossim(a[_position(a, y, x, "direction_neuron")], vec, cossim_pow, cosine)

    return Objective(fn, key=("direction_neuron", layer, digest, y, x, cossim_pow, cosine, bool(pre_relu)))


def channel_weight(layer, weight, pre_relu: bool = True) -> Objective:
    """Lucent's ``channel_weight``: the mean over positions and channels of ``a * weight`` (one weight per
    channel). Ignores the target. On a batch: the mean."""
    w, digest = _vector("weight", weight)

    def fn(model, x, t):
        a = _acts(model, x, layer, pre_relu)
        _check_channels(model, layer, w, "channel_weight's weight")
        return jnp.mean(a * _along_channels(w, a))

    return Objective(fn, key=("channel_weight", layer, digest, bool(pre_relu)))


def neuron_weight(layer, weight=None, y: int | None = None, x: int | None = None, pre_relu: bool = True) -> Objective:
    """Lucent's ``neuron_weight``: the mean over channels of ``a[y, x] * weight`` at one position (the centre by
    default), or of ``a[y, x]`` with no weight. Ignores the target. On a batch: the mean."""
    w, digest = _vector("weight", weight) if weight is not None else (None, None)
    y, x = _check_position_arg("y", y), _check_position_arg("x", x)

    def fn(model, img, t):
        a = _acts(model, img, layer, pre_relu)
        v = a[_position(a, y, x, "neuron_weight")]
        if w is None:
            return jnp.mean(v)
        _check_channels(model, layer, w, "neuron_weight's weight")
        return jnp.mean(v * _along_channels(w, v))

    return Objective(fn, key=("neuron_weight", layer, digest, y, x, bool(pre_relu)))


def localgroup_weight(layer, weight=None, y: int = 0, x: int = 0, wy: int = 1, wx: int = 1,
                      pre_relu: bool = True) -> Objective:  # fmt: skip
    """Lucent's ``localgroup_weight``: the mean of ``a * weight`` (or of ``a``) over the window of `wy` x `wx`
    positions from (y, x) and over the channels. The window must lie inside the feature map (Lucent's slice
    silently shrinks at the edge: here a ValueError). Ignores the target. On a batch: the mean."""
    w, digest = _vector("weight", weight) if weight is not None else (None, None)
    y, x = _check_position_arg("y", y), _check_position_arg("x", x)
    wy, wx = int(wy), int(wx)
    if wy < 1 or wx < 1:
        raise ValueError(f"localgroup_weight needs a window of at least 1x1, got wy={wy}, wx={wx}")

    def fn(model, img, t):
        a = _acts(model, img, layer, pre_relu)
        _position(a, y, x, "localgroup_weight")
        _position(a, y + wy - 1, x + wx - 1, "localgroup_weight's window end")
        v = a[y : y + wy, x : x + wx]
        if w is None:
            return jnp.mean(v)
        _check_channels(model, layer, w, "localgroup_weight's weight")
        return jnp.mean(v * _along_channels(w, v))

    return Objective(fn, key=("localgroup_weight", layer, digest, y, x, wy, wx, bool(pre_relu)))


def deepdream(layer, pre_relu: bool = True) -> Objective:
    """Mordvintsev et al.'s deepdream: the mean of ``a ** 2`` over `layer`'s positions and channels (Lucid's).
    Ignores the target. On a batch: the mean."""

    def fn(model, x, t):
        return jnp.mean(jnp.square(_acts(model, x, layer, pre_relu)))

    return Objective(fn, key=("deepdream", layer, bool(pre_relu)))


# --------------------------------------------------------------------------------------------------------------
# Penalties, with Lucid's scaling (subtract them: ``channel(l) - 1e-3 * l1()``)
# --------------------------------------------------------------------------------------------------------------


def l1(layer="input", constant: float = 0.0, pre_relu: bool = True) -> Objective:
    """Lucid's ``L1``: ``sum |a - constant|`` over the [0, 1] image (``"input"``, before transforms) or a layer's
    activations. A penalty: subtract it (Lucent adds its ``L1`` to the loss, the same number). On a batch: the
    sum."""
    layer, constant = _check_layer_arg(layer, "l1"), float(constant)

    def fn(model, x, image, t):
        return jnp.sum(jnp.abs(_input_or_layer(model, x, image, layer, pre_relu) - constant))

    return Objective(fn, key=("l1", layer, constant, bool(pre_relu)), reduce="sum", reads="both")


def l2(layer="input", constant: float = 0.0, epsilon: float = 1e-6, pre_relu: bool = True) -> Objective:
    """Lucid's ``L2``: ``sqrt(epsilon + sum (a - constant) ** 2)`` over the [0, 1] image (``"input"``) or a
    layer's activations; on a batch, the sum runs over the whole batch (one norm, Lucid's). A penalty: subtract
    it. (`construct`'s ``l2=`` option is a different penalty: the mean of ``(image - 0.5) ** 2``.)"""
    layer, constant, epsilon = _check_layer_arg(layer, "l2"), float(constant), float(epsilon)

    def fn(model, x, image, t):
        return jnp.sqrt(epsilon + jnp.sum(jnp.square(_input_or_layer(model, x, image, layer, pre_relu) - constant)))

    def batch_fn(model, xs, images, targets):
        a = images if layer == "input" else _batch_acts(model, xs, layer, pre_relu)
        return jnp.sqrt(epsilon + jnp.sum(jnp.square(a - constant)))

    return Objective(fn, key=("l2", layer, constant, epsilon, bool(pre_relu)), batch_fn=batch_fn, reads="both")


def total_variation(layer="input", pre_relu: bool = True) -> Objective:
    """Lucid's ``total_variation`` (``tf.image.total_variation``): the SUM of absolute differences between
    vertical and horizontal neighbours, over every channel of the [0, 1] image (``"input"``) or a layer's
    activations. A penalty: subtract it. On a batch: the sum. (`construct`'s ``tv=`` option weighs a different
    penalty, `tv_penalty`: the mean differences.)"""
    layer = _check_layer_arg(layer, "total_variation")

    def fn(model, x, image, t):
        a = _input_or_layer(model, x, image, layer, pre_relu)
        return jnp.sum(jnp.abs(a[1:] - a[:-1])) + jnp.sum(jnp.abs(a[:, 1:] - a[:, :-1]))

    return Objective(fn, key=("total_variation", layer, bool(pre_relu)), reduce="sum", reads="both")


def _lucid_blur(image: Array) -> Array:
    """Lucid's ``_tf_blur`` (and Lucent's ``_torch_blur``): each channel convolved (zero padding, SAME) with the
    3x3 kernel of 0.5 everywhere but 1 at the centre, divided by the same convolution of ones (so the border is a
    weighted mean over the pixels inside)."""
    k = jnp.asarray([[0.5, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.5, 0.5]], image.dtype)

    def conv(z):
        zp = jnp.pad(z, ((1, 1), (1, 1), (0, 0)))
        h, w = z.shape[:2]
        return sum(k[i, j] * zp[i : i + h, j : j + w] for i in range(3) for j in range(3))

    return conv(image) / conv(jnp.ones_like(image))


def blur_input_each_step() -> Objective:
    """Lucid's ``blur_input_each_step``: ``0.5 * sum (image - stop_gradient(blur(image))) ** 2`` on the [0, 1]
    image (blur: `_lucid_blur`, a 3x3 weighted mean, 1 at the centre and 0.5 around it). Maximizing ``-k *`` it moves the image
    towards its blur each step (Nguyen et al. 2015; Lucent's loss is minus the same number). On a batch: the sum."""

    def fn(model, image, t):
        return 0.5 * jnp.sum(jnp.square(image - jax.lax.stop_gradient(_lucid_blur(image))))

    return Objective(fn, key=("blur_input_each_step",), reduce="sum", reads="image")


def input_diff(image) -> Objective:
    """Lucid's ``input_diff``: ``sqrt(mean (image01 - image) ** 2)``, the RMS difference between the [0, 1] image
    being optimized (before transforms) and `image` ((H, W, 3) in [0, 1]); on a batch, one RMS over the whole batch
    (Lucid's). Feature inversion and adversarial examples use it as a penalty (subtract it)."""
    ref = np.asarray(image, np.float64)
    if ref.ndim != 3 or ref.shape[-1] != 3:
        raise ValueError(f"input_diff takes one (H, W, 3) image in [0, 1], got shape {ref.shape}")
    digest = hashlib.blake2b(ref.tobytes(), digest_size=12).hexdigest()

    def check(im):
        if im.shape[-3:] != ref.shape:
            raise ValueError(f"input_diff's image is {ref.shape[:2]} but the images optimized are {im.shape[-3:-1]}")

    def fn(model, im, t):
        check(im)
        return jnp.sqrt(jnp.mean(jnp.square(im - jnp.asarray(ref, im.dtype))))

    def batch_fn(model, xs, images, targets):
        check(images)
        return jnp.sqrt(jnp.mean(jnp.square(images - jnp.asarray(ref, images.dtype)[None])))

    return Objective(fn, key=("input_diff", ref.shape, digest), batch_fn=batch_fn, reads="image")


# --------------------------------------------------------------------------------------------------------------
# Objectives across the batch
# --------------------------------------------------------------------------------------------------------------


def diversity(layer, pre_relu: bool = True) -> Objective:
    """Lucid's and Lucent's ``diversity``: each image's Gram matrix of `layer`'s channels (``F^T F``, F the
    (positions, C) activations), L2-normalized over both axes; the value is ``sum_{i != j} <G_i, G_j> / N``.
    It measures similarity: subtract it (``channel(l) - 1e2 * diversity(l)``, Lucid's notebook; Lucent's loss is
    minus the same number). A batch objective: `construct` optimizes its images jointly."""

    def batch_fn(model, xs, images, targets):
        a = _batch_acts(model, xs, layer, pre_relu)
        n = a.shape[0]
        f = a.reshape(n, -1, a.shape[-1])
        grams = jnp.einsum("npc,npd->ncd", f, f, precision=jax.lax.Precision.HIGHEST)
        norms = jnp.sqrt(jnp.sum(jnp.square(grams), axis=(1, 2), keepdims=True))
        grams = grams / jnp.maximum(norms, 1e-12)  # F.normalize's eps (Lucid's tf.nn.l2_normalize: 1e-10 squared)
        sims = jnp.einsum("icd,jcd->ij", grams, grams, precision=jax.lax.Precision.HIGHEST)
        return (jnp.sum(sims) - jnp.trace(sims)) / n

    return Objective(None, key=("diversity", layer, bool(pre_relu)), batch_fn=batch_fn)


def alignment(layer, decay_ratio: float = 2.0, pre_relu: bool = True) -> Objective:
    """Lucid's ``alignment``: minus ``sum_{d=1..4} sum_i mean (a_i - a_{i+d}) ** 2 / decay_ratio ** d`` over the
    images' `layer` activations (neighbours in the batch drawn alike; Lucent's loss is the same sum). Add it to
    an interpolation: ``channel_interpolate(...) + 1e-1 * alignment(l)``. A batch objective."""
    decay_ratio = float(decay_ratio)

    def batch_fn(model, xs, images, targets):
        a = _batch_acts(model, xs, layer, pre_relu)
        n, acc = a.shape[0], 0.0
        for d in (1, 2, 3, 4):
            if n > d:
                acc = acc + jnp.sum(jnp.mean(jnp.square(a[:-d] - a[d:]), axis=(1, 2, 3))) / decay_ratio**d
        return -acc

    return Objective(None, key=("alignment", layer, decay_ratio, bool(pre_relu)), batch_fn=batch_fn)


def channel_interpolate(layer1, channel1: int, layer2, channel2: int, pre_relu: bool = True) -> Objective:
    """Lucid's and Lucent's ``channel_interpolate``: image n of N maximizes ``(1 - w_n) * mean a1[channel1] +
    w_n * mean a2[channel2]``, ``w_n = n / (N - 1)``; the value is the sum over the batch. Ignores the targets
    (pass any filters, one per image). A batch objective (N >= 2)."""
    channel1, channel2 = int(channel1), int(channel2)

    def batch_fn(model, xs, images, targets):
        n = xs.shape[0]
        if n < 2:
            raise ValueError("channel_interpolate needs at least 2 images (one per end of the interpolation)")
        m1 = jnp.mean(_batch_acts(model, xs, layer1, pre_relu)[..., channel1], axis=(1, 2))
        m2 = jnp.mean(_batch_acts(model, xs, layer2, pre_relu)[..., channel2], axis=(1, 2))
        w = jnp.asarray(np.arange(n) / (n - 1), m1.dtype)
        return jnp.sum((1 - w) * m1 + w * m2)

    key = ("channel_interpolate", layer1, channel1, layer2, channel2, bool(pre_relu))
    return Objective(None, key=key, batch_fn=batch_fn)


# --------------------------------------------------------------------------------------------------------------
# Evaluating an objective
# --------------------------------------------------------------------------------------------------------------


@functools.partial(jit, static_argnames=("objective", "batch"))
def _evaluate(objective: Objective, model: Model, xs: Array, targets: Array, batch: bool) -> Array:
    images = denormalize(xs)
    if batch or objective.is_batch:
        return objective.batch_value(model, xs, images, targets)
    return jax.vmap(lambda x, im, t: objective.value(model, x, im, t))(xs, images, targets)


def evaluate(objective: Objective, model: Model, images, targets=None, *, batch: bool = False) -> Array:
    """The value `construct` maximizes, on normalized `images` (N, H, W, 3) with one target index per image.

    A per-image objective gives (N,) values (each image's value alone, as `construct` optimizes each filter);
    ``batch=True`` gives instead its one value on the batch (Lucid's objective on that batch: the mean or sum of
    the per-image values, see each factory). A batch objective (`diversity`, `alignment`, `channel_interpolate`,
    a sum containing one) gives one value. `targets`: an int per image, or None when the objective ignores them.
    Objectives on "input" read ``denormalize(images)``. Jit-compiled; pure.
    """
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a dv.objectives.Objective, got {type(objective).__name__}")
    xs = jnp.asarray(images)
    if xs.ndim != 4 or xs.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3) normalized images, got shape {xs.shape}")
    n_targets = objective.targets(model)
    if targets is None:
        if n_targets is not None:
            raise ValueError("this objective reads a target index per image (a filter or class): pass targets=")
        targets = np.zeros(xs.shape[0], np.int32)
    t = np.atleast_1d(np.asarray(targets))
    if t.shape != (xs.shape[0],) or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"targets must be {xs.shape[0]} ints, one per image, got {targets!r}")
    if n_targets is not None and (t.min() < 0 or t.max() >= n_targets):
        raise ValueError(f"target out of range: valid targets are 0..{n_targets - 1}")
    return _evaluate(objective, model, xs, jnp.asarray(t, jnp.int32), bool(batch))
