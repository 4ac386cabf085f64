"""deepvis_jax against Captum itself, the reference the README's methods table names: `dv.project` of a unit's
one-hot signal (and of a channel's whole map, "all" mode) equals Captum's NeuronDeconvolution, NeuronGuidedBackprop
and NeuronGradient, and `dv.occlusion`'s maps equal Captum's Occlusion, on torchvision AlexNet, VGG16 and ResNet-18
with the same random weights, in float64, on small images. By default AlexNet runs both checks and ResNet-18 the
projections; ``DEEPVIS_SLOW_TESTS=1`` adds VGG16 and ResNet-18's occlusion (a minute each on 2 cores).

The torch side is cut by module paths written here (a forward hook on ``features.7`` and so on), not by the
library's own layer tables. Captum's own rules apply to the ReLU *modules* (its hooks), so its ReLUs are made
not-in-place (the same function). The tests of the other nonlinearities and of graph networks stay with the
project's own torch references (tests/test_rules.py, tests/test_graph_projections.py): Captum has no rule for them.
"""

from __future__ import annotations

import functools
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

captum_attr = pytest.importorskip("captum.attr")
torch = pytest.importorskip("torch")

import converters  # noqa: E402
import deepvis_jax as dv  # noqa: E402
from reference import assert_close, nchw, nhwc, torch_model  # noqa: E402

# (architecture, deepvis_jax layer, the torch module whose output it is, image side, occluder patch and stride)
CASES = [
    ("alexnet", "conv3", "features.7", 64, 16, 16),
    ("vgg16", "conv3_1", "features.11", 32, 8, 8),
    ("resnet18", "layer2.0", "layer2.0", 32, 8, 8),
]
CAPTUM = {"deconv": captum_attr.NeuronDeconvolution, "guided": captum_attr.NeuronGuidedBackprop,
          "gradient": captum_attr.NeuronGradient}  # fmt: skip
SLOW = pytest.mark.skipif(not os.environ.get("DEEPVIS_SLOW_TESTS"), reason="slow (up to a minute each on 2 cores: "
                          "VGG16 in float64 in both frameworks, the whole network per occluder position); AlexNet "
                          "runs always; set DEEPVIS_SLOW_TESTS=1 to run it")  # fmt: skip
PEAK, ELEMENTWISE = 1e-10, 1e-10  # float64, as docs/numerics.md states; measured at most 2e-15 and 3e-12


def _torch64(arch: str) -> torch.nn.Module:
    tm = torch_model(arch, seed=3).double()
    for m in tm.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False  # Captum's backward hooks on ReLU modules refuse in-place outputs
    return tm


def _module(tm: torch.nn.Module, path: str) -> torch.nn.Module:
    return dict(tm.named_modules())[path]


def _layer_output(tm, path, x_nchw) -> torch.Tensor:
    out = {}
    h = _module(tm, path).register_forward_hook(lambda m, i, o: out.__setitem__("o", o))
    try:
        with torch.no_grad():
            tm(x_nchw)
    finally:
        h.remove()
    return out["o"]


def _captum(cls, tm, path, x, selector):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Captum's notes on hooking ReLU modules: not ours to fix
        return nhwc(cls(tm, _module(tm, path)).attribute(nchw(x).requires_grad_(True), selector))


@functools.lru_cache(maxsize=1)  # one network held at a time (VGG16 in float64 is 1.1 GB per framework)
def _case(arch: str):
    _, layer, path, side, patch, stride = next(c for c in CASES if c[0] == arch)
    tm = _torch64(arch)
    with jax.enable_x64(True):
        model = converters.from_torchvision(tm)
        image01 = np.random.default_rng(4).random((side, side, 3))
        x = np.asarray(dv.normalize(jnp.asarray(image01)[None]))
    assert x.dtype == np.float64
    return arch, layer, path, tm, model, image01, x, patch, stride


