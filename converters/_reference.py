"""PyTorch references of the three backward methods, for cross-checking `dv.project` on a torchvision module.

Each is torch autograd through ``module.features`` with every ReLU's backward replaced:

- ``"deconv"``: relu(grad) (Zeiler & Fergus's DeconvNet; Captum's Deconvolution),
- ``"guided"``: relu(grad) where the forward input was positive (Springenberg et al.; Captum's GuidedBackprop),
- ``"gradient"``: the ordinary backward (Captum's Saliency without the absolute value).
"""

from __future__ import annotations

import torch

from converters._torchvision import detect_architecture
from deepvis_jax._src.models import get_architecture, layer_name

METHODS = ("deconv", "guided", "gradient")


class _DeconvReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0).to(grad.dtype)


class _ReLUWithBackward(torch.nn.Module):
    def __init__(self, fn: type[torch.autograd.Function]):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn.apply(x)


def backward_features(module: torch.nn.Module, layer, method: str = "deconv") -> torch.nn.Sequential:
    """``module.features`` up to conv `layer` (name or 1-based index; after its ReLU), each ReLU's backward set by
    `method`. Backpropagating a signal from its output to the input (``torch.autograd.grad``) is what
    ``dv.project(model, switches, signal, layer, method=method)`` computes."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")
    arch = get_architecture(detect_architecture(module))
    top = arch.top_index(layer_name(arch, layer))
    fn = {"deconv": _DeconvReLU, "guided": _GuidedReLU}.get(method)
    ops = [
        (_ReLUWithBackward(fn) if fn else torch.nn.ReLU()) if isinstance(m, torch.nn.ReLU) else m
        for m in module.features[: top + 1]
    ]
    return torch.nn.Sequential(*ops).eval()
