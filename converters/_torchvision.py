"""torchvision AlexNet / VGG / ResNet (module, state dict, .pth) -> deepvis_jax Model. Imports torch."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from urllib.parse import urlparse
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as tnn

from deepvis_jax._src.nets import ARCHITECTURES, AnyArchitecture, get_architecture
from deepvis_jax._src.nets.alexnet_vgg import Architecture, BatchNorm, Conv, MaxPool, ReLU
from deepvis_jax._src.nets.resnet import ResNetArchitecture
from deepvis_jax._src.weights import WeightsError, WeightsUnavailableError, expected_shapes, model_from_arrays

# --------------------------------------------------------------------------------------------------------------
# Name mapping: torchvision state-dict key <-> deepvis_jax variable path (with the layout transform)
# --------------------------------------------------------------------------------------------------------------


def _bn_keys(prefix: str, path: tuple[str, ...]) -> dict[str, tuple[tuple[str, ...], str]]:
    """A torchvision BatchNorm2d's four tensors -> the Flax BatchNorm2d's variables at `path`."""
    return {f"{prefix}.weight": (("params", *path, "scale"), "id"), f"{prefix}.bias": (("params", *path, "bias"), "id"),
            f"{prefix}.running_mean": (("batch_stats", *path, "mean"), "id"),
            f"{prefix}.running_var": (("batch_stats", *path, "var"), "id")}  # fmt: skip


def _resnet_key_map(arch: ResNetArchitecture) -> dict[str, tuple[tuple[str, ...], str]]:
    m = {"conv1.weight": (("params", "conv1", "kernel"), "conv"), **_bn_keys("bn1", ("bn1",))}
    n_convs = 2 if arch.block == "basic" else 3
    for layer in arch.layers[1:]:
        block = layer.replace(".", "_")
        for k in range(1, n_convs + 1):
            m[f"{layer}.conv{k}.weight"] = (("params", block, f"conv{k}", "kernel"), "conv")
            m.update(_bn_keys(f"{layer}.bn{k}", (block, f"bn{k}")))
        if arch.downsample(*arch.stage(layer)) is not None:  # torchvision's downsample: 1x1 conv + BN
            m[f"{layer}.downsample.0.weight"] = (("params", block, "downsample_conv", "kernel"), "conv")
            m.update(_bn_keys(f"{layer}.downsample.1", (block, "downsample_bn")))
    m["fc.weight"] = (("params", "fc", "kernel"), "dense")
    m["fc.bias"] = (("params", "fc", "bias"), "id")
    return m


def _key_map(arch: AnyArchitecture) -> dict[str, tuple[tuple[str, ...], str]]:
    """torchvision key -> (flattened variable path, transform) for every tensor of `arch`."""
    if isinstance(arch, ResNetArchitecture):
        return _resnet_key_map(arch)
    m: dict[str, tuple[tuple[str, ...], str]] = {}
    for i, op in enumerate(arch.features):
        if isinstance(op, Conv):
            m[f"features.{i}.weight"] = (("params", op.name, "kernel"), "conv")
            m[f"features.{i}.bias"] = (("params", op.name, "bias"), "id")
        elif isinstance(op, BatchNorm):
            m.update(_bn_keys(f"features.{i}", (op.name,)))
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


def _conv_signature(conv) -> tuple:
    pad = conv.padding if isinstance(conv.padding, str) else _pair(conv.padding)
    return (conv.out_channels, _pair(conv.kernel_size), _pair(conv.stride), pad, conv.bias is not None,
            _pair(conv.dilation), conv.groups)  # fmt: skip


def _resnet_signature_of_arch(arch: ResNetArchitecture) -> tuple:
    stages = []
    for stage, n in enumerate(arch.depths, start=1):
        blocks = []
        for index in range(n):
            convs = tuple((f, k, s, p, False, 1, 1) for f, k, s, p in arch.block_convs(stage, index))
            down = arch.downsample(stage, index)
            blocks.append((convs, None if down is None else (down[0], 1, down[1], 0, False, 1, 1)))
        stages.append(tuple(blocks))
    return ((64, 7, 2, 3, False, 1, 1), (3, 2, 1), tuple(stages), arch.planes(4) * arch.expansion)


def _resnet_signature_of_module(module: tnn.Module) -> tuple | None:
    """The structure of a torchvision-style ResNet (stem, blocks' convs and shortcuts, fc input), or None."""
    names = ("conv1", "bn1", "maxpool", "layer1", "layer2", "layer3", "layer4", "fc")
    if not all(hasattr(module, n) for n in names) or not isinstance(module.conv1, tnn.Conv2d):
        return None
    pool = module.maxpool
    if not isinstance(pool, tnn.MaxPool2d) or pool.ceil_mode or _pair(pool.dilation) != 1:
        return None
    stages = []
    for n in names[3:7]:
        blocks = []
        for block in getattr(module, n).children():
            convs = tuple(_conv_signature(getattr(block, f"conv{k}")) for k in (1, 2, 3) if hasattr(block, f"conv{k}"))
            down = getattr(block, "downsample", None)
            blocks.append((convs, None if down is None else _conv_signature(down[0])))
        stages.append(tuple(blocks))
    stem = (_pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding))
    fc = module.fc.in_features if isinstance(module.fc, tnn.Linear) else None
    return (_conv_signature(module.conv1), stem, tuple(stages), fc)


