"""The FX graph `torch.export` captured -> plain data (`deepvis_jax._src.nets.graph`): nodes with static arguments
and the module path that produced each, the visualizable layers (module outputs that are one feature map), the
input sizes the graph allows, and the weights as numpy arrays (convolution weights HWIO). Imports torch."""

from __future__ import annotations

import math
import operator

import numpy as np
import torch

from deepvis_jax._src.nets.graph import OPS, DType, GraphArchitecture, LayerSpec, Node, Ref

A = torch.ops.aten

# Runtime assertions on sizes that the interpreter does not need (it computes with concrete shapes).
SKIPPED = {A._assert_scalar.default, A.sym_constrain_range_for_size.default, A.sym_constrain_range.default,
            A._assert_tensor_metadata.default}  # fmt: skip

PYTHON_OPS = {operator.mul: "mul", operator.add: "add", operator.sub: "sub", operator.floordiv: "floordiv",
               operator.truediv: "truediv", operator.mod: "mod", operator.neg: "neg", operator.pow: "pow",
               operator.eq: "eq", operator.ne: "ne", operator.lt: "lt", operator.le: "le", operator.gt: "gt",
               operator.ge: "ge", torch.sym_max: "sym_max", torch.sym_min: "sym_min", torch.sym_float: "sym_float",
               torch.sym_int: "sym_int", torch.sym_not: "sym_not", math.ceil: "ceil", math.floor: "floor",
               torch.sym_sqrt: "sym_sqrt"}  # fmt: skip

MAX_EXTRA_TOKENS = 16  # a token layer may hold this many tokens before its patch grid (class, distillation, ...)


def static_dim(d) -> bool:
    """A size that does not follow the input: an int, or a symbolic size torch specialized to a number."""
    return not isinstance(d, torch.SymInt) or not d.node.expr.free_symbols


class CaptureError(ValueError):
    """A module that cannot become a graph network (one line saying why and what to do)."""


# --------------------------------------------------------------------------------------------------------------
# FX graph -> plain data
# --------------------------------------------------------------------------------------------------------------


def _op_name(target) -> str:
    if target is operator.getitem:
        return "getitem"
    if target in PYTHON_OPS:
        return "sym." + PYTHON_OPS[target]
    name = str(target)
    if name.startswith("aten."):
        name = name[5:]
    return name.removesuffix(".default")


def _static(value, index: dict, where: str):
    """An fx argument as plain data: nodes -> Ref, lists -> tuples, dtypes -> DType, devices/layouts dropped."""
    import torch.fx

    if isinstance(value, torch.fx.Node):
        return Ref(index[value])
    if isinstance(value, (list, tuple)):
        return tuple(_static(v, index, where) for v in value)
    if isinstance(value, torch.dtype):
        return DType(str(value).removeprefix("torch."))
    if isinstance(value, (torch.device, torch.layout, torch.memory_format)):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CaptureError(f"the graph has an argument of type {type(value).__name__} {where}, which deepvis_jax cannot "
                       "store; please report it")  # fmt: skip


def _shape(val) -> tuple | None:
    if isinstance(val, torch.Tensor):
        return tuple(int(d) if static_dim(d) else -1 for d in val.shape)
    return None


def _module_stack(node) -> list[tuple[str, str]]:
    """[(call key, module path), ...] outermost first, without the root module."""
    stack = node.meta.get("nn_module_stack") or {}
    return [(key, path) for key, (path, _) in stack.items() if path]


