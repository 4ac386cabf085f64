"""JAX networks (issue 29): a Flax linen ResNet-50 imported with `dv.from_flax`, against the hand-written ResNet-50
with the same weights and against ``jax.jit(module.apply)`` itself, same process, 224 px.

The "torch ms" column holds the reference of each row (these rows compare two JAX programs): the hand-written
ResNet-50 (`dv.load_model("resnet50")`'s module) for ``classify`` and ``top-9``, and ``jax.jit(module.apply)`` of
the user's own Flax module for ``classify (module.apply)``. A ratio near 1.0 means the jaxpr interpreter vanishes
under jit. Each row checks the very outputs it times (float32, relative to the peak). ``import`` (extra): seconds
`from_flax` takes (trace and flatten); ``compile`` the first call minus the steady state.
"""

from __future__ import annotations

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import deepvis_jax as dv

from ._deconv_torch import benchmark_image
from ._harness import Row, checked, max_rel, time_jax


class Bottleneck(nn.Module):
    width: int
    stride: int
    down: bool

    @nn.compact
    def __call__(self, x):
        bn = lambda name: nn.BatchNorm(use_running_average=True, epsilon=1e-5, name=name)  # noqa: E731
        y = nn.relu(bn("bn1")(nn.Conv(self.width, (1, 1), use_bias=False, name="conv1")(x)))
        y = nn.Conv(self.width, (3, 3), (self.stride, self.stride), padding=1, use_bias=False, name="conv2")(y)
        y = nn.relu(bn("bn2")(y))
        y = bn("bn3")(nn.Conv(self.width * 4, (1, 1), use_bias=False, name="conv3")(y))
        if self.down:
            x = nn.Conv(self.width * 4, (1, 1), (self.stride, self.stride), use_bias=False, name="downsample_conv")(x)
            x = bn("downsample_bn")(x)
        return nn.relu(x + y)


class FlaxResNet50(nn.Module):
    """torchvision's ResNet-50 (v1.5) in Flax linen, with the hand-written model's parameter names."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(64, (7, 7), (2, 2), padding=3, use_bias=False, name="conv1")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-5, name="bn1")(x))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), 1):
            for i in range(blocks):
                stride = 2 if stage > 1 and i == 0 else 1
                x = Bottleneck(width, stride, i == 0, name=f"layer{stage}_{i}")(x)
        return nn.Dense(1000, name="fc")(x.mean(axis=(1, 2)))


def run(quick: bool) -> list[Row]:
    repeats = 2 if quick else 5
    hand = dv.load_model("resnet50", weights=None, seed=0)
    net = FlaxResNet50()
    x1 = np.random.default_rng(1).standard_normal((1, 224, 224, 3)).astype(np.float32)
    t0 = time.perf_counter()
    model = dv.from_flax(net, hand.variables, x1, name="flax_resnet50")
    import_s = time.perf_counter() - t0
    apply = jax.jit(net.apply)
    rows = []
    for n in (1,) if quick else (1, 8):
        x = np.random.default_rng(n).standard_normal((n, 224, 224, 3)).astype(np.float32)
        first, jax_s, out = time_jax(lambda: dv.classify(model, x), repeats)
        _, ref_s, ref = time_jax(lambda: dv.classify(hand, x), repeats)
        check = checked("logits vs hand-written", max_rel(out, ref), 1e-4)
        extra = {"import (s)": f"{import_s:.1f}"} if n == 1 else {}
        rows.append(Row(f"classify flax ResNet-50 batch {n} (ref: hand-written)", jax_s, ref_s, first - jax_s, check,
                        extra))  # fmt: skip
        _, own_s, own = time_jax(lambda: apply(hand.variables, x), repeats)
        check = checked("logits vs module.apply", max_rel(out, own), 1e-5)
        rows.append(Row(f"classify flax ResNet-50 batch {n} (ref: jit(module.apply))", jax_s, own_s, first - jax_s,
                        check))  # fmt: skip
    image, _ = benchmark_image()
    first, jax_s, r = time_jax(lambda: dv.visualize(model, image, "layer3_5", top_k=9), repeats)
    _, ref_s, want = time_jax(lambda: dv.visualize(hand, image, "layer3.5", top_k=9), repeats)
    if not np.array_equal(r.channels, want.channels):
        raise AssertionError(f"top-9 channels differ: {r.channels} vs {want.channels}; timing is void")
    check = checked("projections vs hand-written", max_rel(r.projections, want.projections), 1e-4)
    rows.append(Row("visualize top-9 flax ResNet-50 layer3_5 (ref: hand-written)", jax_s, ref_s, first - jax_s, check))
    return rows
