"""Single-unit projections per layer: on the unit's cone or box (`project_units`, what `visualize(mode="max")` and
the atlas use; AlexNet and VGG project on cones) against the whole-image projection it replaced and against
PyTorch, 224 px.

- ``top-9``: `dv.visualize(top_k=9, mode="max")` against the per-channel Captum-style PyTorch loop (one forward
  and backward per channel); ``whole-image`` is the same JAX program projecting through the whole image (the path
  before the crop).
- ``atlas tiles``: 32 winners (4 images x 8 units) projected and cut to their receptive fields, as the atlas does:
  the crop path against a PyTorch loop of one backward per tile; ``whole-image``: the atlas before the crop (a
  batch of the winners' images projected whole, then cut).
Both JAX paths use the same recorded switches, so their projections are compared elementwise (float32); the timed
crop path is checked against the timed PyTorch outputs too (float32, `F32_TOL` of the peak): the top-9 projections
(same channels) and all 32 tiles, torch's whole-image gradients cut to the same windows.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import torch
from jax import lax

import converters
import deepvis_jax as dv
from converters import backward_features
from deepvis_jax._src.deconv import _forward, _project
from deepvis_jax._src.visualize import _signals

from ._deconv_torch import top_k_projections
from . import _harness
from ._harness import Row, checked, max_rel, time_jax, time_torch
from ._models import torch_model

CASES = (("alexnet", ("conv1", "conv2", "conv3", "conv4", "conv5")),
         ("vgg16", ("conv2_2", "conv3_3", "conv4_3", "conv5_3")))  # fmt: skip
QUICK = (("alexnet", ("conv5",)), ("vgg16", ("conv3_3",)))
TILES = 32
F32_TOL = 1e-5  # peak-relative (measured: 1.5e-6 at AlexNet conv5 and VGG16 conv3_3)


@functools.partial(jax.jit, static_argnames=("name",))
def _visualize_whole(model, x, *, name):
    """visualize(top_k=9, mode="max") as it was before the crop: each peak unit projected through the whole image."""
    act, switches = _forward(model, x, name)
    a = act[0]
    _, channels = lax.top_k(jnp.max(a, axis=(0, 1)), 9)
    signals = _signals(a, channels, "max")
    return channels, jax.vmap(lambda s: _project(model, switches, s, name, "deconv", channels))(signals)[:, 0]


@functools.partial(jax.jit, static_argnames=("name",))
def _tiles_whole(model, x, units, values, *, name):
    """The atlas's winners as they were projected before the crop: a batch of the winners' images (winner k is
    unit k of image k), one signal per image, projected through the whole images (then cut to the field)."""
    act, switches = _forward(model, x, name)
    signal = jnp.zeros_like(act).at[units[:, 0], units[:, 1], units[:, 2], units[:, 3]].set(values)
    return _project(model, switches, signal, name, "deconv", None)


@functools.partial(jax.jit, static_argnames=("name",))
def _tiles_crop(model, x, units, values, *, name):
    """The atlas now: forward pass and projection of each winner on its receptive-field crop only."""
    return dv.project_units(model, x, units, values, name, crop_to_field=True)


def _cut(full: np.ndarray, units: np.ndarray, rf) -> np.ndarray:
    """Each whole-image projection's receptive-field window, zero outside the image (what the atlas shows)."""
    p = rf.size
    out = []
    for k, (n, r, c, _) in enumerate(units):
        padded = np.pad(full[n], ((p, p), (p, p), (0, 0)))
        t, l = rf.offset + rf.stride * r + p, rf.offset + rf.stride * c + p
        out.append(padded[t : t + rf.size, l : l + rf.size])
    return np.stack(out)


def _torch_tiles(features, x: torch.Tensor, units: np.ndarray) -> torch.Tensor:
    """One forward + backward per tile, the Captum way (the whole image's gradient; cutting it is free)."""
    out = []
    for n, r, c, ch in units.tolist():
        xg = x[n : n + 1].detach().clone().requires_grad_(True)
        a = features(xg)
        grad = torch.zeros_like(a)
        grad[0, ch, r, c] = a[0, ch, r, c].detach()
        out.append(torch.autograd.grad(a, xg, grad)[0][0])
    return torch.stack(out)


