"""top-9 projections: dv.visualize(..., top_k=9) against the per-channel PyTorch DeconvNet loop, 224 px."""

from __future__ import annotations

import numpy as np
import torch

import converters
import deepvis_jax as dv

from ._deconv_torch import deconv_features, top_k_projections
from ._harness import Row, checked, max_rel, time_jax, time_torch
from ._models import torch_model

CASES = (("alexnet", "conv5"), ("vgg16", "conv5_3"))


def run(quick: bool) -> list[Row]:
    rows = []
    repeats = 2 if quick else 5
    image = (np.random.default_rng(0).uniform(0, 1, (224, 224, 3)) * 255).astype(np.uint8)
    x = np.asarray(dv.normalize(image[None].astype(np.float32) / 255))
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    for arch, layer in CASES[:1] if quick else CASES:
        tm = torch_model(arch)
        model = converters.from_torchvision(tm)
        feats = deconv_features(tm, model.arch.top_index(layer))
        first, jax_s, r = time_jax(lambda: dv.visualize(model, image, layer, top_k=9, mode="max"), repeats)
        torch_s, (channels, projections) = time_torch(lambda: top_k_projections(feats, xt, 9), repeats)
        if not np.array_equal(np.asarray(r.channels), channels.numpy()):
            raise AssertionError(f"{arch} {layer}: JAX and PyTorch chose different channels; timing is void")
        err = max_rel(r.projections, projections.numpy().transpose(0, 2, 3, 1))
        rows.append(Row(f"visualize top-9 {arch} {layer} 224px", jax_s, torch_s, first - jax_s,
                        checked("projections", err, 1e-4)))  # fmt: skip
    return rows
