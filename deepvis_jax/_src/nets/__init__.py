"""The networks: one Flax definition per family, the `Model` pytree, and the helpers every other module uses.

- `alexnet_vgg.py`: torchvision's AlexNet and VGG 11/13/16/19 (± BatchNorm), one module `ConvNet`.
- `resnet.py`: torchvision's ResNet-18/34/50/101/152 and Wide ResNet-50-2, one module `ResNet`.
- `graph/`: any network torch.export captures, held as plain data (`architecture.py`, `files.py`) and run by an
  interpreter (`interpreter.py`, op table `ops_*.py`); `converters.from_torch` imports one.
- `layers.py`: the shared layers (Conv2d, BatchNorm2d, AdaptiveAvgPool2d); ReLU and max pooling go through the
  `ops` of `rules.py`, so that one definition classifies, records switches and replays them.

Every architecture object is a static, hashable NamedTuple with ``name``, ``num_classes``, ``layers`` (the
visualizable layers, bottom to top), ``channels(layer)``, ``spatial(layer)`` (the (kernel, stride, padding) of
every conv and pool on the path up to the layer: sizes and receptive fields follow from it) and ``module()``.
Every module takes ``(x, upto=None, channels=None, pre_relu=False, collect=False, ops=PLAIN)``; ``upto`` with
``collect=True`` returns ``(activation, {layer: activation})`` of every layer up to ``upto`` (`layer_activations`).
A graph network's architecture (`GraphArchitecture`) has no single path: it answers sizes and receptive fields
itself (``layer_hw``, ``min_size``, `graph.receptive_field_of`).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ..compile import jit
from . import alexnet_vgg, resnet
from .alexnet_vgg import Architecture
from .graph import GraphArchitecture, receptive_field_of
from .jaxpr import JaxArchitecture
from .resnet import ResNetArchitecture

Array = jax.Array
Layer = Union[str, int]
AnyArchitecture = Union[Architecture, ResNetArchitecture, GraphArchitecture, JaxArchitecture]
IMPORTED = (GraphArchitecture, JaxArchitecture)  # networks held as data and run by an interpreter

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ARCHITECTURES: dict[str, AnyArchitecture] = {**alexnet_vgg.ARCHITECTURES, **resnet.ARCHITECTURES}


def get_architecture(name: str) -> AnyArchitecture:
    key = str(name).lower()
    if key not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[key]


# --------------------------------------------------------------------------------------------------------------
# The Model pytree
# --------------------------------------------------------------------------------------------------------------


@struct.dataclass
class Model:
    """A network: its variables are pytree leaves, its architecture is static metadata.

    Pass it straight through `jax.jit`, `jax.vmap` and `jax.grad`. ``variables`` is the Flax variable dict
    ``{"params": ..., "batch_stats": ...}`` (``batch_stats`` for the networks with BatchNorm).
    ``classifier`` is ``"trained"``, or ``"untrained"`` when only the conv layers carry real weights (an ONNX
    import whose head is not torchvision's): then its class predictions mean nothing and are never shown as such.
    ``random_weights`` is True for untrained weights (`init_model`, a file converted from random weights, which
    records it): the command line then warns that its pictures are not meaningful and prints no classes.
    """

    variables: dict
    arch: Any = struct.field(pytree_node=False)  # an Architecture, ResNetArchitecture or GraphArchitecture
    classifier: str = struct.field(pytree_node=False, default="trained")  # "trained" | "untrained"
    random_weights: bool = struct.field(pytree_node=False, default=False)

    @property
    def classifier_trained(self) -> bool:
        return self.classifier == "trained"

    @property
    def name(self) -> str:
        return self.arch.name

    @property
    def net(self):
        return self.arch.module()

    @property
    def params(self) -> dict:
        return self.variables["params"]

    @property
    def dtype(self):
        return jax.tree_util.tree_leaves(self.params)[0].dtype

    @property
    def input_size(self) -> tuple[int, int] | None:
        """``(h, w)`` for a network that takes one input size (an imported graph or JAX program with a flatten +
        linear head, or captured at one size), else None (any size the network accepts). The high-level calls
        (`visualize`, occlusion, the atlas, `construct`, the CLI, the explorer) resize images to it; `forward`,
        `project` and `classify` refuse another size in one line."""
        from ..input_size import input_size

        return input_size(self)

    @property
    def preprocessing(self) -> str:
        """What the network sees of its input, as a preset name or the dict's values (issue 30): ``"imagenet"``
        unless it was imported with another ``preprocessing=``."""
        name = getattr(self.arch, "preprocessing_name", None)
        return name if name is not None else getattr(self.arch, "preprocessing", "imagenet")

    def apply(self, x: Array, **kwargs) -> Array:
        """The network's forward pass: `ConvNet`/`ResNet` ``__call__`` options (upto, channels, pre_relu, ...)."""
        return self.net.apply(self.variables, x, **kwargs)

    def __repr__(self) -> str:
        n = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(self.variables))
        head = "" if self.classifier_trained else ", untrained classifier"
        head += ", random weights" if self.random_weights else ""
        head += "" if self.preprocessing == "imagenet" else f", preprocessing {self.preprocessing}"
        head += "" if self.input_size is None else f", input {self.input_size[0]}x{self.input_size[1]}"
        return f"Model({self.arch.name}, {n:,} parameters, {self.dtype}{head})"


