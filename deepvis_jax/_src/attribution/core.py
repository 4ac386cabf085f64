"""The two computations every attribution is built on: a target's scores and their gradient with respect to the
input (`input_gradients`), and the same scores with their gradient with respect to one layer's activation
(`layer_gradients`).

The gradient at a layer needs the whole forward pass with the layer's activation as a variable. It is computed as
the gradient with respect to a zero `delta` added to the layer's activation inside the ordinary forward pass:

- hand-written networks (AlexNet, VGG, ResNet): every layer's activation is the output of a ReLU call of the
  ``ops`` object (`rules.py`), the k-th in call order, where k is the number of ReLUs ``model.apply(x,
  upto=layer)`` calls; an `_Inject` ops object adds `delta` to that call's output;
- graph networks (`converters.from_torch`): the interpreter's nodes run in order and `delta` is added to the
  layer's node (its NHWC view's transpose, for token layers and channels-last maps);
- JAX networks (`dv.from_jax`): the jaxpr interpreter adds `delta` to the layer's var (transposed for a
  channels-first function).

Nothing else changes, so the scores, the activation and every gradient are the network's own, to rounding.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp

from ..nets import Architecture, GraphArchitecture, JaxArchitecture, Layer, Model, check_input, layer_name, layers
from ..nets.resnet import ResNetArchitecture
from ..rules import Plain
from .targets import Target

Array = jax.Array


def resolve_layer(model: Model, layer: Layer | None) -> str:
    """A layer's canonical name: a name or 1-based index of ``dv.layers(model)``; None: the last layer; on a
    hand-written ResNet also a stage, ``"layer4"`` (torchvision's module: its last block's output). `model` may
    be an architecture."""
    if layer is None:
        return layers(model)[-1]
    resnet = isinstance(getattr(model, "arch", model), ResNetArchitecture)
    if resnet and isinstance(layer, str) and re.fullmatch(r"layer\d", layer):
        blocks = [name for name in layers(model) if name.startswith(layer + ".")]
        if blocks:
            return blocks[-1]
    return layer_name(model, layer)


# ----------------------------------------------------------------------------------------------------------------
# Scores, and their gradient with respect to the input
# ----------------------------------------------------------------------------------------------------------------


def scores(model: Model, x: Array, target: Target) -> Array:
    """The target's score of every image, (N,): the model's outputs or ``target.layer``'s activation, scored."""
    return target.score(model.apply(x, upto=target.layer))


def input_gradients(model: Model, x: Array, target: Target) -> tuple[Array, Array]:
    """(scores (N,), d score_n / d x_n (N, H, W, 3)). Images do not interact (BatchNorm is in eval mode), so the
    gradient of the summed scores is each image's own gradient."""
    s, vjp = jax.vjp(lambda v: scores(model, v, target), x)
    return s, vjp(jnp.ones_like(s))[0]


# ----------------------------------------------------------------------------------------------------------------
# Scores with a delta added at a layer
# ----------------------------------------------------------------------------------------------------------------


class _Count(Plain):
    def __init__(self):
        self.relus = 0

    def relu(self, x, channels=None):
        self.relus += 1
        return jax.nn.relu(x)


_RELU_INDEX: dict = {}


def _relu_index(model: Model, name: str, x: Array) -> int:
    key = (model.arch, name)
    if key not in _RELU_INDEX:
        ops = _Count()
        jax.eval_shape(lambda m, v: m.apply(v, upto=name, ops=ops), model,
                       jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype))  # fmt: skip
        _RELU_INDEX[key] = ops.relus
    return _RELU_INDEX[key]


class _Inject(Plain):
    """Plain values; the `k`-th ReLU's output (1-based, call order) gets `delta` added, and is kept as ``act``."""

    def __init__(self, k: int, delta: Array):
        self.k, self.delta, self.n, self.act = k, delta, 0, None

    def relu(self, x, channels=None):
        self.n += 1
        y = jax.nn.relu(x)
        if self.n == self.k:
            if y.shape != self.delta.shape:
                raise ValueError(f"internal: ReLU {self.k} is shaped {y.shape}, the layer {self.delta.shape}")
            self.act = y
            y = y + self.delta
        return y


def _below_error(target: Target, name: str) -> ValueError:
    return ValueError(f"the target reads layer {target.layer}, which does not depend on layer {name}: choose a "
                      "layer below the target's, or a target of the model's outputs")  # fmt: skip


