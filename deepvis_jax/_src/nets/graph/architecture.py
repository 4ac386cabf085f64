"""A captured graph as static, hashable data: its nodes, layers, input sizes and receptive fields (see the
package docstring)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ...rules import PLAIN
from .values import ACTIVATION_OPS, DType

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
    single 2-D output (logits), or None. ``preprocessing``: what the captured module expects of its input
    (issue 30): a preset name (``"imagenet"``, ``"caffe"``, ``"unit"``, ``"minus_one_one"``) or a dict's items as
    a sorted tuple of pairs; the interpreter applies it to the library's ImageNet-normalized RGB input as its own
    elementwise step before the first op (`nets.preprocessing`), so padded borders stay exact.
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
    preprocessing: str | tuple = "imagenet"

    def __post_init__(self):
        object.__setattr__(self, "_hash", hash((self.name, self.nodes, self.outputs, self.layer_specs,
                                                self.example_hw, self.fixed_hw, self.min_hw, self.output_keys,
                                                self.num_classes, self.preprocessing)))  # fmt: skip
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

    @property
    def output_specs(self) -> tuple[LayerSpec, ...]:
        """The graph's outputs that are feature maps (N, C, h, w), as layers (issue 30 item 5): ``"output"`` for a
        single output, ``"output.KEY"`` for each map of a dict output (``"output.0"``, ... of a tuple). Derived from
        the outputs (not stored), so files of every version have them; not in `layers` (the module paths, whose
        order and count other calls rely on), but every call that takes a layer name takes them."""

        def make():
            if len(self.outputs) == 1 and self.output_keys is None:
                names = ("output",)
            else:
                names = tuple(f"output.{k}" for k in (self.output_keys or range(len(self.outputs))))
            specs = []
            for name, r in zip(names, self.outputs):
                n = self.nodes[r.node]
                if (n.shape is not None and len(n.shape) == 4 and n.shape[1] > 0 and n.dtype.startswith(("float", "bfloat"))
                        and name not in self.layers):  # fmt: skip
                    specs.append(LayerSpec(name, r.node, "nchw", int(n.shape[1])))
            return tuple(specs)

        return self._cached("output_specs", make)

    @property
    def output_layers(self) -> tuple[str, ...]:
        """The names of `output_specs`: ``("output",)`` for a network whose one output is a feature map."""
        return tuple(s.name for s in self.output_specs)

    def spec(self, name: str) -> LayerSpec:
        return self._cached("specs", lambda: {s.name: s for s in self.layer_specs + self.output_specs})[name]

    def channels(self, name: str) -> int:
        return self.spec(name).channels

    def module(self):
        from .interpreter import GraphModule  # the interpreter reads this module's types

        return GraphModule(self)

    # ---------------------------------------------------------------------------------------------- graph facts

    def arg_refs(self, i: int) -> tuple[int, ...]:
        """The nodes node `i` reads."""
        refs = self._cached("refs", lambda: tuple(tuple(node_refs((n.args, n.kwargs))) for n in self.nodes))
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

    @property
    def preprocess(self):
        """The map from ImageNet-normalized RGB NHWC input to what the captured module expects (identity for
        ``"imagenet"``)."""
        from ..preprocessing import preprocess_fn

        p = self.preprocessing
        return preprocess_fn(p if isinstance(p, str) else dict(p))  # its constants broadcast with explicit ranks

    @property
    def preprocessing_name(self) -> str:
        """The preset's name, or the dict's values (what repr and ``deepvis layers`` show)."""
        from ..preprocessing import describe_preprocessing

        p = self.preprocessing
        return describe_preprocessing(p if isinstance(p, str) else dict(p))

    # ---------------------------------------------------------------------------------------------- input sizes

    def input_error(self, hw, upto: str | None = None) -> str | None:
        """Why an (H, W) input does not fit this graph (one line), or None. With `upto` (a layer name), only the
        graph up to that layer has to fit: a low layer takes images smaller than torch's guarantee for the whole
        graph (`min_hw`) as long as its own maps do not vanish (`min_size`)."""
        h, w = int(hw[0]), int(hw[1])
        if self.fixed_hw is not None and (h, w) != tuple(self.fixed_hw):
            fh, fw = self.fixed_hw
            return (f"{self.name} was captured for {fh}x{fw} inputs only (model.input_size; e.g. a flatten + linear "
                    f"head); got {h}x{w}: resize the image to {fh}x{fw}")  # fmt: skip
        if upto is not None:
            n = self.min_size(upto)
            if min(h, w) < n:
                return (f"an input of {h}x{w} pixels is too small for layer {upto} of {self.name}: its feature map "
                        f"vanishes; use at least {n}x{n} pixels")  # fmt: skip
            return None
        mh, mw = self.min_hw
        if h < mh or w < mw:
            return f"an input of {h}x{w} pixels is too small for {self.name}; use at least {mh}x{mw} pixels"
        return None

    def check_input_hw(self, hw, upto: str | None = None) -> None:
        err = self.input_error(hw, upto)
        if err:
            raise ValueError(err)

    def shapes(self, hw, targets: tuple | None = None) -> dict[int, tuple]:
        """Every node's value at an (H, W) input (batch 1), as (is-Img, logical shape) or None for non-tensors;
        with `targets` (node indices), only the nodes they need (a low layer at a size the whole graph refuses)."""
        hw = (int(hw[0]), int(hw[1]))

        from .interpreter import abstract_variables, run

        def make():
            seen: dict[int, tuple] = {}
            x = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
            nodes = range(len(self.nodes)) if targets is None else self.needed(targets)
            jax.eval_shape(lambda v, x: run(self, v, x, nodes, PLAIN, shapes=seen), abstract_variables(self), x)
            return seen

        return self._cached(("shapes", hw, targets), make)

    def layer_hw(self, name: str, hw) -> tuple[int, int]:
        """(h, w) of a layer's map for an (H, W) input; ValueError (one line) for a size the graph does not take."""
        hw = (int(hw[0]), int(hw[1]))
        self.check_input_hw(hw, name)

        def make():
            spec = self.spec(name)
            shapes = self.shapes(hw, (spec.node,) + ((spec.grid,) if spec.grid >= 0 else ()))
            if spec.kind == "tokens":
                return map_hw(shapes[spec.grid])
            return map_hw(shapes[spec.node], channels_last=spec.kind == "nhwc")

        return self._cached(("layer_hw", name, hw), make)

    def min_size(self, name: str | None = None) -> int:
        """Smallest side (pixels) an input needs for layer `name` (None: the whole graph) to have a feature map:
        the smallest square input whose every map on the way is at least 1x1; for the whole graph never below
        `min_hw` (what torch guarantees it for), for a layer its own (GoogLeNet's conv1.conv takes 12 px)."""
        if self.fixed_hw is not None:
            return max(self.fixed_hw)
        target = tuple(r.node for r in self.outputs) if name is None else (self.spec(name).node,)

        def make():
            lo = max(self.min_hw) if name is None else 1
            hi = max(max(self.example_hw), max(self.min_hw))
            if not self._valid_at(hi, target):
                return hi  # pragma: no cover - the example size always works
            while lo < hi:  # the smallest size at which every node up to the target has a map
                mid = (lo + hi) // 2
                if self._valid_at(mid, target):
                    hi = mid
                else:
                    lo = mid + 1
            return lo

        return self._cached(("min_size", target, name is None), make)

    def _valid_at(self, n: int, targets: tuple[int, ...]) -> bool:
        """Whether an n x n input gives every node up to `targets` a value (no empty map, no error)."""
        from .interpreter import valid_nodes

        ok = self._cached(("valid_at", n), lambda: valid_nodes(self, n))
        return all(ok[t] for t in targets)

    # ---------------------------------------------------------------------------------------------- receptive fields

    @property
    def fields(self) -> tuple:
        """Each node's receptive field: a `Field`, `GLOBAL`, or None (no image content)."""
        from .fields import node_fields

        return self._cached("fields", lambda: node_fields(self))

    def field(self, name: str) -> Field | str:
        spec = self.spec(name)
        f = self.fields[spec.node]
        return f if spec.kind == "nchw" and isinstance(f, Field) and f.jh == f.jw else GLOBAL

    def crops(self, name: str) -> bool:
        """Whether single units of layer `name` can be projected on a crop of the image (`project_units`): its
        receptive field is local, and the graph takes images of other sizes (a crop is one)."""
        return self.fixed_hw is None and self.field(name) != GLOBAL


def stored_preprocessing(preprocessing) -> str | tuple:
    """A `preprocessing=` argument as the architecture holds it: the preset's name (also for a dict equal to a
    preset), else the resolved dict's items as a sorted tuple of pairs (hashable); ValueError (one line) for a
    bad one."""
    from ..preprocessing import PRESETS, resolve

    d = resolve(preprocessing)
    for k, v in PRESETS.items():
        if v == d:
            return k
    return tuple(sorted(d.items()))


def node_refs(obj):
    if isinstance(obj, Ref):
        yield obj.node
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from node_refs(o)


def resolve_args(obj, env):
    if isinstance(obj, Ref):
        return env[obj.node]
    if isinstance(obj, tuple) and not isinstance(obj, DType):
        return type(obj)(resolve_args(o, env) for o in obj) if type(obj) is tuple else obj
    return obj


def map_hw(shape_entry, channels_last: bool = False) -> tuple[int, int]:
    is_img, shape = shape_entry
    return (int(shape[1]), int(shape[2])) if channels_last else (int(shape[2]), int(shape[3]))
