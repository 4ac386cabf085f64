"""Switches and projection rules: how one network definition computes, records, and replays its decisions.

Every network calls four operations whose behaviour is chosen by an `ops` object passed down the forward pass:
``ops.relu(x)``, ``ops.max_pool(x, window, stride, padding)``, ``ops.activation(x, kind, **params)`` (a
rectifier-like activation other than ReLU, by torch's name) and ``ops.linearized(fn, *args)`` (any other function
nonlinear in the data). The hand-written networks call only the first two. The kinds of `ops`:

- `PLAIN`: ordinary values (classification, activation maximization).
- `Record`: the same values, and it records what the rules below read, bottom to top: every max-pool's switches
  (`PoolSwitches`), every ReLU's forward mask ``input > 0``, every activation's input and every linearized
  function's data arguments: `forward` returns them as a `Switches` pytree.
- `Replay`: given those switches, each op's backward is the method's rule (custom vjps, or a linearization at the
  recorded point). A projection is then the vjp of the replayed forward pass from a zero input: convolutions,
  BatchNorm, residual additions, concatenations and every other linear op are transposed by autodiff, for any
  graph. Nothing in the backward pass depends on the replayed forward values (every decision and every derivative
  is taken at the recorded forward pass), so XLA drops the forward computation.
- `Shapes`: the geometry of each op; `crops.py`'s `CropRecord` and `CropReplay` record and replay on a crop
  holding one unit's receptive field (`project_units`).

The rules (``g``: the cotangent arriving from above; ``x``: the op's recorded forward input; ``f'``: the
activation's derivative as torch's backward takes it, kinks included; `activations.py`):

========================================  ===============  =====================  ===============================
op                                        ``"deconv"``     ``"guided"``           ``"gradient"``
========================================  ===============  =====================  ===============================
ReLU                                      ``relu(g)``      ``relu(g) * (x > 0)``  ``g * (x > 0)``
ReLU6 / hardtanh, leaky_relu, elu,        ``relu(g)``      ``relu(g) * f'(x)``    ``g * f'(x)``
gelu, silu, hardswish (`ACTIVATIONS`)
``linearized``: sigmoid/hardsigmoid       vjp of ``fn`` at the recorded arguments, for every method
gates, softmax, layer norm, tanh,
products and quotients of data tensors
max-pool                                  unpooling through the recorded switches, for every method
linear ops (conv, linear, BatchNorm,      their transpose, for every method
add, concat, average pool, reshape)
========================================  ===============  =====================  ===============================

Why, row by row:

- ReLU: Zeiler & Fergus's DeconvNet rectifies the signal going down, blind to the forward pass (§2.1: "we pass
  the reconstructed signal through a relu non-linearity"); guided backpropagation (Springenberg et al. 2015) also
  applies the forward pass's gate; the gradient is the ordinary vjp (Captum's Deconvolution, GuidedBackprop and
  Saliency without the absolute value).
- Rectifier-like activations, ``"deconv"``: ``relu(g)``, the DeconvNet's own backward rectifier, keeps
  reconstructions positive whatever the forward activation was (Xplique's deconv policy does this for ReLUs with a
  ``max_value``, i.e. ReLU6). Applying ``f`` itself to the signal would make the picture depend on the signal's
  scale wherever ``f`` is bounded or curved (ReLU6, GELU); ``relu(g)`` keeps a projection positively homogeneous
  in its signal. Captum overrides only ``nn.ReLU`` modules, so its DeconvNet of a GELU network (ConvNeXt, ViT)
  is the plain gradient: we rectify every rectifier-like activation instead.
- Rectifier-like activations, ``"guided"``: ``relu(g) * f'(x)``, the DeconvNet's rectified signal times the
  local gradient: for ReLU exactly Springenberg et al.'s rule, for ReLU6 the gradient's own gate ``0 < x < 6``
  (nothing passes where the unit is saturated; Xplique gates ReLU6 at ``x > 0`` only), for leaky_relu and elu the
  negative side's slope, for gelu, silu and hardswish their smooth derivative, which is slightly negative below
  about -0.75, -1.28 and -1.5 respectively, so guided pictures of such networks can carry small negative parts.
- Rectifier-like activations, ``"gradient"``: ``g * f'(x)``, the true vjp.
- ``linearized`` functions: gates, attention and normalizations are not rectifiers; every method passes their
  true gradient at the recorded forward point, as Captum does for every module other than ``nn.ReLU``.
- Max-pools and linear ops: their exact transposes (the DeconvNet's unpooling and transposed filters).

The torch reference with the same rules is ``converters.projection_rules`` (a ``TorchFunctionMode``).
Max pooling, its switches and unpooling live in `pooling.py` (re-exported here).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .activations import ACTIVATIONS as ACTIVATIONS
from .activations import activation_rule, check_activation
from .pooling import (
    PoolSwitches as PoolSwitches,
    describe_pool,
    gather_at_switches as gather_at_switches,
    max_pool as max_pool,
    max_pool_with_switches as max_pool_with_switches,
    pool_geometry as pool_geometry,
    pool_output_hw as pool_output_hw,
    pool_padding as pool_padding,
    unpool as unpool,
)

Array = jax.Array

METHODS = ("deconv", "guided", "gradient")


# --------------------------------------------------------------------------------------------------------------
# Switch pytrees
# --------------------------------------------------------------------------------------------------------------


@struct.dataclass
class Switches:
    """Every max-pool's switches below a layer, bottom to top; ``input_hw`` (static) is the image size.

    ``relus``: the forward mask ``input > 0`` (bool, shaped like the ReLU's input) of every ReLU up to and
    including the layer's own, bottom to top (in the order the forward pass applies them); ``"guided"`` and
    ``"gradient"`` projections need them, the DeconvNet does not.

    ``records``: what the rules of the other nonlinearities read, in call order, one tuple per call: ``(input,)``
    of each activation (`ops.activation`), the data arguments of each linearized function (`ops.linearized`).
    Empty for networks without them (AlexNet, VGG, ResNet).
    """

    pools: tuple  # tuple[PoolSwitches, ...]
    input_hw: tuple = struct.field(pytree_node=False)
    relus: tuple = ()  # tuple[bool Array, ...]
    records: tuple = ()  # tuple[tuple[Array, ...], ...]


# --------------------------------------------------------------------------------------------------------------
# ReLU with a method's backward rule
# --------------------------------------------------------------------------------------------------------------


@jax.custom_vjp
def deconv_relu(x: Array) -> Array:
    """relu(x), whose backward rectifies the cotangent: relu(g) (the DeconvNet)."""
    return jax.nn.relu(x)


deconv_relu.defvjp(lambda x: (jax.nn.relu(x), None), lambda _, g: (jax.nn.relu(g),))


@jax.custom_vjp
def guided_relu(x: Array, mask: Array) -> Array:
    """relu(x), whose backward is relu(g) where the recorded forward `mask` (input > 0) holds (guided backprop)."""
    return jax.nn.relu(x)


guided_relu.defvjp(
    lambda x, mask: (jax.nn.relu(x), mask),
    lambda mask, g: (jnp.where(mask, jax.nn.relu(g), jnp.zeros((), g.dtype)), None),
)


@jax.custom_vjp
def gradient_relu(x: Array, mask: Array) -> Array:
    """relu(x), whose backward is g where the recorded forward `mask` holds: the ordinary gradient, with the
    decision taken from the recorded forward pass rather than from the replayed values."""
    return jax.nn.relu(x)


gradient_relu.defvjp(
    lambda x, mask: (jax.nn.relu(x), mask),
    lambda mask, g: (jnp.where(mask, g, jnp.zeros((), g.dtype)), None),
)


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")


# --------------------------------------------------------------------------------------------------------------
# Any other nonlinearity: the vjp of its linearization at the recorded point
# --------------------------------------------------------------------------------------------------------------


def _is_array(a) -> bool:
    return isinstance(a, (jax.Array, np.ndarray))


def _record_argument(a, batch: int | None):
    """What `Record` keeps of one argument of ``ops.linearized``: None for a constant (not an array, or a 0-d
    array: it comes back with the replayed call), the array itself when its first axis is the batch, or the array
    folded to ``(batch, k, ...)`` when its first axis is the batch times k in batch-major order (torch's
    (N * heads, T, d) attention tensors), so that every record can be sliced and vmapped per image."""
    if not _is_array(a) or a.ndim == 0:
        return None
    if batch is None or a.shape[0] == batch:
        return a
    if a.shape[0] % batch == 0:
        return a.reshape(batch, a.shape[0] // batch, *a.shape[1:])
    raise ValueError(f"ops.linearized got an array argument shaped {a.shape} whose first axis is not the batch "
                     f"({batch}) or a multiple of it: pass data tensors batch first, and keep weights and other "
                     "constant arrays in the function's closure")  # fmt: skip


def _unfold(record, a):
    """A record of `_record_argument` back in the shape of the replayed argument `a` (None stays None)."""
    if record is None or not _is_array(a) or record.shape == a.shape:
        return record
    folded = record.ndim == a.ndim + 1 and record.shape[0] * record.shape[1] == a.shape[0]
    return record.reshape(a.shape) if folded and record.shape[2:] == a.shape[1:] else record


def linearized_rule(fn, recorded: tuple, args: tuple):
    """``fn``'s linearization at the `recorded` arguments, applied to `args`: a linear map of `args` whose vjp is
    ``fn``'s vjp at `recorded`, whatever `args` hold. A None in `recorded` is a constant, taken from `args`;
    arguments that are not floating point (indices, masks) are held at their recorded values."""
    data = [k for k, r in enumerate(recorded) if _is_array(r) and jnp.issubdtype(r.dtype, jnp.inexact)]
    recorded = tuple(a if r is None else r for r, a in zip(recorded, args))

    def at(*values):
        full = list(recorded)
        for k, v in zip(data, values):
            full[k] = v
        return fn(*full)

    _, linear = jax.linearize(at, *(recorded[k] for k in data))
    return linear(*(args[k] for k in data))


# --------------------------------------------------------------------------------------------------------------
# The kinds of ops a network's forward pass runs with
# --------------------------------------------------------------------------------------------------------------


class Plain:
    """Ordinary values: ReLU, max pooling, activations and other nonlinearities as the network computes them.

    The interface every `ops` object has (networks call nothing else that depends on the method):

    - ``relu(x, channels=None)``: a ReLU.
    - ``max_pool(x, window, stride, padding=0)``: torch's max pooling on NHWC (every form of `pool_geometry`).
    - ``activation(x, kind, channels=None, **params)``: a rectifier-like activation other than ReLU
      (`ACTIVATIONS`, torch's names and parameters), which each projection method gives its own backward rule.
    - ``linearized(fn, *args)``: ``fn(*args)`` for any other function that is nonlinear in the data (gates such as
      ``x * sigmoid(s)``, normalizations, softmax, products of two data tensors): projections pass its true
      gradient, taken at the recorded forward point. Every array argument of one or more axes is recorded: pass
      the data tensors batch first (or batch times k first, batch-major, as torch's (N * heads, T, d) attention
      tensors; anything else is refused) so that one image's records are a slice (`project_units`), and keep
      weights in ``fn``'s closure; other arguments (ints, lists, None, 0-d arrays) are constants, passed again by
      the replayed call.

    ``channels`` (ReLU and activations): the op is the top of a layer computed for only those output channels
    (`project_channels`); `x` holds just them.

    ``valid_convs`` (False here): True asks a network to run its convolutions unpadded (the ops of a unit's cone,
    `crops.py`, which zero each map outside the whole image's map; AlexNet and VGG read it).
    """

    valid_convs = False

    def relu(self, x: Array, channels: Array | None = None) -> Array:
        return jax.nn.relu(x)

    def max_pool(self, x: Array, window, stride, padding=0) -> Array:
        return max_pool(x, window, stride, padding)

    def activation(self, x: Array, kind: str, channels: Array | None = None, **params) -> Array:
        check_activation(kind, params)
        return ACTIVATIONS[kind](x, **params)

    def linearized(self, fn, *args):
        return fn(*args)


PLAIN = Plain()


class Record(Plain):
    """Plain values; records, in call order, each max-pool's switches, each ReLU's forward mask, each activation's
    input and each linearized function's data arguments (what the projection rules read)."""

    def __init__(self):
        self.pools: list[PoolSwitches] = []
        self.relus: list[Array] = []
        self.records: list[tuple] = []

    def relu(self, x: Array, channels: Array | None = None) -> Array:
        self.relus.append(x > 0)
        return jax.nn.relu(x)

    def max_pool(self, x: Array, window, stride, padding=0) -> Array:
        y, sw = max_pool_with_switches(x, window, stride, padding)
        self.pools.append(sw)
        return y

    def activation(self, x: Array, kind: str, channels: Array | None = None, **params) -> Array:
        y = super().activation(x, kind, channels, **params)
        self.records.append((x,))
        return y

    def linearized(self, fn, *args):
        self.records.append(tuple(_record_argument(a, self._batch(args)) for a in args))
        return fn(*args)

    def _batch(self, args: tuple) -> int | None:
        """The batch size: every map a ReLU, pool or activation sees has it first, as has the first data array."""
        known = [*self.relus, *(p.index for p in self.pools), *(r for rs in self.records for r in rs if r is not None),
                 *(a for a in args if _is_array(a) and a.ndim)]  # fmt: skip
        return known[0].shape[0] if known else None

    def switches(self, input_hw: Sequence[int]) -> Switches:
        return Switches(pools=tuple(self.pools), input_hw=tuple(int(d) for d in input_hw), relus=tuple(self.relus),
                        records=tuple(self.records))  # fmt: skip


class Replay(Plain):
    """Max-pools gather at the recorded switches; ReLUs and activations carry `method`'s backward rule (masks and
    inputs from the record); every linearized function is its linearization at the recorded arguments.

    ``relu(x, channels)`` and ``activation(x, kind, channels)``: computed for only those output channels (the top
    of `project_channels`), they use those channels of their record.
    """

    def __init__(self, switches: Switches, method: str):
        check_method(method)
        self.pools, self.relus, self.method = list(switches.pools), list(switches.relus), method
        self.records = list(switches.records)
        self.n_pools = self.n_relus = self.n_records = 0

    def relu(self, x: Array, channels: Array | None = None) -> Array:
        i, self.n_relus = self.n_relus, self.n_relus + 1
        if self.method == "deconv":
            return deconv_relu(x)
        if i >= len(self.relus):
            raise ValueError(f"method {self.method!r} needs the forward ReLU masks: these switches hold "
                             f"{len(self.relus)}, but this network has more ReLUs; record the switches with forward()")
        mask = self.relus[i] if channels is None else self.relus[i][..., channels]
        return (guided_relu if self.method == "guided" else gradient_relu)(x, mask)

    def max_pool(self, x: Array, window, stride, padding=0) -> Array:
        sw = self.pools[self.n_pools]
        self.n_pools += 1
        want = pool_geometry(window, stride, padding)
        if (sw.geometry(), tuple(sw.in_hw)) != (want, tuple(x.shape[1:3])):
            raise ValueError(
                f"max-pool {self.n_pools} of these switches was recorded as {describe_pool(sw.geometry())} on a "
                f"{sw.in_hw[0]}x{sw.in_hw[1]} map, but this network pools {describe_pool(want)} on {x.shape[1]}x"
                f"{x.shape[2]}; record the switches with forward() on the same model and input size"
            )
        return gather_at_switches(x, sw)

    def _record(self, what: str, args: tuple, channels: Array | None = None) -> tuple:
        """The next record, checked against the replayed call's arguments."""
        i, self.n_records = self.n_records, self.n_records + 1
        if i >= len(self.records):
            raise ValueError(
                f"these switches hold {len(self.records)} records of activations and other nonlinearities, but this "
                "network has more; record the switches with forward() on the same model, layer and input size"
            )
        record = tuple(_unfold(r, a) for r, a in zip(self.records[i], args))
        if channels is not None:
            record = (record[0][..., channels],)
        shapes = [None if r is None else jnp.shape(r) for r in record]
        want = [jnp.shape(a) if r is not None else None for r, a in zip(record, args)]
        if len(record) != len(args) or shapes != want:
            raise ValueError(
                f"record {i + 1} of these switches holds shapes {shapes}, but this network's {what} takes "
                f"{[jnp.shape(a) if _is_array(a) else None for a in args]}; record the switches with forward() on "
                "the same model and input size"
            )
        return record

    def activation(self, x: Array, kind: str, channels: Array | None = None, **params) -> Array:
        check_activation(kind, params)
        (recorded,) = self._record(f"{kind} activation", (x,), channels)
        return activation_rule(x, recorded, kind, tuple(sorted(params.items())), self.method)

    def linearized(self, fn, *args):
        return linearized_rule(fn, self._record("linearized function", args), args)


class Shapes(Plain):
    """Plain values; records, in the order the forward pass calls them, the spatial size of every ReLU's and
    activation's map, every max-pool's input and output, and every linearized function's 4-D (NHWC) arguments
    (the geometry `CropReplay` needs)."""

    def __init__(self):
        self.calls: list[tuple] = []

    def relu(self, x: Array, channels: Array | None = None) -> Array:
        self.calls.append(("relu", tuple(x.shape[1:3])))
        return jax.nn.relu(x)

    def max_pool(self, x: Array, window, stride, padding=0) -> Array:
        y = max_pool(x, window, stride, padding)
        self.calls.append(("pool", tuple(x.shape[1:3]), tuple(y.shape[1:3])))
        return y

    def activation(self, x: Array, kind: str, channels: Array | None = None, **params) -> Array:
        self.calls.append(("act", tuple(x.shape[1:3])))
        return super().activation(x, kind, channels, **params)

    def linearized(self, fn, *args):
        self.calls.append(("lin", tuple(tuple(a.shape[1:3]) if _is_array(a) and a.ndim == 4 else None for a in args)))
        return fn(*args)
