"""A JAX function as plain, hashable data: its jaxpr flattened to one list of primitive equations, each with the rule
that projections apply to it, and its layers (named scopes whose output is one feature map).

`trace` runs ``jax.make_jaxpr`` once, with the parameters as inputs and the image's batch and spatial sizes
symbolic (``jax.export.symbolic_shape``), so that one program serves every batch and image size the function
accepts; a function that only traces at its example size (a flatten + dense head) keeps its spatial size fixed.
Calls (``jit``, ``custom_jvp``, ``custom_vjp``, ``remat``) are inlined, a static ``scan`` is unrolled, and the
activations of ``jax.nn`` are recognised by their names (``relu``, ``relu6``, ``leaky_relu``, ``elu``, ``silu``,
``hard_silu``) and by their formulas (both forms of ``gelu``, ``max(x, 0)``). `classify` gives each equation
its rule (see `RULES`), from which inputs depend on the image.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ...activations import ACTIVATIONS

TAG = "deepvis_tag:"  # the named scope `tag` opens; what follows it is the layer's name
PATH = "deepvis_path:"  # the named scope an adapter opens around a module's call; what follows is its whole path


class Lit(NamedTuple):
    """A scalar literal operand: its value and dtype name."""

    value: Any
    dtype: str


class Dim(NamedTuple):
    """A size that follows the input's batch (``b``) or spatial size (``h``, ``w``): a symbolic expression."""

    expr: str


class Eqn(NamedTuple):
    """One primitive application. ``ins``: var ids (ints) or `Lit`s; ``outs``: var ids; ``params``: the
    primitive's parameters as sorted (name, value) pairs (sizes that follow the input as `Dim`); ``scope``: its
    named scope, its levels ``"/"``-separated (a layer's name joins them with ``"."``); ``rule``: one of `RULES` (set by `classify`)."""

    prim: str
    ins: tuple
    outs: tuple
    params: tuple
    scope: str
    rule: str = ""


RULES = {
    "const": "no input depends on the image: computed as it is",
    "linear": "affine in the image's values: bound as it is (its transpose is JAX's)",
    "decision": "a non-float result (comparison, index): bound as it is; consumers hold it at its recorded value",
    "relu": "a ReLU (jax.nn.relu, max(x, 0)): ops.relu, the method's rule",
    "activation": "a rectifier-like activation: ops.activation, the method's rule",
    "pool": "a 2-D max-pool (reduce_window_max): ops.max_pool, unpooled through its switches",
    "nonlinear": "nonlinear in the image: ops.linearized, its true vjp at the recorded point",
}


class JaxLayer(NamedTuple):
    """A visualizable layer: scope ``name`` whose output is var ``var``, a 4-D map with ``channels``."""

    name: str
    var: int
    channels: int


class TraceError(ValueError):
    """The function cannot be imported (one line says why and what to do)."""


# --------------------------------------------------------------------------------------------------------------
# Primitives by name (a stored program names them)
# --------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def primitives() -> dict:
    """Every JAX primitive of the loaded JAX modules, by name (lax, nn, numpy, special functions)."""
    import sys

    import jax.nn  # noqa: F401 - load the modules that define primitives
    import jax.scipy.special  # noqa: F401
    from jax.extend.core import Primitive

    found: dict = {}
    for mod_name, mod in sorted(sys.modules.items()):
        if not mod_name.startswith("jax._src") or mod is None:
            continue
        for v in list(vars(mod).values()):
            if isinstance(v, Primitive) and v.name not in found:
                found[v.name] = v
    return found


def primitive(name: str):
    p = primitives().get(name)
    if p is None:
        raise ValueError(f"this JAX version has no primitive {name!r} (the program was made with another one); "
                         "import the network again with this version")  # fmt: skip
    return p


# --------------------------------------------------------------------------------------------------------------
# Symbolic sizes
# --------------------------------------------------------------------------------------------------------------


def _is_dim(v) -> bool:
    return type(v).__name__ == "_DimExpr"


