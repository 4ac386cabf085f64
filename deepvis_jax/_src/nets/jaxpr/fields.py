"""Receptive fields of a JAX program's vars, from its convolution, window and slicing primitives.

Each var that depends on the image gets a `Field` with the positions of its two spatial axes, or `GLOBAL` (it sees
the whole image: after a reduction over space, a dense layer on a flattened map, a reshape that moves the spatial
axes, or any primitive not listed here). Elementwise primitives merge their operands' fields (the union of the
windows, `graph.fields._merge`); an operand broadcast along space (a per-channel gate computed from the whole map)
makes the result `GLOBAL`.
"""

from __future__ import annotations

from ..graph.architecture import GLOBAL, Field
from ..graph.fields import _merge, _window_field
from .program import AFFINE

_ELEMENTWISE = frozenset({
    "add", "sub", "mul", "div", "neg", "max", "min", "relu", "activation", "select_n", "convert_element_type",
    "copy", "copy_p", "add_any", "exp", "expm1", "log", "log1p", "tanh", "logistic", "erf", "erfc", "sqrt", "rsqrt",
    "integer_pow", "pow", "abs", "sign", "square", "clamp", "ge", "gt", "le", "lt", "eq", "ne", "and", "or", "not",
    "reduce_precision", "stop_gradient", "nextafter", "atan2", "sin", "cos", "floor", "ceil", "round", "is_finite",
})  # fmt: skip


def var_fields(arch) -> dict:
    """{var: (Field, (axis_h, axis_w)) or GLOBAL} for every var that depends on the image."""
    prog = arch.program
    shape = {v: arch.var_shape(v, arch.example_hw, n=2) for v in range(len(prog.shapes))}
    out: dict = {0: (Field(1, 1, 1, 1, 0, 0), (1, 2))}
    for e in prog.eqns:
        if e.rule == "const":
            continue
        result = _eqn_field(e, out, shape)
        for o in e.outs:
            out[o] = result if arch.data[o] else None
    return out


def _eqn_field(e, fields: dict, shape: dict):
    data_ins = [a for a in e.ins if isinstance(a, int) and a in fields and fields[a] is not None]
    if not data_ins or any(fields[a] == GLOBAL for a in data_ins):
        return GLOBAL
    p = dict(e.params)
    out_shape = shape.get(e.outs[0]) if e.outs else None
    if out_shape is None:
        return GLOBAL
    if e.prim == "concatenate" and p["dimension"] in {ax for a in data_ins for ax in fields[a][1]}:
        return GLOBAL
    if e.prim in _ELEMENTWISE or e.prim == "concatenate":
        merged, axes = [], None
        for a in data_ins:
            f, ax = fields[a]
            sa = shape[a]
            if len(sa) != len(out_shape):
                return GLOBAL
            if e.prim != "concatenate" and (sa[ax[0]] == 1 and out_shape[ax[0]] != 1 or sa[ax[1]] == 1 and out_shape[ax[1]] != 1):
                return GLOBAL  # a value constant over space, broadcast over the map
            if axes is not None and ax != axes:
                return GLOBAL
            axes = ax
            merged.append(f)
        f = _merge(merged)
        return GLOBAL if f == GLOBAL else (f, axes)
    if len(data_ins) != 1:
        return GLOBAL
    f, (ah, aw) = fields[data_ins[0]]
    src = shape[data_ins[0]]
    if e.prim == "transpose":
        perm = list(p["permutation"])
        return f, (perm.index(ah), perm.index(aw))
    if e.prim == "conv_general_dilated" and e.ins[0] == data_ins[0]:
        lhs, rhs, outs = p["dimension_numbers"]
        if (lhs[2], lhs[3]) != (ah, aw) or any(d != 1 for d in p["lhs_dilation"]) or p["batch_group_count"] != 1:
            return GLOBAL
        kernel = shape.get(e.ins[1]) or ()
        if not kernel:
            return None  # pragma: no cover
        k = (kernel[rhs[2]], kernel[rhs[3]])
        pads = [lo for lo, _ in p["padding"]]
        return _window_field(f, k, p["window_strides"], pads, p["rhs_dilation"]), (outs[2], outs[3])
    if e.prim.startswith("reduce_window") or e.prim == "pool":
        win, st, pads = p["window_dimensions"], p["window_strides"], p["padding"]
        if any(win[k] != 1 or st[k] != 1 for k in range(len(win)) if k not in (ah, aw)):
            return GLOBAL
        if any(d != 1 for d in (*p.get("base_dilation", ()), *p.get("window_dilation", ()))):
            return GLOBAL
        return _window_field(f, (win[ah], win[aw]), (st[ah], st[aw]), (pads[ah][0], pads[aw][0])), (ah, aw)
    if e.prim == "pad":
        cfg = p["padding_config"]
        if any(cfg[k][2] != 0 for k in (ah, aw)):
            return GLOBAL
        return Field(f.sh, f.sw, f.jh, f.jw, f.oh - f.jh * cfg[ah][0], f.ow - f.jw * cfg[aw][0]), (ah, aw)
    if e.prim == "slice":
        start, strides = p["start_indices"], p["strides"] or (1,) * len(src)
        return Field(f.sh, f.sw, f.jh * strides[ah], f.jw * strides[aw], f.oh + f.jh * start[ah],
                     f.ow + f.jw * start[aw]), (ah, aw)  # fmt: skip
    if e.prim == "reshape":
        # kept where the dimensions up to the spatial axes are unchanged (a channel split or merge after them)
        last = max(ah, aw)
        if tuple(out_shape[: last + 1]) == tuple(src[: last + 1]):
            return f, (ah, aw)
        return GLOBAL
    if e.prim == "broadcast_in_dim":
        dims = p["broadcast_dimensions"]
        if src[ah] == out_shape[dims[ah]] and src[aw] == out_shape[dims[aw]]:
            return f, (dims[ah], dims[aw])
        return GLOBAL
    if e.prim == "dot_general" and e.ins[0] == data_ins[0]:
        (lc, rc), (lb, rb) = p["dimension_numbers"]
        if lb or ah in lc or aw in lc:
            return GLOBAL
        free = [d for d in range(len(src)) if d not in lc]
        return f, (free.index(ah), free.index(aw))
    if e.prim in ("reduce_sum", "reduce_max", "reduce_min", "argmax", "argmin", "cumsum", "cumprod", "cummax"):
        axes = p.get("axes", (p.get("axis"),))
        if ah in axes or aw in axes:
            return GLOBAL
        keep = [d for d in range(len(src)) if d not in axes]
        return f, (keep.index(ah), keep.index(aw))
    if e.prim in AFFINE:  # other affine ops (rev, dynamic_update_slice, ...): not traced here
        return GLOBAL
    return GLOBAL


def layer_field(arch, name: str):
    """A layer's `Field` (its map's spatial axes are the ones the field tracked), or GLOBAL."""
    spec = arch.spec(name)
    entry = arch._cached("fields", lambda: var_fields(arch)).get(spec.var)
    if entry is None or entry == GLOBAL:
        return GLOBAL
    f, axes = entry
    want = (1, 2) if arch.layout == "NHWC" else (2, 3)
    if axes != want or f.sh != f.sw or f.jh != f.jw or f.oh != f.ow:
        return GLOBAL
    return f
