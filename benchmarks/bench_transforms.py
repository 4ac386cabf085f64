"""transforms: what the default recipe's random transforms cost a `construct` step, transform by transform, at
AlexNet conv3 (8 filters) and VGG16 conv4_3 (4 filters), 224 px, random weights (the cost depends only on shapes).

JAX: `dv.construct` steps (FFT image, decorrelated colour, Adam, the default objective) with no transforms, with no
transforms at the transformed size (236 px: what the network pays for the bigger image alone), with pad and the
two jitters only, with those plus `random_scale`, plus `random_rotate`, and with all of `standard_transforms`
(where the scale and the rotation are one resampling). All variants are compiled first, then timed in
interleaved rounds (the median of each; process CPU time beside wall time, since CPU time is less disturbed by
other work on the machine). The row's JAX time is the default recipe's step; its torch time is the same step in
PyTorch eager (the same FFT image, colour matrix, objective and Adam; the transforms as `F.pad`, crops and one
`F.grid_sample` at the composed map, per image). Target: a default-recipe step at most 1.2x a step without
transforms.

Check: JAX's standard transforms and the torch ones, given the same drawn offsets, zoom and angle, agree in
float64, forward and gradient (the torch gradient is autograd's: grid_sample's backward). And the timed outputs:
the torch steps start from construct's own initial spectra and use, step by step, the offsets, zoom and angle
construct draws from each image's key (its documented derivation, turned into numbers before the timing), so the
default recipe's timed float32 images and torch's are compared elementwise: the largest difference within
`F32_TOL` of the peak, the median within `F32_MEDIAN_TOL`. Measured at the quick case (AlexNet conv3, 2 filters,
96 px, 2 steps): largest 1.0e-3, 99th percentile 1.4e-4, median 8.6e-7; the largest comes from Adam's first step
(lr x sign of the gradient), which flips for spectral coefficients whose gradient is within rounding of zero (each
framework's float32 run is 0.12 from its float64 run there; the two float64 runs agree to 4e-8).
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

import converters
import deepvis_jax as dv
from deepvis_jax._src.optvis.construct import CONTRAST, LR
from deepvis_jax._src.optvis.param import COLOR_CORRELATION, rfft2_freqs

from . import _harness
from ._harness import Row, checked, max_rel, time_torch
from ._models import torch_model

FILTERS = [0, 5, 88, 200, 17, 42, 123, 300]
# (architecture, layer, filters, image size, steps per timed call)
CASES = (("alexnet", "conv3", 8, 224, 4), ("vgg16", "conv4_3", 4, 224, 2))
QUICK = ("alexnet", "conv3", 2, 96, 2)
F32_TOL = 1e-2  # peak-relative, the largest difference of the images after the timed steps (measured 1.0e-3)
F32_MEDIAN_TOL = 1e-5  # the median difference (measured 8.6e-7): a systematic error moves most pixels


# --------------------------------------------------------------------------------------------------------------
# The torch side: Lucid's standard transforms, drawn per image
# --------------------------------------------------------------------------------------------------------------


def _draws(keys, transforms) -> list[dict]:
    """What deepvis_jax's standard transforms draw from each image's key (their documented derivation: one key
    per transform, split from the image's key), as numbers the torch side can use."""
    out = []
    for key in keys:
        k = jax.random.split(key, len(transforms))
        _, j8, scale, rotate, j4 = transforms
        out.append(dict(
            j8=[int(v) for v in jax.random.randint(k[1], (2,), 0, 9)],
            scale=float(jax.random.choice(k[2], jnp.asarray(scale.values))),
            angle=float(jax.random.choice(k[3], jnp.asarray(rotate.values))),
            j4=[int(v) for v in jax.random.randint(k[4], (2,), 0, 5)],
        ))  # fmt: skip
    return out


def _random_draws(n: int, g: torch.Generator) -> list[dict]:
    scales = [1 + (i - 5) / 50.0 for i in range(11)]
    angles = list(range(-10, 11)) + 5 * [0]
    return [dict(j8=torch.randint(0, 9, (2,), generator=g).tolist(),
                 scale=scales[int(torch.randint(0, len(scales), (), generator=g))],
                 angle=float(angles[int(torch.randint(0, len(angles), (), generator=g))]),
                 j4=torch.randint(0, 5, (2,), generator=g).tolist()) for _ in range(n)]  # fmt: skip


def torch_standard_transforms(x: torch.Tensor, draws: list[dict]) -> torch.Tensor:
    """(N, 3, S, S) in [0, 1] -> (N, 3, S + 12, S + 12): pad 12 grey, jitter 8, zoom then rotate about the centre
    as one bilinear `grid_sample` (each tap outside the image reads grey), jitter 4."""
    x = F.pad(x, [12] * 4, value=0.5)
    h = x.shape[2] - 8
    x = torch.stack([x[i, :, d["j8"][0] : d["j8"][0] + h, d["j8"][1] : d["j8"][1] + h] for i, d in enumerate(draws)])
    c = (h - 1) / 2.0
    q = torch.arange(h, dtype=x.dtype) - c
    qy, qx = torch.meshgrid(q, q, indexing="ij")
    grids = []
    for d in draws:
        a = np.deg2rad(d["angle"])
        m = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) / d["scale"]  # zoom, then rotate
        sy, sx = m[0, 0] * qy + m[0, 1] * qx + c, m[1, 0] * qy + m[1, 1] * qx + c
        grids.append(torch.stack([(2 * sx + 1) / h - 1, (2 * sy + 1) / h - 1], dim=-1))  # align_corners=False
    x = F.grid_sample(x - 0.5, torch.stack(grids), mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
    h2 = h - 4
    return torch.stack([x[i, :, d["j4"][0] : d["j4"][0] + h2, d["j4"][1] : d["j4"][1] + h2] for i, d in enumerate(draws)])


def _torch_fft_image(p: torch.Tensor, size: int) -> torch.Tensor:
    """deepvis_jax's `fft()` parameterization in torch: (N, 2, 3, S, S // 2 + 1) -> (N, 3, S, S) in [0, 1]."""
    scale = torch.from_numpy(1.0 / np.maximum(rfft2_freqs(size, size), 1.0 / size)).to(p.dtype)
    spec = torch.complex(p[:, 0], p[:, 1]) * scale
    x = torch.fft.irfft2(spec, s=(size, size), norm="ortho") / 4.0
    cm = torch.from_numpy(np.asarray(COLOR_CORRELATION)).to(p.dtype)
    return torch.sigmoid(torch.einsum("nkhw,ck->nchw", x, cm))


def construct_draws(filters, size: int, steps: int, dtype=jnp.float32) -> tuple[np.ndarray, list[list[dict]]]:
    """What `dv.construct(seed=0)` with the standard transforms starts from and draws: each filter's initial
    spectrum (fft param, from the first half of its key) and, for each step, each image's transform draws (the
    step's key split off the running key, as construct's step does)."""
    transforms = dv.transforms.standard_transforms()
    param = dv.param.fft()
    inits, runs = [], []
    for f in filters:
        k_init, k_run = jax.random.split(dv.filter_key(0, f))
        inits.append(np.asarray(param.init(k_init, size, dtype)))
        runs.append(k_run)
    per_step = []
    for _ in range(steps):
        subs = []
        for i, key in enumerate(runs):
            runs[i], sub = jax.random.split(key)
            subs.append(sub)
        per_step.append(_draws(subs, transforms))
    return np.stack(inits), per_step


def _torch_steps(features, filters, size: int, steps: int, start: tuple | None = None) -> torch.Tensor:
    """`steps` default-recipe Adam steps in torch eager, batched over filters, from `start` (`construct_draws`:
    construct's own start and draws; None: torch's random ones); the final images (N, S, S, 3) in [0, 1]."""
    n = len(filters)
    g = torch.Generator().manual_seed(0)
    if start is None:
        p = 0.01 * torch.randn(n, 2, 3, size, size // 2 + 1, generator=g)
    else:
        p = torch.from_numpy(start[0].copy())
    p.requires_grad_(True)
    opt = torch.optim.Adam([p], lr=LR)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    idx = torch.tensor(filters)
    for t in range(steps):
        opt.zero_grad()
        draws = _random_draws(n, g) if start is None else start[1][t]
        x = torch_standard_transforms(_torch_fft_image(p, size), draws)
        means = features((x - mean) / std).mean(dim=(2, 3))  # (N, C) pre-ReLU channel means
        own = means[torch.arange(n), idx]
        others = means.masked_fill(F.one_hot(idx, means.shape[1]).bool(), -torch.inf).amax(dim=1)
        (-(own - CONTRAST * others).sum()).backward()
        opt.step()
    with torch.no_grad():
        return _torch_fft_image(p, size).permute(0, 2, 3, 1).numpy()


def _float64_check(n: int = 3, size: int = 20) -> float:
    """Max relative difference of the standard transforms' output and input gradient, JAX against torch."""
    with jax.enable_x64(True):
        transforms = dv.transforms.standard_transforms()
        keys = jax.random.split(jax.random.key(3), n)
        img = np.random.default_rng(0).random((n, size, size, 3))
        w = np.random.default_rng(1).standard_normal((n, size + 12, size + 12, 3))

        def loss(x):
            out = jax.vmap(lambda k, a: dv.transforms.apply_transforms(transforms, k, a))(keys, x)
            return jnp.sum(out * w), out

        (_, out), grad = jax.value_and_grad(loss, has_aux=True)(jnp.asarray(img))
        draws = _draws(keys, transforms)
    xt = torch.from_numpy(img.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    ref = torch_standard_transforms(xt, draws)
    (ref * torch.from_numpy(w.transpose(0, 3, 1, 2).copy())).sum().backward()
    nchw = lambda a: np.asarray(a).transpose(0, 3, 1, 2)  # noqa: E731
    rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))  # noqa: E731
    return max(rel(nchw(out), ref.detach().numpy()), rel(nchw(grad), xt.grad.numpy()))


# --------------------------------------------------------------------------------------------------------------
# The JAX side: construct steps with and without each transform
# --------------------------------------------------------------------------------------------------------------


def _variants(size: int, quick: bool) -> dict:
    pad, j8, scale, rotate, j4 = dv.transforms.standard_transforms()
    v = {"none": ((), size), "standard": ((pad, j8, scale, rotate, j4), size)}
    if not quick:
        v.update({"none at the transformed size": ((), size + 12), "pad + jitters": ((pad, j8, j4), size),
                  "+ scale": ((pad, j8, scale, j4), size), "+ rotate": ((pad, j8, rotate, j4), size)})  # fmt: skip
    return v


def _time_variants(model, layer, filters, steps: int, variants: dict, rounds: int) -> tuple[dict, np.ndarray]:
    """({variant: (median wall s, min CPU s)} per step, after one untimed (compiling) call each; the standard
    variant's images of the last round). `--check`: one timed round, no untimed call."""

    def call(tr, size):
        return dv.construct(model, layer, filters, steps=steps, chunk=steps, image_size=size, transforms=tr,
                            verbose=False)  # fmt: skip

    if not _harness.CHECK_ONLY:
        for tr, size in variants.values():
            call(tr, size)
    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    images = None
    for _ in range(1 if _harness.CHECK_ONLY else rounds):
        for k, (tr, size) in variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            out = call(tr, size)
            wall[k].append((time.perf_counter() - t0) / steps)
            cpu[k].append((time.process_time() - c0) / steps)
            if k == "standard":
                images = out
    return {k: (statistics.median(wall[k]), min(cpu[k])) for k in variants}, images


def run(quick: bool) -> list[Row]:
    check = checked("transforms f64 vs torch grid_sample", _float64_check(), 1e-10)
    rows = []
    for arch, layer, n, size, steps in (QUICK,) if quick else CASES:
        tm = torch_model(arch)
        model = converters.from_torchvision(tm)
        filters = FILTERS[:n]
        t, out = _time_variants(model, layer, filters, steps, _variants(size, quick), 1 if quick else 3)
        features = tm.features[: model.arch.conv_op_index(layer) + 1]
        for p in features.parameters():
            p.requires_grad_(False)
        start = construct_draws(filters, size, steps)
        torch_s, ref = time_torch(lambda: _torch_steps(features, filters, size, steps, start), 1 if quick else 2)
        row_check = check + "; " + checked(f"f32 images after {steps} steps", max_rel(out, ref), F32_TOL)
        row_check += ", " + checked("median", float(np.median(np.abs(np.asarray(out) - ref))), F32_MEDIAN_TOL)
        none, std = t["none"], t["standard"]
        extra = {
            "default recipe / no transforms": f"{std[0] / none[0]:.3f}x wall, {std[1] / none[1]:.3f}x CPU",
            "ms per step, wall (CPU)": "; ".join(f"{k} {w * 1e3:.1f} ({c * 1e3:.1f})" for k, (w, c) in t.items()),
        }
        if "pad + jitters" in t:
            base = t["pad + jitters"]
            extra["ms per step over pad + jitters, wall (CPU)"] = "; ".join(
                f"{k} {(t[k][0] - base[0]) * 1e3:+.1f} ({(t[k][1] - base[1]) * 1e3:+.1f})"
                for k in ("+ scale", "+ rotate", "standard"))  # fmt: skip
        name = f"transforms: default recipe step, {arch} {layer} {n} img {size}px"
        rows.append(Row(name, std[0], torch_s / steps, 0.0, row_check, extra))
    return rows
