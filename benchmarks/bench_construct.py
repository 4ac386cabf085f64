"""construct against batched torch eager Adam: 8 filters x 64 steps on AlexNet conv3 at 224 px, and 4 filters x 32
steps on VGG16 conv4_3 at 128 px.

Both sides optimize the same parameterization (decorrelated pixels through a sigmoid, no random transforms, so the
result is deterministic and checkable) for the mean pre-ReLU activation of each image's own filter. The check runs
both in float64 for a few steps (untimed), where the updates must agree to ~1e-9; in float32 Adam's division by
sqrt(v) amplifies rounding in near-zero gradients, so long float32 runs drift apart in either framework (measured:
pixels 0.016 apart after the first step, 0.16 after 16, the median pixel 6e-7). So the timed float32 images are
checked by what they optimize: each image's own filter's mean activation, scored by the same float64 torch network,
must gain the same on both sides within `F32_GAIN_TOL` of the gain (measured 6.6e-3 at 96 px x 16 steps).

Throughput: the FLOPs of the convolutions deepvis_jax actually executes (forward through conv1, conv2 and only the
target channel of conv3, and the input-gradient of each; no weight gradients), over the steady-state time, as a
fraction of this machine's measured fp32 matmul peak.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import torch

import converters
import deepvis_jax as dv
from deepvis_jax._src.nets import IMAGENET_MEAN, IMAGENET_STD, layer_hw
from deepvis_jax._src.nets.alexnet_vgg import Conv

from ._harness import Row, checked, max_rel, objective_check, time_jax, time_torch
from ._models import torch_model

FILTERS = [0, 5, 88, 200, 17, 42, 123, 300]
# (architecture, layer, filters, image size, steps); quick mode runs the first at 96 px for 16 steps
CASES = (("alexnet", "conv3", FILTERS, 224, 64), ("vgg16", "conv4_3", FILTERS[:4], 128, 32))
LR = 0.05
F32_GAIN_TOL = 2e-2  # |gain jax - gain torch| / gain torch of each timed float32 image's objective


def _conv_flops(arch, layer: str, size: int, n_filters: int, steps: int) -> float:
    """2 * MACs of every conv up to `layer` (its last conv for one output channel), forward + input gradient."""
    flops, cin = 0.0, 3
    for op in arch.features[: arch.top_index(layer) + 1]:
        if isinstance(op, Conv):
            h, w = layer_hw(arch, op.name, (size, size))
            cout = 1 if op.name == layer else op.features
            flops += 2.0 * h * w * cin * op.kernel**2 * cout
            cin = op.features
    return 2 * flops * n_filters * steps  # forward + gradient w.r.t. the input of each conv


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The best fp32 matmul GFLOP/s of JAX (XLA) and torch on this machine: the roofline's compute roof."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    mm = jax.jit(jnp.dot)
    _, jax_s, _ = time_jax(lambda: mm(a, a), repeats)
    ta = torch.from_numpy(np.array(a))
    torch_s, _ = time_torch(lambda: ta @ ta, repeats)
    return 2 * n**3 / min(jax_s, torch_s) / 1e9


def _torch_construct(features, inits: np.ndarray, filters, steps: int, cm: np.ndarray) -> np.ndarray:
    """Batched eager Adam: one parameter tensor for all filters, each image scored on its own filter."""
    dtype = features[0].weight.dtype
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=dtype).view(1, 3, 1, 1)
    cmt = torch.from_numpy(cm).to(dtype)
    idx = torch.tensor(filters)
    p = torch.from_numpy(inits.copy()).requires_grad_(True)
    opt = torch.optim.Adam([p], lr=LR)
    for _ in range(steps):
        opt.zero_grad()
        x = (torch.sigmoid(p @ cmt).permute(0, 3, 1, 2) - mean) / std
        act = features(x)  # (F, C, h, w), pre-ReLU
        loss = -act[torch.arange(len(filters)), idx].mean(dim=(1, 2)).sum()
        (grad,) = torch.autograd.grad(loss, p)  # input gradient only, as JAX computes
        p.grad = grad
        opt.step()
    with torch.no_grad():
        return torch.sigmoid(p @ cmt).numpy()


def _jax_construct(model, layer, filters, steps, size):
    # the plain channel mean, as the torch side maximizes (construct's default subtracts a contrast term)
    return dv.construct(model, layer, filters, steps=steps, lr=LR, image_size=size, seed=0, param="pixel",
                        decorrelate=True, transforms="none", objective=dv.objectives.channel(layer), verbose=False)  # fmt: skip


def _inits(model, filters, size) -> np.ndarray:
    """The starting parameters construct uses (its documented key derivation), for the torch side."""
    param = dv.param.pixel(decorrelate=True)
    keys = [jax.random.split(dv.filter_key(0, f))[0] for f in filters]
    return np.stack([np.asarray(param.init(k, size, model.dtype)) for k in keys])


def _color_matrix(dtype) -> np.ndarray:
    from deepvis_jax._src.optvis.param import COLOR_CORRELATION

    return np.asarray(COLOR_CORRELATION, dtype).T


def _scores(features64, filters, images: np.ndarray) -> np.ndarray:
    """Each [0, 1] image's own filter's mean pre-ReLU activation under the float64 torch network."""
    x = ((np.asarray(images, np.float64) - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)  # numpy: float64
    with torch.no_grad():
        act = features64(torch.from_numpy(np.ascontiguousarray(x)))
    return act[torch.arange(len(filters)), torch.tensor(filters)].mean(dim=(1, 2)).numpy()


def float32_check(features, filters, inits: np.ndarray, out, ref) -> str:
    """The timed float32 images of both sides (JAX `out`, torch `ref`, (F, S, S, 3) in [0, 1]) against each other by
    their objective's gain from the start images (`objective_check`), and their median pixel difference."""
    f64 = copy.deepcopy(features).double()
    start = 1 / (1 + np.exp(-(inits.astype(np.float64) @ _color_matrix(np.float64))))
    s0, sj, st = (_scores(f64, filters, a) for a in (start, out, ref))
    diff = np.abs(np.asarray(out, np.float64) - np.asarray(ref, np.float64))
    return objective_check("f32 objective", sj, st, s0, F32_GAIN_TOL) + f" (pixels: median {np.median(diff):.0e})"


