"""PyTorch references of the three backward methods, for cross-checking `dv.project`.

`projection_rules` (a TorchFunctionMode) applies the rules of every rectifier-like activation to torch autograd
through any module, functional calls included. `backward_features` is the older reference for the hand-written
families (AlexNet, VGG, ResNet): torch autograd through the module up to a layer with every nn.ReLU module's
backward replaced:

- ``"deconv"``: relu(grad) (Zeiler & Fergus's DeconvNet; Captum's Deconvolution),
- ``"guided"``: relu(grad) where the forward input was positive (Springenberg et al.; Captum's GuidedBackprop),
- ``"gradient"``: the ordinary backward (Captum's Saliency without the absolute value).
"""

from __future__ import annotations

import copy

import torch

from converters._compare import truncated
from converters._torchvision import detect_architecture
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


# ----------------------------------------------------------------------------------------------------------------
# The same rules for any module: every rectifier call, module or functional, intercepted by a TorchFunctionMode
# ----------------------------------------------------------------------------------------------------------------

F = torch.nn.functional

# every way torch spells a rectifier-like activation -> (its out-of-place function, the position of its `inplace`
# argument or None, whether it is in place by name)
_RECTIFIERS = {
    torch.relu: (torch.relu, None, False),
    torch.Tensor.relu: (torch.relu, None, False),
    torch.relu_: (torch.relu, None, True),  # also F.relu_
    torch.Tensor.relu_: (torch.relu, None, True),
    F.relu: (torch.relu, 1, False),
    F.relu6: (F.relu6, 1, False),
    F.hardtanh: (F.hardtanh, 3, False),
    F.hardtanh_: (F.hardtanh, None, True),
    F.leaky_relu: (F.leaky_relu, 2, False),
    F.leaky_relu_: (F.leaky_relu, None, True),
    F.elu: (F.elu, 2, False),
    F.elu_: (F.elu, None, True),
    F.gelu: (F.gelu, None, False),
    F.silu: (F.silu, 1, False),
    F.hardswish: (F.hardswish, 1, False),
}


def _result(ctx, x: torch.Tensor, y: torch.Tensor, inplace: bool) -> torch.Tensor:
    """A Function's output `y` of input `x`: written into `x` (marked dirty) for an in-place call."""
    if inplace:
        ctx.mark_dirty(x)
        return x.copy_(y)
    return y


class _RectifierRule(torch.autograd.Function):
    """A rectifier-like activation ``call(x)`` whose backward is a projection method's rule: ``relu(g)``
    (``"deconv"``) or torch's own backward of ``call`` at `x` applied to ``relu(g)`` (``"guided"``: relu(g) * f'(x))."""

    @staticmethod
    def forward(ctx, x, call, method, inplace):
        y = call(x)
        ctx.call, ctx.method, ctx.x = call, method, None
        if method == "guided" and inplace:  # the input is about to be overwritten: keep a copy
            ctx.x = x.detach().clone()
        elif method == "guided":
            ctx.save_for_backward(x)
        return _result(ctx, x, y, inplace)

    @staticmethod
    def backward(ctx, grad):
        g = grad.clamp(min=0)
        if ctx.method == "deconv":
            return g, None, None, None
        with torch.enable_grad(), torch._C.DisableTorchFunction():  # torch's own backward, even inside the mode
            x = (ctx.x if ctx.x is not None else ctx.saved_tensors[0]).detach().requires_grad_(True)
            (dx,) = torch.autograd.grad(ctx.call(x), x, g)
        return dx, None, None, None


class _Hardsigmoid(torch.autograd.Function):
    """hardsigmoid with its exact backward, ``g / 6`` where ``-3 < x < 3``: torch's kernel multiplies by a float32
    1/6, ~3e-8 off in float64, far above the 1e-9 the float64 references are compared to."""

    @staticmethod
    def forward(ctx, x, inplace):
        y = F.hardsigmoid(x)
        ctx.save_for_backward(((x > -3) & (x < 3)).to(x.dtype))
        return _result(ctx, x, y, inplace)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside / 6, None


class projection_rules(torch.overrides.TorchFunctionMode):
    """``with converters.projection_rules(method):`` torch autograd through ANY module then computes `method`'s
    projection: every rectifier-like activation, called as a module or a function (``nn.ReLU``, ``F.relu``,
    ``torch.relu``, ``Tensor.relu_``, ReLU6/hardtanh, leaky_relu, elu, gelu, silu, hardswish, in place or not) has
    the method's backward rule, and everything else keeps its true backward:

    - ``"deconv"``: ``relu(g)`` at every rectifier-like activation (the DeconvNet);
    - ``"guided"``: ``relu(g) * f'(x)``, torch's own backward of the activation applied to ``relu(g)``;
    - ``"gradient"``: nothing is changed (the ordinary gradient).

    The torch reference of ``dv.project`` for graph networks (the table in ``deepvis_jax/_src/rules.py``). In-place
    calls stay in place. Max-pools keep torch's backward, which is the unpooling through their switches.
    ``F.hardsigmoid`` (squeeze-excitation gates) keeps its true backward, computed exactly (torch's own is
    float32-accurate only, even in float64).
    """

    def __init__(self, method: str = "deconv"):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")
        self.method = method

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is F.hardsigmoid:  # a gate: its true backward, computed exactly
            inplace = bool(kwargs.pop("inplace", args[1] if len(args) > 1 else False))
            return _Hardsigmoid.apply(args[0], inplace)
        spec = _RECTIFIERS.get(func) if self.method != "gradient" else None
        if spec is None:
            return func(*args, **kwargs)
        out_of_place, at, inplace = spec
        x, rest = args[0], list(args[1:])
        inplace = bool(kwargs.pop("inplace", False)) or inplace
        if at is not None and len(args) > at:
            inplace = bool(rest.pop(at - 1)) or inplace
        return _RectifierRule.apply(x, lambda t: out_of_place(t, *rest, **kwargs), self.method, inplace)