def run(quick: bool) -> list[Row]:
    rows = []
    repeats = 2 if quick else 3
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (4, 224, 224, 3)).astype(np.float32)
    x = dv.normalize(jnp.asarray(images))
    xt = torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))
    image = (images[0] * 255).astype(np.uint8)
    x0 = dv.normalize(jnp.asarray(image[None], jnp.float32) / 255)
    xt0 = torch.from_numpy(np.ascontiguousarray(np.asarray(x0).transpose(0, 3, 1, 2)))
    # --check: AlexNet only (VGG16's 32 torch tiles at 224 px would take a minute of CI)
    cases = (QUICK[:1] if _harness.CHECK_ONLY else QUICK) if quick else CASES
    for arch, layers in cases:
        tm = torch_model(arch)
        model = converters.from_torchvision(tm)
        for layer in layers:
            feats = backward_features(tm, layer)
            # top-9 of one image
            first, jax_s, r = time_jax(lambda: dv.visualize(model, image, layer, top_k=9, mode="max"), repeats)
            _, whole_s, (channels, whole) = time_jax(lambda: _visualize_whole(model, x0, name=layer), repeats)
            torch_s, (tchannels, tproj) = time_torch(lambda: top_k_projections(feats, xt0, 9), repeats)
            if not np.array_equal(np.asarray(r.channels), tchannels.numpy()):
                raise AssertionError(f"{arch} {layer}: JAX and PyTorch chose different channels; timing is void")
            check = checked("crop vs whole-image", max_rel(r.projections, whole), 1e-5)
            err = max(max_rel(r.projections[k], tproj[k].numpy().transpose(1, 2, 0)) for k in range(9))
            check += "; " + checked("f32 vs torch", err, F32_TOL)
            rows.append(Row(f"top-9 {arch} {layer} 224px", jax_s, torch_s, first - jax_s, check,
                            {"whole-image path": f"{whole_s * 1e3:.1f} ms (crop {whole_s / jax_s:.1f}x faster)"}))
            # atlas tiles: the strongest 8 units of 4 images, as winners
            act = np.asarray(dv.forward(model, x, layer)[0])
            top = np.argsort(-act.reshape(-1))[:TILES]
            winners = np.stack(np.unravel_index(top, act.shape), 1).astype(np.int32)
            values = jnp.asarray(act.reshape(-1)[top])
            xw = x[winners[:, 0]]  # the atlas projects a batch of the winners' images, winner k in image k
            units = np.concatenate([np.arange(TILES, dtype=np.int32)[:, None], winners[:, 1:]], 1)
            u = jnp.asarray(units)
            first, jax_s, tiles = time_jax(lambda: _tiles_crop(model, xw, u, values, name=layer), 1)
            _, whole_s, whole = time_jax(lambda: _tiles_whole(model, xw, u, values, name=layer), 1)
            torch_s, ttiles = time_torch(lambda: _torch_tiles(feats, xt, winners), 1)
            rf = dv.receptive_field(model, layer)
            cut = _cut(np.asarray(whole), units, rf)
            check = checked("tiles vs whole-image cut", max_rel(tiles, cut), 1e-5)
            tcut = _cut(ttiles.numpy().transpose(0, 2, 3, 1), units, rf)  # torch's tile k: image k of `units`
            err = max(max_rel(tiles[k], tcut[k]) for k in range(TILES))
            check += "; " + checked("f32 vs torch", err, F32_TOL)
            rows.append(Row(f"atlas {TILES} tiles {arch} {layer} 224px", jax_s, torch_s, first - jax_s, check,
                            {"whole-image path": f"{whole_s * 1e3:.1f} ms (crop {whole_s / jax_s:.1f}x faster); "
                                                 f"torch: all {TILES} tiles timed"}))  # fmt: skip
    return rows
