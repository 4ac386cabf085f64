"""graph networks: torchvision GoogLeNet, MobileNet v3 (large) and ConvNeXt-T imported with `converters.from_torch`,
against torch eager on the same weights, 224 px.

- ``classify``: logits, batch 1 (and 8), against the torch module's forward.
- ``top-9``: `dv.visualize(top_k=9, mode="max", method="gradient")` against the per-channel torch loop (one forward
  up to the layer, stopped by a forward hook, and one backward per channel: what Captum-style code does). The
  gradient method is the true vjp, so torch autograd is the reference without replacing any module; the check
  runs both in float64 (untimed).
- ``import`` (extra): seconds `from_torch` takes (torch.export, decomposition, conversion); ``compile`` the first
  classify call minus the steady state.
"""

from __future__ import annotations

import copy
import time

import jax
import numpy as np
import torch
import torchvision

import converters
import deepvis_jax as dv

from ._deconv_torch import benchmark_image, float64_top_k_check, nchw, top_k_projections
from ._harness import Row, checked, max_rel, time_jax, time_torch

CASES = (("googlenet", "inception4a"), ("mobilenet_v3_large", "features.10"), ("convnext_tiny", "features.5.4"))


class _Stop(Exception):
    pass


class UpTo(torch.nn.Module):
    """A torch module's forward up to one of its submodules: the submodule's output, as a forward hook sees it
    (the forward stops there)."""

    def __init__(self, module: torch.nn.Module, layer: str):
        super().__init__()
        self.module, self.target = module, dict(module.named_modules())[layer]

    def forward(self, x):
        def hook(mod, inputs, output):
            raise _Stop(output)

        handle = self.target.register_forward_hook(hook)
        try:
            self.module(x)
        except _Stop as stop:
            return stop.args[0]
        finally:
            handle.remove()
        raise AssertionError("the layer was not reached")  # pragma: no cover


def torch_family(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    return torchvision.models.get_model(name, weights=None, **kwargs).eval()


def _float64_check(tm, model, image, layer) -> float:
    tm64 = copy.deepcopy(tm).double()
    return float64_top_k_check(lambda: jax.tree_util.tree_map(lambda a: jax.numpy.asarray(a, jax.numpy.float64), model),
                               UpTo(tm64, layer), image, layer, method="gradient")  # fmt: skip


def run(quick: bool) -> list[Row]:
    rows = []
    repeats = 2 if quick else 5
    image, xt = benchmark_image()
    for name, layer in CASES[:1] if quick else CASES:
        tm = torch_family(name)
        t0 = time.perf_counter()
        model = converters.from_torch(tm)
        import_s = time.perf_counter() - t0
        extra = {"import (s)": f"{import_s:.1f}"}
        for n in (1,) if quick else (1, 8):
            x = np.random.default_rng(n).standard_normal((n, 224, 224, 3)).astype(np.float32)
            xn = nchw(x)
            first, jax_s, out = time_jax(lambda: dv.classify(model, x), repeats)
            torch_s, ref = time_torch(lambda: _no_grad(tm, xn), repeats)
            check = checked("logits", max_rel(out, ref.numpy()), 1e-4)
            rows.append(Row(f"classify {name} batch {n} 224px", jax_s, torch_s, first - jax_s, check, extra))
            extra = {}
        first, jax_s, r = time_jax(lambda: dv.visualize(model, image, layer, top_k=9, method="gradient"), repeats)
        feats = UpTo(tm, layer)
        torch_s, (channels, projections) = time_torch(lambda: top_k_projections(feats, xt, 9), repeats)
        err32 = max_rel(r.projections, projections.numpy().transpose(0, 2, 3, 1))
        check = checked("f64 projections", _float64_check(tm, model, image, layer), 1e-9) + f"; f32 {err32:.0e}"
        rows.append(Row(f"visualize top-9 {name} {layer} 224px", jax_s, torch_s, first - jax_s, check))
    return rows


def _no_grad(module, x):
    with torch.no_grad():
        return module(x)
