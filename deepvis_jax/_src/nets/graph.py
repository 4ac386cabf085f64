"""Graph networks: any network `torch.export` captures, held as plain data and run by an interpreter in JAX.

A `GraphArchitecture` is the captured graph as static, hashable data: a tuple of `Node`s in topological order (op
name, arguments that are other nodes (`Ref`) or Python constants, the torch module path that produced it), the
outputs, and the visualizable layers (`LayerSpec`). The weights are the Model's variables,
``{"params": {torch name: array}}`` (convolution weights stored HWIO). `converters.from_torch` builds both;
`weights.py` saves and loads them without torch.

`GraphModule.apply` runs the nodes in order with the op table of `graph_ops.py`; every ReLU, activation and
max-pool goes through the ``ops`` object of `rules.py`, so `forward`, `project` (the three methods), `construct`,
occlusion and the atlas work on graph networks as on the hand-written ones.

Layers are torch module paths whose output is one feature map, as a forward hook returns it: NCHW maps (conv
networks) become NHWC; a vision transformer block's tokens (N, extra + h*w, D) become the (N, h, w, D) map of its
patch grid without the extra (class) tokens; channels-last maps (N, h, w, C) (Swin) stay as they are. The kind
of each layer is decided when the graph is imported, from the symbolic shapes torch gives (see
`converters/_export.py` and docs/graph-networks.md).

Receptive fields are computed over every path: the size is the largest, the offset the smallest, and strides must
agree where paths merge; a layer after an op that mixes all positions (a mean over space, attention, a flatten
and a linear layer, upsampling, a gate computed from the whole map) sees the whole image.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..rules import PLAIN, _slice_map, _valid
from .graph_ops import ACTIVATION_OPS, OPS, Ctx, DType, Hwio, Img, Perm, as_img, logical, logical_shape

Array = jax.Array


class Ref(NamedTuple):
    """An argument that is the value of node ``node`` (its index)."""

    node: int


class Node(NamedTuple):
    """One op of the graph.

    ``op``: the ATen op without ``aten.`` and ``.default`` (``"convolution"``, ``"add.Tensor"``), ``"getitem"``,
    Python's arithmetic on sizes (``"sym.mul"``), or ``"input"`` (the image), ``"param"`` (``args = (torch name,)``;
    ``kwargs`` ``layout="hwio"`` for a convolution weight stored HWIO), ``"constant"`` (``args = (dtype, shape,
    flat values)``, a non-float tensor). ``args``/``kwargs``: `Ref`s, `DType`s and Python constants (tuples for
    lists). ``module``: the path of the innermost torch module that produced it ("" for the top level).
    ``shape``: its output's shape at the example input (-1 where it follows the input's size), None if not one
    tensor; ``dtype`` likewise.
    """

    op: str
    args: tuple = ()
    kwargs: tuple = ()
    module: str = ""
    shape: tuple | None = None
    dtype: str = ""


class LayerSpec(NamedTuple):
    """A visualizable layer: the torch module ``name`` whose output is node ``node``.

    ``kind``: ``"nchw"`` (a conv map), ``"nhwc"`` (a channels-last map) or ``"tokens"`` (N, skip + h*w, D) laid
    out as the (h, w) map of node ``grid`` after dropping the first ``skip`` tokens. ``channels``: C or D.
    """

    name: str
    node: int
    kind: str
    channels: int
    grid: int = -1
    skip: int = 0


GLOBAL = "global"  # the receptive field of a unit that sees the whole image


class Field(NamedTuple):
    """Per-axis receptive field of a map's units: unit (i, j) sees input rows ``oh + jh * i`` ..
    ``oh + jh * i + sh - 1`` and columns likewise."""

    sh: int
    sw: int
    jh: int
    jw: int
    oh: int
    ow: int


@dataclasses.dataclass(frozen=True, eq=False)
class GraphArchitecture:
    """A captured graph: static, hashable (hash cached), equal by content.

    ``example_hw``: the input size it was captured at; ``fixed_hw``: the only input size it accepts (a graph
    captured with static shapes), or None; ``min_hw``: the smallest (h, w) torch guarantees the graph for.
    ``output_keys``: the names of a dict output (a backbone's maps), or None. ``num_classes``: the width of a
    single 2-D output (logits), or None.
    """

    name: str
    nodes: tuple
    outputs: tuple  # tuple[Ref, ...]
    layer_specs: tuple  # tuple[LayerSpec, ...]
    example_hw: tuple
    fixed_hw: tuple | None = None
    min_hw: tuple = (1, 1)
    output_keys: tuple | None = None
    num_classes: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "_hash", hash((self.name, self.nodes, self.outputs, self.layer_specs,
                                                self.example_hw, self.fixed_hw, self.min_hw, self.output_keys,
                                                self.num_classes)))  # fmt: skip
        object.__setattr__(self, "_cache", {})

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        if not isinstance(other, GraphArchitecture) or self._hash != other._hash:
            return False
        return all(getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(self))

    def __repr__(self) -> str:
        return f"GraphArchitecture({self.name}, {len(self.nodes)} nodes, {len(self.layer_specs)} layers)"

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # ---------------------------------------------------------------------------------------------- the protocol

    @property
    def layers(self) -> tuple[str, ...]:
        """The visualizable layers, bottom to top: module paths whose output is one feature map."""
        return tuple(s.name for s in self.layer_specs)

    @property
    def conv_layers(self) -> list[str]:
        return list(self.layers)

    def spec(self, name: str) -> LayerSpec:
        return self._cached("specs", lambda: {s.name: s for s in self.layer_specs})[name]

    def channels(self, name: str) -> int:
        return self.spec(name).channels

    def module(self) -> "GraphModule":
        return GraphModule(self)

    # ---------------------------------------------------------------------------------------------- graph facts

    def arg_refs(self, i: int) -> tuple[int, ...]:
        """The nodes node `i` reads."""
        refs = self._cached("refs", lambda: tuple(tuple(_refs((n.args, n.kwargs))) for n in self.nodes))
        return refs[i]

    def needed(self, targets: tuple[int, ...]) -> tuple[int, ...]:
        """The nodes that `targets` depend on (themselves included), in order."""

        def make():
            seen, stack = set(), list(targets)
            while stack:
                i = stack.pop()
                if i not in seen:
                    seen.add(i)
                    stack.extend(self.arg_refs(i))
            return tuple(sorted(seen))

        return self._cached(("needed", targets), make)

    @property
    def data(self) -> tuple[bool, ...]:
        """For each node: does its value depend on the image?"""

        def make():
            flags = []
            for i, n in enumerate(self.nodes):
                shape_only = n.op in ("sym_size.int", "sym_numel") or n.op.startswith("sym.")
                flags.append(n.op == "input" or (not shape_only and any(flags[j] for j in self.arg_refs(i))))
            return tuple(flags)

        return self._cached("data", make)

    def plan(self, name: str, pre_relu: bool = False):
        """Where a layer's activation is read from: its output node, or with `pre_relu` the input of its final
        activation (ReLU, GELU, ...) when its output is one; a concatenation of activations (an Inception block,
        a dense block) reads ``("cat", parts, dim)``, each part before its own activation where it has one."""
        node = self.spec(name).node
        return (self._pre(node) or node) if pre_relu else node

    def _pre(self, i: int):
        n = self.nodes[i]
        if n.op in ACTIVATION_OPS:
            return n.args[0].node
        if n.op == "cat" and n.args and all(isinstance(r, Ref) for r in n.args[0]):
            parts = [self._pre(r.node) for r in n.args[0]]
            if any(p is not None for p in parts):
                dim = n.args[1] if len(n.args) > 1 else dict(n.kwargs).get("dim", 0)
                return ("cat", tuple(r.node if p is None else p for p, r in zip(parts, n.args[0])), dim)
        return None

    # ---------------------------------------------------------------------------------------------- input sizes

    def input_error(self, hw) -> str | None:
        """Why an (H, W) input does not fit this graph (one line), or None."""
        h, w = int(hw[0]), int(hw[1])
        if self.fixed_hw is not None and (h, w) != tuple(self.fixed_hw):
            fh, fw = self.fixed_hw
            return (f"{self.name} was captured for {fh}x{fw} inputs only (torch.export could not make its size "
                    f"dynamic); got {h}x{w}: resize the image to {fh}x{fw}")  # fmt: skip
        mh, mw = self.min_hw
        if h < mh or w < mw:
            return f"an input of {h}x{w} pixels is too small for {self.name}; use at least {mh}x{mw} pixels"
        return None

    def check_input_hw(self, hw) -> None:
        err = self.input_error(hw)
        if err:
            raise ValueError(err)

    def shapes(self, hw) -> dict[int, tuple]:
        """Every node's value at an (H, W) input (batch 1), as (is-Img, logical shape) or None for non-tensors."""
        hw = (int(hw[0]), int(hw[1]))

        def make():
            seen: dict[int, tuple] = {}
            x = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
            jax.eval_shape(lambda v, x: run(self, v, x, range(len(self.nodes)), PLAIN, shapes=seen),
                           abstract_variables(self), x)  # fmt: skip
            return seen

        return self._cached(("shapes", hw), make)

    def layer_hw(self, name: str, hw) -> tuple[int, int]:
        """(h, w) of a layer's map for an (H, W) input; ValueError (one line) for a size the graph does not take."""
        hw = (int(hw[0]), int(hw[1]))
        self.check_input_hw(hw)
        lo = self.min_size(name)
        if min(hw) < lo:
            raise ValueError(f"an input of {hw[0]}x{hw[1]} pixels is too small for layer {name} of {self.name}: its "
                             f"feature map vanishes; use at least {lo}x{lo} pixels")  # fmt: skip

        def make():
            spec = self.spec(name)
            shapes = self.shapes(hw)
            if spec.kind == "tokens":
                return _map_hw(shapes[spec.grid])
            return _map_hw(shapes[spec.node], channels_last=spec.kind == "nhwc")

        return self._cached(("layer_hw", name, hw), make)

    def min_size(self, name: str | None = None) -> int:
        """Smallest side (pixels) an input needs for layer `name` (None: the whole graph) to have a feature map:
        the smallest square input whose every map on the way is at least 1x1, and never below `min_hw`."""
        if self.fixed_hw is not None:
            return max(self.fixed_hw)
        target = tuple(r.node for r in self.outputs) if name is None else (self.spec(name).node,)

        def make():
            lo, hi = max(self.min_hw), max(max(self.example_hw), max(self.min_hw))
            if not self._valid_at(hi, target):
                return hi  # pragma: no cover - the example size always works
            while lo < hi:  # the smallest size at which every node up to the target has a map
                mid = (lo + hi) // 2
                if self._valid_at(mid, target):
                    hi = mid
                else:
                    lo = mid + 1
            return lo

        return self._cached(("min_size", target), make)

    def _valid_at(self, n: int, targets: tuple[int, ...]) -> bool:
        """Whether an n x n input gives every node up to `targets` a value (no empty map, no error)."""
        ok = self._cached(("valid_at", n), lambda: _valid_nodes(self, n))
        return all(ok[t] for t in targets)

    # ---------------------------------------------------------------------------------------------- receptive fields

    @property
    def fields(self) -> tuple:
        """Each node's receptive field: a `Field`, `GLOBAL`, or None (no image content)."""
        return self._cached("fields", lambda: _fields(self))

    def field(self, name: str) -> Field | str:
        spec = self.spec(name)
        f = self.fields[spec.node]
        return f if spec.kind == "nchw" and isinstance(f, Field) and f.jh == f.jw else GLOBAL

    def crops(self, name: str) -> bool:
        """Whether single units of layer `name` can be projected on a crop of the image (`project_units`): its
        receptive field is local, and the graph takes images of other sizes (a crop is one)."""
        return self.fixed_hw is None and self.field(name) != GLOBAL


def _refs(obj):
    if isinstance(obj, Ref):
        yield obj.node
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _refs(o)


def _resolve(obj, env):
    if isinstance(obj, Ref):
        return env[obj.node]
    if isinstance(obj, tuple) and not isinstance(obj, DType):
        return type(obj)(_resolve(o, env) for o in obj) if type(obj) is tuple else obj
    return obj


def _map_hw(shape_entry, channels_last: bool = False) -> tuple[int, int]:
    is_img, shape = shape_entry
    return (int(shape[1]), int(shape[2])) if channels_last else (int(shape[2]), int(shape[3]))


# --------------------------------------------------------------------------------------------------------------
# The interpreter
# --------------------------------------------------------------------------------------------------------------


def abstract_variables(arch: GraphArchitecture, dtype=jnp.float32) -> dict:
    """ShapeDtypeStructs of the variables a graph reads (for shape evaluation without weights)."""
    params = {}
    for n in arch.nodes:
        if n.op == "param":
            params[n.args[0]] = jax.ShapeDtypeStruct(tuple(n.shape), dtype)
    return {"params": params}


class _Crop:
    """A crop of the input at `tops` (a multiple of every node's stride) of an image of size `hw`: the interpreter
    zeroes every map outside the whole image's map (there the whole network has padding), and pooling divisors
    are the whole map's."""

    def __init__(self, arch: GraphArchitecture, tops: Array, hw):
        self.arch, self.tops, self.full = arch, tops, arch.shapes(hw)
        self.node = -1

    def start(self, i: int) -> Array:
        return self.tops // self.arch.fields[i].jh

    def full_in_hw(self) -> tuple[int, int]:
        return _map_hw(self.full[self.arch.nodes[self.node].args[0].node])

    def window(self, a: Array, size: tuple, fill) -> Array:
        return _slice_map(a, self.start(self.node), size, fill)

    def mask(self, i: int, v: Any) -> Any:
        if not isinstance(v, Img) or self.arch.fields[i] is None:
            return v
        size = tuple(v.a.shape[1:3])
        inside = _valid(self.start(i), size, _map_hw(self.full[i]))
        return Img(jnp.where(inside, v.a, jnp.zeros((), v.a.dtype)))


def _eval(ctx: Ctx, arch: GraphArchitecture, params: dict, x: Array, i: int, env: dict) -> Any:
    n = arch.nodes[i]
    if n.op == "input":
        return Img(x)
    if n.op == "param":
        v = params[n.args[0]]
        return Hwio(v) if dict(n.kwargs).get("layout") == "hwio" else v
    if n.op == "constant":
        dtype, shape, values = n.args
        return jnp.asarray(np.asarray(values, dtype=np.dtype(dtype.name)).reshape(shape), ctx.dtype_of(dtype))
    data = arch.data
    ctx.data = tuple(isinstance(a, Ref) and data[a.node] for a in n.args)
    ctx.node_op = n.op
    return OPS[n.op](ctx, *_resolve(n.args, env), **{k: _resolve(v, env) for k, v in n.kwargs})


def run(arch: GraphArchitecture, variables: dict, x: Array, nodes, ops=PLAIN, crop: _Crop | None = None,
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
    if isinstance(v, (Img, Hwio, Perm)) or hasattr(v, "shape"):
        return (isinstance(v, Img), logical_shape(v))
    if type(v) in (tuple, list):  # several outputs (not one of the tensor wrappers, which are tuples too)
        return type(v)(_shape_of(e) for e in v)
    return None


def _valid_nodes(arch: GraphArchitecture, n: int) -> tuple[bool, ...]:
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
    - ``collect=True``: ``(outputs, {layer: activation})``.
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
            arch.check_input_hw(x.shape[1:3])
        if upto is not None:
            spec = arch.spec(upto)
            plan = arch.plan(upto, pre_relu)
            c = None if crop is None else _Crop(arch, crop[0], crop[1])
            targets = _plan_nodes(plan) + ((spec.grid,) if spec.grid >= 0 else ())
            env = run(arch, variables, x, arch.needed(targets), ops, c)
            y = layer_array(arch, spec, _plan_value(plan, env), env)
            return y if channels is None else y[..., channels]
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


# --------------------------------------------------------------------------------------------------------------
# Receptive fields
# --------------------------------------------------------------------------------------------------------------

_SAME_FIELD = frozenset({
    "_native_batch_norm_legit_no_training", "relu", "hardtanh", "leaky_relu", "elu", "gelu", "silu", "hardswish",
    "sigmoid", "tanh", "hardsigmoid", "exp", "clone", "alias", "_to_copy", "add.Tensor", "sub.Tensor", "mul.Tensor",
    "div.Tensor", "add.Scalar", "sub.Scalar", "mul.Scalar", "div.Scalar", "neg", "cat", "split_with_sizes",
    "split.Tensor", "getitem", "where.self", "clamp", "pow.Tensor_Scalar", "abs", "sqrt", "rsqrt",
})  # fmt: skip


def _merge(fields: list) -> Field | str:
    """The field of a value computed from maps with these fields: the union of their windows."""
    if any(f == GLOBAL for f in fields):
        return GLOBAL
    if len({(f.jh, f.jw) for f in fields}) != 1:
        return GLOBAL
    oh, ow = min(f.oh for f in fields), min(f.ow for f in fields)
    return Field(max(f.oh + f.sh for f in fields) - oh, max(f.ow + f.sw for f in fields) - ow, fields[0].jh,
                 fields[0].jw, oh, ow)  # fmt: skip


def _window_field(f: Field, k, s, p, d=(1, 1)) -> Field:
    return Field(f.sh + f.jh * d[0] * (k[0] - 1), f.sw + f.jw * d[1] * (k[1] - 1), f.jh * s[0], f.jw * s[1],
                 f.oh - f.jh * p[0], f.ow - f.jw * p[1])  # fmt: skip


def _pair(v) -> tuple:
    v = tuple(v) if isinstance(v, (tuple, list)) else (v,)
    return v * 2 if len(v) == 1 else v


def _fields(arch: GraphArchitecture) -> tuple:
    shapes = arch.shapes(arch.example_hw)
    fields: list = []
    for i, n in enumerate(arch.nodes):
        if not arch.data[i]:
            fields.append(None)
            continue
        if n.op == "input":
            fields.append(Field(1, 1, 1, 1, 0, 0))
            continue
        is_img = _is_img_entry(shapes.get(i))
        ins = [fields[j] for j in arch.arg_refs(i) if fields[j] is not None]
        img_ins = [j for j in arch.arg_refs(i) if fields[j] is not None and shapes.get(j) is not None]
        if not is_img or not ins or any(not _is_img_entry(shapes.get(j)) for j in img_ins):
            fields.append(GLOBAL)
            continue
        f = _merge(ins)
        if f == GLOBAL:
            fields.append(GLOBAL)
        elif n.op == "convolution":
            w = shapes[n.args[1].node][1]  # (O, I, kh, kw)
            transposed = n.args[6]
            fields.append(GLOBAL if transposed else
                          _window_field(f, w[2:], _pair(n.args[3]), _pair(n.args[4]), _pair(n.args[5])))  # fmt: skip
        elif n.op in ("max_pool2d_with_indices", "avg_pool2d"):
            k = _pair(n.args[1])
            s = _pair(n.args[2]) if len(n.args) > 2 and n.args[2] else k
            p = _pair(n.args[3]) if len(n.args) > 3 else (0, 0)
            fields.append(_window_field(f, k, s, p))
        elif n.op == "constant_pad_nd":
            pad = list(n.args[1]) + [0] * 4
            fields.append(Field(f.sh, f.sw, f.jh, f.jw, f.oh - f.jh * pad[2], f.ow - f.jw * pad[0]))
        elif n.op == "slice.Tensor":
            dim = n.args[1] if len(n.args) > 1 else 0
            start = (n.args[2] if len(n.args) > 2 else 0) or 0
            step = n.args[4] if len(n.args) > 4 else 1
            if dim in (2, -2) and start >= 0:
                fields.append(Field(f.sh, f.sw, f.jh * step, f.jw, f.oh + f.jh * start, f.ow))
            elif dim in (3, -1) and start >= 0:
                fields.append(Field(f.sh, f.sw, f.jh, f.jw * step, f.oh, f.ow + f.jw * start))
            elif dim in (0, 1, -3, -4):
                fields.append(f)
            else:
                fields.append(GLOBAL)
        elif n.op in _SAME_FIELD:
            fields.append(f)
        else:
            fields.append(GLOBAL)
    return tuple(fields)


def _is_img_entry(entry) -> bool:
    if isinstance(entry, list):  # split: a list of maps
        return all(_is_img_entry(e) for e in entry)
    if isinstance(entry, tuple) and entry and isinstance(entry[0], tuple):  # a tuple output: its first value
        return _is_img_entry(entry[0])
    return isinstance(entry, tuple) and len(entry) == 2 and entry[0] is True


def receptive_field_of(arch: GraphArchitecture, name: str, hw=None):
    """(size, stride, offset) of a unit of layer `name`, or, for a layer that sees the whole image, a field that
    covers the whole ``hw`` image from every unit (stride 1); None when the field is global and no `hw` is given."""
    f = arch.field(name)
    if f != GLOBAL:
        o = min(f.oh, f.ow)
        return max(f.oh + f.sh, f.ow + f.sw) - o, f.jh, o
    if hw is None:
        return None
    h, w = arch.layer_hw(name, hw)
    m, big = max(h, w), max(int(hw[0]), int(hw[1]))
    return big + m - 1, 1, -(m - 1)


# --------------------------------------------------------------------------------------------------------------
# Plain data on disk: JSON (nothing executes when it is read)
# --------------------------------------------------------------------------------------------------------------

FORMAT_VERSION = 1  # of the JSON below


def _encode(obj):
    if isinstance(obj, Ref):
        return {"ref": obj.node}
    if isinstance(obj, DType):
        return {"dtype": obj.name}
    if isinstance(obj, (tuple, list)):
        return [_encode(o) for o in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a graph")  # pragma: no cover - import checks this


def _decode(obj):
    if isinstance(obj, dict):
        if set(obj) == {"ref"}:
            return Ref(int(obj["ref"]))
        if set(obj) == {"dtype"}:
            return DType(str(obj["dtype"]))
        raise ValueError(f"unknown entry {sorted(obj)} in a stored graph")
    if isinstance(obj, list):
        return tuple(_decode(o) for o in obj)
    return obj


def to_json(arch: GraphArchitecture) -> str:
    """The architecture as JSON text (the graph part of a saved graph network)."""
    return json.dumps({
        "version": FORMAT_VERSION,
        "name": arch.name,
        "nodes": [[n.op, _encode(n.args), [[k, _encode(v)] for k, v in n.kwargs], n.module,
                   None if n.shape is None else list(n.shape), n.dtype] for n in arch.nodes],
        "outputs": [r.node for r in arch.outputs],
        "layers": [list(s) for s in arch.layer_specs],
        "example_hw": list(arch.example_hw),
        "fixed_hw": None if arch.fixed_hw is None else list(arch.fixed_hw),
        "min_hw": list(arch.min_hw),
        "output_keys": None if arch.output_keys is None else list(arch.output_keys),
        "num_classes": arch.num_classes,
    }, separators=(",", ":"))  # fmt: skip


def from_json(text: str) -> GraphArchitecture:
    """The architecture `to_json` wrote; ValueError (one line) for text that is not one, or names an op this
    version cannot run."""
    d = json.loads(text)
    if not isinstance(d, dict) or d.get("version") != FORMAT_VERSION:
        raise ValueError(f"not a stored graph of version {FORMAT_VERSION}")
    nodes = []
    for op, args, kwargs, module, shape, dtype in d["nodes"]:
        if op not in OPS and op not in ("input", "param", "constant"):
            raise ValueError(f"the stored graph uses the op {op}, which this version of deepvis_jax cannot run")
        nodes.append(Node(str(op), _decode(args), tuple((str(k), _decode(v)) for k, v in kwargs), str(module),
                          None if shape is None else tuple(int(s) for s in shape), str(dtype)))  # fmt: skip
    specs = tuple(LayerSpec(str(a), int(b), str(c), int(e), int(f), int(g)) for a, b, c, e, f, g in d["layers"])
    opt = lambda v: None if v is None else tuple(v)  # noqa: E731
    return GraphArchitecture(str(d["name"]), tuple(nodes), tuple(Ref(int(i)) for i in d["outputs"]), specs,
                             tuple(d["example_hw"]), opt(d["fixed_hw"]), tuple(d["min_hw"]),
                             opt(d["output_keys"]), d["num_classes"])  # fmt: skip


__all__ = ["GLOBAL", "Field", "GraphArchitecture", "GraphModule", "LayerSpec", "Node", "Ref", "DType",
           "from_json", "receptive_field_of", "to_json"]
