"""Any torch module -> deepvis_jax graph network, through `torch.export`. Imports torch.

`from_torch` captures the module's eval-mode graph with ``torch.export.export``, decomposes it to core ATen (keeping
each activation one op: SiLU, Hardswish, Hardsigmoid stay whole instead of becoming ``x * sigmoid(x)`` or clamps),
and turns it into plain data (`deepvis_jax._src.nets.graph`): nodes with static arguments and the module path that
produced each, the outputs, the visualizable layers, and the weights as numpy arrays keyed by their torch names.
Nothing torch-specific (no pickles, no torch objects) is left in the result, so `converters.save` writes it and
`dv.load_model(path)` reads it back without torch.

Capture: first with the batch, height and width dynamic (``Dim.AUTO``), then with only the batch dynamic (a graph
that needs one input size, e.g. a ViT), then fully static; the allowed input sizes are recorded in the
architecture, so a wrong size gets one clear line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from typing import Any

import numpy as np
import torch

from deepvis_jax._src.nets import Model
from deepvis_jax._src.nets.graph.architecture import stored_preprocessing
from deepvis_jax._src.weights import target_dtype

from ._export_graph import CaptureError, static_dim, to_graph

A = torch.ops.aten

# Ops the default core-ATen decomposition would split that stay whole here, so that each activation is one op
# with one projection rule (SiLU would become x * sigmoid(x), Hardswish and Hardsigmoid clamps and divisions).
KEEP_WHOLE = (A.silu, A.silu_, A.hardswish, A.hardswish_, A.hardsigmoid, A.hardsigmoid_)

def _decompositions():
    from torch._decomp import core_aten_decompositions

    table = core_aten_decompositions()
    for packet in KEEP_WHOLE:
        for name in packet.overloads():
            table.pop(getattr(packet, name), None)
    return table


@contextlib.contextmanager
def _quiet():
    """torch.export logs sympy's failures to simplify size guards as warnings; they are not the user's concern."""
    loggers = [logging.getLogger(n) for n in ("torch.fx.experimental.symbolic_shapes", "torch._dynamo",
                                              "torch.export", "torch._export")]  # fmt: skip
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"torch\..*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line[:300]


def _example(module: torch.nn.Module, example_input) -> torch.Tensor:
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    if example_input is None:
        return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0), dtype=dtype)
    x = example_input
    if isinstance(x, (tuple, list)) and len(x) == 1:
        x = x[0]
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        what = (f"a tensor shaped {tuple(x.shape)}" if isinstance(x, torch.Tensor) else
                f"{type(example_input).__name__} {example_input!r}"[:80])  # fmt: skip
        raise CaptureError(f"deepvis_jax imports networks that take one image tensor (N, 3, H, W); the example "
                           f"input is {what}: pass one such tensor")  # fmt: skip
    if x.shape[0] == 1:  # torch.export specializes a batch of one; two keep the batch dynamic
        x = torch.cat([x, x])
    return x.detach()


def _is_detector(module: torch.nn.Module) -> bool:
    """A whole torchvision-style detector: a `backbone` with a `transform` (resizing and batching images) around
    it and heads after it; its output (boxes after NMS) has data-dependent shapes."""
    return isinstance(getattr(module, "backbone", None), torch.nn.Module) and isinstance(
        getattr(module, "transform", None), torch.nn.Module)  # fmt: skip


DYNAMIC_SECONDS = 180.0
"""How long the capture with a dynamic image size may take before `from_torch` captures one size instead
(torch.export's symbolic reasoning about sizes can take very long, e.g. on Swin's window padding)."""


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    """Raise TimeoutError in the block after `seconds` (main thread only; elsewhere no limit)."""
    import signal
    import threading

    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"no dynamic capture within {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def capture(module: torch.nn.Module, x: torch.Tensor, dynamic: bool | None = None):
    """``(exported program decomposed to core ATen, dynamic spatial size?)``, trying dynamic batch and size (for
    at most `DYNAMIC_SECONDS` when `dynamic` is None; not at all when False), then dynamic batch only, then static
    shapes; CaptureError (torch's first line) when none works."""
    from torch.export import Dim

    attempts = [({"x": {0: Dim.AUTO}}, False), (None, False)]
    if dynamic is not False:
        attempts.insert(0, ({"x": {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}}, True))
    errors = []
    for dynamic_shapes, spatial in attempts:
        try:
            with _quiet(), _time_limit(DYNAMIC_SECONDS if spatial and dynamic is None else None):
                ep = torch.export.export(module, (x,), dynamic_shapes=_named(module, dynamic_shapes))
        except Exception as e:  # noqa: BLE001 - torch raises many types; the last attempt's reason is reported
            errors.append(e)
            continue
        if spatial:  # Dim.AUTO lets torch specialize a size that the module fixes (a ViT's 224 px)
            x_val = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == _user_input(ep)).meta["val"]
            spatial = not any(static_dim(d) for d in x_val.shape[2:])
        with _quiet():
            return ep.run_decompositions(_decompositions()), spatial
    reason = _first_line(errors[-1])
    raise CaptureError(f"torch.export cannot capture {type(module).__name__}: {reason} (deepvis_jax needs a graph "
                       "without data-dependent control flow or shapes)")  # fmt: skip


