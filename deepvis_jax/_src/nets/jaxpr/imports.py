"""`from_jax`, `from_flax` and `tag`: a user's JAX network as a deepvis_jax `Model`."""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..preprocessing import describe_preprocessing, preprocess_fn
from .architecture import JaxArchitecture, strict_check
from .program import PATH, TAG, Lit, Program, TraceError, _Builder, _walk, classify, find_layers, fold_scalars, fuse_formulas

Array = jax.Array


def tag(x: Array, name: str) -> Array:
    """Mark `x` as the layer `name` of a function imported with `from_jax` (the identity everywhere else)."""
    if not isinstance(name, str) or not name or "/" in name or "." in name:
        raise ValueError(f"tag names a layer with a non-empty string without '/' or '.'; got {name!r}")
    with jax.named_scope(TAG + name):
        return jnp.array(x, copy=True)


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _flat_params(params: Any, dtype) -> tuple[list[str], list]:
    """The parameter pytree's leaves with '.'-joined path names; floating leaves cast to the working dtype."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    names, values = [], []
    for path, leaf in leaves:
        a = jnp.asarray(leaf)
        if jnp.issubdtype(a.dtype, jnp.floating):
            a = a.astype(dtype)
        names.append(".".join(_key_name(k) for k in path) or "param")
        values.append(a)
    return names, values


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _trace(fn: Callable, params_spec, example_hw, dtype):
    """make_jaxpr of fn(params, x) with the batch and spatial sizes symbolic; else the batch only."""
    from jax import export

    b, h, w = export.symbolic_shape("b, h, w")
    first = None
    for shape, symbolic in (((b, h, w, 3), "bhw"), ((b, *example_hw, 3), "b")):
        try:
            closed = jax.make_jaxpr(fn)(params_spec, jax.ShapeDtypeStruct(shape, dtype))
            return closed, symbolic
        except TraceError:
            raise
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
                jax.errors.TracerIntegerConversionError) as e:  # fmt: skip
            raise TraceError(
                "the function does not trace: Python control flow on array values "
                f"({_one_line(e)[:160]}); use jnp.where / lax.select, or decide from static arguments"
            ) from None
        except Exception as e:  # noqa: BLE001 - try the next, less symbolic, form
            first = first or e
    try:
        n = 1
        jax.make_jaxpr(fn)(params_spec, jax.ShapeDtypeStruct((n, *example_hw, 3), dtype))
    except Exception as e:  # noqa: BLE001
        raise TraceError(f"the function does not trace on a ({n}, {example_hw[0]}, {example_hw[1]}, 3) batch: "
                         f"{_one_line(e)[:200]}") from None
    raise TraceError("the function traces only at one batch size: make its shapes follow the input's "
                     f"(x.shape[0], reshape(n, -1)), not fixed numbers ({_one_line(first)[:160]})")


def from_jax(apply: Callable, params: Any, example_input: Any, *, name: str | None = None, layout: str = "NHWC",
             preprocessing: Any = "imagenet", strict: bool = False, _strip_scope: str | None = None,
             _modules: set | None = None):  # fmt: skip
    """Import any JAX network ``apply(params, images)`` as a `Model` that every function of the library takes.

    `apply` is traced once (``jax.make_jaxpr``, the parameters as inputs, the batch and image sizes symbolic) and
    run by an interpreter that applies `rules.py` equation by equation: every ReLU (``jax.nn.relu``, ``max(x,
    0)``), every ``jax.nn`` rectifier (relu6, leaky_relu, elu, silu, hard_silu), every 2-D max-pool
    (``reduce_window_max``, switches recorded) and every other op nonlinear in the image through its true vjp;
    linear ops are bound as they are. `example_input`: a batch as `apply` takes it (its shape fixes the image
    size the program is checked at). `layout`: ``"NHWC"`` or ``"NCHW"`` (channels-first functions; the model
    still takes NHWC). `preprocessing`: what `apply` expects (``"imagenet"``, ``"caffe"``, ``"unit"``,
    ``"minus_one_one"`` or a dict), applied inside the model, which keeps the library's ImageNet-normalized input.
    `strict`: raise where an op nonlinear in the image has no rule. Layers are the named scopes whose output is
    one feature map (Flax module paths; `tag` marks one in any function).
    """
    from .. import Model

    if layout not in ("NHWC", "NCHW"):
        raise ValueError(f"layout must be 'NHWC' or 'NCHW', got {layout!r}")
    shape = tuple(np.shape(example_input))
    if len(shape) != 4 or shape[3 if layout == "NHWC" else 1] != 3:
        want = "(N, H, W, 3)" if layout == "NHWC" else "(N, 3, H, W)"
        raise ValueError(f"example_input must be a batch of RGB images shaped {want} for layout={layout!r}; "
                         f"got shape {shape}")  # fmt: skip
    example_hw = shape[1:3] if layout == "NHWC" else shape[2:4]
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    names, values = _flat_params(params, dtype)
    treedef = jax.tree_util.tree_structure(params)
    pre = preprocess_fn(preprocessing)

    def fn(flat, x):
        images = pre(x)
        if layout == "NCHW":
            images = jnp.transpose(images, (0, 3, 1, 2))
        return apply(jax.tree_util.tree_unflatten(treedef, flat), images)

    spec = [jax.ShapeDtypeStruct(v.shape, v.dtype) for v in values]
    closed, symbolic = _trace(fn, spec, example_hw, dtype)
    b = _Builder()
    env = {closed.jaxpr.invars[0 + k]: k + 1 for k in range(len(names))}
    b.new_var(jax.core.ShapedArray((1, 1, 1, 3), dtype))  # var 0: the image (its shape is not read)
    for v in closed.jaxpr.invars[: len(names)]:
        b.new_var(v.aval)
    env[closed.jaxpr.invars[len(names)]] = 0
    for var, c in zip(closed.jaxpr.constvars, closed.consts):
        env[var] = b.const(c)
    _walk(b, closed.jaxpr, env, "")
    from .program import _operand

    outputs = tuple(_operand(b, o, env) for o in closed.jaxpr.outvars)
    eqns = b.eqns
    if _strip_scope:
        eqns = [e._replace(scope=_strip(e.scope, _strip_scope)) for e in eqns]
    eqns, outputs = fold_scalars(eqns, b.dtypes, outputs)
    eqns = [_widen(e, dtype) for e in fuse_formulas(eqns, outputs)]
    b.dtypes = [str(np.dtype(dtype)) if d in _LOW else d for d in b.dtypes]
    eqns, data = classify(eqns, b.dtypes, 1 + len(names))
    param_names = tuple(names) + tuple(f"const.{k}" for k in range(len(b.consts)))
    # the program's own constants become parameters (var ids follow the user's parameters)
    eqns, outputs, shapes, dtypes, data = _renumber_consts(b, eqns, outputs, data, len(names))
    layers = find_layers(eqns, outputs, shapes, data, layout, _modules)
    prog = Program(tuple(eqns), param_names, outputs, tuple(shapes), tuple(dtypes), symbolic)
    out_shape = shapes[outputs[0]] if len(outputs) == 1 and isinstance(outputs[0], int) else None
    num_classes = int(out_shape[1]) if out_shape is not None and len(out_shape) == 2 and isinstance(
        out_shape[1], int) else None  # fmt: skip
    arch = JaxArchitecture(
        name=name or getattr(apply, "__name__", "jax_network"), program=prog, layer_specs=layers, layout=layout,
        example_hw=tuple(int(d) for d in example_hw), data=data,
        fixed_hw=None if symbolic == "bhw" else tuple(int(d) for d in example_hw), num_classes=num_classes,
        notes=tuple(dict.fromkeys(b.notes)), preprocessing=describe_preprocessing(preprocessing),
    )  # fmt: skip
    if strict:
        strict_check(arch)
    consts = [np.asarray(c) for _, c in b.consts]
    consts = [jnp.asarray(c, dtype) if np.issubdtype(c.dtype, np.floating) else jnp.asarray(c) for c in consts]
    variables = {"params": dict(zip(param_names, [*values, *consts]))}
    return Model(variables=variables, arch=arch)


_LOW = ("bfloat16", "float16")


def _widen(e, dtype):
    """An equation with bfloat16/float16 (a mixed-precision model's casts and literals) in the working dtype."""

    def w(v):
        if isinstance(v, Lit) and v.dtype in _LOW:
            return Lit(float(v.value), str(np.dtype(dtype)))
        if (isinstance(v, np.dtype) or type(v).__name__.endswith("DType")) and str(np.dtype(v)) in _LOW:
            return np.dtype(dtype)
        return v

    return e._replace(ins=tuple(w(a) for a in e.ins), params=tuple((k, w(v)) for k, v in e.params))


def _strip(scope: str, top: str) -> str:
    parts = scope.split("/") if scope else []
    return "/".join(parts[1:]) if parts and parts[0] == top else scope


def _renumber_consts(b: _Builder, eqns, outputs, data, n_params: int):
    """Move the constants' vars right after the parameters' (vars 1..n_params), so that var k + 1 is parameter
    k for every k of param_names."""
    const_ids = [v for v, _ in b.consts]
    order = [0, *range(1, n_params + 1), *const_ids]
    rest = [v for v in range(len(b.shapes)) if v not in set(order)]
    new = {old: k for k, old in enumerate(order + rest)}

    def m(a):
        return new[a] if isinstance(a, int) else a

    eqns = [e._replace(ins=tuple(m(a) for a in e.ins), outs=tuple(m(o) for o in e.outs)) for e in eqns]
    inv = order + rest
    shapes = [b.shapes[o] for o in inv]
    dtypes = [b.dtypes[o] for o in inv]
    data = tuple(data[o] for o in inv)
    return eqns, tuple(m(o) for o in outputs), shapes, dtypes, data


# --------------------------------------------------------------------------------------------------------------
# Flax
# --------------------------------------------------------------------------------------------------------------


def from_flax(module: Any, variables: Any = None, example_input: Any = None, **kwargs):
    """A Flax network as a `Model`: ``from_flax(linen_module, variables, x)`` (layers: module paths, as
    ``capture_intermediates`` names them) or ``from_flax(nnx_module, example_input=x)`` (layers: attribute
    paths). Options as `from_jax`."""
    from flax import linen as nn

    if isinstance(module, nn.Module):
        if variables is None or example_input is None:
            raise ValueError("from_flax(linen_module, variables, example_input): a linen module needs its variables "
                             "and an example batch")  # fmt: skip
        kwargs.setdefault("name", type(module).__name__)
        return from_jax(lambda v, x: module.apply(v, x), variables, example_input,
                        _strip_scope=type(module).__name__, **kwargs)  # fmt: skip
    from flax import nnx

    if isinstance(module, nnx.Module):
        if example_input is None:
            example_input = variables
        if example_input is None:
            raise ValueError("from_flax(nnx_module, example_input=x): an NNX module needs an example batch")
        graphdef, state = nnx.split(module)
        kwargs.setdefault("name", type(module).__name__)

        def apply(state, x):
            m = nnx.merge(graphdef, state)
            with _scoped_nnx_calls(m):
                return m(x)

        return from_jax(apply, state, example_input, _modules={p for p, _ in _nnx_modules(module)}, **kwargs)
    raise TypeError(f"from_flax takes a flax.linen or flax.nnx Module, got {type(module).__name__}; "
                    "for any other JAX function use dv.from_jax(apply, params, example_input)")  # fmt: skip


def _nnx_modules(root) -> list:
    from flax import nnx

    return [(".".join(str(p) for p in path), obj) for path, obj in nnx.iter_graph(root)
            if isinstance(obj, nnx.Module) and path]  # fmt: skip


@contextlib.contextmanager
def _scoped_nnx_calls(root):
    with _scoped_calls(_nnx_modules(root)):
        yield


@contextlib.contextmanager
def _scoped_calls(modules: list):
    """Each module's call inside a named scope that is its whole path (for frameworks that name no scopes
    themselves: NNX, Equinox), so that a container (a list attribute) is no layer of its own. `modules`: (path
    with '.' separators, module object) pairs; a module reached twice keeps its first path."""
    paths: dict[int, str] = {}
    for path, obj in modules:
        paths.setdefault(id(obj), path)
    saved = {}
    owners = {next((k for k in type(o).__mro__ if "__call__" in k.__dict__), None) for _, o in modules}
    for cls in owners - {None, object}:
        orig = cls.__dict__["__call__"]

        def call(self, *a, __orig=orig, **k):
            p = paths.get(id(self))
            if p is None:
                return __orig(self, *a, **k)
            with jax.named_scope(PATH + p):
                return __orig(self, *a, **k)

        saved[cls] = orig
        type.__setattr__(cls, "__call__", call)
    try:
        yield
    finally:
        for cls, orig in saved.items():
            type.__setattr__(cls, "__call__", orig)


# --------------------------------------------------------------------------------------------------------------
# Equinox
# --------------------------------------------------------------------------------------------------------------


def _eqx_modules(root) -> list:
    """(path, module) of every Equinox module below `root` (fields, lists, tuples, dicts), '.'-separated."""
    import dataclasses

    import equinox as eqx

    found: list = []

    def walk(obj, path):
        if isinstance(obj, eqx.Module):
            if path:
                found.append((".".join(path), obj))
            for f in dataclasses.fields(obj):
                walk(getattr(obj, f.name, None), path + (f.name,))
        elif isinstance(obj, (list, tuple)):
            for i, o in enumerate(obj):
                walk(o, path + (str(i),))
        elif isinstance(obj, dict):
            for k, o in obj.items():
                walk(o, path + (str(k),))

    walk(root, ())
    return found


def from_equinox(model: Any, example_input: Any, *, batched: bool = False, layout: str = "NCHW", **kwargs):
    """An Equinox network as a `Model`: its arrays are the parameters (``eqx.partition(model, eqx.is_array)``), it
    is called on each image of a batch (``jax.vmap(model)``; ``batched=True`` if it takes a batch itself) and each
    submodule's call is a named scope, its tree path (``layers.0``), so layers have the names of the fields.
    `layout`: ``"NCHW"`` (Equinox's convolutions are channels-first). Options as `from_jax`."""
    import equinox as eqx

    params, static = eqx.partition(model, eqx.is_array)
    kwargs.setdefault("name", type(model).__name__)

    def apply(p, x):
        m = eqx.combine(p, static)
        with _scoped_calls(_eqx_modules(m)):
            return m(x) if batched else jax.vmap(m)(x)

    return from_jax(apply, params, example_input, layout=layout, _modules={p for p, _ in _eqx_modules(model)},
                    **kwargs)
