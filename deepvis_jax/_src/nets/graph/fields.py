"""Receptive fields of a graph's nodes over every path from the image; a node after an op that mixes all
positions sees the whole image (`GLOBAL`)."""

from __future__ import annotations

from .architecture import GLOBAL, Field, GraphArchitecture



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


def node_fields(arch: GraphArchitecture) -> tuple:
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