def _freeze(v):
    """A parameter value as hashable data: symbolic sizes as `Dim`, lists as tuples."""
    if _is_dim(v):
        return Dim(str(v))
    if isinstance(v, (tuple, list)) and not hasattr(v, "_fields"):
        return tuple(_freeze(e) for e in v)
    if hasattr(v, "_fields"):  # a NamedTuple (ConvDimensionNumbers)
        return type(v)(*(_freeze(e) for e in v))
    if isinstance(v, np.ndarray):
        raise TraceError(f"an array-valued primitive parameter (shape {v.shape}) cannot be stored")
    return v


@functools.lru_cache(maxsize=4096)
def _parse(expr: str):
    from jax import export

    return export.symbolic_shape(expr)[0]


def dim_value(d, sizes: dict) -> int:
    """A size (int or `Dim`) for concrete ``sizes`` {"b": n, "h": H, "w": W}."""
    if isinstance(d, Dim):
        e = _parse(d.expr)
        return int(e._evaluate(sizes)) if _is_dim(e) else int(e)
    return int(d)


def thaw(v, sizes: dict):
    """A frozen parameter with its `Dim`s evaluated at ``sizes``."""
    if isinstance(v, Dim):
        return dim_value(v, sizes)
    if isinstance(v, tuple) and not hasattr(v, "_fields"):
        return tuple(thaw(e, sizes) for e in v)
    if hasattr(v, "_fields") and not isinstance(v, (Lit,)):
        return type(v)(*(thaw(e, sizes) for e in v))
    return v


# --------------------------------------------------------------------------------------------------------------
# The program
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
    """A flattened jaxpr: var 0 is the image (in the function's layout), vars ``1..len(param_names)`` the
    parameters (``param_names``: their pytree paths, then ``const.k`` for the program's own constants).
    ``shapes[v]``/``dtypes[v]``: every var's shape (ints and `Dim`s) and dtype name. ``outputs``: var ids (or
    `Lit`s)."""

    eqns: tuple
    param_names: tuple
    outputs: tuple
    shapes: tuple
    dtypes: tuple
    symbolic: str  # "bhw" (batch and spatial sizes symbolic) | "b" (the spatial size fixed)


class _Builder:
    def __init__(self):
        self.eqns: list[Eqn] = []
        self.shapes: list = []
        self.dtypes: list = []
        self.consts: list = []  # (var id, value)
        self.notes: list[str] = []

    def new_var(self, aval) -> int:
        self.shapes.append(tuple(_freeze(d) for d in aval.shape))
        self.dtypes.append(str(aval.dtype))
        return len(self.shapes) - 1

    def const(self, value) -> int:
        value = np.asarray(value)
        v = self.new_var(jax.core.ShapedArray(value.shape, value.dtype))
        self.consts.append((v, value))
        return v

    def emit(self, prim: str, ins, outvars, params: dict, scope: str) -> list[int]:
        outs = [self.new_var(o.aval) for o in outvars]
        frozen = tuple(sorted((k, _freeze(v)) for k, v in params.items()))
        self.eqns.append(Eqn(prim, tuple(ins), tuple(outs), frozen, scope))
        return outs


_TRANSFORMED = re.compile(r"^\w+\((.*)\)$")


def _scope_of(eqn, prefix: str) -> str:
    """The equation's scope below `prefix`, "/"-separated. Transformations ("vmap(...)") and a framework's own
    scopes with dots ("eqx.nn.Conv2d") are not module paths; an adapter's `PATH` scope is a whole path."""
    parts = prefix.split("/") if prefix else []
    for p in str(eqn.source_info.name_stack).split("/"):
        while (m := _TRANSFORMED.match(p)) is not None:  # "vmap(name)": the scope inside a transformation
            p = m[1]
        if p.startswith(PATH):
            parts = p[len(PATH):].split(".")
        elif p and "(" not in p and "." not in p:
            parts.append(p)
    return "/".join(parts)


def _operand(b: _Builder, a, env: dict):
    from jax.extend.core import Literal

    if isinstance(a, Literal):
        val = np.asarray(a.val)
        if val.ndim == 0:
            return Lit(val.item(), str(val.dtype))
        return b.const(val)
    return env[a]


NAMED_ACTIVATIONS = ("relu", "relu6", "leaky_relu", "elu", "silu", "swish", "hard_silu", "hard_swish")


