"""A graph as plain JSON text (the graph part of a saved graph network): nothing executes when it is read."""

from __future__ import annotations

import json

from .architecture import GraphArchitecture, LayerSpec, Node, Ref, stored_preprocessing
from .values import OPS, DType



FORMAT_VERSION = 2  # of the JSON below; 2 added "preprocessing" (version 1, still read, means "imagenet")
READABLE = (1, 2)


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
        "preprocessing": (arch.preprocessing if isinstance(arch.preprocessing, str)
                          else {k: list(v) if isinstance(v, tuple) else v for k, v in arch.preprocessing}),
    }, separators=(",", ":"))  # fmt: skip


def from_json(text: str) -> GraphArchitecture:
    """The architecture `to_json` wrote; ValueError (one line) for text that is not one, or names an op this
    version cannot run."""
    d = json.loads(text)
    if not isinstance(d, dict) or d.get("version") not in READABLE:
        raise ValueError(f"not a stored graph of version {' or '.join(map(str, READABLE))}")
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
                             opt(d["output_keys"]), d["num_classes"],
                             stored_preprocessing(d.get("preprocessing", "imagenet")))  # fmt: skip
