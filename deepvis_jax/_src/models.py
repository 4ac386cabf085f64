"""Flax definitions of torchvision's AlexNet and VGG, and the `Model` pytree.

An architecture is static data (`Architecture`): the `features` tuple mirrors torchvision's `features`
`nn.Sequential` op for op, so index ``i`` here is ``features.i`` there (the converter relies on this), and layer
names (``conv1`` ... / ``conv1_1`` ...) are attached to the convolutions. One Flax module, `ConvNet`, runs any
architecture; `AlexNet` and the VGG variants are partials of it.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

Array = jax.Array
Layer = Union[str, int]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-5


# --------------------------------------------------------------------------------------------------------------
# Static architecture description
# --------------------------------------------------------------------------------------------------------------


class Conv(NamedTuple):
    name: str
    features: int
    kernel: int
    stride: int
    padding: int


class BatchNorm(NamedTuple):
    name: str  # the name of the conv it follows, with "bn" in place of "conv" (bn1_1)
    features: int


class ReLU(NamedTuple):
    pass


class MaxPool(NamedTuple):
    window: int
    stride: int


Op = Union[Conv, BatchNorm, ReLU, MaxPool]


class Architecture(NamedTuple):
    """Static, hashable description of one network. `features` mirrors torchvision's `features` Sequential."""

    name: str
    features: tuple  # tuple[Op, ...]
    pool_size: tuple  # AdaptiveAvgPool2d output (h, w)
    classifier: tuple  # ((name, in, out, torchvision classifier index), ...)
    num_classes: int = 1000

    @property
    def conv_layers(self) -> list[str]:
        return [op.name for op in self.features if isinstance(op, Conv)]

    def conv(self, name: str) -> Conv:
        return next(op for op in self.features if isinstance(op, Conv) and op.name == name)

    def conv_op_index(self, name: str) -> int:
        return next(i for i, op in enumerate(self.features) if isinstance(op, Conv) and op.name == name)

    def top_index(self, name: str) -> int:
        """Index of the last op belonging to conv `name` (its ReLU): the layer's output is taken after it."""
        i = self.conv_op_index(name)
        while not isinstance(self.features[i], ReLU):
            i += 1
        return i


def _alexnet_arch() -> Architecture:
    C, R, M = Conv, ReLU(), MaxPool(3, 2)
    features = (
        C("conv1", 64, 11, 4, 2), R, M,
        C("conv2", 192, 5, 1, 2), R, M,
        C("conv3", 384, 3, 1, 1), R,
        C("conv4", 256, 3, 1, 1), R,
        C("conv5", 256, 3, 1, 1), R, M,
    )  # fmt: skip
    classifier = (("fc6", 256 * 6 * 6, 4096, 1), ("fc7", 4096, 4096, 4), ("fc8", 4096, 1000, 6))
    return Architecture("alexnet", features, (6, 6), classifier)


VGG_CFGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def _vgg_arch(depth: int, batch_norm: bool) -> Architecture:
    features: list = []
    block, index = 1, 1
    for v in VGG_CFGS[depth]:
        if v == "M":
            features.append(MaxPool(2, 2))
            block, index = block + 1, 1
            continue
        features.append(Conv(f"conv{block}_{index}", v, 3, 1, 1))
        if batch_norm:
            features.append(BatchNorm(f"bn{block}_{index}", v))
        features.append(ReLU())
        index += 1
    classifier = (("fc6", 512 * 7 * 7, 4096, 0), ("fc7", 4096, 4096, 3), ("fc8", 4096, 1000, 6))
    name = f"vgg{depth}" + ("_bn" if batch_norm else "")
    return Architecture(name, tuple(features), (7, 7), classifier)


ARCHITECTURES: dict[str, Architecture] = {"alexnet": _alexnet_arch()}
for _depth in VGG_CFGS:
    for _bn in (False, True):
        _a = _vgg_arch(_depth, _bn)
        ARCHITECTURES[_a.name] = _a


