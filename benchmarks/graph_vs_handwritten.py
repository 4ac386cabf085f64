"""Should the graph interpreter replace the hand-written AlexNet, VGG16 and ResNet-50? The same torchvision weights
imported both ways (`converters.from_torchvision` and `converters.from_torch`), 224 px, batch 1:

- ``classify``: logits;
- ``forward+project``: `dv.forward` then `dv.project` (DeconvNet) of a random signal at one layer (AlexNet conv5,
  VGG16 conv5_3, ResNet-50 layer3.5; the graph's layer is the module after that conv's ReLU).

Reports the median seconds of each, the ratio hand-written / graph (> 1: the graph is faster), and the largest
difference between the two programs' results in float32 and float64 (exactness).

    python -m benchmarks.graph_vs_handwritten [--quick]
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

import converters
import deepvis_jax as dv

from ._harness import max_rel, time_jax
from ._models import torch_model

CASES = (("alexnet", "conv5", "features.11"), ("vgg16", "conv5_3", "features.29"),
         ("resnet50", "layer3.5", "layer3.5"))  # fmt: skip


@functools.partial(jax.jit, static_argnames=("layer",))
def forward_project(model, x, signal, layer):
    _, switches = dv.forward(model, x, layer)
    return dv.project(model, switches, signal, layer)


def _f64(model):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), model)


def measure(arch: str, hand_layer: str, graph_layer: str, repeats: int) -> dict:
    tm = torch_model(arch)
    hand, graph = converters.from_torchvision(tm), converters.from_torch(tm)
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
    act = dv.forward(hand, x, hand_layer)[0]
    signal = np.random.default_rng(1).standard_normal(act.shape).astype(np.float32)
    out = {}
    for what, fn in (("classify", lambda m, layer, x, s: dv.classify(m, x)),
                     ("forward+project", lambda m, layer, x, s: forward_project(m, x, s, layer))):  # fmt: skip
        _, hand_s, a = time_jax(lambda: fn(hand, hand_layer, x, signal), repeats)
        _, graph_s, b = time_jax(lambda: fn(graph, graph_layer, x, signal), repeats)
        with jax.enable_x64(True):
            x64, s64 = jnp.asarray(x, jnp.float64), jnp.asarray(signal, jnp.float64)
            err64 = max_rel(fn(_f64(graph), graph_layer, x64, s64), fn(_f64(hand), hand_layer, x64, s64))
        out[what] = (hand_s, graph_s, max_rel(b, a), err64)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.graph_vs_handwritten", description=__doc__)
    p.add_argument("--quick", action="store_true", help="AlexNet only, few repeats")
    args = p.parse_args(argv)
    print(f"{'model':10} {'what':16} {'hand ms':>9} {'graph ms':>9} {'hand/graph':>10} {'f32 rel':>9} {'f64 rel':>9}")
    for arch, hand_layer, graph_layer in CASES[:1] if args.quick else CASES:
        for what, (h, g, e32, e64) in measure(arch, hand_layer, graph_layer, 2 if args.quick else 7).items():
            print(f"{arch:10} {what:16} {h * 1e3:9.1f} {g * 1e3:9.1f} {h / g:9.2f}x {e32:9.1e} {e64:9.1e}")
            if not e64 < 1e-9:
                raise AssertionError(f"{arch} {what}: the graph and the hand-written network disagree ({e64:.1e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