def _graph_scores(model: Model, x: Array, target: Target, name: str, delta: Array) -> tuple[Array, Array]:
    from ..nets.graph.interpreter import _eval, _output, layer_array
    from ..nets.graph.values import Ctx, Img, Perm

    arch: GraphArchitecture = model.arch
    arch.check_input_hw(x.shape[1:3])
    spec = arch.spec(name)
    if target.layer is None:
        wanted = tuple(r.node for r in arch.outputs)
    else:
        top = arch.spec(target.layer)
        wanted = (top.node,) + ((top.grid,) if top.grid >= 0 else ())
    nodes = arch.needed(wanted + ((spec.grid,) if spec.grid >= 0 else ()))
    if spec.node not in arch.needed(wanted):
        raise _below_error(target, name)
    ctx = Ctx(Plain(), x.dtype, None)
    params, env, act = model.variables["params"], {}, None
    for i in nodes:
        v = _eval(ctx, arch, params, x, i, env)
        if i == spec.node:  # add delta to the storage of the layer's value, through its NHWC view's transpose
            if isinstance(v, (Img, Perm)):
                store, rebuild = v.a, (lambda a, v=v: v._replace(a=a))
            else:
                store, rebuild = v, (lambda a: a)
            act, view = jax.vjp(lambda a: layer_array(arch, spec, rebuild(a), env), store)
            v = rebuild(store + view(delta.astype(act.dtype))[0])
        env[i] = v
    if target.layer is None:
        outs = tuple(_output(env[r.node]) for r in arch.outputs)
        out = dict(zip(arch.output_keys, outs)) if arch.output_keys is not None else (
            outs[0] if len(outs) == 1 else outs)  # fmt: skip
    else:
        out = layer_array(arch, top, env[top.node], env)
    return target.score(out), act


def _jax_scores(model: Model, x: Array, target: Target, name: str, delta: Array) -> tuple[Array, Array]:
    """The same for a JAX network (`dv.from_jax`): its interpreter adds `delta` to the layer's var."""
    from ..nets.jaxpr.architecture import JaxArchitecture, _value, layer_array, run, run_dtype

    arch: JaxArchitecture = model.arch
    arch.check_input_hw(x.shape[1:3])
    var = arch.spec(name).var
    wanted = (tuple(o for o in arch.program.outputs if isinstance(o, int)) if target.layer is None
              else (arch.spec(target.layer).var,))  # fmt: skip
    needed = arch.needed(wanted)
    if var not in {o for i in needed for o in arch.program.eqns[i].outs}:
        raise _below_error(target, name)
    seen = {}

    def hook(v, value):
        if v != var:
            return value
        seen["act"] = layer_array(arch, value)
        return value + (delta if arch.layout == "NHWC" else jnp.transpose(delta, (0, 3, 1, 2))).astype(value.dtype)

    env = run(arch, model.variables, x, needed, hook=hook)
    if target.layer is None:
        outs = tuple(_value(o, env, run_dtype(arch, x)) for o in arch.program.outputs)
        out = outs[0] if len(outs) == 1 else outs
    else:
        out = layer_array(arch, env[wanted[0]])
    return target.score(out), seen["act"]


def injected_scores(model: Model, x: Array, target: Target, name: str, delta: Array) -> tuple[Array, Array]:
    """(the target's scores (N,), layer `name`'s activation) with `delta` added to that activation in the forward
    pass; with a zero `delta`, the ordinary scores."""
    if isinstance(model.arch, GraphArchitecture):
        return _graph_scores(model, x, target, name, delta)
    if isinstance(model.arch, JaxArchitecture):
        return _jax_scores(model, x, target, name, delta)
    if not isinstance(model.arch, (Architecture, ResNetArchitecture)):  # a family whose layers are not ReLU outputs
        raise ValueError(f"gradients at a layer (the CAMs) support the hand-written networks and graph networks, not "
                         f"{type(model.arch).__name__} ({model.arch.name}); the input-space methods work on it")
    ops = _Inject(_relu_index(model, name, x), delta)
    out = model.apply(x, upto=target.layer, ops=ops)
    if ops.act is None:
        raise _below_error(target, name)
    return target.score(out), ops.act


def layer_gradients(model: Model, x: Array, target: Target, name: str) -> tuple[Array, Array, Array]:
    """(scores (N,), layer `name`'s activation A (N, h, w, C), d score_n / d A_n (N, h, w, C))."""
    check_input(x)
    shape = jax.eval_shape(lambda m, v: m.apply(v, upto=name), model, x)

    def f(delta):
        s, act = injected_scores(model, x, target, name, delta)
        return jnp.sum(s), (s, act)

    grads, (s, act) = jax.grad(f, has_aux=True)(jnp.zeros(shape.shape, shape.dtype))
    return s, act, grads


def check_images(x: Any) -> Array:
    check_input(x)
    if not jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating):
        raise TypeError(f"expected float normalized images (dv.normalize), got dtype {jnp.asarray(x).dtype}")
    return x
