"""torchvision's AlexNet and VGG 11/13/16/19 (with and without BatchNorm), as one Flax module.

An architecture is static data (`Architecture`): its ``features`` tuple mirrors torchvision's ``features``
``nn.Sequential`` op for op, so index ``i`` here is ``features.i`` there (the converter relies on this), and the
layer names (``conv1`` ... for AlexNet, ``conv1_1`` ... for VGG) are attached to the convolutions; a layer's output
is its conv's output after BatchNorm and ReLU. One module, `ConvNet`, runs every architecture; `AlexNet`,
`VGG16_BN`, ... are partials of it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..rules import PLAIN
from .layers import BatchNorm2d, Conv2d, adaptive_avg_pool, dense_init

Array = jax.Array


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
    """Static, hashable description of one AlexNet/VGG. `features` mirrors torchvision's `features` Sequential."""

    name: str
    features: tuple  # tuple[Op, ...]
    pool_size: tuple  # AdaptiveAvgPool2d output (h, w)
    classifier: tuple  # ((name, in, out, torchvision classifier index), ...)
    num_classes: int = 1000

    @property
    def layers(self) -> tuple[str, ...]:
        """The visualizable layers, bottom to top: every conv (its output after BatchNorm and ReLU)."""
        return tuple(op.name for op in self.features if isinstance(op, Conv))

    @property
    def conv_layers(self) -> list[str]:
        return list(self.layers)

    def channels(self, name: str) -> int:
        return self.conv(name).features

    def spatial(self, name: str | None = None) -> tuple[tuple[int, int, int], ...]:
        """(kernel, stride, padding) of every conv and pool up to layer `name` (None: all of `features`)."""
        ops = self.features if name is None else self.features[: self.top_index(name) + 1]
        return tuple((op.kernel, op.stride, op.padding) if isinstance(op, Conv) else (op.window, op.stride, 0)
                     for op in ops if isinstance(op, (Conv, MaxPool)))  # fmt: skip

    def module(self) -> "ConvNet":
        return ConvNet(self)

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


class ConvNet(nn.Module):
    """AlexNet or VGG, computing what torchvision's eval-mode module computes, on NHWC inputs.

    ``__call__(x)`` returns the logits. ``__call__(x, upto=name)`` runs the features only up to layer `name`
    (after its ReLU, or before it with ``pre_relu=True``) and returns that activation; nothing above is computed.
    With ``channels`` the layer's conv (and BatchNorm, ReLU) computes only those output channels.
    ``collect=True`` returns ``(logits, {layer: activation after its ReLU})``, and with ``upto`` ``(activation,
    {layer: activation after its ReLU})`` of every layer up to `upto` (one pass for several layers; with
    ``pre_relu`` the dict stops below `upto`). ``ops`` (see `rules.py`) decides
    what its ReLUs and max-pools do: plain, recording switches, or replaying them for a projection.
    """

    arch: Architecture

    @nn.compact
    def __call__(self, x: Array, upto: str | None = None, channels: Array | None = None, pre_relu: bool = False,
                 collect: bool = False, ops=PLAIN):  # fmt: skip
        stop = None if upto is None else self.arch.top_index(upto)
        last = upto is not None and channels is not None
        acts = {}
        conv_name = None
        for i, op in enumerate(self.arch.features[: None if stop is None else stop + 1]):
            only = channels if last and conv_name == upto else None
            if isinstance(op, Conv):
                conv_name = op.name
                only = channels if last and op.name == upto else None
                padding = 0 if ops.valid_convs else op.padding  # unpadded: a unit's cone (crops.py)
                x = Conv2d(op.features, op.kernel, op.stride, padding, name=op.name)(x, only)
            elif isinstance(op, BatchNorm):
                x = BatchNorm2d(op.features, name=op.name)(x, only)
            elif isinstance(op, ReLU):
                if i == stop and pre_relu:
                    return (x, acts) if collect else x
                x = ops.relu(x, only)
                acts[conv_name] = x
            else:
                x = ops.max_pool(x, op.window, op.stride)
        if stop is not None:
            return (x, acts) if collect else x
        x = adaptive_avg_pool(x, self.arch.pool_size)
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # torch.flatten of NCHW
        for j, (name, _, out, _) in enumerate(self.arch.classifier):
            x = nn.Dense(out, kernel_init=dense_init, name=name)(x)  # dropout is the identity in eval mode
            if j < len(self.arch.classifier) - 1:
                x = ops.relu(x)
        return (x, acts) if collect else x


# one definition, the variants as partials
AlexNet, VGG11, VGG13, VGG16, VGG19, VGG11_BN, VGG13_BN, VGG16_BN, VGG19_BN = (
    functools.partial(ConvNet, arch=ARCHITECTURES[name])
    for name in ("alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn")
)
