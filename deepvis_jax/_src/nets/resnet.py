"""torchvision's ResNet-18/34/50/101/152 and Wide ResNet-50-2 (v1.5: the stride sits in the 3x3 conv), as one
Flax module.

Layers are named after torchvision's module paths of the residual blocks, ``"layer1.0"`` ... ``"layer4.2"``: a
block's output after its final ReLU, exactly what a forward hook on that module returns. The stem's output (conv1,
bn1, ReLU, before the max-pool) is the layer ``"conv1"``. Flax variable names follow torchvision's state dict with
``layer1.0`` written ``layer1_0`` and ``downsample.0/1`` written ``downsample_conv/bn``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..rules import PLAIN
from .layers import BatchNorm2d, Conv2d

Array = jax.Array

STEM = "conv1"


class ResNetArchitecture(NamedTuple):
    """Static, hashable description of one ResNet: block type, blocks per stage, width of the bottlenecks."""

    name: str
    block: str  # "basic" (ResNet-18/34) or "bottleneck" (50/101/152)
    depths: tuple  # blocks in layer1..layer4
    width_per_group: int = 64  # 128: Wide ResNet-50-2
    num_classes: int = 1000

    @property
    def expansion(self) -> int:
        return 1 if self.block == "basic" else 4

    @property
    def layers(self) -> tuple[str, ...]:
        """The visualizable layers, bottom to top: the stem, then every residual block."""
        return (STEM,) + tuple(f"layer{i + 1}.{j}" for i, n in enumerate(self.depths) for j in range(n))

    @property
    def conv_layers(self) -> list[str]:
        return list(self.layers)

    def stage(self, name: str) -> tuple[int, int]:
        """(stage 1..4, block index) of a block name such as ``layer3.1``."""
        stage, block = name.removeprefix("layer").split(".")
        return int(stage), int(block)

    def planes(self, stage: int) -> int:
        return 64 * 2 ** (stage - 1)

    def channels(self, name: str) -> int:
        return 64 if name == STEM else self.planes(self.stage(name)[0]) * self.expansion

    def block_convs(self, stage: int, index: int) -> tuple[tuple[int, int, int, int], ...]:
        """(out channels, kernel, stride, padding) of a block's convs along its main path, as torchvision builds
        them (v1.5: a bottleneck's stride sits in its 3x3 conv)."""
        planes, stride = self.planes(stage), 2 if stage > 1 and index == 0 else 1
        if self.block == "basic":
            return ((planes, 3, stride, 1), (planes, 3, 1, 1))
        width = planes * self.width_per_group // 64
        return ((width, 1, 1, 0), (width, 3, stride, 1), (planes * 4, 1, 1, 0))

    def downsample(self, stage: int, index: int) -> tuple[int, int] | None:
        """(out channels, stride) of a block's 1x1 conv + BN shortcut, or None for the identity."""
        if index > 0 or (stage == 1 and self.expansion == 1):
            return None
        return self.planes(stage) * self.expansion, 2 if stage > 1 else 1

    def block_spatial(self, stage: int, index: int) -> tuple[tuple[int, int, int], ...]:
        """(kernel, stride, padding) along a block's main path (its shortcut sees a sub-window of it)."""
        return tuple((k, s, p) for _, k, s, p in self.block_convs(stage, index))

    def spatial(self, name: str | None = None) -> tuple[tuple[int, int, int], ...]:
        """(kernel, stride, padding) of every conv and pool on the main path up to layer `name` (None: the top)."""
        path = [(7, 2, 3)]
        if name == STEM:
            return tuple(path)
        path.append((3, 2, 1))  # the max-pool
        for layer in self.layers[1:]:
            path.extend(self.block_spatial(*self.stage(layer)))
            if layer == name:
                break
        return tuple(path)

    def module(self) -> "ResNet":
        return ResNet(self)


class Block(nn.Module):
    """A basic block (two 3x3 convs) or a bottleneck (1x1, 3x3, 1x1), with its shortcut, as torchvision's."""

    arch: ResNetArchitecture
    stage: int
    index: int

    @nn.compact
    def __call__(self, x: Array, channels: Array | None = None, pre_relu: bool = False, ops=PLAIN) -> Array:
        convs = self.arch.block_convs(self.stage, self.index)
        y = x
        for k, (features, kernel, s, p) in enumerate(convs, start=1):
            only = channels if k == len(convs) else None  # only the last conv feeds the output channels
            y = Conv2d(features, kernel, s, p, use_bias=False, name=f"conv{k}")(y, only)
            y = BatchNorm2d(features, name=f"bn{k}")(y, only)
            if k < len(convs):
                y = ops.relu(y)
        down = self.arch.downsample(self.stage, self.index)
        if down is not None:  # torchvision's downsample: 1x1 conv + BN
            shortcut = Conv2d(down[0], 1, down[1], 0, use_bias=False, name="downsample_conv")(x, channels)
            shortcut = BatchNorm2d(down[0], name="downsample_bn")(shortcut, channels)
        else:
            shortcut = x if channels is None else x[..., channels]
        y = y + shortcut
        return y if pre_relu else ops.relu(y, channels)


class ResNet(nn.Module):
    """A torchvision ResNet in eval mode on NHWC inputs; the same call signature as `ConvNet`."""

    arch: ResNetArchitecture

    @nn.compact
    def __call__(self, x: Array, upto: str | None = None, channels: Array | None = None, pre_relu: bool = False,
                 collect: bool = False, ops=PLAIN):  # fmt: skip
        a = self.arch
        acts = {}
        stem_only = channels if upto == STEM else None
        x = Conv2d(64, 7, 2, 3, use_bias=False, name="conv1")(x, stem_only)
        x = BatchNorm2d(64, name="bn1")(x, stem_only)
        if upto == STEM and pre_relu:
            return x
        x = ops.relu(x, stem_only)
        if upto == STEM:
            return x
        acts[STEM] = x
        x = ops.max_pool(x, 3, 2, 1)
        for layer in a.layers[1:]:
            stage, index = a.stage(layer)
            top = layer == upto
            x = Block(a, stage, index, name=f"layer{stage}_{index}")(x, channels if top else None, top and pre_relu,
                                                                     ops)  # fmt: skip
            if top:
                return x
            acts[layer] = x
        x = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)) + flatten
        x = nn.Dense(a.num_classes, name="fc")(x)
        return (x, acts) if collect else x


ARCHITECTURES: dict[str, ResNetArchitecture] = {
    a.name: a
    for a in (
        ResNetArchitecture("resnet18", "basic", (2, 2, 2, 2)),
        ResNetArchitecture("resnet34", "basic", (3, 4, 6, 3)),
        ResNetArchitecture("resnet50", "bottleneck", (3, 4, 6, 3)),
        ResNetArchitecture("resnet101", "bottleneck", (3, 4, 23, 3)),
        ResNetArchitecture("resnet152", "bottleneck", (3, 8, 36, 3)),
        ResNetArchitecture("wide_resnet50_2", "bottleneck", (3, 4, 6, 3), width_per_group=128),
    )
}

# one definition, the variants as partials
ResNet18, ResNet34, ResNet50, ResNet101, ResNet152, WideResNet50_2 = (
    functools.partial(ResNet, arch=ARCHITECTURES[name])
    for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2")
)