def _prims(jaxpr) -> list:
    """The primitive names of a jaxpr, its calls opened."""
    out = []
    for e in jaxpr.eqns:
        sub = e.params.get("jaxpr") or e.params.get("call_jaxpr")
        out.extend(_prims(getattr(sub, "jaxpr", sub)) if sub is not None else [e.primitive.name])
    return out


_JAX_NN = {"relu": "relu", "relu6": "relu6", "leaky_relu": "leaky_relu", "elu": "elu", "silu": "silu",
           "swish": "silu", "hard_silu": "hard_silu", "hard_swish": "hard_silu"}


def _probe_activation(name: str, closed, literals: list) -> tuple[str, tuple] | None:
    """The (kind, params) of a `jax.nn` activation called `name` whose jaxpr is `closed` (its data input first,
    the others the literals `literals`): None unless its primitives are those of ``jax.nn.<name>``."""
    fn = getattr(jax.nn, _JAX_NN[name])
    dtype = closed.in_avals[0].dtype
    try:
        ref = jax.make_jaxpr(lambda x: fn(x, *literals))(jnp.zeros((2,), dtype))
    except TypeError:
        return None
    inner = ref.jaxpr.eqns[0].params.get("jaxpr") or ref.jaxpr.eqns[0].params.get("call_jaxpr")
    if len(ref.jaxpr.eqns) != 1 or inner is None or _prims(getattr(inner, "jaxpr", inner)) != _prims(closed.jaxpr):
        return None
    lit = [float(v) for v in literals]
    if name == "relu":
        return "relu", ()
    if name == "relu6":
        return "hardtanh", (("max_val", 6.0), ("min_val", 0.0))
    if name == "leaky_relu":
        return "leaky_relu", (("negative_slope", lit[0] if lit else 0.01),)
    if name == "elu":
        return "elu", (("alpha", lit[0] if lit else 1.0),)
    if name in ("silu", "swish"):
        return "silu", ()
    return "hardswish", ()


def _inline(b: _Builder, closed_or_open, ins: list, scope: str, consts=()) -> list:
    jaxpr = getattr(closed_or_open, "jaxpr", closed_or_open)
    consts = getattr(closed_or_open, "consts", consts)
    env = {}
    for var, c in zip(jaxpr.constvars, consts):
        env[var] = b.const(c)
    for var, v in zip(jaxpr.invars, ins):
        env[var] = v
    _walk(b, jaxpr, env, scope)
    return [_operand(b, o, env) for o in jaxpr.outvars]


def _walk(b: _Builder, jaxpr, env: dict, prefix: str) -> None:
    for e in jaxpr.eqns:
        name = e.primitive.name
        scope = _scope_of(e, prefix)
        ins = [_operand(b, a, env) for a in e.invars]
        outs = None
        if name in ("pjit", "jit"):
            sub = e.params["jaxpr"]
            act = None
            if e.params.get("name") in NAMED_ACTIVATIONS and len(e.outvars) == 1 and all(
                    isinstance(a, Lit) for a in ins[1:]):  # fmt: skip
                act = _probe_activation(e.params["name"], sub, [a.value for a in ins[1:]])
            if act is not None:
                kind, params = act
                prim = "relu" if kind == "relu" else "activation"
                extra = {} if kind == "relu" else {"kind": kind, "params": params}
                outs = b.emit(prim, ins[:1], e.outvars, extra, scope)
            else:
                outs = _inline(b, sub, ins, scope)
        elif name == "custom_jvp_call":
            outs = _inline(b, e.params["call_jaxpr"], ins, scope)
        elif name in ("custom_vjp_call", "custom_vjp_call_jaxpr"):
            sub = e.params.get("call_jaxpr") or e.params.get("fun_jaxpr")
            b.notes.append(f"custom_vjp at {scope or 'the top'}: its forward inlined (the rules apply inside it)")
            outs = _inline(b, sub, ins, scope)
        elif name in ("remat", "checkpoint", "closed_call", "core_call", "remat2"):
            sub = e.params.get("jaxpr") or e.params.get("call_jaxpr")
            outs = _inline(b, sub, ins, scope)
        elif name == "scan":
            outs = _unroll_scan(b, e, ins, scope)
        elif name == "while":
            raise TraceError(f"a while loop at {scope or 'the top level'} cannot be projected (its trip count depends "
                             "on values); write it as a static loop (a Python for, or lax.scan with a fixed length)")
        elif name == "cond":
            k = _static_branch(e, ins, b)
            if k is None:
                raise TraceError(f"lax.cond at {scope.replace('/', '.') or 'the top level'}: a branch chosen by values "
                                 "cannot be projected; pick the branch in Python (from static arguments) instead")
            outs = _inline(b, e.params["branches"][k], ins[1:], scope)
        else:
            outs = b.emit(name, ins, e.outvars, dict(e.params), scope)
        for var, o in zip(e.outvars, outs):
            env[var] = o