def to_graph(ep, name: str, example_hw: tuple[int, int], spatial_dynamic: bool, dtype) -> tuple[GraphArchitecture,
                                                                                                 dict]:  # fmt: skip
    """The exported program as a `GraphArchitecture` and its weights ({torch name: numpy array})."""
    sig = ep.graph_signature
    kinds = {s.arg.name: s for s in sig.input_specs}
    tensors = {**ep.state_dict, **ep.constants}
    graph = ep.graph
    fx_nodes = [n for n in graph.nodes if n.op in ("placeholder", "call_function")
                and not (n.op == "call_function" and n.target in SKIPPED)]  # fmt: skip
    used = {a for n in graph.nodes for a in n.all_input_nodes}
    index: dict = {}
    nodes: list[Node] = []
    params: dict[str, np.ndarray] = {}
    stacks: list[list] = []
    user_inputs = [n for n in fx_nodes if n.op == "placeholder" and kinds[n.name].kind.name == "USER_INPUT"]
    if len(user_inputs) != 1:
        raise CaptureError(f"deepvis_jax imports networks that take one image tensor (N, 3, H, W); this graph takes "
                           f"{len(user_inputs)} inputs")  # fmt: skip
    for fx in fx_nodes:
        if fx.op == "placeholder" and fx not in used:
            continue
        val = fx.meta.get("val")
        if fx.op == "placeholder":
            spec = kinds[fx.name]
            if spec.kind.name == "USER_INPUT":
                node = Node("input", shape=_shape(val), dtype=str(val.dtype).removeprefix("torch."))
            else:
                t = tensors[spec.target].detach().cpu()
                if t.is_floating_point():
                    params[spec.target] = t.numpy()
                    node = Node("param", (spec.target,), shape=tuple(t.shape), dtype=str(t.dtype)[6:])
                else:
                    values = tuple(t.reshape(-1).tolist())
                    node = Node("constant", (DType(str(t.dtype)[6:]), tuple(t.shape), values),
                                shape=tuple(t.shape), dtype=str(t.dtype)[6:])  # fmt: skip
            stack = []
        else:
            op = _op_name(fx.target)
            stack = _module_stack(fx)
            path = stack[-1][1] if stack else ""
            if op not in OPS:
                where = f"module {path}" if path else "the top-level forward"
                raise CaptureError(f"the graph uses {op} (in {where}), which has no JAX lowering in deepvis_jax; "
                                   "replace that module or ask for the op")  # fmt: skip
            where = f"in {op} ({path or 'top level'})"
            args = _static(tuple(fx.args), index, where)
            kwargs = tuple((k, _static(v, index, where)) for k, v in fx.kwargs.items())
            node = Node(op, args, kwargs, path, _shape(val) if isinstance(val, torch.Tensor) else None,
                        str(val.dtype).removeprefix("torch.") if isinstance(val, torch.Tensor) else "")  # fmt: skip
        index[fx] = len(nodes)
        nodes.append(node)
        stacks.append(stack)
    nodes, params = _store_conv_weights_hwio(nodes, params)
    out_fx = [a for a in graph.output_node().args[0]]
    outputs = tuple(Ref(index[a]) for a in out_fx)
    keys = _output_keys(ep)
    layer_specs = _layers(graph, fx_nodes, index, nodes, stacks, out_fx, user_inputs[0], spatial_dynamic)
    num_classes = None
    if len(outputs) == 1 and keys is None and nodes[outputs[0].node].shape is not None:
        shape = nodes[outputs[0].node].shape
        num_classes = shape[1] if len(shape) == 2 and shape[1] > 0 else None
    min_hw, fixed = _input_sizes(ep, user_inputs[0], example_hw, spatial_dynamic)
    arch = GraphArchitecture(name, tuple(nodes), outputs, tuple(layer_specs), tuple(example_hw), fixed, min_hw,
                             keys, num_classes)  # fmt: skip
    return arch, params