def init_model(arch: str | AnyArchitecture, seed: int = 0, dtype=None) -> Model:
    """Random weights from Flax initializers (torchvision's VGG scheme), seeded; BN statistics at their defaults."""
    a = get_architecture(arch) if isinstance(arch, str) else arch
    if isinstance(a, GraphArchitecture):
        raise ValueError(f"{a.name} is an imported graph network: its weights come from torch "
                         "(converters.from_torch) or a saved file (dv.load_model(path)), not from random init")
    if isinstance(a, JaxArchitecture):
        raise ValueError(f"{a.name} is an imported JAX network: its weights come from dv.from_jax / dv.from_flax "
                         "or a saved file (dv.load_model(path)), not from random init")
    dtype = np.dtype(dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32))
    return Model(variables=dict(_init(a, dtype, jax.random.key(seed))), arch=a, random_weights=True)


@functools.partial(jit, static_argnums=(0, 1))
def _init(arch: AnyArchitecture, dtype, key: Array) -> dict:
    # 64 px is enough for every architecture to reach its classifier (AdaptiveAvgPool fixes its input size)
    return arch.module().init(key, jnp.zeros((1, 64, 64, 3), dtype))


# --------------------------------------------------------------------------------------------------------------
# Layers by name or index
# --------------------------------------------------------------------------------------------------------------


def _arch_of(model) -> AnyArchitecture:
    if isinstance(model, Model):
        return model.arch
    if isinstance(model, (Architecture, ResNetArchitecture, *IMPORTED)):
        return model
    return get_architecture(model)


def layers(model: Model | AnyArchitecture | str) -> list[str]:
    """Every visualizable layer, bottom to top: ``conv1``...``conv5`` (AlexNet), ``conv1_1``...``conv5_3`` (VGG16),
    ``conv1`` (the stem) and ``layer1.0``...``layer4.2`` (ResNets: each block's output after its final ReLU); for
    a graph network every torch module path whose output is one feature map (``inception4a``, ``features.5.2``),
    as a forward hook on that module returns it."""
    return list(_arch_of(model).layers)


def conv_layers(model: Model | AnyArchitecture | str) -> list[str]:
    """The same as `layers` (named for AlexNet/VGG, whose visualizable layers are their convs)."""
    return layers(model)


