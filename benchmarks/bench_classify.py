"""classify: AlexNet and VGG16 logits, batch 1 and 8, 224 px, against torchvision eager."""

from __future__ import annotations

import numpy as np
import torch

import converters
import deepvis_jax as dv

from ._harness import Row, checked, max_rel, time_jax, time_torch
from ._models import torch_model


def run(quick: bool) -> list[Row]:
    rows = []
    repeats = 3 if quick else 10
    for arch in ("alexnet", "vgg16"):
        tm = torch_model(arch)
        model = converters.from_torchvision(tm)
        for n in ((1,) if quick else (1, 8)):
            x = np.random.default_rng(n).standard_normal((n, 224, 224, 3)).astype(np.float32)
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            first, jax_s, out = time_jax(lambda: dv.classify(model, x), repeats)
            torch_s, ref = time_torch(lambda: _no_grad(tm, xt), repeats)
            check = checked("logits", max_rel(out, ref.numpy()), 1e-4)
            rows.append(Row(f"classify {arch} batch {n} 224px", jax_s, torch_s, first - jax_s, check))
    return rows


def _no_grad(module, x):
    with torch.no_grad():
        return module(x)
