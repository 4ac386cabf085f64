"""PyTorch references shared by the tests (torch lives only in tests, converters and benchmarks)."""

from __future__ import annotations

import numpy as np
import torch
import torchvision

import converters


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


# ----------------------------------------------------------------------------------------------------------------
# Backward methods by torch autograd: DeconvNet, guided backprop, gradient
# ----------------------------------------------------------------------------------------------------------------


def torch_backward(tm, arch, x_nhwc, layer, signals_nhwc, method: str = "deconv"):
    """Projections by torch autograd of `tm.features` up to `layer` (after its ReLU), one backward per signal,
    with every ReLU's backward as `method` says. Returns (activation NHWC, stacked input grads NHWC or None)."""
    feats = converters.backward_features(tm, layer, method)
    xt = nchw(x_nhwc).to(next(tm.parameters()).dtype).requires_grad_(True)
    out = feats(xt)
    grads = []
    for s in signals_nhwc:
        (g,) = torch.autograd.grad(out, xt, nchw(s).to(out.dtype), retain_graph=True)
        grads.append(nhwc(g))
    return nhwc(out), (np.stack(grads) if grads else None)


def torch_deconv(tm, arch, x_nhwc, layer, signals_nhwc):
    """DeconvNet projections by torch autograd with ReLU's backward replaced by relu(grad)."""
    return torch_backward(tm, arch, x_nhwc, layer, signals_nhwc, "deconv")


def probe_signals(act, rng):
    """Three signals for the strongest channel's view: "max" mode, "all" mode, and a random signed one."""
    a = np.asarray(act)
    c = int(np.argmax(a.max(axis=(0, 1, 2))))
    one = np.zeros_like(a)
    i, j = np.unravel_index(np.argmax(a[0, :, :, c]), a.shape[1:3])
    one[0, i, j, c] = a[0, i, j, c]
    whole = np.zeros_like(a)
    whole[..., c] = a[..., c]
    return np.stack([one, whole, rng.standard_normal(a.shape).astype(a.dtype)])