def layer_name(model: Model | AnyArchitecture | str, layer: Layer) -> str:
    """Resolve a layer given by name or 1-based index; a wrong one raises ValueError listing the choices."""
    names = layers(model)
    outputs = getattr(_arch_of(model), "output_layers", ())  # a graph's output maps ("output"): by name only
    if isinstance(layer, str) and layer in outputs and layer not in names:
        return layer
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if 1 <= layer <= len(names):
            return names[int(layer) - 1]
    elif isinstance(layer, str):
        if layer in names:
            return layer
        if layer.isdigit() and 1 <= int(layer) <= len(names):
            return names[int(layer) - 1]
    arch = _arch_of(model)
    shown = ", ".join(names) if len(names) <= 24 else ", ".join(names[:3] + ["..."] + names[-2:])
    kind = "conv" if isinstance(arch, Architecture) else "layer"  # AlexNet/VGG's layers are their convs
    shown += f"; or an output: {', '.join(outputs)}" if outputs else ""
    raise ValueError(f"unknown layer {layer!r} for {arch.name}; use a {kind} index 1..{len(names)} or a name: {shown}")


def layer_channels(model: Model | AnyArchitecture | str, layer: Layer) -> int:
    a = _arch_of(model)
    return a.channels(layer_name(a, layer))


# --------------------------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------------------------


def spatial_size(path: Sequence[tuple[int, int, int]], hw: Sequence[int]) -> tuple[int, int] | None:
    """The feature map size after the (kernel, stride, padding) ops of `path` on an `hw` input; None if it
    vanishes on the way."""
    h, w = (int(d) for d in hw)
    for k, s, p in path:
        h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if h < 1 or w < 1:
            return None
    return h, w


