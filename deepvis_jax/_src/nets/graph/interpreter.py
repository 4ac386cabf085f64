"""The interpreter: runs a graph's nodes in order with the op table (`GraphModule.apply`), on whole images or
on crops (`project_units`)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ...rules import PLAIN
from ...windows import slice_window, window_inside
from .architecture import GraphArchitecture, LayerSpec, Ref, map_hw, resolve_args
from .values import OPS, Bcast, Ctx, Hwio, Img, Perm, as_img, logical, logical_shape

Array = jax.Array




def abstract_variables(arch: GraphArchitecture, dtype=jnp.float32) -> dict:
    """ShapeDtypeStructs of the variables a graph reads (for shape evaluation without weights)."""
    params = {}
    for n in arch.nodes:
        if n.op == "param":
            params[n.args[0]] = jax.ShapeDtypeStruct(tuple(n.shape), dtype)
    return {"params": params}


class Crop:
    """A crop of the input at `tops` (a multiple of every node's stride) of an image of size `hw`: the interpreter
    zeroes every map outside the whole image's map (there the whole network has padding), and pooling divisors
    are the whole map's."""

    def __init__(self, arch: GraphArchitecture, tops: Array, hw, targets: tuple):
        self.arch, self.tops, self.full = arch, tops, arch.shapes(hw, tuple(targets))
        self.node = -1

    def start(self, i: int) -> Array:
        return self.tops // self.arch.fields[i].jh

    def full_in_hw(self) -> tuple[int, int]:
        return map_hw(self.full[self.arch.nodes[self.node].args[0].node])

    def window(self, a: Array, size: tuple, fill) -> Array:
        return slice_window(a, self.start(self.node), size, fill)

    def mask(self, i: int, v: Any) -> Any:
        if not isinstance(v, Img) or self.arch.fields[i] is None:
            return v
        size = tuple(v.a.shape[1:3])
        inside = window_inside(self.start(i), size, map_hw(self.full[i]))
        return Img(jnp.where(inside, v.a, jnp.zeros((), v.a.dtype)))


def _eval(ctx: Ctx, arch: GraphArchitecture, params: dict, x: Array, i: int, env: dict) -> Any:
    n = arch.nodes[i]
    if n.op == "input":  # the module's own preprocessing: an elementwise step before any padding
        return Img(arch.preprocess(x))
    if n.op == "param":
        v = params[n.args[0]]
        return Hwio(v) if dict(n.kwargs).get("layout") == "hwio" else v
    if n.op == "constant":
        dtype, shape, values = n.args
        return jnp.asarray(np.asarray(values, dtype=np.dtype(dtype.name)).reshape(shape), ctx.dtype_of(dtype))
    data = arch.data
    ctx.data = tuple(isinstance(a, Ref) and data[a.node] for a in n.args)
    ctx.node_op = n.op
    return OPS[n.op](ctx, *resolve_args(n.args, env), **{k: resolve_args(v, env) for k, v in n.kwargs})


def run(arch: GraphArchitecture, variables: dict, x: Array, nodes, ops=PLAIN, crop: Crop | None = None,
        shapes: dict | None = None) -> dict[int, Any]:  # fmt: skip
    """Evaluate `nodes` (indices in order, every dependency included) on normalized NHWC images `x`; returns each
    node's value (`Img`s for image tensors). `shapes`, when given, receives each tensor node's (is-Img, logical
    shape)."""
    params = variables["params"]
    ctx = Ctx(ops, x.dtype, crop)
    env: dict[int, Any] = {}
    for i in nodes:
        if crop is not None:
            crop.node = i
        v = _eval(ctx, arch, params, x, i, env)
        if crop is not None and arch.data[i]:
            v = crop.mask(i, v)
        env[i] = v
        if shapes is not None:
            shapes[i] = _shape_of(v)
    return env


def _shape_of(v):
    if isinstance(v, (Img, Hwio, Perm, Bcast)) or hasattr(v, "shape"):
        return (isinstance(v, Img), logical_shape(v))
    if type(v) in (tuple, list):  # several outputs (not one of the tensor wrappers, which are tuples too)
        return type(v)(_shape_of(e) for e in v)
    return None


def valid_nodes(arch: GraphArchitecture, n: int) -> tuple[bool, ...]:
    """For an n x n input: whether each node gets a value (no op fails, no map is empty)."""
    ok = [True] * len(arch.nodes)

    def trace(variables, x):
        ctx = Ctx(PLAIN, x.dtype)
        env: dict[int, Any] = {}
        for i in range(len(arch.nodes)):
            if not all(ok[j] for j in arch.arg_refs(i)):
                ok[i] = False
                continue
            try:
                v = env[i] = _eval(ctx, arch, variables["params"], x, i, env)
            except Exception:  # noqa: BLE001 - any failure means: no value at this size
                ok[i] = False
                continue
            first = v[0] if type(v) in (tuple, list) and v else v
            if isinstance(first, Img) and min(first.a.shape[1:3]) < 1:
                ok[i] = False
        return jnp.zeros(())

    jax.eval_shape(trace, abstract_variables(arch), jax.ShapeDtypeStruct((1, n, n, 3), jnp.float32))
    return tuple(ok)


def _plan_nodes(plan) -> tuple[int, ...]:
    if isinstance(plan, int):
        return (plan,)
    return tuple(i for p in plan[1] for i in _plan_nodes(p))


def _plan_value(plan, env: dict):
    if isinstance(plan, int):
        return env[plan]
    return OPS["cat"](None, [_plan_value(p, env) for p in plan[1]], plan[2])


def layer_array(arch: GraphArchitecture, spec: LayerSpec, v: Any, env: dict) -> Array:
    """A layer's activation (N, h, w, C) from its value `v` (its output, or before its final activation)."""
    if spec.kind == "nchw":
        return as_img(v).a
    if spec.kind == "nhwc":
        return logical(v)
    tokens = logical(v)
    g = env[spec.grid]
    h, w = (g.a.shape[1:3]) if isinstance(g, Img) else logical_shape(g)[2:4]
    n, _, d = tokens.shape
    return tokens[:, spec.skip :].reshape(n, h, w, d)


def _output(v: Any) -> Any:
    if isinstance(v, Img):
        return v.a
    return logical(v)


class GraphModule:
    """Runs a `GraphArchitecture`: ``apply(variables, x, upto=None, channels=None, pre_relu=False, collect=False,
    ops=PLAIN)`` as the hand-written networks' modules do (``x``: normalized (N, H, W, 3) images).

    - ``upto=None``: the graph's outputs (logits (N, classes); a backbone's maps NHWC, as a tuple or dict);
    - ``upto=layer``: the layer's activation (N, h, w, C), computing only the nodes it depends on; ``pre_relu``:
      the input of its final activation when its output is one; ``channels``: only those channels (sliced);
    - ``collect=True``: ``(outputs, {layer: activation})``; with ``upto``, ``(activation, {layer: activation})`` of
      every layer up to it (below it with ``pre_relu``), in one pass.
    """

    def __init__(self, arch: GraphArchitecture):
        self.arch = arch

    def init(self, *args, **kwargs):
        raise TypeError(f"{self.arch.name} is an imported graph: its weights come from torch "
                        "(converters.from_torch) or a saved file (dv.load_model(path)), not from an initializer")

    def apply(self, variables: dict, x: Array, upto: str | None = None, channels: Array | None = None,
              pre_relu: bool = False, collect: bool = False, ops=PLAIN, crop=None):  # fmt: skip
        arch = self.arch
        if crop is None:  # a crop (project_units) is smaller than the images the graph takes
            arch.check_input_hw(x.shape[1:3], upto)
        if upto is not None:
            spec = arch.spec(upto)
            plan = arch.plan(upto, pre_relu)
            targets = _plan_nodes(plan) + ((spec.grid,) if spec.grid >= 0 else ())
            below = ()
            if collect:  # every layer up to `upto` (below it with pre_relu), in the same pass
                # an output layer (`output_specs`) is above every module layer
                k = arch.layers.index(upto) + (0 if pre_relu else 1) if upto in arch.layers else len(arch.layers)
                below = arch.layer_specs[:k]
                targets += tuple(s.node for s in below) + tuple(s.grid for s in below if s.grid >= 0)
            c = None if crop is None else Crop(arch, crop[0], crop[1], targets)
            env = run(arch, variables, x, arch.needed(targets), ops, c)
            y = layer_array(arch, spec, _plan_value(plan, env), env)
            y = y if channels is None else y[..., channels]
            if collect:
                return y, {s.name: layer_array(arch, s, env[s.node], env) for s in below}
            return y
        targets = tuple(r.node for r in arch.outputs)
        if collect:
            targets = targets + tuple(s.node for s in arch.layer_specs) + tuple(
                s.grid for s in arch.layer_specs if s.grid >= 0)  # fmt: skip
        env = run(arch, variables, x, arch.needed(targets), ops)
        outs = tuple(_output(env[r.node]) for r in arch.outputs)
        if arch.output_keys is not None:
            out = dict(zip(arch.output_keys, outs))
        else:
            out = outs[0] if len(outs) == 1 else outs
        if collect:
            return out, {s.name: layer_array(arch, s, env[s.node], env) for s in arch.layer_specs}
        return out