def detect_architecture(module: tnn.Module) -> str:
    """Which of the supported architectures `module` is, judged from its layers and their shapes (never from
    class names)."""
    resnet = _resnet_signature_of_module(module)
    if resnet is not None:
        for name, arch in ARCHITECTURES.items():
            if isinstance(arch, ResNetArchitecture) and resnet == _resnet_signature_of_arch(arch):
                if module.fc.out_features != arch.num_classes:
                    raise ValueError(f"this {name}-like network has {module.fc.out_features} classes; only the "
                                     f"standard {arch.num_classes}-class head is supported")  # fmt: skip
                return name
        raise ValueError("this ResNet-style network (conv1, layer1..4, fc) matches none of the supported ResNets: "
                         + ", ".join(n for n, a in ARCHITECTURES.items() if isinstance(a, ResNetArchitecture)))
    features = getattr(module, "features", None)
    classifier = getattr(module, "classifier", None)
    if not isinstance(features, tnn.Sequential) or not isinstance(classifier, tnn.Sequential):
        raise ValueError(
            f"{type(module).__name__} is not an AlexNet/VGG-style network (no `features` and `classifier` "
            "Sequentials) nor a torchvision ResNet (no conv1, layer1..4, fc); supported: " + ", ".join(ARCHITECTURES)
        )
    sig = _signature_of_module(features)
    for name, arch in ARCHITECTURES.items():
        if isinstance(arch, Architecture) and sig == _signature_of_arch(arch):
            linears = [m for m in classifier.children() if isinstance(m, tnn.Linear)]
            want = [(n_in, n_out) for _, n_in, n_out, _ in arch.classifier]
            if [(m.in_features, m.out_features) for m in linears] != want:
                raise ValueError(f"the classifier of this {name}-like network has other shapes than torchvision's "
                                 f"{name} {want}; only the standard 1000-class heads are supported")  # fmt: skip
            return name
    raise ValueError("the network's `features` match none of the supported architectures: "
                     + ", ".join(n for n, a in ARCHITECTURES.items() if isinstance(a, Architecture)))


def from_torchvision(module: tnn.Module, example_input=None, preprocessing="imagenet") -> "Model":  # noqa: F821
    """Convert a torchvision module (eval-mode semantics) to a deepvis_jax Model.

    AlexNet / VGG / VGG-BN / ResNet become the hand-written families (layers ``conv1``..., ``layer1.0``...); any
    other module is imported as a graph network with `converters.from_torch` (captured with `example_input`, by
    default two random 224 px images).

    `preprocessing`: what the module expects of its input (see `converters.from_torch`); torchvision's own weights
    are ``"imagenet"`` (the default). Only graph networks take another one: the hand-written families take
    ImageNet-normalized input by construction, so a torchvision AlexNet/VGG/ResNet trained on other statistics is
    refused in one line that says to import it with ``converters.from_torch(module, preprocessing=...)`` (a
    graph network with the same layers, as module paths)."""
    from deepvis_jax._src.nets.graph.architecture import stored_preprocessing

    stored = stored_preprocessing(preprocessing)
    try:
        arch = detect_architecture(module)
    except ValueError:
        from converters._export import from_torch

        return from_torch(module, example_input, preprocessing=preprocessing)
    if stored != "imagenet":
        raise ValueError(f"from_torchvision makes {arch} a hand-written network, which takes ImageNet-normalized "
                         f"input only; for preprocessing={stored if isinstance(stored, str) else dict(stored)!r} "
                         "import it as a graph network: converters.from_torch(module, preprocessing=...)")
    return from_state_dict(module.state_dict(), arch)