def _static_branch(e, ins: list, b: _Builder) -> int | None:
    """The branch a `cond` takes when its index does not depend on values: a literal, or `lax.platform_dependent`'s
    platform index (the branch for the platform JAX runs on now); None otherwise."""
    n = len(e.params["branches"])
    index = ins[0]
    if isinstance(index, Lit):
        return min(max(int(index.value), 0), n - 1)
    platforms = e.params.get("branches_platforms")
    producer = next((q for q in reversed(b.eqns) if index in q.outs), None)
    if platforms is None or producer is None or producer.prim != "platform_index":
        return None
    here = jax.default_backend()
    for k, names in enumerate(platforms):
        if names is not None and here in names:
            b.notes.append(f"lax.platform_dependent: the {here} branch kept")
            return k
    return next((k for k, names in enumerate(platforms) if names is None), None)


def _unroll_scan(b: _Builder, e, ins: list, scope: str) -> list:
    """A `lax.scan` of static length, unrolled: the body inlined once per step, its xs sliced and ys stacked by
    equations traced from ordinary jnp calls."""
    p = e.params
    n_consts, n_carry, length = p["num_consts"], p["num_carry"], p["length"]
    body = p["jaxpr"]
    consts, carry, xs = ins[:n_consts], ins[n_consts:n_consts + n_carry], ins[n_consts + n_carry:]
    x_avals = [v.aval for v in e.invars[n_consts + n_carry:]]
    steps = range(length - 1, -1, -1) if p.get("reverse") else range(length)
    ys_steps = []
    for t in steps:
        xs_t = [_traced(b, lambda a, t=t: a[t], [x], [aval], scope)[0] for x, aval in zip(xs, x_avals)]
        outs = _inline(b, body, [*consts, *carry, *xs_t], scope)
        carry, ys = outs[:n_carry], outs[n_carry:]
        ys_steps.append(ys)
    if p.get("reverse"):
        ys_steps = ys_steps[::-1]
    stacked = []
    for k, var in enumerate(e.outvars[n_carry:]):
        parts = [s[k] for s in ys_steps]
        y_aval = jax.core.ShapedArray(var.aval.shape[1:], var.aval.dtype)
        stacked.append(_traced(b, lambda *a: jnp.stack(a), parts, [y_aval] * len(parts), scope)[0])
    return [*carry, *stacked]


def _traced(b: _Builder, fn, ins: list, avals: list, scope: str) -> list:
    """Emit the equations of ``fn`` (ordinary jnp code) applied to `ins`."""
    closed = jax.make_jaxpr(fn)(*(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals))
    return _inline(b, closed, ins, scope)


# --------------------------------------------------------------------------------------------------------------
# Activations written as formulas (jax.nn.gelu is not a named call)
# --------------------------------------------------------------------------------------------------------------

_SCALAR_OPS = frozenset({"add", "sub", "mul", "div", "neg", "integer_pow", "tanh", "erf", "erfc", "exp", "expm1",
                         "logistic", "convert_element_type", "max", "min", "clamp", "sqrt", "rsqrt", "gt",
                         "ge", "lt", "le", "select_n", "abs"})  # fmt: skip
_ANCHORS = frozenset({"tanh", "erf", "erfc", "logistic", "max", "min", "clamp", "select_n", "expm1"})
_GRID = np.linspace(-16, 16, 321)