def _float64_check(tm, layer, filters, size: int, steps: int) -> float:
    tm64 = copy.deepcopy(tm).double()
    with jax.enable_x64(True):
        model = converters.from_torchvision(tm64)
        out = _jax_construct(model, layer, filters, steps, size)
        inits = _inits(model, filters, size)
    top = model.arch.conv_op_index(layer)
    ref = _torch_construct(tm64.features[: top + 1], inits, filters, steps, _color_matrix(np.float64))
    return max_rel(out, ref)


def run(quick: bool) -> list[Row]:
    rows, peak = [], matmul_peak_gflops()
    for arch, layer, filters, size, steps in CASES[:1] if quick else CASES:
        size, steps = (96, 16) if quick else (size, steps)
        tm = torch_model(arch)
        model = converters.from_torchvision(tm)
        top = model.arch.conv_op_index(layer)
        first, jax_s, out = time_jax(lambda: _jax_construct(model, layer, filters, steps, size), 1 if quick else 2)
        inits = _inits(model, filters, size)
        torch_s, ref = time_torch(
            lambda: _torch_construct(tm.features[: top + 1], inits, filters, steps, _color_matrix(np.float32)),
            1 if quick else 2,
        )
        check = checked("f64 images", _float64_check(tm, layer, filters, min(size, 67), 4 if quick else 8), 1e-8)
        check += "; " + float32_check(tm.features[: top + 1], filters, inits, out, ref)
        gflops = _conv_flops(model.arch, layer, size, len(filters), steps) / jax_s / 1e9
        extra = {"conv GFLOP/s": f"{gflops:.1f} = {gflops / peak:.0%} of the measured fp32 matmul peak {peak:.0f}"}
        name = f"construct {arch} {layer} {len(filters)}x{steps} steps {size}px"
        rows.append(Row(name, jax_s, torch_s, first - jax_s, check, extra))
    return rows
