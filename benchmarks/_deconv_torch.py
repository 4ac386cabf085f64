"""The PyTorch way of doing DeconvNet projections: autograd with ReLU's backward replaced by relu(grad), one
forward and backward per projected channel (as the original class and Captum's NeuronDeconvolution do)."""

from __future__ import annotations

import torch


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
