"""A JAX network's program as plain JSON text (the program part of a saved JAX network): primitive names, their
parameters and scopes; nothing executes when it is read, and neither the user's code nor the framework it was
written in is needed to run it again."""

from __future__ import annotations

import enum
import json

import numpy as np

from .architecture import JaxArchitecture
from .program import Dim, Eqn, JaxLayer, Lit, Program, primitive

FORMAT_VERSION = 1


def _named_types() -> dict:
    """Parameter types stored by name: lax's dimension-number records and enums."""
    from jax import lax

    types = {t.__name__: t for t in (lax.ConvDimensionNumbers, lax.GatherDimensionNumbers,
                                     lax.ScatterDimensionNumbers, lax.GatherScatterMode, lax.Precision,
                                     lax.RoundingMethod)}  # fmt: skip
    try:
        from jax._src.lax.lax import AccuracyMode  # noqa: F401 - present in some versions only
    except ImportError:  # pragma: no cover
        pass
    return types


def _encode(obj):
    if isinstance(obj, Dim):
        return {"dim": obj.expr}
    if isinstance(obj, Lit):
        return {"lit": _encode(obj.value), "dtype": obj.dtype}
    if isinstance(obj, enum.Enum):
        return {"enum": type(obj).__name__, "value": obj.name}
    if isinstance(obj, np.dtype) or (type(obj).__name__.endswith("DType") and hasattr(obj, "type")):
        return {"np_dtype": str(np.dtype(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "_fields"):  # NamedTuple records
        return {"record": type(obj).__name__, "fields": [_encode(v) for v in obj]}
    if hasattr(obj, "__dataclass_fields__"):
        return {"record": type(obj).__name__,
                "kwargs": {k: _encode(getattr(obj, k)) for k in obj.__dataclass_fields__}}
    if isinstance(obj, (tuple, list)):
        return [_encode(o) for o in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a parameter of type {type(obj).__name__}")


def _decode(obj, types: dict):
    if isinstance(obj, dict):
        if "dim" in obj:
            return Dim(obj["dim"])
        if "lit" in obj:
            return Lit(_decode(obj["lit"], types), obj["dtype"])
        if "enum" in obj:
            return getattr(types[obj["enum"]], obj["value"])
        if "np_dtype" in obj:
            return np.dtype(obj["np_dtype"])
        if "record" in obj:
            cls = types[obj["record"]]
            if "fields" in obj:
                return cls(*(_decode(v, types) for v in obj["fields"]))
            return cls(**{k: _decode(v, types) for k, v in obj["kwargs"].items()})
        raise ValueError(f"unknown entry {sorted(obj)} in a stored program")
    if isinstance(obj, list):
        return tuple(_decode(o, types) for o in obj)
    return obj


def to_json(arch: JaxArchitecture) -> str:
    """The architecture as JSON text; TypeError (one line) naming a primitive parameter that cannot be stored."""
    p = arch.program
    eqns = []
    for e in p.eqns:
        try:
            eqns.append([e.prim, _encode(e.ins), list(e.outs), [[k, _encode(v)] for k, v in e.params], e.scope, e.rule])
        except TypeError as err:
            raise TypeError(f"{e.prim} at {e.scope or 'the top level'}: {err}; this network cannot be saved") from None
    return json.dumps({
        "version": FORMAT_VERSION, "name": arch.name, "eqns": eqns, "param_names": list(p.param_names),
        "outputs": _encode(p.outputs), "shapes": _encode(p.shapes), "dtypes": list(p.dtypes),
        "symbolic": p.symbolic, "layers": [list(s) for s in arch.layer_specs], "layout": arch.layout,
        "example_hw": list(arch.example_hw), "data": list(arch.data),
        "fixed_hw": None if arch.fixed_hw is None else list(arch.fixed_hw), "num_classes": arch.num_classes,
        "notes": list(arch.notes), "preprocessing": arch.preprocessing,
    }, separators=(",", ":"))  # fmt: skip


def from_json(text: str) -> JaxArchitecture:
    """The architecture `to_json` wrote; ValueError (one line) for text that is not one, or names a primitive
    this JAX version does not have."""
    d = json.loads(text)
    if not isinstance(d, dict) or d.get("version") != FORMAT_VERSION:
        raise ValueError(f"not a stored JAX program of version {FORMAT_VERSION}")
    types = _named_types()
    eqns = []
    for prim, ins, outs, params, scope, rule in d["eqns"]:
        if prim not in ("relu", "activation", "dim_as_value"):
            primitive(prim)  # one line if this JAX has no such primitive
        eqns.append(Eqn(prim, _decode(ins, types), tuple(outs),
                        tuple((k, _decode(v, types)) for k, v in params), scope, rule))  # fmt: skip
    prog = Program(tuple(eqns), tuple(d["param_names"]), _decode(d["outputs"], types), _decode(d["shapes"], types),
                   tuple(d["dtypes"]), d["symbolic"])  # fmt: skip
    return JaxArchitecture(
        name=d["name"], program=prog, layer_specs=tuple(JaxLayer(*s) for s in d["layers"]), layout=d["layout"],
        example_hw=tuple(d["example_hw"]), data=tuple(d["data"]),
        fixed_hw=None if d["fixed_hw"] is None else tuple(d["fixed_hw"]), num_classes=d["num_classes"],
        notes=tuple(d["notes"]), preprocessing=d["preprocessing"],
    )  # fmt: skip
