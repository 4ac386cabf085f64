"""What an attribution explains: one score per image, read from the model's outputs or from a layer.

A target is a small pytree (`flax.struct`): its per-image indices are array leaves (so a jitted attribution does not
recompile when the class changes), the layer it reads and any user function are static. ``target.layer`` is where
the score is read (None: the model's outputs, ``model.apply(x)``; a layer name: ``model.apply(x, upto=layer)``);
``target.score(values)`` maps that (N, ...) array to (N,) scores. `as_target` turns what a user passes (an int, a
list or array of ints, a target, a function) into a target with one index per image of the batch.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

Array = jax.Array


def _per_image(name: str, value: Any, n: int, dtype=jnp.int32) -> Array:
    """`value` (one for the batch, or one per image) as an (n,) array; a length mismatch is one line."""
    a = jnp.asarray(value)
    if a.ndim == 0:
        return jnp.broadcast_to(a, (n,)).astype(dtype)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name} holds {a.shape[0] if a.ndim == 1 else a.shape} values for a batch of {n} "
                         "images; give one per image or a single one for the batch")  # fmt: skip
    return a.astype(dtype)


def _classes(model, index, n: int) -> Array:
    """`_per_image` of class indices, checked against the model's class count where they are concrete."""
    a = _per_image("target", index, n)
    k = getattr(model.arch, "num_classes", None)
    if k and not isinstance(a, jax.core.Tracer) and a.size:
        lo, hi = int(jnp.min(a)), int(jnp.max(a))
        if lo < 0 or hi >= k:
            raise ValueError(f"class index {lo if lo < 0 else hi} is out of range: {model.arch.name} has {k} classes "
                             f"(0..{k - 1})")  # fmt: skip
    return a


def _check_2d(out: Array, what: str) -> None:
    if getattr(out, "ndim", None) != 2:
        raise ValueError(f"{what} reads (N, classes) outputs, but the model returns "
                         f"{jax.tree_util.tree_map(jnp.shape, out)}; use dv.targets.function(fn) for other outputs")


class Target(struct.PyTreeNode):
    """The base of every target: ``layer`` (static) and ``score(values) -> (N,)``."""

    def resolve(self, model, n: int) -> "Target":
        """This target for `model` and a batch of `n` images: layer names canonical, one index per image."""
        raise NotImplementedError


class Logit(Target):
    """The logit of class ``index[n]`` of image n."""

    index: Array
    layer: None = struct.field(pytree_node=False, default=None)

    def resolve(self, model, n):
        return Logit(_classes(model, self.index, n))

    def score(self, out: Array) -> Array:
        _check_2d(out, "a class target")
        return jnp.take_along_axis(out, self.index[:, None], axis=1)[:, 0]


class Softmax(Target):
    """The softmax probability of class ``index[n]`` (over the model's outputs, last axis)."""

    index: Array
    layer: None = struct.field(pytree_node=False, default=None)

    def resolve(self, model, n):
        return Softmax(_classes(model, self.index, n))

    def score(self, out: Array) -> Array:
        _check_2d(out, "dv.targets.softmax")
        return jnp.take_along_axis(jax.nn.softmax(out, axis=-1), self.index[:, None], axis=1)[:, 0]


def _layer(model, layer) -> str:
    from .core import resolve_layer  # the ResNet stage names ("layer4") too

    return resolve_layer(model, layer)


class Channel(Target):
    """The mean over positions of channel ``channel[n]`` of ``layer`` (after its ReLU, as ``dv.forward``)."""

    channel: Array
    layer: str = struct.field(pytree_node=False, default="")

    def resolve(self, model, n):
        return Channel(_per_image("channel", self.channel, n), _layer(model, self.layer))

    def score(self, act: Array) -> Array:
        per = jnp.take_along_axis(act, self.channel[:, None, None, None], axis=3)[..., 0]
        return jnp.mean(per, axis=(1, 2))


class Unit(Target):
    """The activation of unit (``y[n]``, ``x[n]``, ``channel[n]``) of ``layer``'s map."""

    y: Array
    x: Array
    channel: Array
    layer: str = struct.field(pytree_node=False, default="")

    def resolve(self, model, n):
        return Unit(_per_image("y", self.y, n), _per_image("x", self.x, n), _per_image("channel", self.channel, n),
                    _layer(model, self.layer))  # fmt: skip

    def score(self, act: Array) -> Array:
        return act[jnp.arange(act.shape[0]), self.y, self.x, self.channel]


