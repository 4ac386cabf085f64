"""dv.objectives against Lucent 0.1.8's objectives on the same activations (a check, not a timing; not in CI).

Each Lucent objective is called with a ``T`` that returns fixed activations (float64, NCHW) of a random-weight
AlexNet's conv1/conv2 for five 67 px images; its value (minus its loss, for Lucent's sign) is compared with
``dv.objectives.evaluate`` on the same images: per image (Lucent's ``batch=i``) and on the batch. Prints the largest
relative difference of each. Lucent is optional: ``pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1
decorator``; without it this prints one line and exits. Run: ``python -m benchmarks.lucent_objectives``.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np


def _lucent_objectives():
    """lucent.optvis.objectives without lucent.optvis's __init__ (which imports rendering, kornia and IPython)."""
    spec = importlib.util.find_spec("lucent")
    base = spec.submodule_search_locations[0]
    pkg = types.ModuleType("lucent.optvis")
    pkg.__path__ = [base + "/optvis"]
    sys.modules.setdefault("lucent", importlib.import_module("lucent"))
    sys.modules["lucent.optvis"] = pkg
    return importlib.import_module("lucent.optvis.objectives")


def main() -> int:
    for mod in ("lucent", "decorator"):
        if importlib.util.find_spec(mod) is None:
            print(f"skipped: {mod} is not installed (pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 decorator)")
            return 0
    import torch

    import deepvis_jax as dv
    from tests.reference import as_float64

    lo = _lucent_objectives()
    O = dv.objectives
    jax.config.update("jax_enable_x64", True)
    model = as_float64(dv.load_model("alexnet", seed=0))
    images01 = np.random.default_rng(3).random((5, 67, 67, 3))
    x = dv.normalize(jnp.asarray(images01))
    acts = {name: torch.tensor(np.asarray(model.apply(x, upto=name, pre_relu=True)).transpose(0, 3, 1, 2))
            for name in ("conv1", "conv2")}  # fmt: skip
    acts["input"] = torch.tensor(images01.transpose(0, 3, 1, 2))
    rng = np.random.default_rng(0)
    v, w = rng.normal(size=192), rng.normal(size=192)
    tv, tw = torch.tensor(v), torch.tensor(w)

    def lucent(obj):
        return -float(obj(lambda name: acts[name]))

    per_image = [  # (name, Lucent factory of batch=..., dv objective, target)
        ("channel", lambda b: lo.channel("conv2", 17, batch=b), O.channel("conv2"), 17),
        ("neuron", lambda b: lo.neuron("conv2", 17, x=4, y=2, batch=b), O.neuron("conv2", y=2, x=4), 17),
        ("direction (cosine)", lambda b: lo.direction("conv2", tv, batch=b), O.direction("conv2", v, cosine=True), None),
        ("direction_neuron (cosine)", lambda b: lo.direction_neuron("conv2", tv, batch=b),
         O.direction_neuron("conv2", v, cosine=True), None),
        ("channel_weight", lambda b: lo.channel_weight("conv2", tw, batch=b), O.channel_weight("conv2", w), None),
        ("neuron_weight", lambda b: lo.neuron_weight("conv2", tw, x=1, y=5, batch=b),
         O.neuron_weight("conv2", w, y=5, x=1), None),
        ("localgroup_weight", lambda b: lo.localgroup_weight("conv2", tw, x=1, y=2, wx=3, wy=2, batch=b),
         O.localgroup_weight("conv2", w, y=2, x=1, wy=2, wx=3), None),
    ]  # fmt: skip
    worst = 0.0
    for name, make, objective, t in per_image:
        targets = None if t is None else [t] * 5
        ours = np.asarray(O.evaluate(objective, model, x, targets))
        theirs = np.array([lucent(make(i)) for i in range(5)])  # Lucent's batch=i slices the batch itself
        err = float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-300)))
        line = f"{name:28s} per image: max rel diff {err:.1e}"
        if name != "neuron":  # Lucent averages a neuron over the batch, Lucid (and deepvis_jax) sums
            whole = float(O.evaluate(objective, model, x, targets, batch=True))
            e2 = abs(whole - lucent(make(None))) / abs(lucent(make(None)))
            line += f"; batch: {e2:.1e}"
            err = max(err, e2)
        worst = max(worst, err)
        print(line)
    batch = [("diversity", lo.diversity("conv2"), O.diversity("conv2")),
             ("alignment", lo.alignment("conv2"), O.alignment("conv2")),
             ("channel_interpolate", lo.channel_interpolate("conv1", 7, "conv2", 40),
              O.channel_interpolate("conv1", 7, "conv2", 40)),
             ("channel - 1e2 * diversity", lo.channel("conv2", 3) - 1e2 * lo.diversity("conv2"),
              O.channel("conv2") - 1e2 * O.diversity("conv2"))]  # fmt: skip
    for name, theirs, objective in batch:
        targets = [3] * 5 if objective.targets(model) else None
        ours, ref = float(O.evaluate(objective, model, x, targets)), lucent(theirs)
        err = abs(ours - ref) / abs(ref)
        worst = max(worst, err)
        print(f"{name:28s} batch: {ours:.6g} vs Lucent {ref:.6g}, rel diff {err:.1e}")
    # blur_input_each_step: Lucent's blur kernel is float32 (.float()), so compare in float32
    acts32 = {"input": acts["input"].float()}
    ref = -float(lo.blur_input_each_step()(lambda name: acts32[name]))
    ours = float(O.evaluate(O.blur_input_each_step(), model, x, batch=True))
    err = abs(ours - ref) / abs(ref)
    print(f"{'blur_input_each_step':28s} batch: rel diff {err:.1e} (Lucent in float32)")
    print(f"worst float64 relative difference: {worst:.1e}")
    return 0 if worst < 1e-12 and err < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