def _region_function(eqns: list, x: int):
    def f(grid):
        env = {x: grid}
        for e in eqns:
            vals = [np.asarray(a.value, grid.dtype if _float(a.dtype) else np.dtype(a.dtype)) if isinstance(a, Lit)
                    else env[a] for a in e.ins]  # fmt: skip
            params = {k: v for k, v in e.params}
            if "new_dtype" in params and np.issubdtype(np.dtype(params["new_dtype"]), np.floating):
                params["new_dtype"] = grid.dtype
            env[e.outs[0]] = primitive(e.prim).bind(*vals, **params)
        return env[eqns[-1].outs[0]]

    return f


def _identify(f) -> tuple[str, tuple] | None:
    """The rectifier-like activation (`ACTIVATIONS`, with its parameters) that the elementwise function `f`
    computes on float64 values, or None. Parameters are read off its values (a clip's bounds, the slope at -1,
    the ELU's alpha) and the whole function is then checked on a grid."""
    got = np.asarray(f(jnp.asarray(_GRID)))
    if got.shape != _GRID.shape or not np.all(np.isfinite(got)):
        return None
    at = lambda v: float(got[np.argmin(np.abs(_GRID - v))])  # noqa: E731
    candidates = [("gelu", (("approximate", "tanh"),)), ("gelu", (("approximate", "none"),)), ("silu", ()),
                  ("hardswish", ())]  # fmt: skip
    lo, hi = float(got.min()), float(got.max())
    if hi < 12 and hi > lo:  # saturates inside the grid: a clip (ReLU6, hardtanh)
        candidates.append(("hardtanh", (("max_val", hi), ("min_val", lo))))
    slope = -at(-1.0)
    if 0 < slope < 1:
        candidates.append(("leaky_relu", (("negative_slope", slope),)))
    alpha = at(-1.0) / np.expm1(-1.0)
    if alpha > 0:
        candidates.append(("elu", (("alpha", alpha),)))
    for kind, params in candidates:
        want = np.asarray(ACTIVATIONS[kind](jnp.asarray(_GRID), **dict(params)))
        if np.allclose(got, want, rtol=1e-6, atol=1e-6):
            return kind, params
    return None


def fold_scalars(eqns: list, dtypes: list, outputs: tuple) -> tuple[list, tuple]:
    """Scalars computed from literals alone (``jnp.clip(x, 0, 6)`` converts its bounds) become literals, so that a
    formula's constants read as constants; returns the equations and the outputs."""
    known: dict[int, Lit] = {}
    out = []
    for e in eqns:
        ins = tuple(known.get(a, a) if isinstance(a, int) else a for a in e.ins)
        e = e._replace(ins=ins)
        if e.prim in ("convert_element_type", "neg", "add", "sub", "mul", "div") and len(e.outs) == 1 and all(
                isinstance(a, Lit) for a in ins):  # fmt: skip
            try:
                vals = [np.asarray(a.value, np.dtype(a.dtype)) for a in ins]
                v = np.asarray(primitive(e.prim).bind(*vals, **dict(e.params)))
            except Exception:  # noqa: BLE001 - keep the equation as it is
                v = None
            if v is not None and v.ndim == 0:
                known[e.outs[0]] = Lit(v.item(), dtypes[e.outs[0]])
                continue
        out.append(e)
    return out, tuple(known.get(o, o) if isinstance(o, int) else o for o in outputs)


