"""atlas: the streaming per-channel top-9 (distinct images, 224 px) against PyTorch doing the same bookkeeping
(uint8 batch -> normalize -> features up to the layer -> per image and channel the strongest unit -> top-k merged
with the running top-k):

- one layer (AlexNet conv5, VGG16 conv5_3) against the torch loop, plus the scaling from 1 to 4 forced CPU
  devices (subprocesses with XLA_FLAGS);
- several layers in one pass (AlexNet's five convs over 64 images; VGG16 conv3_3, conv4_3, conv5_3 over 32)
  against torch's one pass with forward hooks on the same layers, and against this library's per-layer path (one
  `dv.atlas` per layer, each reading the images and running the network up to its layer)."""

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


def _candidates(act: torch.Tensor, first: int, per_image: bool):
    """One batch's candidates of a layer (N, C, h, w): (values, image index, position), each (C, candidates)."""
    n, c, h, w = act.shape
    if per_image:  # each image's strongest unit per channel
        v, pos = act.reshape(n, c, h * w).max(dim=2)
        return v.T, (first + torch.arange(n)).expand(c, n), pos.T
    flat = torch.arange(n * h * w).expand(c, -1)
    return act.permute(1, 0, 2, 3).reshape(c, -1), first + flat // (h * w), flat % (h * w)


def _merge(state, cand, k: int):
    """The top-k of the running state and a batch's candidates (the batch's own top-k first, as the library)."""
    v, idx, pos = cand
    v, order = torch.topk(v, min(k, v.shape[1]), dim=1)
    idx, pos = idx.gather(1, order), pos.gather(1, order)
    if state is not None:
        v, idx, pos = torch.cat([state[0], v], 1), torch.cat([state[1], idx], 1), torch.cat([state[2], pos], 1)
        v, order = torch.topk(v, k, dim=1)
        idx, pos = idx.gather(1, order), pos.gather(1, order)
    return v, idx, pos


def torch_atlas_layers(features: torch.nn.Sequential, tops: list[int], images: np.ndarray, k: int, batch: int,
                       per_image: bool = True) -> list:  # fmt: skip
    """The running per-channel top-k of several layers in one pass in PyTorch eager: forward hooks on each layer's
    ReLU (`features[t]` for t in `tops`), the network run up to the deepest. One (values, image index, position)
    per layer, each (C, k)."""
    mean = torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
    states: list = [None] * len(tops)
    first = 0

    def hook(i):
        def record(module, inputs, output):
            states[i] = _merge(states[i], _candidates(output, first, per_image), k)

        return record

    handles = [features[t].register_forward_hook(hook(i)) for i, t in enumerate(tops)]
    try:
        with torch.no_grad():
            for first in range(0, len(images), batch):
                x = torch.from_numpy(images[first : first + batch]).permute(0, 3, 1, 2).float() / 255.0
                features[: max(tops) + 1]((x - mean) / std)
    finally:
        for h in handles:
            h.remove()
    return [tuple(a.numpy() for a in s) for s in states]


def torch_atlas(features: torch.nn.Module, images: np.ndarray, k: int, batch: int, per_image: bool = True):
    """The running per-channel top-k of `features`' output in PyTorch eager: (values, image index, position)."""
    return torch_atlas_layers(features, [len(features) - 1], images, k, batch, per_image)[0]


def _same_winners(values: np.ndarray, a: tuple, b: tuple) -> tuple[int, int]:
    """Indices and positions must agree wherever the value is not (nearly) tied with a neighbour (the last slot
    may tie with the first one left out, so it is not compared); returns (slots compared, slots)."""
    tol = 1e-4 * max(float(np.max(np.abs(values))), 1e-30)
    d = np.abs(np.diff(values, axis=1))
    inf = np.full((len(values), 1), np.inf)
    gap = np.minimum(np.concatenate([inf, d], 1), np.concatenate([d, np.zeros_like(inf)], 1))  # to the nearer neighbour
    clear = gap > tol
    for name, x, y in (("image index", *a), ("position", *b)):
        if not np.array_equal(x[clear], y[clear]):
            raise AssertionError(f"atlas: JAX and PyTorch pick different winners ({name}); timing is void")
    return int(clear.sum()), clear.size


