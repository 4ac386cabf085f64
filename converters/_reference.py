"""PyTorch references of the three backward methods, for cross-checking `dv.project` on a torchvision module.

Each is torch autograd through the module up to a layer with every ReLU's backward replaced:

- ``"deconv"``: relu(grad) (Zeiler & Fergus's DeconvNet; Captum's Deconvolution),
- ``"guided"``: relu(grad) where the forward input was positive (Springenberg et al.; Captum's GuidedBackprop),
- ``"gradient"``: the ordinary backward (Captum's Saliency without the absolute value).
"""

from __future__ import annotations

import copy

import torch

from converters._torchvision import detect_architecture, truncated
from deepvis_jax._src.nets import get_architecture, layer_name

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


def _replace_relus(module: torch.nn.Module, make) -> None:
    """Replace every nn.ReLU inside `module` (Sequential entries and attributes such as a block's ``relu``)."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(parent, name, make())


def backward_features(module: torch.nn.Module, layer, method: str = "deconv") -> torch.nn.Sequential:
    """The torch module's forward pass up to `layer` (name or 1-based index; its activation is the output), on a
    copy whose every ReLU has `method`'s backward (a fresh, not-in-place module). Backpropagating a signal from
    its output to the input (``torch.autograd.grad``) is what ``dv.project(model, switches, signal, layer,
    method=method)`` computes."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")
    arch = get_architecture(detect_architecture(module))
    feats = copy.deepcopy(truncated(module, arch, layer_name(arch, layer)))
    fn = {"deconv": _DeconvReLU, "guided": _GuidedReLU}.get(method)
    _replace_relus(feats, (lambda: _ReLUWithBackward(fn)) if fn else torch.nn.ReLU)
    return feats.eval()