def get_architecture(name: str) -> Architecture:
    key = str(name).lower()
    if key not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[key]


# --------------------------------------------------------------------------------------------------------------
# Pure building blocks (shared by the Flax module, the DeconvNet and the ascent)
# --------------------------------------------------------------------------------------------------------------


def conv2d(x: Array, kernel: Array, stride: int, padding: int) -> Array:
    """NHWC x HWIO convolution with symmetric zero padding, as torch.nn.Conv2d (no bias)."""
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def bn_scale_shift(params: dict, stats: dict) -> tuple[Array, Array]:
    """Eval-mode BatchNorm as y = x * scale + shift."""
    scale = params["scale"] * lax.rsqrt(stats["var"] + BN_EPS)
    return scale, params["bias"] - stats["mean"] * scale


def max_pool(x: Array, window: int, stride: int) -> Array:
    """torch.nn.MaxPool2d(window, stride) (no padding, floor mode) on NHWC."""
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1), "VALID")


def _adaptive_matrix(n: int, o: int, dtype) -> np.ndarray:
    """(o, n) averaging matrix of torch's AdaptiveAvgPool along one axis: bin i is [floor(i n/o), ceil((i+1) n/o))."""
    m = np.zeros((o, n), dtype=np.float64)
    for i in range(o):
        start, end = (i * n) // o, -((-(i + 1) * n) // o)
        m[i, start:end] = 1.0 / (end - start)
    return m.astype(dtype)


def adaptive_avg_pool(x: Array, size: tuple[int, int]) -> Array:
    """torch.nn.AdaptiveAvgPool2d(size) on NHWC; the identity when the input already has that size."""
    h, w = x.shape[1:3]
    if (h, w) == tuple(size):
        return x
    dtype = np.dtype(x.dtype)
    mh, mw = _adaptive_matrix(h, size[0], dtype), _adaptive_matrix(w, size[1], dtype)
    return jnp.einsum("ih,nhwc,jw->nijc", mh, x, mw, precision=lax.Precision.HIGHEST)


# --------------------------------------------------------------------------------------------------------------
# Flax modules
# --------------------------------------------------------------------------------------------------------------

# torchvision's VGG initialization: kaiming normal (fan_out, relu) convs, N(0, 0.01) linears, zero biases.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
dense_init = nn.initializers.normal(0.01)


class Conv2d(nn.Module):
    """torch.nn.Conv2d in NHWC. `channels` computes only those output channels (used by `construct`)."""

    features: int
    kernel: int
    stride: int
    padding: int

    @nn.compact
    def __call__(self, x: Array, channels: Array | None = None) -> Array:
        kernel = self.param("kernel", conv_init, (self.kernel, self.kernel, x.shape[-1], self.features), x.dtype)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), x.dtype)
        if channels is not None:
            kernel, bias = kernel[..., channels], bias[channels]
        return conv2d(x, kernel, self.stride, self.padding) + bias.reshape(1, 1, 1, -1)


class BatchNorm2d(nn.Module):
    """torch.nn.BatchNorm2d in eval mode (running statistics in the "batch_stats" collection)."""

    features: int

    @nn.compact
    def __call__(self, x: Array, channels: Array | None = None) -> Array:
        f, dt = self.features, x.dtype
        params = {"scale": self.param("scale", nn.initializers.ones, (f,), dt),
                  "bias": self.param("bias", nn.initializers.zeros, (f,), dt)}  # fmt: skip
        stats = {"mean": self.variable("batch_stats", "mean", jnp.zeros, (f,), dt).value,
                 "var": self.variable("batch_stats", "var", jnp.ones, (f,), dt).value}  # fmt: skip
        scale, shift = bn_scale_shift(params, stats)
        if channels is not None:
            scale, shift = scale[channels], shift[channels]
        return x * scale.reshape(1, 1, 1, -1) + shift.reshape(1, 1, 1, -1)


