"""profile: where the time goes in the jobs that do the same convolutions on both sides (construct, atlas,
occlusion), op by op.

Each program is timed whole on both sides (one `construct` Adam step, one atlas batch, one occlusion chunk), then
every convolution in it alone, at the program's own shapes: its forward and, for `construct`, its input gradient
(JAX: the vjp with the forward not re-run; torch: `aten.convolution_backward` for the input only, what autograd
calls). JAX runs XLA:CPU's convolutions as deepvis_jax compiles them (`dv.COMPILER_OPTIONS`: Eigen, YNNPACK off),
each shown after the time under XLA's default options (YNNPACK), as ``default->ours/torch``; torch runs oneDNN's.
Every timed program's outputs are checked too: construct's float32 images by their objective
(`bench_construct.float32_check`), the atlas's top-9 as `bench_atlas` checks them, the occlusion chunk's feature
and probability maps against torch's. The row's ratio is the whole program's; "ceiling" is torch's whole program over JAX's convolutions alone: the best
torch/JAX ratio this program could reach with XLA:CPU's convolutions if everything else in it were free (timed
alone, a convolution also pays for its freshly allocated output: where that is hundreds of MB, VGG16 at 224 px,
the sum exceeds the program and the ceiling is low).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

import converters
import deepvis_jax as dv
from deepvis_jax._src.compile import jit
from deepvis_jax._src.nets import IMAGENET_MEAN
from deepvis_jax._src.nets.layers import conv2d
from deepvis_jax._src.occlusion import _occlusion_chunk

from ._harness import Row, checked, max_rel, time_jax, time_torch
from ._models import torch_model
from .bench_atlas import _check as atlas_check
from .bench_atlas import torch_atlas
from .bench_construct import FILTERS, _color_matrix, _inits, _jax_construct, _torch_construct, float32_check
from .bench_occlusion import PATCH, torch_occlusion

STEPS = 8  # construct: one compiled chunk of steps, reported per step
OCCLUSION_CHUNK = 29  # the width occlusion picks for the benchmark's 144 positions + 1 at chunk 32


def _conv_inputs(module: torch.nn.Module, x: torch.Tensor) -> list[tuple[torch.nn.Conv2d, tuple]]:
    """Every Conv2d the module runs on `x`, with the shape of its input."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, tuple(i[0].shape))))
             for m in module.modules() if isinstance(m, torch.nn.Conv2d)]  # fmt: skip
    with torch.no_grad():
        module(x)
    for h in hooks:
        h.remove()
    return seen


def _convs(convs, repeats: int, grad: bool, last_channels: int | None = None) -> tuple[float, float, list, float]:
    """(JAX seconds, torch seconds, per-conv descriptions, max relative difference) of the convolutions alone.
    `last_channels`: JAX computes only this many output channels of the last conv (construct's target filter)."""
    rng = np.random.default_rng(0)
    jax_total = torch_total = err = 0.0
    parts = []
    for i, (m, shape) in enumerate(convs):
        w = m.weight.detach()
        k, s, p = m.kernel_size[0], m.stride[0], m.padding[0]
        kernel = jnp.asarray(w.permute(2, 3, 1, 0).numpy())
        if last_channels is not None and i == len(convs) - 1:
            kernel = kernel[..., :last_channels]
        x = rng.standard_normal(shape).astype(np.float32)
        xj, xt = jnp.asarray(x.transpose(0, 2, 3, 1)), torch.from_numpy(x)
        fwd = jit(lambda a, kernel=kernel, s=s, p=p: conv2d(a, kernel, s, p))
        _, jf, yj = time_jax(lambda: fwd(xj), repeats)
        fwd0 = jax.jit(fwd.__wrapped__)  # XLA's default options
        _, jf0, _ = time_jax(lambda: fwd0(xj), repeats)
        with torch.no_grad():
            tf, yt = time_torch(lambda: torch.nn.functional.conv2d(xt, w, stride=s, padding=p), repeats)
        err = max(err, max_rel(yj, yt.numpy().transpose(0, 2, 3, 1)[..., : kernel.shape[-1]]))
        desc = f"{m.in_channels}->{m.out_channels} k{k}s{s} {shape[2]}px: f {jf0 * 1e3:.1f}->{jf * 1e3:.1f}/{tf * 1e3:.1f}"
        jax_total, torch_total = jax_total + jf, torch_total + tf
        if grad:
            ct = rng.standard_normal(yt.shape).astype(np.float32)
            ctj, ctt = jnp.asarray(ct.transpose(0, 2, 3, 1)[..., : kernel.shape[-1]]), torch.from_numpy(ct)
            back = jit(lambda a, c, kernel=kernel, s=s, p=p: jax.vjp(lambda b: conv2d(b, kernel, s, p), a)[1](c)[0])
            _, jg, gj = time_jax(lambda: back(xj, ctj), repeats)
            back0 = jax.jit(back.__wrapped__)
            _, jg0, _ = time_jax(lambda: back0(xj, ctj), repeats)

            def torch_back():
                return torch.ops.aten.convolution_backward(ctt, xt, w, None, [s, s], [p, p], [1, 1], False, [0, 0], 1,
                                                           [True, False, False])[0]  # fmt: skip

            with torch.no_grad():
                tg, gt = time_torch(torch_back, repeats)
            if last_channels is None or i < len(convs) - 1:  # the torch side's last gradient comes from all channels
                err = max(err, max_rel(gj, gt.numpy().transpose(0, 2, 3, 1)))
            desc += f" g {jg0 * 1e3:.1f}->{jg * 1e3:.1f}/{tg * 1e3:.1f}"
            jax_total, torch_total = jax_total + jg, torch_total + tg
        parts.append(desc)
    return jax_total, torch_total, parts, err


