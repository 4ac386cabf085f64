"""attribution: dv.attribution against its peers on the same weights, float32, CPU.

- Grad-CAM of ResNet-50 `layer4` on 64 images (224 px) brought to the image and scaled to [0, 1] per image,
  against pytorch-grad-cam's batched `GradCAM` (its whole call: hooks, host copies, OpenCV resize) and Captum's
  `LayerGradCam` + `LayerAttribution.interpolate`;
- integrated gradients, 50 Gauss-Legendre steps on 16 images, against Captum's `IntegratedGradients` with the
  fastest `internal_batch_size` of a few tried;
- SmoothGrad (saliency inside), 50 samples on 16 images, against Captum's `NoiseTunnel(Saliency)`;
- Score-CAM of ResNet-18 `layer4` (512 channels) on 2 images (112 px) against pytorch-grad-cam's `ScoreCAM`.

Each result is checked before it is timed: the CAMs against the peer's raw maps (1e-4 relative), integrated
gradients against Captum's, SmoothGrad against the mean of Captum's Saliency on the same noise. ``--quick``: ResNet-18
on fewer, smaller images and fewer steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

import converters
import deepvis_jax as dv

from ._harness import Row, checked, max_rel, time_jax, time_torch
from ._models import torch_model

A = dv.attribution


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def _nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def _scaled(cam, hw):
    """Our Grad-CAM as pytorch-grad-cam returns it: upsampled bilinearly to the image, (m - min) / (max + 1e-7)."""
    up = A.upsample(cam, hw)
    lo = jnp.min(up, axis=(1, 2), keepdims=True)
    up = up - lo
    return up / (jnp.max(up, axis=(1, 2), keepdims=True) + 1e-7)


def _grad_cam_rows(arch, n, size, repeats):
    from captum.attr import LayerAttribution, LayerGradCam
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    tm = torch_model(arch)
    model = converters.from_torchvision(tm)
    x = np.random.default_rng(0).standard_normal((n, size, size, 3)).astype(np.float32)
    target = np.arange(n) * 37 % 1000
    xj = jnp.asarray(x)
    grad_cam = jax.jit(lambda m, v, t: _scaled(A.grad_cam(m, v, t, layer="layer4"), (size, size)))
    first, jax_s, ours = time_jax(lambda: grad_cam(model, xj, jnp.asarray(target)), repeats)
    cam = GradCAM(model=tm, target_layers=[tm.layer4])
    targets = [ClassifierOutputTarget(int(c)) for c in target]
    xt = _nchw(x)
    torch_s, theirs = time_torch(lambda: cam(input_tensor=xt, targets=targets), repeats)
    # the check: raw maps (before the peer's scaling and resizing) from its last call's recorded tensors
    acts = cam.activations_and_grads.activations[0].numpy()
    grads = cam.activations_and_grads.gradients[0].numpy()
    raw = np.maximum(cam.get_cam_image(xt, tm.layer4, targets, acts, grads, False), 0)
    err = max_rel(A.grad_cam(model, xj, target, layer="layer4"), raw)
    check = checked("raw Grad-CAM maps", err, 1e-4)
    scaled_err = float(np.max(np.abs(np.asarray(ours) - theirs)))  # OpenCV's resize differs from torch's by ~1e-3
    name = f"grad_cam {arch} layer4 {n}x{size}px"
    rows = [Row(f"{name} vs pytorch-grad-cam", jax_s, torch_s, first - jax_s, check,
                {"scaled maps max |diff| (OpenCV resize)": f"{scaled_err:.1e}"})]  # fmt: skip

    xg = xt.clone().requires_grad_(True)
    layer_gc = LayerGradCam(tm, tm.layer4)
    tt = torch.from_numpy(target)

    def captum():
        m = layer_gc.attribute(xg, target=tt, relu_attributions=True)
        return LayerAttribution.interpolate(m, (size, size), interpolate_mode="bilinear")

    upsampled = jax.jit(lambda m, v, t: A.upsample(A.grad_cam(m, v, t, layer="layer4"), (size, size)))
    first, jax_s, ours = time_jax(lambda: upsampled(model, xj, jnp.asarray(target)), repeats)
    torch_s, theirs = time_torch(captum, repeats)
    check = checked("upsampled Grad-CAM", max_rel(ours, theirs.detach().numpy()[:, 0]), 1e-4)
    rows.append(Row(f"{name} vs Captum LayerGradCam+interpolate", jax_s, torch_s, first - jax_s, check))
    return rows, tm, model


def _ig_row(tm, model, arch, n, size, steps, repeats):
    from captum.attr import IntegratedGradients

    x = np.random.default_rng(1).standard_normal((n, size, size, 3)).astype(np.float32)
    target = np.arange(n) * 11 % 1000
    xj, xt, tt = jnp.asarray(x), _nchw(x).requires_grad_(True), torch.from_numpy(target)
    chunk = max(1, min(steps, 64 // n))
    ig = jax.jit(lambda m, v, t: A.integrated_gradients(m, v, t, steps=steps, chunk=chunk))
    first, jax_s, (ours, _) = time_jax(lambda: ig(model, xj, jnp.asarray(target)), repeats, warmup=False)
    captum = IntegratedGradients(tm)
    best = None
    for batch in sorted({16, 64, n * steps}):  # tune the peer's internal batch size
        s, theirs = time_torch(lambda b=batch: captum.attribute(xt, target=tt, n_steps=steps, internal_batch_size=b),
                               max(1, repeats // 2))  # fmt: skip
        if best is None or s < best[0]:
            best = (s, batch, theirs)
    torch_s, batch, theirs = best
    check = checked("attributions (Captum's step sizes are float32)", max_rel(ours, _nhwc(theirs)), 1e-3)
    return Row(f"integrated_gradients {arch} {n}x{size}px {steps} steps vs Captum", jax_s, torch_s, first - jax_s,
               check, {"chunk": chunk, "captum internal_batch_size": batch})  # fmt: skip


def _smooth_row(tm, model, arch, n, size, samples, repeats):
    from captum.attr import NoiseTunnel, Saliency

    x = np.random.default_rng(2).standard_normal((n, size, size, 3)).astype(np.float32)
    target = np.arange(n) * 13 % 1000
    xj, xt, tt = jnp.asarray(x), _nchw(x).requires_grad_(True), torch.from_numpy(target)
    key = jax.random.key(0)
    chunk = max(1, min(samples, 64 // n))
    sg = jax.jit(lambda m, v, t, k: A.smooth_grad(A.saliency, m, v, t, k, samples=samples, sigma=0.15, chunk=chunk,
                                                  abs=False))  # fmt: skip
    first, jax_s, ours = time_jax(lambda: sg(model, xj, jnp.asarray(target), key), repeats, warmup=False)
    # the check, untimed: the mean of Captum's Saliency on the same noisy images
    noisy = x[None] + np.asarray(A.smooth_noise(xj, key, samples, 0.15))
    sal = Saliency(tm)
    ref = np.mean([_nhwc(sal.attribute(_nchw(v).requires_grad_(True), target=tt, abs=False)) for v in noisy], 0)
    check = checked("SmoothGrad on the same noise", max_rel(ours, ref), 1e-3)
    stdev = [0.15 * float(x[i].max() - x[i].min()) for i in range(n)]
    nt = NoiseTunnel(sal)
    torch_s, _ = time_torch(lambda: nt.attribute(xt, nt_type="smoothgrad", nt_samples=samples, stdevs=stdev[0],
                                                 nt_samples_batch_size=chunk, target=tt, abs=False),
                            repeats)  # fmt: skip
    return Row(f"smooth_grad saliency {arch} {n}x{size}px {samples} samples vs Captum NoiseTunnel", jax_s, torch_s,
               first - jax_s, check, {"chunk": chunk})  # fmt: skip


def _score_cam_row(n, size, repeats):
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    tm = torch_model("resnet18")
    model = converters.from_torchvision(tm)
    x = np.random.default_rng(3).standard_normal((n, size, size, 3)).astype(np.float32)
    target = np.arange(n) * 17 % 1000
    xj = jnp.asarray(x)
    sc = jax.jit(lambda m, v, t: A.upsample(A.score_cam(m, v, t, layer="layer4", chunk=64), (size, size)))
    first, jax_s, _ = time_jax(lambda: sc(model, xj, jnp.asarray(target)), repeats, warmup=False)
    cam = ScoreCAM(model=tm, target_layers=[tm.layer4])
    cam.batch_size = 64
    targets = [ClassifierOutputTarget(int(c)) for c in target]
    xt = _nchw(x)
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bars
        torch_s, _ = time_torch(lambda: cam(input_tensor=xt, targets=targets), repeats)
    acts = cam.activations_and_grads.activations[0].numpy()
    raw = np.maximum(cam.get_cam_image(xt, tm.layer4, targets, acts, None, False), 0)
    check = checked("raw Score-CAM maps", max_rel(A.score_cam(model, xj, target, layer="layer4", chunk=64), raw), 1e-4)
    return Row(f"score_cam resnet18 layer4 {n}x{size}px vs pytorch-grad-cam", jax_s, torch_s, first - jax_s, check)


def run(quick: bool) -> list[Row]:
    if quick:
        rows, tm, model = _grad_cam_rows("resnet18", 8, 112, 2)
        rows.append(_ig_row(tm, model, "resnet18", 2, 112, 8, 2))
        rows.append(_smooth_row(tm, model, "resnet18", 2, 112, 4, 2))
        rows.append(_score_cam_row(1, 64, 1))
        return rows
    rows, tm, model = _grad_cam_rows("resnet50", 64, 224, 3)
    rows.append(_ig_row(tm, model, "resnet50", 16, 224, 50, 2))
    rows.append(_smooth_row(tm, model, "resnet50", 16, 224, 50, 2))
    rows.append(_score_cam_row(2, 112, 2))
    return rows