class ReceptiveField(NamedTuple):
    """Unit ``i`` of the layer sees input rows ``offset + stride * i`` .. ``offset + stride * i + size - 1``."""

    size: int
    stride: int
    offset: int

    def box(self, row: int, col: int, hw: Sequence[int]) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)`` (ends exclusive) of unit ``(row, col)``, clipped to an ``hw`` image."""
        t, l = self.offset + self.stride * row, self.offset + self.stride * col
        return max(t, 0), min(t + self.size, hw[0]), max(l, 0), min(l + self.size, hw[1])


def receptive_field(model: Model | AnyArchitecture | str, layer: Layer,
                    hw: Sequence[int] | None = None) -> ReceptiveField:  # fmt: skip
    """Receptive field of one unit of conv `layer` (after its ReLU), from the kernels, strides and paddings below.

    AlexNet conv1: ``ReceptiveField(size=11, stride=4, offset=-2)``, so unit (0, 0) covers rows and columns -2..8.

    Graph networks: over every path from the image (the largest size, the smallest offset; strides agree where
    paths merge). A layer above an op that mixes all positions (a mean over space, attention, flatten + linear,
    upsampling, a gate computed from the whole map) sees the whole image: for an image of size `hw` its field is
    then ``ReceptiveField(size=S + m - 1, stride=1, offset=-(m - 1))`` (S the image's longer side, m the map's),
    whose window holds the whole image from every unit; without `hw` that raises ValueError.
    """
    arch = _arch_of(model)
    if isinstance(arch, IMPORTED):
        name = layer_name(arch, layer)
        field = receptive_field_of(arch, name, hw) if isinstance(arch, GraphArchitecture) else _jax_field(arch, name, hw)
        if field is None:
            raise ValueError(f"{name} of {arch.name} sees the whole image (it is above an op that mixes all "
                             "positions); pass the image size, receptive_field(model, layer, hw=(H, W))")  # fmt: skip
        return ReceptiveField(*field)
    size, stride, offset = 1, 1, 0
    for k, s, p in reversed(arch.spatial(layer_name(arch, layer))):
        size, offset, stride = (size - 1) * s + k, offset * s - p, stride * s
    return ReceptiveField(size, stride, offset)


def _jax_field(arch: JaxArchitecture, name: str, hw):
    """A JAX network layer's field (`jaxpr.fields`); for one that sees the whole image, the window that holds it
    from every unit (as `receptive_field_of` gives graph networks), or None without `hw`."""
    from .jaxpr.fields import layer_field

    f = layer_field(arch, name)
    if f != "global":
        return (f.sh, f.jh, f.oh)
    if hw is None:
        return None
    m = max(arch.layer_hw(name, hw))
    return (max(int(hw[0]), int(hw[1])) + m - 1, 1, -(m - 1))


@functools.lru_cache(maxsize=None)
def _min_size(arch: AnyArchitecture, layer: str | None) -> int:
    path = arch.spatial(layer)
    for n in range(1, 4097):
        if spatial_size(path, (n, n)) is not None:
            return n
    raise AssertionError(f"no input size up to 4096 reaches {layer} of {arch.name}")  # pragma: no cover


def min_size(model: Model | AnyArchitecture | str, layer: Layer | None = None) -> int:
    """Smallest side (pixels) an image needs so that `layer` (or, with None, the whole network) has a feature map
    (a graph network captured for one input size: that size)."""
    arch = _arch_of(model)
    name = None if layer is None else layer_name(arch, layer)
    if isinstance(arch, IMPORTED):
        return arch.min_size(name)
    return _min_size(arch, name)


def layer_hw(model: Model | AnyArchitecture | str, layer: Layer, hw: Sequence[int]) -> tuple[int, int]:
    """The feature map size (h, w) of `layer` for an input of size `hw`; ValueError naming the minimum if too small."""
    arch = _arch_of(model)
    name = layer_name(arch, layer)
    if isinstance(arch, IMPORTED):
        return arch.layer_hw(name, hw)
    out = spatial_size(arch.spatial(name), hw)
    if out is None:
        s = min_size(arch, name)
        raise ValueError(
            f"an input of {hw[0]}x{hw[1]} pixels is too small for layer {name} of {arch.name}: its feature map "
            f"vanishes; use at least {s}x{s} pixels"
        )
    return out


# --------------------------------------------------------------------------------------------------------------
# Inputs and the forward pass
# --------------------------------------------------------------------------------------------------------------


def _channel_const(values, x: Array) -> Array:
    return jnp.asarray(values, x.dtype).reshape((1,) * (x.ndim - 1) + (3,))


def normalize(images01: Any) -> Array:
    """RGB in [0, 1], channels last -> ImageNet-normalized network input."""
    x = jnp.asarray(images01)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"normalize expects float images in [0, 1], got dtype {x.dtype}; divide uint8 by 255 first")
    return (x - _channel_const(IMAGENET_MEAN, x)) / _channel_const(IMAGENET_STD, x)


def denormalize(x: Any) -> Array:
    """Inverse of `normalize`: network input -> RGB in (about) [0, 1]."""
    x = jnp.asarray(x)
    return x * _channel_const(IMAGENET_STD, x) + _channel_const(IMAGENET_MEAN, x)


@jit
def classify(model: Model, x: Array) -> Array:
    """Logits (N, num_classes) for normalized NHWC input of any size the network accepts."""
    if model.arch.num_classes is None:
        raise ValueError(f"{model.arch.name} has no class logits (its output is not one (N, classes) tensor, e.g. a "
                         "backbone's feature maps); use model.apply(x) for its outputs")  # fmt: skip
    return model.apply(x)


@jit
def all_activations(model: Model, x: Array) -> tuple[Array, dict[str, Array]]:
    """(logits, {layer: its activation}) in one pass."""
    return model.apply(x, collect=True)


def layer_activations(model: Model, x: Array, names: Sequence[str]) -> dict[str, Array]:
    """{name: activation (N, h, w, C) after its ReLU} of the layers `names` (resolved names), in one forward pass
    that stops at the deepest of them: nothing above it is computed. Not jitted: call it inside a jitted function."""
    order = layers(model)
    deepest = max(names, key=order.index)
    _, acts = model.apply(x, upto=deepest, collect=True)
    return {n: acts[n] for n in names}


def check_input(x: Array) -> None:
    """Raise ValueError for an input that is not (N, H, W, 3)."""
    if getattr(x, "ndim", None) != 4 or x.shape[-1] != 3:
        raise ValueError(
            f"expected normalized images shaped (N, H, W, 3), got shape {getattr(x, 'shape', None)}; "
            "add a batch axis with x[None] and put channels last"
        )
