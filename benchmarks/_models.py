"""The torch side of every benchmark: torchvision models with seeded random weights (no download)."""

from __future__ import annotations

import torch
import torchvision


def torch_model(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.get_model(arch, weights=None).eval()