def _row(name: str, jax_s: float, torch_s: float, convs: tuple, what: str, check: str) -> Row:
    cj, ct, parts, err = convs
    extra = {
        f"convolutions, ms JAX XLA-default->ours/torch ({what})": "; ".join(parts) + f"; sum {cj * 1e3:.1f}/{ct * 1e3:.1f}",
        "JAX program": f"{cj / jax_s:.0%} convolution, {max(jax_s - cj, 0) * 1e3:.1f} ms the rest",
        "torch program": f"{ct / torch_s:.0%} convolution, {max(torch_s - ct, 0) * 1e3:.1f} ms the rest",
        "ceiling": f"torch program / JAX convolutions = {torch_s / cj:.2f}x",
    }
    return Row(name, jax_s, torch_s, 0.0, check + "; " + checked("convolutions", err, 1e-4), extra)


def _construct(arch: str, layer: str, n: int, size: int, repeats: int) -> Row:
    tm = torch_model(arch)
    model = converters.from_torchvision(tm)
    filters = FILTERS[:n]
    features = tm.features[: model.arch.conv_op_index(layer) + 1]
    _, jax_s, out = time_jax(lambda: _jax_construct(model, layer, filters, STEPS, size), repeats)
    inits, cm = _inits(model, filters, size), _color_matrix(np.float32)
    torch_s, ref = time_torch(lambda: _torch_construct(features, inits, filters, STEPS, cm), repeats)
    check = float32_check(features, filters, inits, out, ref)
    convs = _conv_inputs(features, torch.zeros(n, 3, size, size))
    return _row(f"profile: construct {arch} {layer}, 1 step of {n} img {size}px", jax_s / STEPS, torch_s / STEPS,
                _convs(convs, repeats, grad=True, last_channels=1), "forward f and input gradient g",
                check)  # fmt: skip


def _atlas(arch: str, layer: str, n: int, repeats: int) -> Row:
    tm = torch_model(arch)
    model = converters.from_torchvision(tm)
    features = tm.features[: model.arch.top_index(layer) + 1]
    images = np.random.default_rng(1).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    _, jax_s, res = time_jax(lambda: dv.atlas(model, images, layer, batch_size=n, project=False, progress=False),
                             repeats)  # fmt: skip
    torch_s, ref = time_torch(lambda: torch_atlas(features, images, 9, n), repeats)
    check = atlas_check(model, {layer: res}, [ref])
    convs = _conv_inputs(features, torch.zeros(n, 3, 224, 224))
    return _row(f"profile: atlas {arch} {layer}, 1 batch of {n} img", jax_s, torch_s, _convs(convs, repeats, False),
                "forward", check)  # fmt: skip


def _occlusion(repeats: int) -> Row:
    """One chunk: 28 occluded positions and the clean image, to the logits (AlexNet, maps of conv5)."""
    tm = torch_model("alexnet")
    model = converters.from_torchvision(tm)
    image = (np.random.default_rng(0).uniform(0, 1, (224, 224, 3))).astype(np.float32)
    rows, cols = np.arange(4) * 16, np.arange(7) * 16
    corners = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2).astype(np.int32)
    corners = np.concatenate([corners, corners[-1:]])
    occlude = np.arange(OCCLUSION_CHUNK) < OCCLUSION_CHUNK - 1
    fill = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    x = jnp.asarray(image)
    _, jax_s, (feat, prob, _) = time_jax(
        lambda: _occlusion_chunk(model, x, fill, corners, occlude, "conv5", 0, 0, PATCH), repeats)
    x01 = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None]))
    top = model.arch.top_index("conv5")
    torch_s, (f, p, _, _, base) = time_torch(lambda: torch_occlusion(tm, top, x01, rows, cols, PATCH, 0, 0, 32),
                                             repeats)  # fmt: skip
    # the chunk's last image is the clean one (occlude False), torch's is its `base`
    err = max(max_rel(feat[:-1], f), max_rel(prob[:-1], p), max_rel(feat[-1:], base[0:1]),
              max_rel(prob[-1:], base[1:2]))  # fmt: skip
    check = checked("feature/probability maps", err, 1e-4)
    convs = _conv_inputs(tm, torch.zeros(OCCLUSION_CHUNK, 3, 224, 224))
    return _row(f"profile: occlusion alexnet conv5, 1 chunk of {OCCLUSION_CHUNK} img", jax_s, torch_s,
                _convs(convs, repeats, False), "forward", check)  # fmt: skip


def run(quick: bool) -> list[Row]:
    if quick:
        return [_construct("alexnet", "conv3", 2, 96, 2)]
    repeats = 5
    return [
        _construct("alexnet", "conv3", 8, 224, repeats),
        _construct("vgg16", "conv4_3", 4, 128, repeats),
        _atlas("alexnet", "conv5", 16, repeats),
        _atlas("vgg16", "conv5_3", 16, repeats),
        _occlusion(repeats),
    ]
