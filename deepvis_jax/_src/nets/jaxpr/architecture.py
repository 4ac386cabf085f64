"""A JAX network: its flattened program (`program.py`) as static, hashable data, run by one interpreter that
applies the rules of `rules.py` equation by equation (`JaxModule.apply`, the protocol every family's module has).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ...rules import PLAIN
from .program import RULES, Dim, Lit, Program, dim_value, pool_axes, primitive, thaw

Array = jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class JaxArchitecture:
    """A JAX network's program and layers: static, hashable (hash cached), equal by content.

    ``layout``: ``"NHWC"`` or ``"NCHW"`` (the function's images; the library always passes NHWC).
    ``fixed_hw``: the only input size the program takes (a function that traced only at its example size), or
    None. ``num_classes``: the width of a single 2-D output, or None. ``notes``: what the import changed (inlined
    custom_vjp forward passes, unrolled scans).
    """

    name: str
    program: Program
    layer_specs: tuple  # tuple[JaxLayer, ...]
    layout: str
    example_hw: tuple
    data: tuple  # for each var: does it depend on the image?
    fixed_hw: tuple | None = None
    num_classes: int | None = None
    notes: tuple = ()
    preprocessing: str = "imagenet"

    def __post_init__(self):
        p = self.program
        object.__setattr__(self, "_hash", hash((self.name, p.eqns, p.param_names, p.outputs, p.shapes,
                                                self.layer_specs, self.layout, self.example_hw, self.fixed_hw)))
        object.__setattr__(self, "_cache", {})

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        if not isinstance(other, JaxArchitecture) or self._hash != other._hash:
            return False
        return all(getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(self))

    def __repr__(self) -> str:
        return f"JaxArchitecture({self.name}, {len(self.program.eqns)} equations, {len(self.layer_specs)} layers)"

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # ---------------------------------------------------------------------------------------------- the protocol

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.layer_specs)

    @property
    def conv_layers(self) -> list[str]:
        return list(self.layers)

    def spec(self, name: str):
        return self._cached("specs", lambda: {s.name: s for s in self.layer_specs})[name]

    def channels(self, name: str) -> int:
        return self.spec(name).channels

    def module(self):
        return JaxModule(self)

    # ---------------------------------------------------------------------------------------------- program facts

    def producers(self) -> dict[int, int]:
        """{var: index of the equation that defines it}."""
        return self._cached("producers", lambda: {o: i for i, e in enumerate(self.program.eqns) for o in e.outs})

    def needed(self, targets: tuple[int, ...]) -> tuple[int, ...]:
        """The equations (indices, in order) that the vars `targets` depend on."""

        def make():
            prod, eqns = self.producers(), self.program.eqns
            seen, stack = set(), [prod[t] for t in targets if t in prod]
            while stack:
                i = stack.pop()
                if i not in seen:
                    seen.add(i)
                    stack.extend(prod[a] for a in eqns[i].ins if isinstance(a, int) and a in prod)
            return tuple(sorted(seen))

        return self._cached(("needed", targets), make)

    def rules_report(self) -> str:
        """Which equations got which rule (`program.RULES`), by primitive and scope; what the import changed."""
        counts: dict[str, dict[str, int]] = {}
        where: dict[str, list[str]] = {}
        for e in self.program.eqns:
            counts.setdefault(e.rule, {}).setdefault(_label(e), 0)
            counts[e.rule][_label(e)] += 1
            if e.rule == "nonlinear":
                where.setdefault(_label(e), []).append(e.scope.replace("/", ".") or "(top)")
        lines = [f"{self.name}: {len(self.program.eqns)} equations, {len(self.layer_specs)} layers"]
        for rule in RULES:
            if rule in counts:
                ops = ", ".join(f"{p} x{n}" for p, n in sorted(counts[rule].items()))
                lines.append(f"  {rule:10s} {ops}")
        for p, scopes in sorted(where.items()):
            shown = ", ".join(sorted(set(scopes))[:6]) + (" ..." if len(set(scopes)) > 6 else "")
            lines.append(f"  nonlinear {p} (true vjp) at: {shown}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    # ---------------------------------------------------------------------------------------------- input sizes

    def sizes(self, n: int, hw) -> dict:
        return {"b": int(n), "h": int(hw[0]), "w": int(hw[1])}

    def var_shape(self, v: int, hw, n: int = 1) -> tuple[int, ...]:
        return tuple(dim_value(d, self.sizes(n, hw)) for d in self.program.shapes[v])

    def input_error(self, hw) -> str | None:
        h, w = int(hw[0]), int(hw[1])
        if self.fixed_hw is not None and (h, w) != tuple(self.fixed_hw):
            fh, fw = self.fixed_hw
            return (f"{self.name} takes {fh}x{fw} inputs only (it traced at that size alone, e.g. a flatten and "
                    f"dense head); got {h}x{w}: resize the image to {fh}x{fw}")  # fmt: skip
        if not self._valid_at((h, w), None):
            lo = self.min_size()
            return f"an input of {h}x{w} pixels is too small for {self.name}; use at least {lo}x{lo} pixels"
        return None

    def check_input_hw(self, hw) -> None:
        err = self.input_error(hw)
        if err:
            raise ValueError(err)

    def _valid_at(self, hw, name: str | None) -> bool:
        """Whether every var up to layer `name` (None: the outputs) has a non-empty shape at an `hw` input."""
        targets = self._targets(name)

        def make():
            eqns = self.program.eqns
            for i in self.needed(targets):
                for v in eqns[i].outs:
                    if any(d < 1 for d in self.var_shape(v, hw)) and self.data[v]:
                        return False
            return True

        return self._cached(("valid", tuple(hw), targets), make)

    def _targets(self, name: str | None) -> tuple[int, ...]:
        if name is None:
            return tuple(o for o in self.program.outputs if isinstance(o, int))
        return (self.spec(name).var,)

    def layer_hw(self, name: str, hw) -> tuple[int, int]:
        hw = (int(hw[0]), int(hw[1]))
        if self.fixed_hw is not None:
            self.check_input_hw(hw)
        if not self._valid_at(hw, name):
            lo = self.min_size(name)
            raise ValueError(f"an input of {hw[0]}x{hw[1]} pixels is too small for layer {name} of {self.name}: its "
                             f"feature map vanishes; use at least {lo}x{lo} pixels")  # fmt: skip
        shape = self.var_shape(self.spec(name).var, hw)
        return (shape[1], shape[2]) if self.layout == "NHWC" else (shape[2], shape[3])

    def min_size(self, name: str | None = None) -> int:
        if self.fixed_hw is not None:
            return max(self.fixed_hw)

        def make():
            lo, hi = 1, max(self.example_hw)
            while lo < hi:
                mid = (lo + hi) // 2
                if self._valid_at((mid, mid), name):
                    hi = mid
                else:
                    lo = mid + 1
            return lo

        return self._cached(("min_size", name), make)

    # ---------------------------------------------------------------------------------------------- receptive fields

    def crops(self, name: str) -> bool:
        """Single units are projected on the whole image (no crop) for JAX networks."""
        return False


def _label(e) -> str:
    if e.prim == "activation":
        return dict(e.params)["kind"]
    return e.prim


# --------------------------------------------------------------------------------------------------------------
# The interpreter
# --------------------------------------------------------------------------------------------------------------


def _value(a, env: dict, dtype):
    if isinstance(a, Lit):
        if dtype is not None and np.issubdtype(np.dtype(a.dtype), np.floating):
            return jnp.asarray(a.value, dtype)
        return np.asarray(a.value, np.dtype(a.dtype))
    return env[a]


def _retype(v, dtype):
    """A parameter naming a float dtype means the model's working dtype (a float64 model stays float64); with
    dtype None (the model runs in the dtype it was traced in) every dtype stays as the function wrote it."""
    if dtype is None:
        return v
    if isinstance(v, np.dtype) and np.issubdtype(v, np.floating):
        return np.dtype(dtype)
    if type(v).__name__.endswith("DType") and hasattr(v, "type"):  # numpy dtype classes
        d = np.dtype(v)
        return np.dtype(dtype) if np.issubdtype(d, np.floating) else v
    return v


def _bind(e, vals: list, sizes: dict, dtype) -> list:
    params = {k: _retype(thaw(v, sizes), dtype) for k, v in e.params}
    if e.prim == "dim_as_value":
        return [jnp.asarray(params["dim"], jnp.int32 if not jax.config.jax_enable_x64 else jnp.int64)]
    if e.prim in ("relu", "activation"):  # one that no image reaches (a clip of constant indices): its plain value
        from ...activations import ACTIVATIONS

        if e.prim == "relu":
            return [jax.nn.relu(vals[0])]
        return [ACTIVATIONS[params["kind"]](vals[0], **dict(params["params"]))]
    p = primitive(e.prim)
    out = p.bind(*vals, **params)
    return list(out) if p.multiple_results else [out]


def _pool(ops, x: Array, e) -> Array:
    """A max `reduce_window` over axes a, b of a map of any rank, as ops.max_pool on NHWC: the other axes after
    the batch become the channels."""
    a, b = pool_axes(e)
    p = dict(e.params)
    rest = [k for k in range(1, x.ndim) if k not in (a, b)]
    perm = (0, a, b, *rest)
    inv = tuple(int(i) for i in np.argsort(perm))
    xt = jnp.transpose(x, perm) if perm != tuple(range(x.ndim)) else x
    moved = xt.shape
    xt = xt.reshape(moved[0], moved[1], moved[2], -1) if x.ndim != 4 else xt
    pads = (tuple(p["padding"][a]), tuple(p["padding"][b]))
    y = ops.max_pool(xt, (p["window_dimensions"][a], p["window_dimensions"][b]),
                     (p["window_strides"][a], p["window_strides"][b]), pads)  # fmt: skip
    y = y.reshape(y.shape[0], y.shape[1], y.shape[2], *moved[3:]) if x.ndim != 4 else y
    return jnp.transpose(y, inv) if perm != tuple(range(x.ndim)) else y


def run_dtype(arch: JaxArchitecture, x: Array):
    """None when `x` has the dtype the program was traced in (it then runs as traced, float32 islands included);
    else `x`'s dtype, which every float dtype the program names then means (a float32 trace run in float64)."""
    return None if np.dtype(x.dtype) == np.dtype(arch.program.dtypes[0]) else x.dtype


def run(arch: JaxArchitecture, variables: dict, x: Array, eqn_ids, ops=PLAIN, hook=None) -> dict:
    """Evaluate the equations `eqn_ids` (in order) on normalized NHWC images `x`; returns every var's value.
    `hook(var, value) -> value`, when given, may replace each equation's result (attribution's gradient at a
    layer adds a zero there)."""
    prog = arch.program
    params = variables["params"]
    dtype = run_dtype(arch, x)
    sizes = arch.sizes(x.shape[0], x.shape[1:3])
    env: dict[int, Any] = {0: x}  # the program transposes a channels-first function's input itself
    for k, name in enumerate(prog.param_names):
        v = params[name]
        env[k + 1] = v
    for i in eqn_ids:
        e = prog.eqns[i]
        vals = [_value(a, env, dtype) for a in e.ins]
        rule = e.rule
        if rule == "relu":
            d = next(k for k, a in enumerate(e.ins) if isinstance(a, int) and arch.data[a])
            outs = [ops.relu(vals[d])]
        elif rule == "activation":
            p = dict(e.params)
            outs = [ops.activation(vals[0], p["kind"], **dict(p["params"]))]
        elif rule == "pool":
            outs = [_pool(ops, vals[0], e)]
        elif rule == "nonlinear":
            dpos = [k for k, a in enumerate(e.ins) if isinstance(a, int) and arch.data[a]]

            def fn(*dvals, e=e, vals=vals, dpos=dpos):
                full = list(vals)
                for k, v in zip(dpos, dvals):
                    full[k] = v
                return tuple(_bind(e, full, sizes, dtype))

            outs = list(ops.linearized(fn, *(vals[k] for k in dpos)))
        else:  # const, linear, decision
            outs = _bind(e, vals, sizes, dtype)
        for o, v in zip(e.outs, outs):
            env[o] = v if hook is None else hook(o, v)
    return env


def layer_array(arch: JaxArchitecture, v: Array) -> Array:
    return v if arch.layout == "NHWC" else jnp.transpose(v, (0, 2, 3, 1))


def _pre(arch: JaxArchitecture, var: int) -> int:
    """The input of the activation that produces `var`, or `var`."""
    i = arch.producers().get(var)
    if i is None:
        return var
    e = arch.program.eqns[i]
    if e.rule in ("relu", "activation"):
        return next(a for a in e.ins if isinstance(a, int) and arch.data[a])
    return var


class JaxModule:
    """Runs a `JaxArchitecture`: ``apply(variables, x, upto=None, channels=None, pre_relu=False, collect=False,
    ops=PLAIN)`` as every family's module does (``x``: normalized (N, H, W, 3) images)."""

    def __init__(self, arch: JaxArchitecture):
        self.arch = arch

    def init(self, *args, **kwargs):
        raise TypeError(f"{self.arch.name} is an imported JAX network: its weights come from dv.from_jax / "
                        "dv.from_flax or a saved file (dv.load_model(path)), not from an initializer")

    def apply(self, variables: dict, x: Array, upto: str | None = None, channels: Array | None = None,
              pre_relu: bool = False, collect: bool = False, ops=PLAIN, crop=None):  # fmt: skip
        arch = self.arch
        if crop is not None:
            raise ValueError(f"{arch.name}: JAX networks project single units on the whole image, not on crops")
        arch.check_input_hw(x.shape[1:3])
        if upto is not None:
            spec = arch.spec(upto)
            var = _pre(arch, spec.var) if pre_relu else spec.var
            below = ()
            if collect:
                k = arch.layers.index(upto) + (0 if pre_relu else 1)
                below = arch.layer_specs[:k]
            targets = (var,) + tuple(s.var for s in below)
            env = run(arch, variables, x, arch.needed(targets), ops)
            y = layer_array(arch, env[var])
            y = y if channels is None else y[..., channels]
            if collect:
                return y, {s.name: layer_array(arch, env[s.var]) for s in below}
            return y
        outs_ids = arch.program.outputs
        targets = tuple(o for o in outs_ids if isinstance(o, int))
        if collect:
            targets += tuple(s.var for s in arch.layer_specs)
        env = run(arch, variables, x, arch.needed(targets), ops)
        outs = tuple(_value(o, env, run_dtype(arch, x)) for o in outs_ids)
        out = outs[0] if len(outs) == 1 else outs
        if collect:
            return out, {s.name: layer_array(arch, env[s.var]) for s in arch.layer_specs}
        return out


def strict_check(arch: JaxArchitecture) -> None:
    """Raise (one line) where an equation nonlinear in the image has no rule (`strict=True`)."""
    for e in arch.program.eqns:
        if e.rule == "nonlinear":
            raise ValueError(f"strict: {e.prim} at {e.scope.replace('/', '.') or 'the top level'} of {arch.name} is nonlinear in the "
                             "image and has no projection rule (it would pass its true vjp); pass strict=False to "
                             "accept that, or write it with a jax.nn activation")  # fmt: skip


__all__ = ["JaxArchitecture", "JaxModule", "Dim", "run", "strict_check"]
