"""batch visualize: images/s of `dv.visualize` on a batch (N, 224, 224, 3), top-9 DeconvNet projections of each
image's own strongest channels (chunks of 8 images, each one compiled program), against the PyTorch way done per
image: the per-channel loop of `bench_visualize` (`_deconv_torch.top_k_projections`: one forward and one
backward per projected channel). AlexNet conv5 and VGG16 conv5_3, 64 images (`--quick`: AlexNet, 8 images). For
AlexNet also the batch of the first 32 images against a loop of 32 single-image `dv.visualize` calls.

The check runs both sides in float64 on the first images (through the batch path, chunked), where every choice is
unambiguous, and checks the timed float32 outputs of every image: each channel both sides chose has the same
projection within `F32_TOL` of its peak, and a channel only one side chose must be a float32 near-tie (its
strongest activation within 1e-5 of the k-th strongest's, relative to the layer's largest).
"""

from __future__ import annotations

import copy
import os
from typing import Sequence

import jax
import numpy as np
import torch

import converters
import deepvis_jax as dv
from converters import backward_features

from ._deconv_torch import top_k_projections
from ._harness import Row, checked, max_rel, time_jax, time_torch
from ._models import torch_model

K = 9
BATCH = 8
F32_TOL = 1e-4  # peak-relative, per projection (measured: 1.8e-6 at AlexNet conv5, 8 images; VGG16 not yet)
CASES = (("alexnet", "conv5", 2), ("vgg16", "conv5_3", 1))  # (arch, layer, images checked in float64)


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def torch_loop(features, xs: torch.Tensor):
    """Each image's top-k channels and their projections, one image after the other."""
    return [top_k_projections(features, xs[i : i + 1], K) for i in range(len(xs))]


def _float64_check(tm, images, layer) -> float:
    """max rel difference of the projections with both frameworks in float64 (the batch path, chunks of 1)."""
    tm64 = copy.deepcopy(tm).double()
    feats = backward_features(tm64, layer)
    with jax.enable_x64(True):
        model = converters.from_torchvision(tm64)
        r = dv.visualize(model, images, layer, top_k=K, batch_size=1 if len(images) > 1 else BATCH)
        xs = _nchw(np.asarray(dv.normalize(images.astype(np.float64) / 255)))
        err = 0.0
        for i, (channels, projections) in enumerate(torch_loop(feats, xs)):
            if not np.array_equal(np.asarray(r.channels[i]), channels.numpy()):
                raise AssertionError(f"{layer}: JAX and PyTorch chose different channels; timing is void")
            err = max(err, max_rel(r.projections[i], projections.numpy().transpose(0, 2, 3, 1)))
        return err


def float32_check(features, xs: torch.Tensor, r, ref, tol: float = F32_TOL) -> str:
    """The timed float32 results of every image (`r` from dv.visualize, `ref` from `torch_loop`): the projection of
    each channel both chose within `tol` (peak-relative), a channel only one side chose a near-tie."""
    err, ties = 0.0, 0
    for i, (channels, projections) in enumerate(ref):
        ours, theirs = np.asarray(r.channels[i]).tolist(), channels.tolist()
        for k, c in enumerate(theirs):
            if c in ours:
                err = max(err, max_rel(r.projections[i][ours.index(c)], projections[k].numpy().transpose(1, 2, 0)))
        only = sorted(set(ours) ^ set(theirs))
        if only:
            with torch.no_grad():
                m = features(xs[i : i + 1])[0].amax(dim=(1, 2)).double().numpy()
            kth = np.sort(m)[::-1][K - 1]
            if np.max(np.abs(m[only] - kth)) > 1e-5 * np.max(np.abs(m)):
                raise AssertionError(f"image {i}: JAX and PyTorch chose channels {only} apart, not a near-tie; "
                                     "timing is void")  # fmt: skip
            ties += 1
    return checked(f"f32 projections ({len(ref)} images, {ties} with a near-tie channel)", err, tol)


def _batch_vs_single_calls(model, images: np.ndarray, layer: str) -> str:
    """A batch of images against a loop of one `dv.visualize` call per image (same results: checked)."""
    m = len(images)
    _, batch_s, r = time_jax(lambda: dv.visualize(model, images, layer, top_k=K, batch_size=BATCH), 3)
    _, single_s, rs = time_jax(lambda: [dv.visualize(model, im, layer, top_k=K) for im in images], 3)
    err = max(max_rel(r.projections[i], one.projections) for i, one in enumerate(rs))
    if err > 1e-5 or not all(np.array_equal(r.channels[i], one.channels) for i, one in enumerate(rs)):
        raise AssertionError(f"{layer}: the batch differs from the single calls ({err:.0e}); timing is void")
    return (f"{single_s / batch_s:.2f}x ({m} images: {batch_s:.2f} s in chunks of {BATCH}, "
            f"{single_s:.2f} s one call each)")


def run(quick: bool, only: Sequence[str] | None = None, images: int | None = None) -> list[Row]:
    """`python -m benchmarks` calls ``run(quick)``; `only` (architectures) and `images` (instead of 64) serve
    shorter runs by hand."""
    rows = []
    n = images or (8 if quick else 64)
    for arch, layer, n_check in CASES[:1] if quick else CASES:
        if only and arch not in only:
            continue
        tm = torch_model(arch)
        model = converters.from_torchvision(tm)
        feats = backward_features(tm, layer)
        images_ = np.random.default_rng(0).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
        xs = _nchw(np.asarray(dv.normalize(images_.astype(np.float32) / 255)))
        slow = arch != "alexnet"  # a VGG16 call takes minutes: no second JAX warm-up call
        first, jax_s, r = time_jax(lambda: dv.visualize(model, images_, layer, top_k=K, batch_size=BATCH), 1,
                                   warmup=not slow)  # fmt: skip
        # torch warms up on one image (the loop does the same work image after image), then one timed loop
        torch_s, ref = time_torch(lambda: torch_loop(feats, xs), 1, warmup=lambda: torch_loop(feats, xs[:1]))
        check = checked("f64 projections", _float64_check(tm, images_[:n_check], layer), 1e-9)
        check += "; " + float32_check(feats, xs, r, ref)
        extra = {"images/s": f"jax {n / jax_s:.2f}, torch {n / torch_s:.2f} ({n} images, chunks of {BATCH})"}
        if not slow:
            extra["batch vs single calls"] = _batch_vs_single_calls(model, images_[:32], layer)
        rows.append(Row(f"batch visualize top-{K} {arch} {layer} {n} img", jax_s, torch_s, first - jax_s, check,
                        extra))  # fmt: skip
    return rows


if __name__ == "__main__":  # python -m benchmarks.bench_batch [ARCH ...] [--images N]: a shorter run by hand
    import argparse

    from ._harness import table

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_batch")
    p.add_argument("arch", nargs="*", choices=[c[0] for c in CASES])
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(table(run(a.quick, a.arch or None, a.images)))
