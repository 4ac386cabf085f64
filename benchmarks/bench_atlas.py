"""atlas: images/s of the streaming per-channel top-9 (AlexNet conv5, VGG16 conv5_3, 224 px) against a PyTorch loop
doing the same bookkeeping (uint8 batch -> normalize -> features up to the layer -> per-channel top-k merged with
the running top-k), plus the scaling from 1 to 4 forced CPU devices (subprocesses with XLA_FLAGS)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import converters
import deepvis_jax as dv
from deepvis_jax._src.nets import IMAGENET_MEAN, IMAGENET_STD

from ._harness import Row, checked, max_rel, time_jax, time_torch
from ._models import torch_model

K = 9
ROOT = Path(__file__).resolve().parents[1]


def torch_atlas(features: torch.nn.Module, images: np.ndarray, k: int, batch: int):
    """The running per-channel top-k in PyTorch eager: (values, image index, position), each (C, k)."""
    mean = torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
    values = index = position = None
    with torch.no_grad():
        for first in range(0, len(images), batch):
            x = torch.from_numpy(images[first : first + batch]).permute(0, 3, 1, 2).float() / 255.0
            act = features((x - mean) / std)
            n, c, h, w = act.shape
            v, flat = torch.topk(act.permute(1, 0, 2, 3).reshape(c, -1), min(k, n * h * w), dim=1)
            idx, pos = first + flat // (h * w), flat % (h * w)
            if values is not None:
                v, idx, pos = torch.cat([values, v], 1), torch.cat([index, idx], 1), torch.cat([position, pos], 1)
                v, order = torch.topk(v, k, dim=1)
                idx, pos = idx.gather(1, order), pos.gather(1, order)
            values, index, position = v, idx, pos
    return values.numpy(), index.numpy(), position.numpy()


def _same_winners(values: np.ndarray, a: tuple, b: tuple) -> str:
    """Indices and positions must agree wherever the value is not (nearly) tied with a neighbour (the last slot
    may tie with the first one left out, so it is not compared)."""
    tol = 1e-4 * max(float(np.max(np.abs(values))), 1e-30)
    d = np.abs(np.diff(values, axis=1))
    inf = np.full((len(values), 1), np.inf)
    gap = np.minimum(np.concatenate([inf, d], 1), np.concatenate([d, np.zeros_like(inf)], 1))  # to the nearer neighbour
    clear = gap > tol
    for name, x, y in (("image index", *a), ("position", *b)):
        if not np.array_equal(x[clear], y[clear]):
            raise AssertionError(f"atlas: JAX and PyTorch pick different winners ({name}); timing is void")
    return f"winners equal at {int(clear.sum())}/{clear.size} untied slots"


SCALING = r"""
import sys, time, numpy as np, jax
import deepvis_jax as dv
n, batch = int(sys.argv[1]), int(sys.argv[2])
model = dv.load_model("alexnet", weights=None, seed=0)
imgs = np.random.default_rng(0).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
run = lambda: dv.atlas(model, imgs, "conv5", top_k=9, batch_size=batch, project=False, progress=False)
first = run()
t0 = time.perf_counter(); again = run(); dt = time.perf_counter() - t0
assert np.array_equal(first.image_index, again.image_index)
np.save(sys.argv[3], again.values)
print(f"{jax.device_count()} {n / dt:.2f}")
"""


def scaling(n: int, batch: int, counts=(1, 2, 4)) -> str:
    """AlexNet conv5 images/s with the batch sharded over 1, 2, 4 forced CPU devices (one subprocess each)."""
    out, ref = [], None
    for d in counts:
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={d}", "JAX_PLATFORMS": "cpu"}
        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_atlas_{os.getpid()}_{d}.npy"
        res = subprocess.run([sys.executable, "-c", SCALING, str(n), str(batch), str(tmp)], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True)  # fmt: skip
        devices, rate = res.stdout.split()
        values = np.load(tmp)
        tmp.unlink()
        if ref is None:
            ref = values
        elif not np.array_equal(values, ref):
            raise AssertionError(f"atlas on {d} devices differs from 1 device")
        out.append(f"{devices}: {float(rate):.1f}")
    return " | ".join(out) + " images/s (identical top-k)"


def run(quick: bool) -> list[Row]:
    rows = []
    repeats = 2 if quick else 5
    cases = (("alexnet", "conv5", 16 if quick else 64), ("vgg16", "conv5_3", 8 if quick else 32))
    batch = 8 if quick else 16
    for arch, layer, n in cases:
        tm = torch_model(arch)
        model = converters.from_torchvision(tm)
        top = model.arch.top_index(layer)
        features = tm.features[: top + 1]
        images = np.random.default_rng(1).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
        first, jax_s, res = time_jax(
            lambda: dv.atlas(model, images, layer, top_k=K, batch_size=batch, project=False, progress=False), repeats
        )
        torch_s, ref = time_torch(lambda: torch_atlas(features, images, K, batch), repeats)
        check = checked("top-9 values", max_rel(res.values, ref[0]), 1e-4)
        mw = dv.layer_hw(model, layer, (224, 224))[1]
        flat = res.position[..., 0] * mw + res.position[..., 1]
        check += "; " + _same_winners(ref[0], (res.image_index, ref[1]), (flat, ref[2]))
        extra = {"images/s": f"jax {n / jax_s:.1f}, torch {n / torch_s:.1f} ({n} images, batch {batch})"}
        if arch == "alexnet":
            counts = (1, 4) if quick else (1, 2, 4)
            extra["CPU devices (forced)"] = scaling(16 if quick else 64, 16 if quick else 32, counts)
        rows.append(Row(f"atlas {arch} {layer} top-{K} {n} img 224px", jax_s, torch_s, first - jax_s, check, extra))
    return rows