class Mask(Target):
    """The sum of channel ``channel[n]`` of a map over a region: ``sum(map[n, :, :, c] * mask[n])``; the map is
    ``layer``'s activation, or the model's output when ``layer`` is None (a segmentation network's (N, h, w, K)
    scores)."""

    mask: Array
    channel: Array
    layer: str | None = struct.field(pytree_node=False, default=None)

    def resolve(self, model, n):
        m = jnp.asarray(self.mask)
        if m.ndim == 2:
            m = jnp.broadcast_to(m, (n, *m.shape))
        if m.ndim != 3 or m.shape[0] != n:
            raise ValueError(f"the mask must be (h, w) or (N, h, w) for a batch of {n} images, got shape {m.shape}")
        layer = None if self.layer is None else _layer(model, self.layer)
        return Mask(m, _per_image("channel", self.channel, n), layer)

    def score(self, values: Array) -> Array:
        if getattr(values, "ndim", None) != 4 or values.shape[1:3] != self.mask.shape[1:]:
            raise ValueError(f"the mask is {self.mask.shape[1]}x{self.mask.shape[2]}, but the map it reads is shaped "
                             f"{getattr(values, 'shape', None)} (N, h, w, C); give a mask of the map's size")
        per = jnp.take_along_axis(values, self.channel[:, None, None, None], axis=3)[..., 0]
        return jnp.sum(per * self.mask.astype(per.dtype), axis=(1, 2))


class Function(Target):
    """``fn(values) -> (N,)``: any function of the model's outputs (``layer=None``) or of a layer's activation."""

    fn: Callable = struct.field(pytree_node=False)
    layer: str | None = struct.field(pytree_node=False, default=None)

    def resolve(self, model, n):
        return Function(self.fn, None if self.layer is None else _layer(model, self.layer))

    def score(self, values) -> Array:
        s = self.fn(values)
        if getattr(s, "ndim", None) != 1 or s.shape[0] != jax.tree_util.tree_leaves(values)[0].shape[0]:
            raise ValueError(f"a target function must return one score per image (N,), got shape "
                             f"{getattr(s, 'shape', None)}")  # fmt: skip
        return s


# ----------------------------------------------------------------------------------------------------------------
# The public factories (dv.targets)
# ----------------------------------------------------------------------------------------------------------------


def logit(index) -> Logit:
    """The logit of a class: an int for the batch, or one per image. A bare int or int array means this too."""
    return Logit(index)


def softmax(index) -> Softmax:
    """The softmax probability of a class (one for the batch, or one per image)."""
    return Softmax(index)


def channel(layer, c) -> Channel:
    """The mean activation of channel `c` of `layer` (a name or 1-based index; one channel or one per image)."""
    return Channel(c, layer)


def unit(layer, y, x, c) -> Unit:
    """The activation of one unit (row `y`, column `x`, channel `c`) of `layer`'s map (each one or one per image)."""
    return Unit(y, x, c, layer)


def mask(layer, mask, c) -> Mask:
    """A region's summed score: channel `c` of `layer`'s map (None: the model's output map, e.g. a segmentation
    network's (N, h, w, classes)) times `mask` ((h, w) or (N, h, w)), summed over positions."""
    return Mask(mask, c, layer)


def function(fn: Callable, layer=None) -> Function:
    """Any ``fn(values) -> (N,)`` of the model's outputs (`layer` None) or of `layer`'s activation (N, h, w, C)."""
    return Function(fn, layer)


def as_target(target, model, n: int) -> Target:
    """What a user passes as `target`, resolved for `model` and a batch of `n` images."""
    if isinstance(target, Target):
        return target.resolve(model, n)
    if callable(target) and not isinstance(target, (jax.Array, np.ndarray)):
        return Function(target).resolve(model, n)
    if target is None:
        raise ValueError("this method needs a target: a class index (int, or one per image), or a dv.targets.* "
                         "target")  # fmt: skip
    a = np.asarray(target) if not isinstance(target, jax.Array) else target
    if not jnp.issubdtype(a.dtype, jnp.integer):
        raise TypeError(f"target must be an int class index (or one per image) or a dv.targets.* target, got "
                        f"{a.dtype} values")  # fmt: skip
    return Logit(target).resolve(model, n)


__all__ = ["Channel", "Function", "Logit", "Mask", "Softmax", "Target", "Unit", "as_target", "channel", "function",
           "logit", "mask", "softmax", "unit"]  # fmt: skip