def fuse_formulas(eqns: list, outputs: tuple) -> list:
    """Replace each run of elementwise equations that computes a rectifier-like activation of one var (both forms
    of ``jax.nn.gelu``, which is no named call; ReLU6 or hardtanh as a clip; hardswish as ``x * clip(x + 3, 0, 6)
    / 6``; leaky ReLU and ELU as ``where``) by one ``activation`` equation, so that the rules see it as the
    activation it is. A run is found around each equation of `_ANCHORS`, and checked numerically (`_identify`)."""
    uses: dict[int, list[int]] = {}
    for i, e in enumerate(eqns):
        for a in e.ins:
            if isinstance(a, int):
                uses.setdefault(a, []).append(i)
    final = {o for o in outputs if isinstance(o, int)}
    replace: dict[int, Eqn] = {}
    drop: set[int] = set()
    for mid, e in enumerate(eqns):
        if e.prim not in _ANCHORS or mid in drop:
            continue
        for start in range(max(0, mid - 6), mid + 1):
            first = eqns[start]
            xs = {a for a in first.ins if isinstance(a, int)}
            if len(xs) != 1 or start in drop or first.prim not in _SCALAR_OPS:
                continue
            (x,) = xs
            region, known = [], {x}
            for j in range(start, min(len(eqns), mid + 7)):
                ej = eqns[j]
                if j in drop or ej.prim not in _SCALAR_OPS or len(ej.outs) != 1 or not all(
                        isinstance(a, Lit) or a in known for a in ej.ins):  # fmt: skip
                    break
                region.append(j)
                known.add(ej.outs[0])
                if j < mid or len(region) < 2:
                    continue
                inner = [eqns[k].outs[0] for k in region[:-1]]
                if any(v in final or any(u not in region for u in uses.get(v, ())) for v in inner):
                    continue
                try:
                    found = _identify(_region_function([eqns[k] for k in region], x))
                except Exception:  # noqa: BLE001 - not a function of one array
                    found = None
                if found is not None:
                    kind, params = found
                    replace[region[0]] = Eqn("activation", (x,), (ej.outs[0],), (("kind", kind), ("params", params)),
                                             eqns[region[-1]].scope)  # fmt: skip
                    drop.update(region)
                    break
            if start in replace:
                break
    return [replace[i] if i in replace else e for i, e in enumerate(eqns) if i in replace or i not in drop]


# --------------------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------------------

# Primitives affine in all their operands jointly (given that every data operand is floating point).
AFFINE = frozenset({
    "add", "sub", "neg", "add_any", "reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims",
    "concatenate", "slice", "rev", "reduce_sum", "reduce_window_sum", "cumsum", "copy", "copy_p", "pad",
    "reduce_precision", "convert_element_type", "real", "imag", "conj", "dynamic_update_slice",
})
# Primitives affine in some operands only: {name: (positions that may depend on the image, at most this many)}.
PARTLY_AFFINE = {
    "mul": ((0, 1), 1),
    "dot_general": ((0, 1), 1),
    "conv_general_dilated": ((0, 1), 1),
    "div": ((0,), 1),
    "select_n": (None, None),  # the cases, not the predicate (position 0)
    "dynamic_slice": ((0,), 1),
    "gather": ((0,), 1),
    "scatter-add": ((0, 2), 2),
    "scatter_add": ((0, 2), 2),
}


def _float(dtype: str) -> bool:
    return np.issubdtype(np.dtype(dtype), np.floating)


def _is_zero(a) -> bool:
    return isinstance(a, Lit) and a.value == 0


def classify(eqns: list, dtypes: list, n_inputs: int) -> tuple[list, tuple]:
    """Each equation with its rule; and for each var whether it depends on the image (var 0)."""
    data = [False] * len(dtypes)
    data[0] = True
    out = []
    for e in eqns:
        dpos = [k for k, a in enumerate(e.ins) if isinstance(a, int) and data[a]]
        rule = _rule(e, dpos, dtypes)
        for o in e.outs:
            data[o] = rule != "const"
        out.append(e._replace(rule=rule))
    return out, tuple(data)


def _rule(e: Eqn, dpos: list, dtypes: list) -> str:
    if not dpos:
        return "const"
    if e.prim == "relu":
        return "relu"
    if e.prim == "activation":
        return "activation"
    if e.prim == "max" and len(e.ins) == 2 and len(dpos) == 1 and _is_zero(e.ins[1 - dpos[0]]):
        return "relu"
    float_data = all(_float(dtypes[e.ins[k]]) for k in dpos)
    if e.prim == "reduce_window_max" and float_data and pool_axes(e) is not None:
        return "pool"
    if not all(_float(dtypes[o]) for o in e.outs):
        return "decision"
    if float_data:
        if e.prim in AFFINE:
            return "linear"
        if e.prim == "select_n" and 0 not in dpos:
            return "linear"
        if e.prim in PARTLY_AFFINE and e.prim != "select_n":
            allowed, most = PARTLY_AFFINE[e.prim]
            if all(k in allowed for k in dpos) and len(dpos) <= most:
                return "linear"
        if e.prim == "integer_pow" and dict(e.params).get("y") == 1:
            return "linear"
    return "nonlinear"