def _takes_other_sizes(arch) -> bool:
    """Whether a graph captured with a dynamic image size computes its outputs at twice the example's size (shapes
    only, no weights). A flatten + linear head captures with H and W symbolic but tied by a guard on H * W, so no
    size but the example's works: such a graph is one that takes one size (`model.input_size`)."""
    import jax
    import jax.numpy as jnp

    from deepvis_jax._src.nets.graph.interpreter import abstract_variables, run

    h, w = arch.example_hw
    x = jax.ShapeDtypeStruct((1, 2 * h, 2 * w, 3), jnp.float32)
    targets = tuple(r.node for r in arch.outputs)
    try:
        jax.eval_shape(lambda v, x: [run(arch, v, x, arch.needed(targets))[t] for t in targets],
                       abstract_variables(arch), x)  # fmt: skip
    except Exception:  # noqa: BLE001 - any failure at that size: the graph takes one size
        return False
    return True


def _user_input(ep) -> str:
    return next(s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT")


def _named(module, dynamic_shapes):
    """The dynamic-shapes spec keyed by the name of forward's first parameter."""
    if dynamic_shapes is None:
        return None
    import inspect

    params = list(inspect.signature(module.forward).parameters)
    return {params[0] if params else "x": dynamic_shapes["x"]}


# --------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------


def from_torch(module: torch.nn.Module, example_input: Any = None, *, name: str | None = None,
               dynamic: bool | None = None, preprocessing: Any = "imagenet") -> Model:
    """Import any module `torch.export` can capture as a deepvis_jax graph network (eval-mode semantics).

    `example_input`: one image tensor (N, 3, H, W) the module accepts (default: 2 random 224 px images); the graph
    is captured with the batch and the image size dynamic where torch allows, so the model takes other sizes too.
    `name`: the model's name (default: the module's class name, lower case). Layers are the module paths whose
    output is one feature map (``dv.layers(model)``), as a forward hook on that module returns it.
    `dynamic`: None tries a capture with a dynamic image size for at most `DYNAMIC_SECONDS`, then one size;
    False captures the example's image size only (a graph that then takes that size alone); True tries the
    dynamic capture without a time limit. A graph captured for one size, or whose outputs cannot be computed at
    twice the example's size (a flatten + linear head), takes the example's size only: ``model.input_size`` is
    then that (h, w); the high-level calls resize images to it, `dv.forward`/`dv.classify` refuse another size in
    one line. The graph's output maps are layers too (``"output"``; `GraphArchitecture.output_specs`).
    `preprocessing`: what the module expects of its input: ``"imagenet"`` (the default: ImageNet-normalized RGB),
    ``"caffe"`` (BGR, 0..255, minus the BGR mean), ``"unit"`` (RGB in [0, 1]), ``"minus_one_one"`` ((x - 0.5) /
    0.5) or a dict ``{"mean": [r, g, b], "std": [r, g, b], "scale": 1 or 255, "channels": "RGB" or "BGR"}`` (mean
    and std on that scale, in that channel order). The model still takes the library's input (ImageNet-normalized
    RGB, NHWC): ``model.apply(dv.normalize(x01))`` equals the module on ``P(x01)``. It is applied as its own
    elementwise step before the first op (never folded into a padded convolution), stored in a saved file and
    shown by ``repr(model)``.

    Raises ValueError (one line) for a whole detector (pass its ``.backbone``), an input that is not one image
    tensor, a module torch.export cannot capture (with torch's reason), or an op with no JAX lowering (named,
    with its module path).
    """
    if not isinstance(module, torch.nn.Module):
        raise CaptureError(f"from_torch needs a torch.nn.Module, got {type(module).__name__}")
    stored = stored_preprocessing(preprocessing)  # a bad one fails before the (slow) capture
    if _is_detector(module):
        raise CaptureError(f"{type(module).__name__} is a whole detector, whose outputs (boxes after non-maximum "
                           "suppression) have data-dependent shapes; import its feature extractor instead: "
                           "from_torch(model.backbone)")  # fmt: skip
    x = _example(module, example_input)
    was_training = module.training
    module.eval()
    try:
        ep, spatial = capture(module, x, dynamic)
    finally:
        module.train(was_training)
    dtype = target_dtype(np.dtype(str(x.dtype).removeprefix("torch.")))
    arch, params = to_graph(ep, name or type(module).__name__.lower(), tuple(x.shape[2:]), spatial, dtype)
    arch = dataclasses.replace(arch, preprocessing=stored)
    if spatial and not _takes_other_sizes(arch):  # e.g. a flatten + linear head: torch keeps H and W symbolic,
        arch = dataclasses.replace(arch, fixed_hw=arch.example_hw)  # tied by a guard the graph does not keep
    import jax.numpy as jnp

    variables = {"params": {k: jnp.asarray(np.asarray(v, dtype=target_dtype(v.dtype))) for k, v in params.items()}}
    return Model(variables=variables, arch=arch)
