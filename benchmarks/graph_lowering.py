"""Should `converters.from_torch`'s graph networks be lowered to a JAX function and run by the jaxpr interpreter of
`dv.from_jax` (one interpreter for every import)? The same torchvision network (random weights, 224 px, batch 1)
run both ways:

- ``graph``: the ATen interpreter (`nets/graph/`), its ReLUs, activations and max-pools through `rules.py`;
- ``lowered``: that interpreter traced with plain ops into a jaxpr (each ATen node inside a named scope of its
  torch module, so the layers keep their names), then run by the jaxpr interpreter (`nets/jaxpr/`), which must
  find every rule again in the primitives.

Reports the median milliseconds of ``classify`` and of `forward` + `project` at one layer ("gradient" and
"deconv"), and the largest difference between the two programs' results relative to the peak (float32; a rule
that is lost shows as a difference far above rounding, for "deconv"). docs/graph-networks.md has the decision.

    python -m benchmarks.graph_lowering
"""

from __future__ import annotations

import time

import jax
import numpy as np
import torch
import torchvision

import converters
import deepvis_jax as dv
from deepvis_jax._src.nets.graph import interpreter as graph_interpreter
from deepvis_jax._src.nets.jaxpr import imports as jax_imports
from deepvis_jax._src.nets.jaxpr.program import PATH

from ._harness import max_rel, time_jax

CASES = (("resnet18", "layer3.1"), ("mobilenet_v3_large", "features.10"), ("googlenet", "inception4a"))


def lowered(g: dv.Model, x: np.ndarray) -> dv.Model:
    """The graph network `g` traced into a jaxpr and imported with `dv.from_jax` (at `x`'s shape: the ATen
    interpreter's sizes are Python ints, so its trace is not symbolic)."""
    plain_eval = graph_interpreter._eval

    def scoped_eval(ctx, arch, params, xx, i, env):
        module = arch.nodes[i].module
        if not module:
            return plain_eval(ctx, arch, params, xx, i, env)
        with jax.named_scope(PATH + module):
            return plain_eval(ctx, arch, params, xx, i, env)

    def concrete_trace(fn, spec, hw, dtype):
        return jax.make_jaxpr(fn)(spec, jax.ShapeDtypeStruct(x.shape, dtype)), "b"

    saved = graph_interpreter._eval, jax_imports._trace
    graph_interpreter._eval, jax_imports._trace = scoped_eval, concrete_trace
    try:
        return dv.from_jax(lambda v, xx: g.replace(variables=v).apply(xx), g.variables, x, name=g.name + "_lowered")
    finally:
        graph_interpreter._eval, jax_imports._trace = saved


def main() -> None:
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
    for name, layer in CASES:
        kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
        g = converters.from_torch(torchvision.models.get_model(name, weights=None, **kwargs).eval())
        t0 = time.perf_counter()
        j = lowered(g, x)
        left = [ln.strip() for ln in j.arch.rules_report().splitlines() if ln.strip().startswith("nonlinear  ")]
        print(f"{name}: lowered in {time.perf_counter() - t0:.1f} s, {len(j.arch.program.eqns)} equations from "
              f"{len(g.arch.nodes)} ATen nodes; left with their true vjp: {left or 'none'}")
        _, a, ref = time_jax(lambda: dv.classify(g, x), 5)
        _, b, out = time_jax(lambda: dv.classify(j, x), 5)
        print(f"  classify          graph {a * 1e3:7.1f} ms  lowered {b * 1e3:7.1f} ms  rel {max_rel(out, ref):.1e}")
        for method in ("gradient", "deconv"):
            def projection(m, method=method):
                act, switches = dv.forward(m, x, layer)
                return dv.project(m, switches, act, layer, method=method)

            _, a, ref = time_jax(lambda: projection(g), 3)
            _, b, out = time_jax(lambda: projection(j), 3)
            print(f"  project {method:9s} graph {a * 1e3:7.1f} ms  lowered {b * 1e3:7.1f} ms  "
                  f"rel {max_rel(out, ref):.1e}")


if __name__ == "__main__":
    main()
