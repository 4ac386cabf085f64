"""torchvision AlexNet / VGG (module, state dict, .pth) -> deepvis_jax Model. The only place that imports torch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np
import torch
import torch.nn as tnn

from deepvis_jax._src.models import ARCHITECTURES, all_activations, Architecture, BatchNorm, Conv, MaxPool, ReLU, get_architecture
from deepvis_jax._src.weights import WeightsError, WeightsUnavailableError, model_from_arrays

# --------------------------------------------------------------------------------------------------------------
# Name mapping: torchvision state-dict key <-> deepvis_jax variable path (with the layout transform)
# --------------------------------------------------------------------------------------------------------------


def _key_map(arch: Architecture) -> dict[str, tuple[tuple[str, ...], str]]:
    """torchvision key -> (flattened variable path, transform) for every tensor of `arch`."""
    m: dict[str, tuple[tuple[str, ...], str]] = {}
    for i, op in enumerate(arch.features):
        if isinstance(op, Conv):
            m[f"features.{i}.weight"] = (("params", op.name, "kernel"), "conv")
            m[f"features.{i}.bias"] = (("params", op.name, "bias"), "id")
        elif isinstance(op, BatchNorm):
            m[f"features.{i}.weight"] = (("params", op.name, "scale"), "id")
            m[f"features.{i}.bias"] = (("params", op.name, "bias"), "id")
            m[f"features.{i}.running_mean"] = (("batch_stats", op.name, "mean"), "id")
            m[f"features.{i}.running_var"] = (("batch_stats", op.name, "var"), "id")
    for name, _, _, j in arch.classifier:
        m[f"classifier.{j}.weight"] = (("params", name, "kernel"), "dense")
        m[f"classifier.{j}.bias"] = (("params", name, "bias"), "id")
    return m


_IGNORED_SUFFIX = ".num_batches_tracked"  # BN's training counter: no meaning in eval mode


def _to_numpy(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def from_state_dict(state_dict: Mapping[str, Any], arch: str) -> "Model":  # noqa: F821
    """Convert a torchvision state dict of architecture `arch` (e.g. "vgg16_bn").

    Every tensor is matched by its torchvision name; a missing, unexpected or mis-shaped one raises WeightsError
    naming it. The dtype is kept (float64 stays float64 when JAX x64 is on).
    """
    a = get_architecture(arch)
    keys = _key_map(a)
    got = {k: v for k, v in state_dict.items() if not k.endswith(_IGNORED_SUFFIX)}
    missing = [k for k in keys if k not in got]
    extra = [k for k in got if k not in keys]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise WeightsError(f"state dict is missing {missing[0]}{more} for {a.name}")
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise WeightsError(f"state dict has unexpected {extra[0]}{more} for {a.name}")
    flat = {}
    for k, (path, how) in keys.items():
        v = _to_numpy(got[k])
        if how == "conv":
            if v.ndim != 4:
                raise WeightsError(f"{k} has shape {tuple(v.shape)}, expected a 4-d conv weight for {a.name}")
            v = v.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif how == "dense":
            if v.ndim != 2:
                raise WeightsError(f"{k} has shape {tuple(v.shape)}, expected a 2-d linear weight for {a.name}")
            v = v.T  # (out, in) -> (in, out)
        flat[path] = np.ascontiguousarray(v)
    try:
        return model_from_arrays(a, flat, "state dict")
    except WeightsError as e:  # re-word with the torchvision name
        for k, (path, how) in keys.items():
            if "/".join(path) in str(e):
                shape = tuple(_to_numpy(got[k]).shape)
                raise WeightsError(f"state dict tensor {k} has the wrong shape {shape} for {a.name}") from None
        raise


# --------------------------------------------------------------------------------------------------------------
# Architecture detection from structure (never from class names)
# --------------------------------------------------------------------------------------------------------------


def _signature_of_arch(arch: Architecture) -> tuple:
    sig = []
    for op in arch.features:
        if isinstance(op, Conv):
            sig.append(("conv", op.features, op.kernel, op.stride, op.padding))
        elif isinstance(op, BatchNorm):
            sig.append(("bn", op.features))
        elif isinstance(op, ReLU):
            sig.append(("relu",))
        elif isinstance(op, MaxPool):
            sig.append(("pool", op.window, op.stride))
    return tuple(sig)


def _pair(v) -> int | tuple:
    v = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    return v[0] if v[0] == v[1] else v


def _signature_of_module(features: tnn.Module) -> tuple:
    sig = []
    for layer in features.children():
        if isinstance(layer, tnn.Conv2d):
            pad = layer.padding if isinstance(layer.padding, str) else _pair(layer.padding)
            sig.append(("conv", layer.out_channels, _pair(layer.kernel_size), _pair(layer.stride), pad))
        elif isinstance(layer, tnn.BatchNorm2d):
            sig.append(("bn", layer.num_features))
        elif isinstance(layer, tnn.ReLU):
            sig.append(("relu",))
        elif isinstance(layer, tnn.MaxPool2d):
            if _pair(layer.padding) != 0 or layer.ceil_mode or _pair(layer.dilation) != 1:
                sig.append(("pool-unsupported",))
            else:
                sig.append(("pool", _pair(layer.kernel_size), _pair(layer.stride or layer.kernel_size)))
        else:
            sig.append((type(layer).__name__,))
    return tuple(sig)


def detect_architecture(module: tnn.Module) -> str:
    """Which of the nine architectures `module` is, judged from its layers and their shapes."""
    features = getattr(module, "features", None)
    classifier = getattr(module, "classifier", None)
    if not isinstance(features, tnn.Sequential) or not isinstance(classifier, tnn.Sequential):
        raise ValueError(
            f"{type(module).__name__} is not an AlexNet/VGG-style network (no `features` and `classifier` "
            "Sequentials); supported: " + ", ".join(ARCHITECTURES)
        )
    sig = _signature_of_module(features)
    for name, arch in ARCHITECTURES.items():
        if sig == _signature_of_arch(arch):
            linears = [m for m in classifier.children() if isinstance(m, tnn.Linear)]
            want = [(n_in, n_out) for _, n_in, n_out, _ in arch.classifier]
            if [(m.in_features, m.out_features) for m in linears] != want:
                raise ValueError(f"the classifier of this {name}-like network has other shapes than torchvision's "
                                 f"{name} {want}; only the standard 1000-class heads are supported")  # fmt: skip
            return name
    raise ValueError("the network's `features` match none of the supported architectures: " + ", ".join(ARCHITECTURES))


def from_torchvision(module: tnn.Module) -> "Model":  # noqa: F821
    """Convert a torchvision AlexNet / VGG / VGG-BN module (eval-mode semantics) to a deepvis_jax Model."""
    return from_state_dict(module.state_dict(), detect_architecture(module))


def detect_state_dict(state_dict: Mapping[str, Any]) -> str:
    """The architecture whose torchvision names and shapes a state dict matches exactly."""
    names = {k for k in state_dict if not k.endswith(_IGNORED_SUFFIX)}
    for name, arch in ARCHITECTURES.items():
        if names == set(_key_map(arch)):
            return name
    raise WeightsError("the state dict matches none of the supported architectures: " + ", ".join(ARCHITECTURES))


# --------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------


def load_pth(path: str | os.PathLike, arch: str | None = None) -> "Model":  # noqa: F821
    """Load a torchvision state-dict file with ``torch.load(weights_only=True)`` (never runs pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise WeightsError(f"{path} contains pickled objects other than tensors; refusing to load it "
                               "(only plain state dicts are accepted)") from None  # fmt: skip
        raise WeightsError(f"{path} is not a readable PyTorch weights file ({msg[:120]}); it may be truncated "
                           "or corrupt") from None  # fmt: skip
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    obj = {k.removeprefix("module."): v for k, v in obj.items()}  # DataParallel checkpoints
    detected = detect_state_dict(obj) if arch is None else None
    name = arch or detected
    try:
        return from_state_dict(obj, name)
    except WeightsError as e:
        try:
            other = detect_state_dict(obj)
        except WeightsError:
            raise WeightsError(f"{path}: {e}") from None
        raise WeightsError(f"{path} holds {other} weights, not {get_architecture(name).name}; "
                           f"pick --model {other}") from None  # fmt: skip


def imagenet_state_dict(arch: str, progress: bool = True) -> dict:
    """torchvision's pretrained ImageNet state dict, through torchvision's own download and cache."""
    import torchvision

    a = get_architecture(arch)
    weights = torchvision.models.get_model_weights(a.name).DEFAULT
    try:
        return weights.get_state_dict(progress=progress, check_hash=True)
    except Exception as e:  # URLError, HTTP errors, socket errors: no download possible
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsUnavailableError(
            f"cannot download pretrained {a.name} weights ({type(e).__name__}; offline?): put {weights.url} "
            f"into {cache}, or pass a local .pth/.msgpack file as weights, or use random weights"
        ) from None


def imagenet_model(arch: str, progress: bool = True) -> "Model":  # noqa: F821
    """torchvision's pretrained ImageNet weights of `arch`, fetched through its download and cache, converted.

    With `load_pth`, one of the two weight loaders this package registers for ``dv.load_model`` (the entry-point
    group ``deepvis_jax.weights`` in pyproject.toml): ``imagenet`` and ``pth``.
    """
    return from_state_dict(imagenet_state_dict(arch, progress=progress), arch)


# --------------------------------------------------------------------------------------------------------------
# Cross-check
# --------------------------------------------------------------------------------------------------------------


class Difference(NamedTuple):
    """max |a - b| and that divided by max |b| (relative to the reference tensor's scale)."""

    max_abs: float
    max_rel: float


def torch_activations(module: tnn.Module, x_nchw: torch.Tensor, arch: Architecture) -> dict[str, torch.Tensor]:
    """Every conv layer's output after its ReLU, and the logits, from the torchvision module (eval mode)."""
    tops = {arch.top_index(n): n for n in arch.conv_layers}
    out: dict[str, torch.Tensor] = {}
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            h = x_nchw
            for i, layer in enumerate(module.features):
                h = layer(h)
                if i in tops:
                    out[tops[i]] = h.clone()
            h = torch.flatten(module.avgpool(h), 1)
            out["logits"] = module.classifier(h)
    finally:
        module.train(was_training)
    return out


def compare(torch_module: tnn.Module, model, x) -> dict[str, Difference]:
    """Run torchvision and deepvis_jax on the same normalized NHWC input; per conv layer and logits, the difference.

    ``x``: (N, H, W, 3) normalized images (numpy or JAX). The torch module runs in eval mode in its own dtype.
    """
    arch = model.arch
    if detect_architecture(torch_module) != arch.name:
        raise ValueError(f"the torch module is a {detect_architecture(torch_module)}, the model a {arch.name}")
    x = np.asarray(x)
    dtype = next(torch_module.parameters()).dtype
    ref = torch_activations(torch_module, torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dtype), arch)
    logits, acts = all_activations(model, x.astype(np.dtype(model.dtype)))
    ours = {**{k: np.asarray(v).transpose(0, 3, 1, 2) for k, v in acts.items()}, "logits": np.asarray(logits)}
    result = {}
    for name in [*arch.conv_layers, "logits"]:
        a, b = ours[name].astype(np.float64), ref[name].double().numpy()
        err = float(np.max(np.abs(a - b)))
        scale = float(np.max(np.abs(b)))
        result[name] = Difference(err, err / scale if scale > 0 else err)
    return result