class ConvNet(nn.Module):
    """AlexNet or VGG, computing what torchvision's eval-mode module computes, on NHWC inputs.

    ``__call__(x)`` returns the logits. ``__call__(x, upto=name)`` runs the features only up to conv layer `name`
    (after its ReLU, or before it with ``pre_relu=True``) and returns that activation; nothing above is computed.
    With ``channels`` the last conv computes only those output channels. ``collect=True`` returns
    ``(logits, {layer: activation after its ReLU})``.
    """

    arch: Architecture

    @nn.compact
    def __call__(
        self,
        x: Array,
        upto: str | None = None,
        channels: Array | None = None,
        pre_relu: bool = False,
        collect: bool = False,
    ):
        stop = None if upto is None else self.arch.top_index(upto)
        last = upto is not None and channels is not None
        acts = {}
        conv_name = None
        for i, op in enumerate(self.arch.features[: None if stop is None else stop + 1]):
            if isinstance(op, Conv):
                conv_name = op.name
                only = channels if last and op.name == upto else None
                x = Conv2d(op.features, op.kernel, op.stride, op.padding, name=op.name)(x, only)
            elif isinstance(op, BatchNorm):
                only = channels if last and conv_name == upto else None
                x = BatchNorm2d(op.features, name=op.name)(x, only)
            elif isinstance(op, ReLU):
                if i == stop and pre_relu:
                    return x
                x = nn.relu(x)
                acts[conv_name] = x
            else:
                x = max_pool(x, op.window, op.stride)
        if stop is not None:
            return x
        x = adaptive_avg_pool(x, self.arch.pool_size)
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # torch.flatten of NCHW
        for j, (name, _, out, _) in enumerate(self.arch.classifier):
            x = nn.Dense(out, kernel_init=dense_init, name=name)(x)  # dropout is the identity in eval mode
            if j < len(self.arch.classifier) - 1:
                x = nn.relu(x)
        return (x, acts) if collect else x


AlexNet = functools.partial(ConvNet, arch=ARCHITECTURES["alexnet"])
VGG11 = functools.partial(ConvNet, arch=ARCHITECTURES["vgg11"])
VGG13 = functools.partial(ConvNet, arch=ARCHITECTURES["vgg13"])
VGG16 = functools.partial(ConvNet, arch=ARCHITECTURES["vgg16"])
VGG19 = functools.partial(ConvNet, arch=ARCHITECTURES["vgg19"])
VGG11_BN = functools.partial(ConvNet, arch=ARCHITECTURES["vgg11_bn"])
VGG13_BN = functools.partial(ConvNet, arch=ARCHITECTURES["vgg13_bn"])
VGG16_BN = functools.partial(ConvNet, arch=ARCHITECTURES["vgg16_bn"])
VGG19_BN = functools.partial(ConvNet, arch=ARCHITECTURES["vgg19_bn"])


# --------------------------------------------------------------------------------------------------------------
# The Model pytree and the public helpers
# --------------------------------------------------------------------------------------------------------------


@struct.dataclass
class Model:
    """A network: its variables are pytree leaves, its architecture is static metadata.

    Pass it straight through `jax.jit`, `jax.vmap` and `jax.grad`. ``variables`` is the Flax variable dict
    ``{"params": ..., "batch_stats": ...}`` (``batch_stats`` only for the ``_bn`` variants).
    ``classifier`` is ``"trained"``, or ``"untrained"`` when only the conv layers carry real weights (an ONNX
    import whose head is not torchvision's): then its class predictions mean nothing and are never shown as such.
    """

    variables: dict
    arch: Architecture = struct.field(pytree_node=False)
    classifier: str = struct.field(pytree_node=False, default="trained")  # "trained" | "untrained"

    @property
    def classifier_trained(self) -> bool:
        return self.classifier == "trained"

    @property
    def name(self) -> str:
        return self.arch.name

    @property
    def net(self) -> ConvNet:
        return ConvNet(self.arch)

    @property
    def params(self) -> dict:
        return self.variables["params"]

    @property
    def dtype(self):
        return self.params[self.arch.conv_layers[0]]["kernel"].dtype

    def apply(self, x: Array, **kwargs) -> Array:
        return self.net.apply(self.variables, x, **kwargs)

    def __repr__(self) -> str:
        n = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(self.variables))
        head = "" if self.classifier_trained else ", untrained classifier"
        return f"Model({self.arch.name}, {n:,} parameters, {self.dtype}{head})"


