"""PyTorch references shared by the tests (torch lives only in tests, converters and benchmarks)."""

from __future__ import annotations

import numpy as np
import torch
import torchvision


def torch_model(arch: str, seed: int = 0, dtype=torch.float32) -> torch.nn.Module:
    """A torchvision model with seeded random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    m = torchvision.models.get_model(arch, weights=None)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) * 1.5 + 0.5)
                mod.weight.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.bias.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
    return m.to(dtype).eval()


def nchw(x) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)


def assert_close(actual, expected, rtol: float, err_msg: str = "") -> None:
    """Elementwise |a - e| <= rtol * |e| + rtol * max|e|: relative, with an absolute floor at the tensor's scale."""
    expected = np.asarray(expected, dtype=np.float64)
    scale = float(np.max(np.abs(expected))) or 1.0
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=rtol * scale,
                               err_msg=err_msg)  # fmt: skip
