"""Cross-checking a converted model against its torch module, layer by layer (`compare`), and the torch side's
activations by layer name. Imports torch."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn as tnn

from deepvis_jax._src.nets import AnyArchitecture, all_activations
from deepvis_jax._src.nets.alexnet_vgg import Architecture
from deepvis_jax._src.nets.resnet import STEM, ResNetArchitecture

from ._torchvision import detect_architecture


class Difference(NamedTuple):
    """max |a - b| and that divided by max |b| (relative to the reference tensor's scale)."""

    max_abs: float
    max_rel: float


def layer_modules(module: tnn.Module, arch: AnyArchitecture) -> dict[str, tnn.Module]:
    """Layer name -> the torch submodule whose output is that layer's activation (what a forward hook sees)."""
    if isinstance(arch, ResNetArchitecture):
        blocks = {layer: getattr(module, f"layer{s}")[i] for layer in arch.layers[1:] for s, i in [arch.stage(layer)]}
        return {STEM: module.relu, **blocks}
    return {n: module.features[arch.top_index(n)] for n in arch.layers}


def truncated(module: tnn.Module, arch: AnyArchitecture, layer: str) -> tnn.Sequential:
    """The torch module's forward pass up to `layer` (its output is the layer's activation), sharing its modules."""
    if isinstance(arch, Architecture):
        return tnn.Sequential(*module.features[: arch.top_index(layer) + 1])
    parts = [module.conv1, module.bn1, module.relu]
    if layer != STEM:
        stage, index = arch.stage(layer)
        parts += [module.maxpool, *(getattr(module, f"layer{s}") for s in range(1, stage))]
        parts.append(getattr(module, f"layer{stage}")[: index + 1])
    return tnn.Sequential(*parts)


def torch_activations(module: tnn.Module, x_nchw: torch.Tensor, arch: AnyArchitecture) -> dict[str, torch.Tensor]:
    """Every layer's activation (forward hooks), and the logits, from the torchvision module (eval mode)."""
    out: dict[str, torch.Tensor] = {}

    def hook(name):
        return lambda mod, inputs, output: out.__setitem__(name, output.clone())

    handles = [m.register_forward_hook(hook(n)) for n, m in layer_modules(module, arch).items()]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out["logits"] = module(x_nchw)
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return out


def compare(torch_module: tnn.Module, model, x) -> dict[str, Difference]:
    """Run torchvision and deepvis_jax on the same normalized NHWC input; per conv layer and logits, the difference.

    ``x``: (N, H, W, 3) normalized images (numpy or JAX). The torch module runs in eval mode in its own dtype.
    """
    arch = model.arch
    if detect_architecture(torch_module) != arch.name:
        raise ValueError(f"the torch module is a {detect_architecture(torch_module)}, the model a {arch.name}")
    x = np.asarray(x)
    dtype = next(torch_module.parameters()).dtype
    ref = torch_activations(torch_module, torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dtype), arch)
    logits, acts = all_activations(model, x.astype(np.dtype(model.dtype)))
    ours = {**{k: np.asarray(v).transpose(0, 3, 1, 2) for k, v in acts.items()}, "logits": np.asarray(logits)}
    result = {}
    for name in [*arch.layers, "logits"]:
        a, b = ours[name].astype(np.float64), ref[name].double().numpy()
        err = float(np.max(np.abs(a - b)))
        scale = float(np.max(np.abs(b)))
        result[name] = Difference(err, err / scale if scale > 0 else err)
    return result