def _store_conv_weights_hwio(nodes: list[Node], params: dict) -> tuple[list[Node], dict]:
    """Weights read only as 4-D convolution weights are stored (kh, kw, I, O), the layout the convolutions use."""
    readers: dict[int, list] = {}
    for i, n in enumerate(nodes):
        for k, a in enumerate(n.args):
            if isinstance(a, Ref):
                readers.setdefault(a.node, []).append((n.op, k))
        for _, a in n.kwargs:
            if isinstance(a, Ref):
                readers.setdefault(a.node, []).append((n.op, -1))
    out = list(nodes)
    for i, n in enumerate(nodes):
        if n.op == "param" and len(n.shape) == 4 and readers.get(i) and all(r == ("convolution", 1)
                                                                             for r in readers[i]):  # fmt: skip
            params[n.args[0]] = np.ascontiguousarray(params[n.args[0]].transpose(2, 3, 1, 0))
            out[i] = n._replace(kwargs=(("layout", "hwio"),), shape=tuple(params[n.args[0]].shape))
    return out, params


def _output_keys(ep) -> tuple | None:
    spec = ep.call_spec.out_spec
    while spec is not None and spec.type in (tuple, list) and len(spec.children_specs) == 1:
        spec = spec.children_specs[0]
    if spec is not None and spec.type is not None and issubclass(spec.type, dict):
        return tuple(str(k) for k in spec.context)
    return None


def _input_sizes(ep, x_node, example_hw, spatial_dynamic) -> tuple[tuple[int, int], tuple | None]:
    """(smallest (h, w) torch guarantees the graph for, the one allowed size of a static graph or None)."""
    if not spatial_dynamic:
        return tuple(example_hw), tuple(example_hw)
    shape = x_node.meta["val"].shape
    mins, maxs = [], []
    for d in shape[2:]:
        if static_dim(d):
            mins.append(int(d))
            maxs.append(int(d))
            continue
        vr = ep.range_constraints.get(d.node.expr)
        lower = int(vr.lower) if vr is not None and vr.lower is not None else 1
        upper = vr.upper if vr is not None else None
        mins.append(max(1, lower))
        maxs.append(int(upper) if getattr(upper, "is_Integer", False) else None)  # not int_oo
    if mins == maxs:  # the module checks its input size (a runtime assertion): one size only
        return tuple(mins), tuple(mins)
    return tuple(mins), None


# --------------------------------------------------------------------------------------------------------------
# Layers: module outputs that are one feature map
# --------------------------------------------------------------------------------------------------------------


def _layers(graph, fx_nodes, index, nodes, stacks, out_fx, x_fx, spatial_dynamic) -> list[LayerSpec]:
    regions: dict[str, list[int]] = {}
    paths: dict[str, str] = {}
    calls: dict[str, int] = {}
    for i, stack in enumerate(stacks):
        for key, path in stack:
            regions.setdefault(key, []).append(i)
            paths[key] = path
    for key, path in paths.items():
        calls[path] = calls.get(path, 0) + 1
    users: dict[int, set] = {}
    for i, n in enumerate(nodes):
        for j in _node_refs(n):
            users.setdefault(j, set()).add(i)
    graph_outputs = {index[a] for a in out_fx}
    x_shape = x_fx.meta["val"].shape
    sh, sw = (x_shape[2], x_shape[3])
    fx_of = {i: fx for fx, i in index.items()}
    specs = []
    for key, members in regions.items():
        path = paths[key]
        if calls[path] != 1:  # a module called more than once (a shared ReLU): its hook output is ambiguous
            continue
        inside = set(members)
        # a module's outputs: its tensors read outside it (sizes it computed and torch shares are no outputs)
        outs = [i for i in members if nodes[i].shape is not None and (i in graph_outputs or users.get(i, set()) - inside)]
        if len(outs) != 1:
            continue
        spec = _classify(path, outs[0], fx_of, nodes, sh, sw, spatial_dynamic)
        if spec is not None:
            specs.append((outs[0], -path.count("."), path, spec))
    specs.sort(key=lambda s: (s[0], s[1]))
    return [s[3] for s in specs]


def _node_refs(n: Node):
    def walk(o):
        if isinstance(o, Ref):
            yield o.node
        elif isinstance(o, tuple):
            for e in o:
                yield from walk(e)

    yield from walk(n.args)
    for _, v in n.kwargs:
        yield from walk(v)


