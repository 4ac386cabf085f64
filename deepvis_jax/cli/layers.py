"""`deepvis layers`: list the layers and their channel counts.

List the visualizable layers of a model: index, name, channels, smallest image. The model is --model, or the
architecture a converted --weights file records.
"""

from __future__ import annotations

import argparse

import deepvis_jax as dv

from ._common import add_command, model_arch, model_arg, weights_arg


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add_command(sub, common, __name__, model_arg, compiles=False)
    weights_arg(p, default=None)


def run(args: argparse.Namespace) -> int:
    arch = model_arch(args)
    names = dv.layers(arch)
    if isinstance(arch, dv.Architecture):
        kind = "conv layers"
    elif isinstance(arch, dv.ResNetArchitecture):
        kind = "layers (the stem, then each residual block)"
    else:
        kind = "layers (the module paths whose output is one feature map)"
    print(f"{arch.name}: {len(names)} {kind} (--layer takes the index or the name)")
    width = max(8, *map(len, names))
    print(f"{'index':>5}  {'name':<{width}} {'channels':>8}  {'min image':>9}")
    for i, name in enumerate(names, 1):
        n = dv.min_image_size(arch, name)
        print(f"{i:>5}  {name:<{width}} {dv.layer_channels(arch, name):>8}  {f'{n}x{n}':>9}")
    for name in getattr(arch, "output_layers", ()):  # a graph's output maps: layers by name, listed apart
        n = dv.min_image_size(arch, name)
        print(f"{'-':>5}  {name:<{width}} {dv.layer_channels(arch, name):>8}  {f'{n}x{n}':>9}  (the network's output "
              f"map; --layer {name})")  # fmt: skip
    n = dv.min_image_size(arch)
    pre = getattr(arch, "preprocessing_name", None) or getattr(arch, "preprocessing", "imagenet")
    fixed = getattr(arch, "fixed_hw", None)
    size = "any size" if fixed is None else f"{fixed[0]}x{fixed[1]} only (images are resized to it)"
    print(f"input: {size}; preprocessing {pre} (applied inside the model: give it ImageNet-normalized RGB)")
    if arch.num_classes is None:
        print(f"no classifier (the network's outputs are not one (N, classes) tensor); needs at least {n}x{n} pixels")
    else:
        print(f"classifier: {arch.num_classes} classes, needs at least {n}x{n} pixels")
    return 0
