"""Objectives: what `construct` maximizes.

An **objective** is ``fn(model, x, target) -> scalar`` for ONE image ``x`` (H, W, 3), already ImageNet-normalized,
and one traced integer ``target`` (the filter index; `construct` vmaps over filters). Objectives add and scale:
``channel("conv3") - 0.5 * neuron("conv3")``; `combine` is the weighted sum.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Hashable, Sequence

import jax
import jax.numpy as jnp

from ..nets import Model, layer_channels, layer_name

Array = jax.Array


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
    """Mean activation of channel ``target`` of `layer` (name or 1-based index), before its ReLU by default,
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