def _check(model, results: dict, refs: list) -> str:
    """Every layer's top-k values against torch's, and its winners where they are clear of a tie."""
    err, clear, total = 0.0, 0, 0
    for (layer, res), ref in zip(results.items(), refs):
        m = ref[0].shape[1]  # torch keeps fewer than k when there are fewer candidates; the rest must be empty
        if not (res.image_index[:, m:] == -1).all():
            raise AssertionError(f"atlas: {layer} fills slots beyond the {m} candidates; timing is void")
        res = res._replace(values=res.values[:, :m], image_index=res.image_index[:, :m], position=res.position[:, :m])
        err = max(err, max_rel(res.values, ref[0]))
        mw = dv.layer_hw(model, layer, res.image_shape)[1]
        flat = res.position[..., 0] * mw + res.position[..., 1]
        c, t = _same_winners(ref[0], (res.image_index, ref[1]), (flat, ref[2]))
        clear, total = clear + c, total + t
    return checked("top-9 values", err, 1e-4) + f"; winners equal at {clear}/{total} untied slots"


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


def one_layer(arch: str, layer: str, n: int, batch: int, repeats: int, quick: bool) -> Row:
    tm = torch_model(arch)
    model = converters.from_torchvision(tm)
    features = tm.features[: model.arch.top_index(layer) + 1]
    images = np.random.default_rng(1).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    first, jax_s, res = time_jax(
        lambda: dv.atlas(model, images, layer, top_k=K, batch_size=batch, project=False, progress=False), repeats
    )
    torch_s, ref = time_torch(lambda: torch_atlas(features, images, K, batch), repeats)
    check = _check(model, {layer: res}, [ref])
    extra = {"images/s": f"jax {n / jax_s:.1f}, torch {n / torch_s:.1f} ({n} images, batch {batch})"}
    if arch == "alexnet":
        counts = (1, 4) if quick else (1, 2, 4)
        extra["CPU devices (forced)"] = scaling(16 if quick else 64, 16 if quick else 32, counts)
    return Row(f"atlas {arch} {layer} top-{K} {n} img 224px", jax_s, torch_s, first - jax_s, check, extra)


def several_layers(arch: str, layers: list[str], n: int, batch: int, repeats: int) -> Row:
    """One pass over `layers` against torch's one pass with hooks, and against one `dv.atlas` per layer."""
    tm = torch_model(arch)
    model = converters.from_torchvision(tm)
    images = np.random.default_rng(2).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    kw = dict(top_k=K, batch_size=batch, project=False, progress=False)
    first, jax_s, res = time_jax(lambda: dv.atlas(model, images, layers=layers, **kw), repeats)
    torch_s, refs = time_torch(lambda: torch_atlas_layers(tm.features, [model.arch.top_index(a) for a in layers],
                                                          images, K, batch), repeats)  # fmt: skip
    check = _check(model, res, refs)
    _, per_layer_s, singles = time_jax(lambda: [dv.atlas(model, images, a, **kw) for a in layers], repeats)
    for a, one in zip(layers, singles):
        for f in ("values", "image_index", "position"):
            if not np.array_equal(getattr(one, f), getattr(res[a], f)):
                raise AssertionError(f"atlas: the one-pass {a} differs from its one-layer run ({f}); timing is void")
    check += "; each layer bitwise its one-layer run"
    extra = {"per-layer path": f"{per_layer_s * 1e3:.0f} ms ({len(layers)} dv.atlas calls); one pass "
                               f"{per_layer_s / jax_s:.2f}x faster",
             "images/s": f"jax {n / jax_s:.1f}, torch {n / torch_s:.1f} ({n} images, batch {batch})"}  # fmt: skip
    name = f"atlas {arch} {'+'.join(layers) if len(layers) < 5 else f'{layers[0]}-{layers[-1]}'} one pass {n} img"
    return Row(name, jax_s, torch_s, first - jax_s, check, extra)


def run(quick: bool) -> list[Row]:
    repeats = 2 if quick else 5
    batch = 8 if quick else 16
    rows = [one_layer("alexnet", "conv5", 16 if quick else 64, batch, repeats, quick)]
    if not quick:
        rows.append(one_layer("vgg16", "conv5_3", 32, batch, repeats, quick))
    rows.append(several_layers("alexnet", dv.conv_layers("alexnet"), 16 if quick else 64, batch, repeats))
    if not quick:  # VGG16's four programs (one pass, three single layers) take minutes to compile and run
        rows.append(several_layers("vgg16", ["conv3_3", "conv4_3", "conv5_3"], 32, batch, repeats))
    return rows