@functools.lru_cache(maxsize=None)
def _torch_shapes(arch: AnyArchitecture) -> dict[str, tuple[int, ...]]:
    """torchvision key -> the tensor's torch shape, for every tensor of `arch`."""
    flax = expected_shapes(arch)
    undo = {"conv": lambda s: (s[3], s[2], s[0], s[1]), "dense": lambda s: s[::-1], "id": lambda s: s}  # -> torch
    return {k: undo[how](flax[path]) for k, (path, how) in _key_map(arch).items()}


def detect_state_dict(state_dict: Mapping[str, Any]) -> str:
    """The architecture whose torchvision names and shapes a state dict matches exactly (resnet50 and
    wide_resnet50_2 share their names and differ in shapes)."""
    got = {k: tuple(np.shape(v)) for k, v in state_dict.items() if not k.endswith(_IGNORED_SUFFIX)}
    for name, arch in ARCHITECTURES.items():
        if set(got) == set(_key_map(arch)) and got == _torch_shapes(arch):
            return name
    for name, arch in ARCHITECTURES.items():  # names match, shapes do not: say which tensor
        if set(got) == set(_key_map(arch)):
            bad = next(k for k, v in _torch_shapes(arch).items() if got[k] != v)
            raise WeightsError(f"the state dict has {name}'s tensor names but {bad} has shape {got[bad]}, "
                               f"{name} expects {_torch_shapes(arch)[bad]}")  # fmt: skip
    raise WeightsError("the state dict matches none of the supported architectures: " + ", ".join(ARCHITECTURES))


# --------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------


def read_state_dict(path: str | os.PathLike) -> dict:
    """A state dict of tensors from a PyTorch file, read with ``torch.load(weights_only=True)`` (never runs pickled
    code); a checkpoint's ``"state_dict"`` entry and DataParallel's ``module.`` prefixes are taken apart."""
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
    return {k.removeprefix("module."): v for k, v in obj.items()}  # DataParallel checkpoints


def load_pth(path: str | os.PathLike, arch: str | None = None) -> "Model":  # noqa: F821
    """Load a torchvision state-dict file with ``torch.load(weights_only=True)`` (never runs pickled code)."""
    path = Path(path)
    obj = read_state_dict(path)
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


def fetch_checkpoint(weights: Any, name: str, progress: bool = True) -> Path:
    """The file of torchvision weights `weights` (a ``WeightsEnum`` member) in torch's checkpoint cache, downloaded
    first if it is not there, the way ``torch.hub.load_state_dict_from_url`` would (same file name and hash check)
    but with nothing printed before the connection is made: torch prints "Downloading: ..." first, offline too.
    WeightsUnavailableError (one line, its advice once) when it cannot be downloaded."""
    url = weights.url
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    target = cache / os.path.basename(urlparse(url).path)
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    m = torch.hub.HASH_REGEX.search(target.name)
    try:
        torch.hub.download_url_to_file(url, str(target), m.group(1) if m else None, progress=progress)
    except Exception as e:  # URLError, HTTP errors, socket errors, a bad hash: no usable download
        raise WeightsUnavailableError(
            f"cannot download pretrained {name} weights ({type(e).__name__}; offline?): put {url} into {cache}, "
            "or pass a local .pth/.msgpack file as weights, or use random weights"
        ) from None
    return target


def imagenet_state_dict(arch: str, progress: bool = True) -> dict:
    """torchvision's pretrained ImageNet state dict, through torchvision's own download and cache."""
    import torchvision

    a = get_architecture(arch)
    weights = torchvision.models.get_model_weights(a.name).DEFAULT
    path = fetch_checkpoint(weights, a.name, progress)
    try:
        return weights.get_state_dict(progress=progress, check_hash=True)  # from the cache: no download
    except Exception as e:  # a damaged file in the cache
        raise WeightsError(f"torchvision's cached {a.name} weights {path} cannot be read ({type(e).__name__}); "
                           "delete the file to download it again") from None  # fmt: skip


def imagenet_model(arch: str, progress: bool = True) -> "Model":  # noqa: F821
    """torchvision's pretrained ImageNet weights of `arch`, fetched through its download and cache, converted.

    With `load_pth`, one of the two weight loaders this package registers for ``dv.load_model`` (the entry-point
    group ``deepvis_jax.weights`` in pyproject.toml): ``imagenet`` and ``pth``.
    """
    return from_state_dict(imagenet_state_dict(arch, progress=progress), arch)
