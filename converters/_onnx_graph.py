"""Any ONNX graph (opsets 11-18) as a plain JAX function ``apply(params, x)`` with named scopes, imported through
`dv.from_jax` so that the rules of `rules.py` apply primitive by primitive as for every other import.

`lower(proto)` reads the graph once: float initializers and ``Constant`` nodes with more than one value become the
parameters (a pytree: one dict, by tensor name); every other constant (integer tensors, scalars) stays a NumPy
value, and shape arithmetic (``Shape``, ``Gather``, ``Concat``, ``Unsqueeze``, ``Slice``, ``Cast``, arithmetic on
shapes) is folded to Python ints (or JAX's symbolic sizes when the image size is symbolic) while the function is
traced. Each node runs inside a ``jax.named_scope``: its module path when the node's name is one (``torch.onnx``:
``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``) or its metadata records one (the dynamo exporter's
``pkg.torch.onnx.name_scopes``), its output's group when the output is named the Paddle way
(``conv2d_0.tmp_0`` -> ``conv2d_0``), else its own name for a convolution or an activation; the named scopes whose
output is one feature map are the model's layers. An operator not listed in `OPS` is refused with one line naming
it and its node.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

_MODULE_PART = re.compile(r"^[\w-][\w.-]*$")
_PADDLE = re.compile(r"^([A-Za-z_]\w*?)\.tmp_\d+$")
_LAYER_OPS = frozenset({"Conv", "ConvTranspose", "Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid",
                        "Softmax", "MaxPool", "Elu", "Selu", "PRelu", "Tanh", "Gemm"})  # fmt: skip
_INT_MAX = 2**62


class OnnxImportError(ValueError):
    """The graph cannot be lowered (one line: the operator or attribute and the node)."""


# --------------------------------------------------------------------------------------------------------------
# Names -> scopes
# --------------------------------------------------------------------------------------------------------------


def _sanitize(s: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", s).strip("_")
    return s or "node"


def module_path(node_name: str) -> str | None:
    """The module path of a torch.onnx node name (``/features/features.0/Conv`` -> ``features.0``;
    ``/layer2/layer2.0/downsample/downsample.0/Conv`` -> ``layer2.0.downsample.0``), or None."""
    if not node_name.startswith("/"):
        return None
    parts = node_name.strip("/").split("/")[:-1]
    if not parts or not all(_MODULE_PART.match(p) for p in parts):
        return None
    full = ""
    for p in parts:
        head = p.rsplit(".", 1)[0] if "." in p else None
        if head is not None and (full == head or full.endswith("." + head)):
            full = full[: len(full) - len(head)] + p
        else:
            full = f"{full}.{p}" if full else p
    return ".".join(_sanitize(q) for q in full.split("."))


def _dynamo_path(node) -> str | None:
    """The module path that torch.onnx's dynamo exporter records in a node's metadata (``pkg.torch.onnx.name_scopes``:
    ``['', 'layer1', 'layer1.0', 'layer1.0.relu', 'relu_1']`` -> ``layer1.0.relu``), or None."""
    import ast

    for p in getattr(node, "metadata_props", ()):
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(p.value)
            except (ValueError, SyntaxError):
                return None
            mods = [s for s in scopes[:-1] if isinstance(s, str) and s and _MODULE_PART.match(s)]
            return ".".join(_sanitize(q) for q in mods[-1].split(".")) if mods else None
    return None


def node_scope(node) -> tuple[str, bool]:
    """(scope, is_path): the named scope a node runs in ("" for none); is_path: a module path ('.'-separated)."""
    path = module_path(node.name) or _dynamo_path(node)
    if path:
        return path, True
    out = node.output[0] if node.output else ""
    m = _PADDLE.match(out)
    if m:
        return _sanitize(m[1]), False
    if node.op_type in _LAYER_OPS:
        return _sanitize(node.name or out), False
    return "", False


# --------------------------------------------------------------------------------------------------------------
# Values: a NumPy array (static: known while tracing, shapes and constants) or a JAX array (traced)
# --------------------------------------------------------------------------------------------------------------


def _is_static(v) -> bool:
    return isinstance(v, (np.ndarray, np.generic))


def _ints(v) -> list:
    """A static 1-D int tensor as Python ints (symbolic sizes kept as they are)."""
    return [e if type(e).__name__ == "_DimExpr" else int(e) for e in np.asarray(v).reshape(-1).tolist()]


def _floats(v) -> list[float]:
    return [float(e) for e in np.asarray(v).reshape(-1)]


class _Ctx:
    def __init__(self, node, where: str):
        self.node = node
        self.where = where
        import onnx

        self.attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def fail(self, what: str):
        raise OnnxImportError(f"{self.where}: {what} at node {self.node.name or self.node.output[0]!r} "
                              f"({self.node.op_type})")  # fmt: skip

    def attr(self, name, default=None):
        v = self.attrs.get(name, default)
        if isinstance(v, bytes):
            v = v.decode()
        return v

    def f(self, name: str, default: float) -> float:
        """A float attribute as the value the exporter meant: ONNX stores float32, so 0.001 arrives as
        0.0010000000475; the shortest decimal that rounds to it (1/6 for a hardsigmoid's alpha) gives float64 models
        the exact constant."""
        v = self.attrs.get(name)
        return _intended(v) if v is not None else float(default)

    def static(self, v, what: str):
        if v is None:
            return None
        if not _is_static(v):
            self.fail(f"{what} depends on the image (it must be a constant or computed from shapes)")
        return v


def _intended(v: float) -> float:
    f32 = np.float32(v)
    if f32 == np.float32(1 / 6):
        return 1 / 6
    return float(str(f32))


def _jnp():
    import jax.numpy as jnp

    return jnp


def _as_jax(v, like=None):
    jnp = _jnp()
    if not _is_static(v):
        return v
    a = np.asarray(v)
    if a.dtype == object:
        return jnp.asarray(_ints(a), dtype=jnp.int64 if _x64() else jnp.int32).reshape(a.shape)
    if like is not None and np.issubdtype(a.dtype, np.floating):
        return jnp.asarray(a, like.dtype)
    return jnp.asarray(a)


def _x64() -> bool:
    import jax

    return bool(jax.config.jax_enable_x64)


def _same_rank(a, b):
    """NumPy broadcasting made explicit (JAX here raises on implicit rank promotion): leading axes of size 1."""
    na, nb = np.ndim(a), np.ndim(b)
    if na < nb and not isinstance(a, (int, float)):
        a = a.reshape((1,) * (nb - na) + tuple(a.shape))
    elif nb < na and not isinstance(b, (int, float)):
        b = b.reshape((1,) * (na - nb) + tuple(b.shape))
    return a, b


def _binary(op: str, a, b):
    """Elementwise Add/Sub/Mul/Div/Pow: NumPy on two static operands (shape arithmetic, integer division as
    ONNX's truncation), else JAX, a static scalar as a Python number (a literal of the traced program)."""
    if _is_static(a) and _is_static(b):
        x, y = np.asarray(a), np.asarray(b)
        if op == "Div" and (x.dtype == object or np.issubdtype(x.dtype, np.integer)):
            return np.asarray(x // y) if x.dtype == object else np.asarray(np.trunc(x / y).astype(x.dtype))
        return np.asarray({"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
                           "Pow": np.power}[op](x, y))  # fmt: skip
    jnp = _jnp()

    def scalar_or_array(s, t):
        s = np.asarray(s)
        if s.size == 1 and s.ndim <= t.ndim:
            v = s.reshape(()).item()
            return float(v) if jnp.issubdtype(t.dtype, jnp.floating) else v
        return _as_jax(s, t)

    if _is_static(a):
        a = scalar_or_array(a, b)
    if _is_static(b):
        if op == "Pow":
            e = np.asarray(b).reshape(-1)
            if e.size == 1 and float(e[0]).is_integer() and abs(e[0]) <= 4:
                import jax

                return jax.lax.integer_pow(a, int(e[0]))
        b = scalar_or_array(b, a)
    a, b = _same_rank(a, b)
    if op == "Add":
        return a + b
    if op == "Sub":
        return a - b
    if op == "Mul":
        return a * b
    if op == "Div":
        return a / b
    return jnp.power(a, b)


# --------------------------------------------------------------------------------------------------------------
# Operators: (ctx, inputs) -> outputs (a list)
# --------------------------------------------------------------------------------------------------------------


def _spatial_pads(c: _Ctx, x, kernel, strides, dilations, transpose=False):
    """[(lo, hi)] per spatial axis from pads / auto_pad."""
    n = len(kernel)
    auto = c.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(c.attr("pads", [0] * (2 * n)))
        return [(pads[i], pads[i + n]) for i in range(n)]
    if auto == "VALID":
        return [(0, 0)] * n
    if auto in ("SAME_UPPER", "SAME_LOWER") and not transpose:
        import jax

        eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
        pads = jax.lax.padtype_to_pads(x.shape[2:], eff, strides, "SAME")
        return [tuple(p) if auto == "SAME_UPPER" else (p[1], p[0]) for p in pads]
    c.fail(f"auto_pad={auto!r} is not supported")


def _conv(c: _Ctx, ins):
    import jax

    x, w = ins[0], ins[1]
    if _is_static(w):
        w = _as_jax(w, x)
    kernel = list(c.attr("kernel_shape", w.shape[2:]))
    n = len(kernel)
    if n != 2:
        c.fail(f"a {n}-D convolution is not supported (2-D only)")
    strides = list(c.attr("strides", [1] * n))
    dil = list(c.attr("dilations", [1] * n))
    pads = _spatial_pads(c, x, kernel, strides, dil)
    y = jax.lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dil, dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                     feature_group_count=int(c.attr("group", 1)))  # fmt: skip
    if len(ins) > 2 and ins[2] is not None:
        y = y + _as_jax(ins[2], x).reshape(1, -1, 1, 1)
    return [y]


def _conv_transpose(c: _Ctx, ins):
    import jax

    x, w = ins[0], _as_jax(ins[1], ins[0])
    kernel = list(c.attr("kernel_shape", w.shape[2:]))
    n = len(kernel)
    if n != 2:
        c.fail(f"a {n}-D transposed convolution is not supported (2-D only)")
    if c.attr("output_shape") is not None:
        c.fail("the output_shape attribute is not supported (give pads and output_padding)")
    strides = list(c.attr("strides", [1] * n))
    dil = list(c.attr("dilations", [1] * n))
    out_pad = list(c.attr("output_padding", [0] * n))
    pads = _spatial_pads(c, x, kernel, strides, dil, transpose=True)
    g = int(c.attr("group", 1))
    cin, cout_g = w.shape[0], w.shape[1]
    # (Cin, Cout/g, kh, kw) -> (Cout, Cin/g, kh, kw), flipped: the transpose as a convolution of the dilated input
    wk = w.reshape(g, cin // g, cout_g, *kernel).transpose(0, 2, 1, 3, 4).reshape(g * cout_g, cin // g, *kernel)
    wk = wk[:, :, ::-1, ::-1]
    cpads = [((k - 1) * d - lo, (k - 1) * d - hi + op) for k, d, (lo, hi), op in zip(kernel, dil, pads, out_pad)]
    y = jax.lax.conv_general_dilated(x, wk, [1] * n, cpads, lhs_dilation=strides, rhs_dilation=dil,
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=g)  # fmt: skip
    if len(ins) > 2 and ins[2] is not None:
        y = y + _as_jax(ins[2], x).reshape(1, -1, 1, 1)
    return [y]


def _channel(v, x):
    """A per-channel vector shaped to broadcast against x's channel axis (axis 1)."""
    return _as_jax(v, x).reshape((1, -1) + (1,) * (x.ndim - 2))


def _batchnorm(c: _Ctx, ins):
    jnp = _jnp()
    x, scale, bias, mean, var = ins[:5]
    if c.attr("training_mode", 0):
        c.fail("training_mode=1 is not supported (export the model in eval mode)")
    eps = c.f("epsilon", 1e-5)
    a = _channel(scale, x) / jnp.sqrt(_channel(var, x) + eps)
    return [x * a + (_channel(bias, x) - _channel(mean, x) * a)]


def _gemm(c: _Ctx, ins):
    a, b = _as_jax(ins[0]), ins[1]
    b = _as_jax(b, a)
    if c.attr("transA", 0):
        a = a.T
    if c.attr("transB", 0):
        b = b.T
    y = a @ b
    alpha, beta = c.f("alpha", 1.0), c.f("beta", 1.0)
    if alpha != 1.0:
        y = y * alpha
    if len(ins) > 2 and ins[2] is not None:
        bias = _as_jax(ins[2], y)
        y, bias = _same_rank(y, bias * beta if beta != 1.0 else bias)
        y = y + bias
    return [y]


def _matmul(c, ins):
    a, b = ins
    if _is_static(a) and _is_static(b):
        return [np.matmul(a, b)]
    like = b if _is_static(a) else a
    return [_as_jax(a, like) @ _as_jax(b, like)]


def _clip(c: _Ctx, ins):
    jnp = _jnp()
    x = ins[0]
    if len(ins) > 1 or "min" not in c.attrs and "max" not in c.attrs:
        lo = c.static(ins[1], "Clip's min") if len(ins) > 1 else None
        hi = c.static(ins[2], "Clip's max") if len(ins) > 2 else None
        lo = None if lo is None else float(np.asarray(lo).reshape(()))
        hi = None if hi is None else float(np.asarray(hi).reshape(()))
    else:
        lo, hi = c.attr("min"), c.attr("max")
    if _is_static(x):
        return [np.clip(x, lo, hi)]
    if lo is None and hi is None:
        return [x]
    if hi is None:
        return [jnp.maximum(x, lo)]
    if lo is None:
        return [jnp.minimum(x, hi)]
    return [jnp.clip(x, lo, hi)]


def _unary(fn_name: str):
    def op(c: _Ctx, ins):
        import jax

        x = ins[0]
        if fn_name == "relu":
            return [jax.nn.relu(x)]
        if fn_name == "leaky_relu":
            return [jax.nn.leaky_relu(x, c.f("alpha", 0.01))]
        if fn_name == "hard_sigmoid":
            alpha, beta = c.f("alpha", 0.2), c.f("beta", 0.5)
            # clip(y, 0, 1) as (|y| - |y - 1| + 1) / 2: a gate, which passes its true vjp as torch's hardsigmoid
            # does in the graph front end (a clip would be recognized as a hardtanh and get the rectifier rule)
            y = x * alpha + beta
            jnp = _jnp()
            return [(jnp.abs(y) - jnp.abs(y - 1.0) + 1.0) * 0.5]
        if fn_name == "hard_swish":
            return [jax.nn.hard_swish(x)]
        if fn_name == "sigmoid":
            return [jax.nn.sigmoid(x)]
        if fn_name == "tanh":
            return [_jnp().tanh(x)]
        if fn_name == "elu":
            return [jax.nn.elu(x, c.f("alpha", 1.0))]
        if fn_name == "sqrt":
            return [np.sqrt(x) if _is_static(x) else _jnp().sqrt(x)]
        if fn_name == "neg":
            return [-x]
        if fn_name == "exp":
            return [_jnp().exp(x)]
        if fn_name == "erf":
            return [jax.scipy.special.erf(x)]
        raise AssertionError(fn_name)

    return op


def _softmax(c: _Ctx, ins):
    import jax

    x = ins[0]
    opset = c.opset
    axis = int(c.attr("axis", -1 if opset >= 13 else 1))
    axis = axis % x.ndim
    if opset < 13 and axis != x.ndim - 1:
        shape = x.shape
        flat = x.reshape(*shape[:axis], -1)
        return [jax.nn.softmax(flat, axis=-1).reshape(shape)]
    return [jax.nn.softmax(x, axis=axis)]


def _pool(kind: str):
    def op(c: _Ctx, ins):
        import jax

        jnp = _jnp()
        x = ins[0]
        kernel = list(c.attr("kernel_shape"))
        n = len(kernel)
        if n != 2:
            c.fail(f"a {n}-D pool is not supported (2-D only)")
        strides = list(c.attr("strides", [1] * n))
        dil = list(c.attr("dilations", [1] * n))
        if len(c.node.output) > 1 and c.node.output[1]:
            c.fail("MaxPool's Indices output is not supported")
        if int(c.attr("storage_order", 0)):
            c.fail("storage_order=1 is not supported")
        pads = _spatial_pads(c, x, kernel, strides, dil)
        if int(c.attr("ceil_mode", 0)):
            new = []
            for ax, (k, s, d, (lo, hi)) in enumerate(zip(kernel, strides, dil, pads)):
                size = x.shape[2 + ax]
                if type(size).__name__ == "_DimExpr":
                    c.fail("ceil_mode=1 needs a fixed image size")
                eff = (k - 1) * d + 1
                out = -(-(size + lo + hi - eff) // s) + 1
                if (out - 1) * s >= size + lo:  # the last window must start inside the image or its left padding
                    out -= 1
                new.append((lo, max(hi, (out - 1) * s + eff - size - lo)))
            pads = new
        window, stride = (1, 1, *kernel), (1, 1, *strides)
        wdil = (1, 1, *dil)
        full = ((0, 0), (0, 0), *pads)
        if kind == "max":
            return [jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, stride, full, window_dilation=wdil)]
        s = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, stride, full, window_dilation=wdil)
        if int(c.attr("count_include_pad", 0)) or all(p == (0, 0) for p in pads):
            return [s / float(np.prod(kernel))]
        ones = jnp.ones((1, 1, *x.shape[2:]), x.dtype)
        count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, stride, full, window_dilation=wdil)
        return [s / count]

    return op


def _global_avg(c, ins):
    return [ins[0].mean(axis=tuple(range(2, ins[0].ndim)), keepdims=True)]


def _global_max(c, ins):
    return [ins[0].max(axis=tuple(range(2, ins[0].ndim)), keepdims=True)]


def _concat(c: _Ctx, ins):
    axis = int(c.attr("axis"))
    ins = [v for v in ins if v is not None]
    if all(_is_static(v) for v in ins):
        arrs = [np.asarray(v) for v in ins]
        if any(a.dtype == object for a in arrs):
            arrs = [a.astype(object) for a in arrs]
        return [np.concatenate(arrs, axis=axis)]
    like = next(v for v in ins if not _is_static(v))
    return [_jnp().concatenate([_as_jax(v, like) for v in ins], axis=axis)]


def _reshape_target(shape_in, target, allowzero: bool):
    out = []
    for k, t in enumerate(target):
        if isinstance(t, int) and t == 0 and not allowzero:
            out.append(shape_in[k])
        else:
            out.append(t)
    return tuple(out)


def _reshape(c: _Ctx, ins):
    x = ins[0]
    target = _reshape_target(np.shape(x) if _is_static(x) else x.shape, _ints(c.static(ins[1], "Reshape's shape")),
                             bool(c.attr("allowzero", 0)))  # fmt: skip
    if _is_static(x):
        return [np.reshape(x, target)]
    return [x.reshape(target)]


def _flatten(c: _Ctx, ins):
    x = ins[0]
    axis = int(c.attr("axis", 1)) % (len(x.shape) + 1) if len(x.shape) else 0
    shape = x.shape
    first = 1
    for d in shape[:axis]:
        first = first * d
    return [x.reshape(first, -1) if not _is_static(x) else np.reshape(x, (first, -1))]


def _transpose(c: _Ctx, ins):
    x = ins[0]
    perm = c.attr("perm")
    perm = list(perm) if perm is not None else list(range(len(x.shape)))[::-1]
    return [np.transpose(x, perm) if _is_static(x) else x.transpose(perm)]


def _slice(c: _Ctx, ins):
    x = ins[0]
    if c.opset < 10:
        starts, ends = list(c.attr("starts")), list(c.attr("ends"))
        axes = list(c.attr("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = _ints(c.static(ins[1], "Slice's starts"))
        ends = _ints(c.static(ins[2], "Slice's ends"))
        axes = _ints(c.static(ins[3], "Slice's axes")) if len(ins) > 3 and ins[3] is not None else list(
            range(len(starts)))  # fmt: skip
        steps = _ints(c.static(ins[4], "Slice's steps")) if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    ndim = len(x.shape)
    idx = [slice(None)] * ndim

    def clamp(v):
        if isinstance(v, int) and v >= _INT_MAX // 4:
            return None
        if isinstance(v, int) and v <= -_INT_MAX // 4:
            return None
        return v

    for s, e, a, st in zip(starts, ends, axes, steps):
        s, e = clamp(s), clamp(e)
        if st < 0 and e is None:
            e = None
        idx[a % ndim] = slice(s, e, st)
    return [x[tuple(idx)]]


def _axes(c: _Ctx, ins, k=1):
    if c.attr("axes") is not None:
        return list(c.attr("axes"))
    if len(ins) > k and ins[k] is not None:
        return _ints(c.static(ins[k], f"{c.node.op_type}'s axes"))
    return None


def _squeeze(c: _Ctx, ins):
    x = ins[0]
    axes = _axes(c, ins)
    if axes is None:
        axes = [k for k, d in enumerate(x.shape) if isinstance(d, int) and d == 1]
    axes = tuple(a % len(x.shape) for a in axes)
    return [np.squeeze(x, axes) if _is_static(x) else x.squeeze(axes)]


def _unsqueeze(c: _Ctx, ins):
    x = ins[0]
    axes = _axes(c, ins)
    n = len(np.shape(x) if _is_static(x) else x.shape) + len(axes)
    axes = sorted(a % n for a in axes)
    if _is_static(x):
        y = np.asarray(x)
        for a in axes:
            y = np.expand_dims(y, a)
        return [y]
    return [_jnp().expand_dims(x, axes)]


def _pad(c: _Ctx, ins):
    import jax

    jnp = _jnp()
    x = ins[0]
    mode = c.attr("mode", "constant")
    if c.opset < 11:
        pads, value = list(c.attr("pads")), float(c.attr("value", 0.0))
    else:
        pads = _ints(c.static(ins[1], "Pad's pads"))
        value = float(np.asarray(c.static(ins[2], "Pad's constant_value")).reshape(())) if len(ins) > 2 and ins[
            2] is not None and np.size(ins[2]) else 0.0  # fmt: skip
        if len(ins) > 3 and ins[3] is not None:
            c.fail("Pad's axes input is not supported")
    n = len(x.shape)
    widths = [(pads[i], pads[i + n]) for i in range(n)]
    if any(isinstance(p, int) and p < 0 for w in widths for p in w):
        c.fail("negative pads are not supported")
    if mode == "constant":
        return [jnp.pad(x, widths, constant_values=value)]
    if mode == "reflect":
        return [jnp.pad(x, widths, mode=mode)]
    if mode == "edge":  # the border slice repeated (jnp.pad's edge mode makes shapes that vanish at small sizes)
        y = x
        for ax, (lo, hi) in enumerate(widths):
            parts = []
            if lo:
                parts.append(jnp.repeat(jax.lax.slice_in_dim(y, 0, 1, axis=ax), lo, axis=ax))
            parts.append(y)
            if hi:
                parts.append(jnp.repeat(jax.lax.slice_in_dim(y, y.shape[ax] - 1, y.shape[ax], axis=ax), hi, axis=ax))
            y = jnp.concatenate(parts, axis=ax) if len(parts) > 1 else y
        return [y]
    c.fail(f"Pad mode {mode!r} is not supported")


def _reduce(kind: str):
    def op(c: _Ctx, ins):
        x = ins[0]
        axes = _axes(c, ins)
        keep = bool(c.attr("keepdims", 1))
        if axes is None or len(axes) == 0:
            if int(c.attr("noop_with_empty_axes", 0)):
                return [x]
            axes = list(range(len(x.shape)))
        axes = tuple(a % len(x.shape) for a in axes)
        if _is_static(x):
            return [getattr(np, kind)(x, axis=axes, keepdims=keep)]
        return [getattr(x, kind)(axis=axes, keepdims=keep)]

    return op


_ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_,
                10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}  # fmt: skip


def _cast(c: _Ctx, ins):
    x = ins[0]
    to = _ONNX_DTYPES.get(int(c.attr("to")))
    if to is None:
        c.fail(f"Cast to ONNX type {c.attr('to')} is not supported")
    if _is_static(x):
        if np.asarray(x).dtype == object and np.issubdtype(to, np.integer):
            return [np.asarray(x)]
        return [np.asarray(x).astype(to)]
    jnp = _jnp()
    if np.issubdtype(to, np.floating):
        return [x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float64 if _x64() else jnp.float32)]
    return [x.astype(to)]


def _shape(c: _Ctx, ins):
    x = ins[0]
    shape = list(np.shape(x) if _is_static(x) else x.shape)
    start, end = c.attr("start", 0), c.attr("end", None)
    shape = shape[start:end]
    if any(type(d).__name__ == "_DimExpr" for d in shape):
        return [np.asarray(shape, dtype=object)]
    return [np.asarray(shape, np.int64)]


def _gather(c: _Ctx, ins):
    x, idx = ins
    axis = int(c.attr("axis", 0))
    idx = c.static(idx, "Gather's indices")
    if _is_static(x):
        return [np.take(np.asarray(x), np.asarray(idx), axis=axis)]
    return [_jnp().take(x, _as_jax(np.asarray(idx).astype(np.int64)), axis=axis)]


def _constant(c: _Ctx, ins):
    from onnx import numpy_helper

    for k, v in c.attrs.items():
        if k == "value":
            return [numpy_helper.to_array(v)]
        if k == "value_float":
            return [np.asarray(v, np.float32)]
        if k == "value_floats":
            return [np.asarray(v, np.float32)]
        if k == "value_int":
            return [np.asarray(v, np.int64)]
        if k == "value_ints":
            return [np.asarray(v, np.int64)]
    c.fail("a Constant without a value/value_float(s)/value_int(s) attribute is not supported")


def _identity(c, ins):
    return [ins[0]]


def _dropout(c, ins):
    return [ins[0]] + ([None] if len(c.node.output) > 1 else [])


def _constant_of_shape(c: _Ctx, ins):
    from onnx import numpy_helper

    shape = _ints(c.static(ins[0], "ConstantOfShape's shape"))
    v = c.attrs.get("value")
    val = numpy_helper.to_array(v) if v is not None else np.zeros((1,), np.float32)
    if any(not isinstance(d, int) for d in shape):
        return [_jnp().full(shape, val.reshape(()).item(), val.dtype)]
    return [np.full(shape, val.reshape(()).item(), val.dtype)]


def _expand(c: _Ctx, ins):
    x, shape = ins[0], _ints(c.static(ins[1], "Expand's shape"))
    xs = tuple(np.shape(x) if _is_static(x) else x.shape)
    n = max(len(xs), len(shape))
    xs = (1,) * (n - len(xs)) + xs
    shape = [1] * (n - len(shape)) + list(shape)
    out = tuple(a if (isinstance(b, int) and b == 1) else b for a, b in zip(xs, shape))
    if _is_static(x):
        return [np.broadcast_to(np.reshape(x, xs), out)]
    return [_jnp().broadcast_to(x.reshape(xs), out)]


def _split(c: _Ctx, ins):
    x = ins[0]
    axis = int(c.attr("axis", 0)) % len(x.shape)
    if c.attr("split") is not None:
        sizes = list(c.attr("split"))
    elif len(ins) > 1 and ins[1] is not None:
        sizes = _ints(c.static(ins[1], "Split's split"))
    else:
        n = len(c.node.output)
        d = x.shape[axis]
        sizes = [d // n] * n
    outs, start = [], 0
    for s in sizes:
        idx = [slice(None)] * len(x.shape)
        idx[axis] = slice(start, start + s)
        outs.append(x[tuple(idx)])
        start = start + s
    return outs


def _resize(c: _Ctx, ins):
    jnp = _jnp()
    x = ins[0]
    mode = c.attr("mode", "nearest")
    if mode not in ("nearest", "linear"):
        c.fail(f"Resize mode {mode!r} is not supported (nearest and linear are)")
    ctm = c.attr("coordinate_transformation_mode", "half_pixel")
    if ctm not in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"):
        c.fail(f"coordinate_transformation_mode {ctm!r} is not supported")
    nearest_mode = c.attr("nearest_mode", "round_prefer_floor")
    if c.attr("antialias", 0):
        c.fail("antialias=1 is not supported")
    if c.attr("axes") is not None or c.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        c.fail("Resize's axes / keep_aspect_ratio_policy attributes are not supported")
    # inputs: X, roi, scales, sizes (opset >= 11)
    scales = ins[2] if len(ins) > 2 else None
    sizes = ins[3] if len(ins) > 3 else None
    scales = c.static(scales, "Resize's scales")
    sizes = c.static(sizes, "Resize's sizes")
    shape = x.shape
    if sizes is not None and np.size(sizes):
        out = _ints(sizes)
        sc = [None] * len(shape)
    elif scales is not None and np.size(scales):
        sc = _floats(scales)
        out = []
        for d, s in zip(shape, sc):
            if float(s).is_integer():
                out.append(d * int(s))
            elif isinstance(d, int):
                out.append(int(np.floor(d * s)))
            else:
                c.fail("a non-integer scale needs a fixed image size")
    else:
        c.fail("Resize needs scales or sizes")
    if not isinstance(out[1], int) or out[1] != shape[1]:
        c.fail("Resize of the batch or channel axis is not supported")
    y = x
    for ax in (2, 3):
        y = _resize_axis(y, ax, shape[ax], out[ax], sc[ax], mode, ctm, nearest_mode, jnp)
    return [y]


def _size_value(n, dt):
    """A size (an int, or a symbolic size: its value when the program runs) as a scalar of dtype dt."""
    import jax

    if isinstance(n, int):
        return _jnp().asarray(n, dt)
    return jax.core.dimension_as_value(n).astype(dt)


def _resize_axis(x, axis, n, m, scale, mode, ctm, nearest_mode, jnp):
    """Resample axis `axis` from size n to m: source coordinates from an iota (constants of the program), then a
    gather (nearest) or two gathers mixed by constant weights (linear): affine in x."""
    if isinstance(n, int) and isinstance(m, int) and n == m and scale in (None, 1.0):
        return x
    take = jnp.take
    if isinstance(n, int) and isinstance(m, int):  # fixed sizes: the indices and weights as NumPy constants
        jnp, dt = np, (np.float32 if mode == "nearest" else np.float64)  # nearest: ties as onnxruntime's float32
        nf, mf = dt(n), dt(m)
    else:
        dt = x.dtype
        nf, mf = _size_value(n, dt), _size_value(m, dt)
    i = jnp.arange(m, dtype=dt)
    s = jnp.asarray(scale, dt) if scale is not None else mf / nf
    if ctm == "half_pixel":
        src = (i + 0.5) / s - 0.5
    elif ctm == "pytorch_half_pixel":
        src = jnp.where(mf > 1, (i + 0.5) / s - 0.5, jnp.zeros_like(i))
    elif ctm == "asymmetric":
        src = i / s
    else:  # align_corners
        src = jnp.where(mf > 1, i * (nf - 1) / jnp.maximum(mf - 1, 1), jnp.zeros_like(i))
    last = nf - 1
    if mode == "nearest":
        if nearest_mode == "round_prefer_floor":
            k = jnp.ceil(src - 0.5)
        elif nearest_mode == "round_prefer_ceil":
            k = jnp.floor(src + 0.5)
        elif nearest_mode == "floor":
            k = jnp.floor(src)
        elif nearest_mode == "ceil":
            k = jnp.ceil(src)
        else:
            raise OnnxImportError(f"nearest_mode {nearest_mode!r} is not supported")
        k = jnp.clip(k, 0, last).astype(np.int32)
        return take(x, k, axis=axis)
    src = jnp.clip(src, 0, last)
    lo = jnp.floor(src)
    f = src - lo
    lo_i = lo.astype(np.int32)
    hi_i = jnp.minimum(lo + 1, last).astype(np.int32)
    shape = [1] * x.ndim
    shape[axis] = -1
    f = f.reshape(shape)
    if isinstance(f, np.ndarray):
        f = f.astype(x.dtype)
    return take(x, lo_i, axis=axis) * (1 - f) + take(x, hi_i, axis=axis) * f


def _binary_op(name):
    def op(c, ins):
        return [_binary(name, ins[0], ins[1])]

    return op


def _compare(name):
    def op(c, ins):
        a, b = ins
        if _is_static(a) and _is_static(b):
            return [getattr(np, name)(a, b)]
        jnp = _jnp()
        like = b if _is_static(a) else a
        return [getattr(jnp, name)(*_same_rank(_as_jax(a, like), _as_jax(b, like)))]

    return op


def _where(c, ins):
    cond, a, b = ins
    if all(_is_static(v) for v in ins):
        return [np.where(cond, a, b)]
    like = a if not _is_static(a) else b
    n = max(np.ndim(cond), np.ndim(a), np.ndim(b))
    c, a, b = (_as_jax(v, like) for v in (cond, a, b))
    c, a, b = (v.reshape((1,) * (n - v.ndim) + tuple(v.shape)) for v in (c, a, b))
    return [_jnp().where(c, a, b)]


def _minmax(name):
    def op(c, ins):
        if all(_is_static(v) for v in ins):
            r = ins[0]
            for v in ins[1:]:
                r = getattr(np, name)(r, v)
            return [r]
        jnp = _jnp()
        like = next(v for v in ins if not _is_static(v))
        r = _as_jax(ins[0], like)
        for v in ins[1:]:
            if _is_static(v) and np.size(v) == 1:
                r = getattr(jnp, name)(r, float(np.asarray(v).reshape(())))
            else:
                r = getattr(jnp, name)(*_same_rank(r, _as_jax(v, like)))
        return [r]

    return op


def _prelu(c, ins):
    x, slope = ins
    jnp = _jnp()
    s = _as_jax(slope, x)
    if s.ndim == 1 and x.ndim == 4:
        s = s.reshape(1, -1, 1, 1)
    return [jnp.where(x >= 0, x, x * s)]


OPS: dict[str, Callable] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "BatchNormalization": _batchnorm, "Gemm": _gemm,
    "MatMul": _matmul, "Add": _binary_op("Add"), "Sub": _binary_op("Sub"), "Mul": _binary_op("Mul"),
    "Div": _binary_op("Div"), "Pow": _binary_op("Pow"), "Sqrt": _unary("sqrt"), "Relu": _unary("relu"),
    "Clip": _clip, "LeakyRelu": _unary("leaky_relu"), "HardSigmoid": _unary("hard_sigmoid"),
    "HardSwish": _unary("hard_swish"), "Sigmoid": _unary("sigmoid"), "Tanh": _unary("tanh"), "Elu": _unary("elu"),
    "Neg": _unary("neg"), "Exp": _unary("exp"), "Erf": _unary("erf"), "PRelu": _prelu, "Softmax": _softmax,
    "MaxPool": _pool("max"), "AveragePool": _pool("avg"), "GlobalAveragePool": _global_avg,
    "GlobalMaxPool": _global_max, "Resize": _resize, "Concat": _concat, "Reshape": _reshape, "Flatten": _flatten,
    "Transpose": _transpose, "Slice": _slice, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Pad": _pad,
    "ReduceMean": _reduce("mean"), "ReduceSum": _reduce("sum"), "ReduceMax": _reduce("max"), "Cast": _cast,
    "Shape": _shape, "Gather": _gather, "Constant": _constant, "Identity": _identity, "Dropout": _dropout,
    "ConstantOfShape": _constant_of_shape, "Expand": _expand, "Split": _split, "Equal": _compare("equal"),
    "Less": _compare("less"), "Greater": _compare("greater"), "Where": _where, "Max": _minmax("maximum"),
    "Min": _minmax("minimum"),
}  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------------------------------------------


# inputs read as constants (shapes, scales, bounds): a float constant there is no parameter
_STATIC_INPUTS = {"Resize": (1, 2, 3), "Upsample": (1,), "Reshape": (1,), "Slice": (1, 2, 3, 4), "Pad": (1, 2, 3),
                  "Clip": (1, 2), "Unsqueeze": (1,), "Squeeze": (1,), "Expand": (1,), "ConstantOfShape": (0,),
                  "Split": (1,), "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,), "Gather": (1,)}  # fmt: skip


def _opset(proto) -> int:
    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 13


def lower(proto, where: str = "ONNX model") -> tuple[Callable, dict, dict]:
    """``(apply, params, info)``: ``apply(params, x)`` runs the graph on an NCHW batch ``x`` with JAX (its outputs:
    one array, or a tuple for several); ``params``: the float constants with more than one value, by name;
    ``info``: ``{"input": name, "outputs": [names], "opset": n}``. Raises `OnnxImportError` (one line) for an
    operator outside `OPS` or a graph without exactly one image input."""
    from onnx import numpy_helper

    g = proto.graph
    opset = _opset(proto)
    statics: dict[str, np.ndarray] = {}
    params: dict[str, np.ndarray] = {}

    static_uses = {n for node in g.node for k, n in enumerate(node.input) if k in _STATIC_INPUTS.get(node.op_type, ())}

    def keep(name: str, arr: np.ndarray):
        if np.issubdtype(arr.dtype, np.floating) and arr.size > 1 and name not in static_uses:
            params[name] = arr
        else:
            statics[name] = arr

    for t in g.initializer:
        keep(t.name, numpy_helper.to_array(t))
    consts = set(params) | set(statics)
    inputs = [i.name for i in g.input if i.name not in consts]
    if len(inputs) != 1:
        raise OnnxImportError(f"{where}: the graph has {len(inputs)} inputs besides its weights ({inputs}); "
                              "an image network has one")  # fmt: skip
    nodes = list(g.node)
    # Constant nodes are weights (Paddle stores every weight so) or shape constants: read them now
    for node in nodes:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            keep(node.output[0], _constant(_Ctx(node, where), [])[0])
    for node in nodes:
        if node.domain not in ("", "ai.onnx"):
            raise OnnxImportError(f"{where}: operator {node.domain}.{node.op_type} (node {node.name!r}) is not "
                                  "supported: only the default ONNX domain is")  # fmt: skip
        if node.op_type not in OPS:
            raise OnnxImportError(f"{where}: operator {node.op_type} (node {node.name or node.output[0]!r}) is not "
                                  f"supported; supported: {', '.join(sorted(OPS))}")  # fmt: skip
    outputs = [o.name for o in g.output]
    scopes = [node_scope(n) for n in nodes]

    def apply(p: dict, x):
        import jax

        from deepvis_jax._src.nets.jaxpr.program import PATH

        env: dict[str, Any] = {inputs[0]: x, **statics}
        env.update(p)
        for node, (scope, is_path) in zip(nodes, scopes):
            if node.op_type == "Constant":
                continue
            c = _Ctx(node, where)
            c.opset = opset
            ins = [env[n] if n else None for n in node.input]
            if scope:
                with jax.named_scope(PATH + scope if is_path else scope):
                    outs = OPS[node.op_type](c, ins)
            else:
                outs = OPS[node.op_type](c, ins)
            for name, v in zip(node.output, outs):
                if type(v).__name__ == "_DimExpr" or isinstance(v, int):
                    v = np.asarray(v, dtype=object if type(v).__name__ == "_DimExpr" else np.int64)
                if name:
                    env[name] = v
        res = tuple(env[o] for o in outputs)
        return res[0] if len(res) == 1 else res

    info = {"input": inputs[0], "outputs": outputs, "opset": opset}
    return apply, params, info


def from_onnx_graph(proto, *, preprocessing: Any = "imagenet", name: str | None = None, where: str = "ONNX model",
                    example_hw: tuple[int, int] | None = None, strict: bool = False):  # fmt: skip
    """The graph as a `Model` through `dv.from_jax` (layout NCHW). `example_hw`: the image size the program is
    checked at; default: the graph's input size where it names one, else 64 x 64."""
    import deepvis_jax as dv

    apply, params, info = lower(proto, where)
    if example_hw is None:
        inp = next(i for i in proto.graph.input if i.name == info["input"])
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if len(dims) != 4:
            raise OnnxImportError(f"{where}: the input {info['input']!r} has rank {len(dims)}; an image network "
                                  "takes (N, 3, H, W)")  # fmt: skip
        if dims[1] not in (None, 3, 0):
            raise OnnxImportError(f"{where}: the input {info['input']!r} has {dims[1]} channels; an RGB network "
                                  "takes 3 (N, 3, H, W)")  # fmt: skip
        h, w = dims[2], dims[3]
        example_hw = (h, w) if h and w and h > 0 and w > 0 else (64, 64)
    x = np.zeros((1, 3, *example_hw), np.float32)
    return dv.from_jax(apply, params, x, name=name or proto.graph.name or "onnx", layout="NCHW",
                       preprocessing=preprocessing, strict=strict)  # fmt: skip
