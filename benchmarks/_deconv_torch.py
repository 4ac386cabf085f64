"""The PyTorch way of doing DeconvNet projections: autograd with ReLU's backward replaced by relu(grad), one
forward and backward per projected channel (as the original class and Captum's NeuronDeconvolution do)."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np
import torch

import deepvis_jax as dv


def top_k_projections(features: torch.nn.Sequential, x: torch.Tensor, top_k: int):
    """(channels, projections (top_k, 3, H, W)): the strongest channels by max activation, each channel's single
    strongest unit projected to the input by its own forward + backward pass (no weight gradients)."""
    with torch.no_grad():
        act = features(x)[0]
    channels = torch.topk(act.amax(dim=(1, 2)), top_k).indices
    projections = []
    for c in channels.tolist():
        xg = x.detach().clone().requires_grad_(True)
        a = features(xg)
        grad = torch.zeros_like(a)
        flat = a[0, c].detach().reshape(-1)
        j = int(torch.argmax(flat))
        grad[0, c].view(-1)[j] = flat[j]
        (g,) = torch.autograd.grad(a, xg, grad)  # the input's gradient only, as Captum computes it
        projections.append(g[0])
    return channels, torch.stack(projections)


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def benchmark_image(size: int = 224) -> tuple[np.ndarray, torch.Tensor]:
    """The top-k benchmarks' image: uniform noise (uint8, seeded), and normalized as torch takes it (1, 3, S, S)."""
    image = (np.random.default_rng(0).uniform(0, 1, (size, size, 3)) * 255).astype(np.uint8)
    return image, nchw(np.asarray(dv.normalize(image[None].astype(np.float32) / 255)))


def float64_top_k_check(make_model: Callable, features: torch.nn.Module, image: np.ndarray, layer: str,
                        method: str = "deconv", top_k: int = 9) -> float:  # fmt: skip
    """Max relative difference between `dv.visualize`'s top-k projections and the per-channel torch loop, both in
    float64 (where decisions are unambiguous); AssertionError when they chose different channels. `make_model()`
    builds the float64 model (called with x64 on); `features`: the float64 torch forward up to `layer`, with
    `method`'s rule at its ReLUs."""
    with jax.enable_x64(True):
        r = dv.visualize(make_model(), image, layer, top_k=top_k, mode="max", method=method)
        x = np.asarray(dv.normalize(image[None].astype(np.float64) / 255))
        channels, projections = top_k_projections(features, nchw(x), top_k)
        if not np.array_equal(np.asarray(r.channels), channels.numpy()):
            raise AssertionError(f"{layer}: JAX and PyTorch chose different channels; timing is void")
        a, b = np.asarray(r.projections, np.float64), projections.numpy().transpose(0, 2, 3, 1)
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