@pytest.mark.parametrize("arch", ["alexnet", pytest.param("vgg16", marks=SLOW), "resnet18"])
def test_projections_equal_captum_neuron_methods(arch):
    """A unit's projection ("max" mode with a unit signal) and a channel's ("all" mode: its map weighted by its own
    activations) by each method equal Captum's neuron attribution of that unit / of that weighted sum."""
    arch, layer, path, tm, model, _, x, _, _ = _case(arch)
    with jax.enable_x64(True):
        act, sw = dv.forward(model, jnp.asarray(x), layer)
        a = np.asarray(act)
        np.testing.assert_allclose(a, nhwc(_layer_output(tm, path, nchw(x))), rtol=1e-10, atol=1e-10 * a.max())
        c = int(np.argmax(a.max(axis=(0, 1, 2))))
        i, j = np.unravel_index(np.argmax(a[0, :, :, c]), a.shape[1:3])
        unit = np.zeros_like(a)
        unit[0, i, j, c] = 1.0
        whole = np.zeros_like(a)
        whole[..., c] = a[..., c]
        weights = torch.from_numpy(np.ascontiguousarray(a[0, :, :, c]))
        for method, cls in CAPTUM.items():
            for what, signal, selector in (
                ("unit", unit, (c, int(i), int(j))),  # Captum's (channel, row, col) of the layer's NCHW output
                ("channel", whole, lambda out: (out[:, c] * weights).sum(dim=(1, 2))),
            ):
                ours = np.asarray(dv.project(model, sw, jnp.asarray(signal), layer, method))
                ref = _captum(cls, tm, path, x, selector)
                assert np.abs(ref).max() > 0
                assert_close(ours, ref, PEAK, elementwise=ELEMENTWISE, err_msg=f"{arch} {layer} {method} {what}")


@pytest.mark.parametrize("arch", ["alexnet", pytest.param("vgg16", marks=SLOW), pytest.param("resnet18", marks=SLOW)])
def test_occlusion_equals_captum(arch):
    """`dv.occlusion`'s class-probability and feature maps equal Captum's: its FeatureAblation with one feature per
    square position (the squares tile the image: stride = patch) gives each position's drop in float64, so the
    maps themselves compare at float64 precision; its Occlusion (the same square, stride and grey, 0 after
    normalization) spreads each drop over the pixels the square covers and returns float32 (Captum divides by
    the counts in float32), so that comparison is at float32 precision."""
    arch, layer, path, tm, model, image01, x, patch, stride = _case(arch)
    side = x.shape[1]
    with jax.enable_x64(True):
        r = dv.occlusion(model, image01, patch=patch, stride=stride, layer=layer, chunk=8)
    n = (side - patch) // stride + 1
    assert stride == patch and len(r.rows) == len(r.cols) == n and r.rows[-1] + patch == side  # a tiling

    xt = nchw(x)  # the normalized image: the grey square is 0 there
    measures = {"probability": (lambda t: torch.softmax(tm(t), dim=1)[:, r.target], r.probability),
                "feature": (lambda t: _layer_output(tm, path, t)[:, r.channel].sum(dim=(1, 2)), r.feature)}
    position = torch.arange(n * n).reshape(n, n).repeat_interleave(patch, 0).repeat_interleave(patch, 1)[None, None]
    window = dict(sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride))
    for what, (f, ours) in measures.items():
        with torch.no_grad():
            f0 = f(xt).item()
            drops = captum_attr.FeatureAblation(f).attribute(xt, baselines=0.0, feature_mask=position).numpy()[0]
            spread = captum_attr.Occlusion(f).attribute(xt, baselines=0.0, **window).numpy()[0]
        assert drops.dtype == np.float64 and spread.dtype == np.float32  # Captum's own choice for Occlusion
        maps = f0 - drops[0, ::patch, ::patch]  # each square's value: the unoccluded one minus its drop
        assert np.abs(maps - f0).max() > 0
        assert_close(ours, maps, PEAK, elementwise=ELEMENTWISE, err_msg=f"{arch} occlusion {what} (float64)")
        mine = np.kron(np.asarray(f0 - ours), np.ones((patch, patch)))  # the drop of the square over each pixel
        for c in range(3):  # Captum's attribution: one value per pixel, the same in R, G and B
            assert_close(mine, spread[c], 1e-6, elementwise=1e-6, err_msg=f"{arch} occlusion {what} (Occlusion)")