def _free(d, sym) -> bool:
    return isinstance(d, torch.SymInt) and bool(d.node.expr.free_symbols & sym)


def _classify(path, i, fx_of, nodes, sh, sw, spatial_dynamic) -> LayerSpec | None:
    """The layer kind of node `i` (a module's output) from its shape, or None when it is not a feature map.

    With a dynamic capture the symbolic sizes say which axes follow the input's height and width: (N, C, h, w)
    is a conv map, (N, h, w, C) a channels-last map, (N, T, D) whose T grows with both a token sequence. With a
    static capture (one input size) the sizes are compared with the maps of the graph's convolutions and pools."""
    val = fx_of[i].meta.get("val")
    if not isinstance(val, torch.Tensor) or not val.is_floating_point():
        return None
    shape = val.shape
    if spatial_dynamic:
        H, W = sh.node.expr.free_symbols, sw.node.expr.free_symbols
        grows = [(_free(d, H), _free(d, W)) for d in shape]
        fixed = [static_dim(d) for d in shape]
        if len(shape) == 4 and grows[2][0] and grows[3][1] and fixed[1]:
            return LayerSpec(path, i, "nchw", int(shape[1]))
        if len(shape) == 4 and grows[1][0] and grows[2][1] and fixed[3]:
            return LayerSpec(path, i, "nhwc", int(shape[3]))
        if len(shape) == 3 and grows[1][0] and grows[1][1] and fixed[2]:
            return _tokens(path, i, fx_of, nodes, shape, dynamic=True)
        return None
    shape = tuple(int(d) for d in shape)
    maps = _static_map_sizes(i, fx_of, nodes)
    if len(shape) == 4 and shape[2:] in maps and shape[2] * shape[3] > 1:
        return LayerSpec(path, i, "nchw", shape[1])
    if len(shape) == 4 and any(shape[1] * k == h and shape[2] * k == w for h, w in maps for k in (1, 2, 4, 8, 16, 32)):
        return LayerSpec(path, i, "nhwc", shape[3])
    if len(shape) == 3:
        return _tokens(path, i, fx_of, nodes, shape, dynamic=False)
    return None


def _static_map_sizes(i, fx_of, nodes) -> set:
    """(h, w) of the conv and pool outputs at or before node `i`."""
    out = set()
    for j in range(i + 1):
        if nodes[j].op in ("convolution", "max_pool2d_with_indices", "avg_pool2d") and j in fx_of:
            v = fx_of[j].meta.get("val")
            v = v[0] if isinstance(v, (tuple, list)) else v
            if isinstance(v, torch.Tensor) and v.ndim == 4:
                out.add((int(v.shape[2]), int(v.shape[3])))
    return out


def _tokens(path, i, fx_of, nodes, shape, dynamic: bool) -> LayerSpec | None:
    """A token sequence (N, extra + h*w, D) laid out on the patch grid of the nearest map before it (a conv's
    output, e.g. the patch embedding), the extra (class) tokens first."""
    import sympy

    T = shape[1]
    for j in range(i - 1, -1, -1):
        if nodes[j].op != "convolution" or j not in fx_of:
            continue
        v = fx_of[j].meta.get("val")
        if not isinstance(v, torch.Tensor) or v.ndim != 4:
            continue
        h, w = v.shape[2], v.shape[3]
        if dynamic:
            diff = sympy.simplify(_expr(T) - _expr(h) * _expr(w))
            extra = int(diff) if diff.is_Integer else None
        else:
            extra = int(T) - int(h) * int(w)
        if extra is not None and 0 <= extra <= MAX_EXTRA_TOKENS:
            return LayerSpec(path, i, "tokens", int(shape[2]), grid=j, skip=extra)
        return None
    return None


def _expr(d):
    return d.node.expr if isinstance(d, torch.SymInt) else d
