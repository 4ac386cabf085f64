"""top-9 projections: dv.visualize(..., top_k=9) against the per-channel PyTorch DeconvNet loop, 224 px.

The timed runs are float32. In float32, VGG16's deep max-pools see near-ties (values a few ulp apart) that the two
frameworks may break differently, which moves a projection locally; so the check runs both sides once in float64
(same code, untimed), where the answer is unambiguous, and the float32 difference is reported beside it.
"""

from __future__ import annotations

import copy


import converters
import deepvis_jax as dv

from converters import backward_features

from ._deconv_torch import benchmark_image, float64_top_k_check, top_k_projections
from ._harness import Row, checked, max_rel, time_jax, time_torch
from ._models import torch_model

CASES = (("alexnet", "conv5"), ("vgg16", "conv5_3"))


def _float64_check(tm, image, layer) -> float:
    """max rel difference of the projections with both frameworks in float64."""
    tm64 = copy.deepcopy(tm).double()
    return float64_top_k_check(lambda: converters.from_torchvision(tm64), backward_features(tm64, layer), image, layer)


def run(quick: bool) -> list[Row]:
    rows = []
    repeats = 2 if quick else 5
    image, xt = benchmark_image()
    for arch, layer in CASES[:1] if quick else CASES:
        tm = torch_model(arch)
        model = converters.from_torchvision(tm)
        feats = backward_features(tm, layer)
        first, jax_s, r = time_jax(lambda: dv.visualize(model, image, layer, top_k=9, mode="max"), repeats)
        torch_s, (channels, projections) = time_torch(lambda: top_k_projections(feats, xt, 9), repeats)
        err32 = max_rel(r.projections, projections.numpy().transpose(0, 2, 3, 1))
        check = checked("f64 projections", _float64_check(tm, image, layer), 1e-9) + f"; f32 {err32:.0e}"
        rows.append(Row(f"visualize top-9 {arch} {layer} 224px", jax_s, torch_s, first - jax_s, check))
    return rows