def init_model(arch: str | Architecture, seed: int = 0, dtype=None) -> Model:
    """Random weights from Flax initializers (torchvision's VGG scheme), seeded; BN statistics at their defaults."""
    a = arch if isinstance(arch, Architecture) else get_architecture(arch)
    dtype = np.dtype(dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32))
    return Model(variables=dict(_init(a, dtype, jax.random.key(seed))), arch=a)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init(arch: Architecture, dtype, key: Array) -> dict:
    # 64 px is enough for every architecture to reach its classifier (AdaptiveAvgPool fixes its input size)
    return ConvNet(arch).init(key, jnp.zeros((1, 64, 64, 3), dtype))


def conv_layers(model: Model | Architecture | str) -> list[str]:
    """Names of the conv layers, bottom to top: ``conv1``...``conv5`` (AlexNet), ``conv1_1``...``conv5_3`` (VGG16)."""
    return _arch_of(model).conv_layers


def _arch_of(model) -> Architecture:
    if isinstance(model, Model):
        return model.arch
    if isinstance(model, Architecture):
        return model
    return get_architecture(model)


def layer_name(model: Model | Architecture | str, layer: Layer) -> str:
    """Resolve a conv layer given by name or 1-based index; a wrong one raises ValueError listing the choices."""
    names = _arch_of(model).conv_layers
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if 1 <= layer <= len(names):
            return names[int(layer) - 1]
    elif isinstance(layer, str):
        if layer in names:
            return layer
        if layer.isdigit() and 1 <= int(layer) <= len(names):
            return names[int(layer) - 1]
    raise ValueError(
        f"unknown layer {layer!r} for {_arch_of(model).name}; use a conv index 1..{len(names)} "
        f"or a name: {', '.join(names)}"
    )


def layer_channels(model: Model | Architecture | str, layer: Layer) -> int:
    a = _arch_of(model)
    return a.conv(layer_name(a, layer)).features


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


@jax.jit
def classify(model: Model, x: Array) -> Array:
    """Logits (N, 1000) for normalized NHWC input of any size the network accepts."""
    return model.apply(x)


@jax.jit
def all_activations(model: Model, x: Array) -> tuple[Array, dict[str, Array]]:
    """(logits, {conv layer: its activation after ReLU}) in one pass."""
    return model.apply(x, collect=True)


def check_input(x: Array) -> None:
    """Raise ValueError for an input that is not (N, H, W, 3)."""
    if getattr(x, "ndim", None) != 4 or x.shape[-1] != 3:
        raise ValueError(
            f"expected normalized images shaped (N, H, W, 3), got shape {getattr(x, 'shape', None)}; "
            "add a batch axis with x[None] and put channels last"
        )


def feature_shapes(arch: Architecture, hw: Sequence[int]) -> list[tuple[int, int]]:
    """Spatial size of the input to each op of `arch.features` for an input of size `hw` (plus the final size)."""
    h, w = hw
    out = []
    for op in arch.features:
        out.append((h, w))
        if isinstance(op, Conv):
            h = (h + 2 * op.padding - op.kernel) // op.stride + 1
            w = (w + 2 * op.padding - op.kernel) // op.stride + 1
        elif isinstance(op, MaxPool):
            h = (h - op.window) // op.stride + 1
            w = (w - op.window) // op.stride + 1
        if h < 1 or w < 1:
            raise ValueError(
                f"input of {hw[0]}x{hw[1]} pixels is too small for {arch.name}: the feature map vanishes "
                f"before the top; use a larger image"
            )
    out.append((h, w))
    return out