def pool_axes(e: Eqn) -> tuple[int, int] | None:
    """The two spatial axes of a max `reduce_window` that pools two axes other than the first (batch) of a map of
    any rank, without dilation; None for any other window max (it is then `nonlinear`)."""
    p = dict(e.params)
    win, strides, pads = p["window_dimensions"], p["window_strides"], p["padding"]
    if len(win) < 3 or any(d != 1 for d in (*p["base_dilation"], *p["window_dilation"])):
        return None
    if any(isinstance(v, Dim) for v in (*win, *strides, *(x for pd in pads for x in pd))):
        return None
    moving = [k for k in range(len(win)) if win[k] != 1 or strides[k] != 1 or tuple(pads[k]) != (0, 0)]
    if 0 in moving or len(moving) != 2:
        return None
    return tuple(moving)


# --------------------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------------------


def find_layers(eqns: list, outputs: tuple, shapes: list, data: tuple, layout: str,
                modules: set | None = None) -> tuple:  # fmt: skip
    """The scopes whose output is one 4-D map that depends on the image, bottom to top (`JaxLayer`s); a
    `tag`'s output is the layer it names; a 4-D output of the function is the layer ``"output"`` (``"output.k"``:
    its k-th of several outputs). `modules`: the module paths where an adapter named the scopes (a list
    attribute holding modules is a scope level but no module, so no layer)."""
    defined_in: dict[str, list[int]] = {}
    scope_of_var: dict[int, str] = {}
    tags: dict[str, list[int]] = {}
    for e in eqns:
        parts = e.scope.split("/") if e.scope else []
        tag_at = next((k for k, p in enumerate(parts) if p.startswith(TAG)), None)
        if tag_at is not None:
            if e.prim == "copy" and tag_at == len(parts) - 1:
                tags.setdefault(parts[tag_at][len(TAG):], []).extend(e.outs)
            parts = parts[:tag_at]
        for o in e.outs:
            scope_of_var[o] = "/".join(parts)
        for k in range(1, len(parts) + 1):
            defined_in.setdefault("/".join(parts[:k]), []).extend(e.outs)
    used_by: dict[int, set] = {}
    for e in eqns:
        for a in e.ins:
            if isinstance(a, int):
                used_by.setdefault(a, set()).add(e.scope)
    final = {o for o in outputs if isinstance(o, int)}

    def inside(scope: str, s: str) -> bool:
        return s == scope or s.startswith(scope + "/")

    found = []
    for scope, vars_ in defined_in.items():
        outs = [v for v in vars_ if v in final or any(not inside(scope, s) for s in used_by.get(v, ()))]
        name = scope.replace("/", ".")
        if len(outs) == 1 and (modules is None or name in modules):
            found.append((name, outs[0]))
    for name, vars_ in tags.items():
        if len(vars_) == 1:
            found.append((name, vars_[0]))
    # the model's outputs are layers too where they are maps: "output", or "output.k" for several (as a torch
    # graph network's "output.KEY")
    out_vars = [o for o in outputs if isinstance(o, int)]
    out_names = {"output" if len(outputs) == 1 else f"output.{k}" for k in range(len(out_vars))}
    for k, o in enumerate(out_vars):
        found.append(("output" if len(outputs) == 1 else f"output.{k}", o))
    layers, names = [], set()
    for name, v in sorted(found, key=lambda nv: (nv[1], nv[0] in out_names, -len(nv[0]))):
        shape = shapes[v]
        if name in names or not data[v] or len(shape) != 4:
            continue
        c = shape[3] if layout == "NHWC" else shape[1]
        if isinstance(c, Dim):
            continue
        names.add(name)
        layers.append(JaxLayer(name, v, int(c)))
    # a scope called twice has two outputs and no layer; bottom to top by the var that holds each layer
    return tuple(layers)
