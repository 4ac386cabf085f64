"""DeconvNet, guided and gradient projections of graph networks (`converters.from_torch`) against torch autograd with
the same rules (`converters.projection_rules`), float64 1e-10 (peak-relative and elementwise): GoogLeNet (ReLU via
F.relu, ceil-mode pools, concatenations), MobileNet v3 (hardswish, squeeze-excitation gates with hardsigmoid),
DenseNet (F.relu, concatenations), ConvNeXt (GELU, layer norm, layer scale) and ViT (GELU, layer norm, softmax
attention), each at a low and a high layer by `dv.project` (a random signal over the whole map), and at the low
layer by `dv.project_units` (the strongest unit, on the crop that holds its field where the field is local:
GoogLeNet, DenseNet, ConvNeXt).

GoogLeNet and MobileNet v3 are torchvision's own models; DenseNet, ConvNeXt and ViT are torchvision's classes
(`DenseNet`, `ConvNeXt`, `VisionTransformer`) at small widths and depths, so that float64 stays cheap. CI runs every
family at both layers except the high layers of GoogLeNet and MobileNet v3 (marked ``families``: ``pytest
--families``), whose compile time is several times the others'.
"""

import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.convnext import CNBlockConfig

import converters
import deepvis_jax as dv
from reference import as_float64, assert_close, nchw, nhwc
from test_graph import _upto

METHODS = ("deconv", "guided", "gradient")


def _families():
    tv = torchvision.models
    return {  # name: (module factory, input size, a low and a high layer)
        "googlenet": (lambda: tv.googlenet(weights=None, aux_logits=False, init_weights=False), 64,
                      ("conv3", "inception4a")),
        "mobilenet_v3_small": (lambda: tv.mobilenet_v3_small(weights=None), 64, ("features.1", "features.6")),
        "densenet": (lambda: tv.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2), 32,
                     ("features.denseblock1", "features.denseblock2")),
        "convnext": (lambda: tv.convnext.ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 2)]), 32,
                     ("features.1.0", "features.3.1")),
        "vit": (lambda: tv.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                             mlp_dim=32), 32,
                ("encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1")),
    }  # fmt: skip


def _torch_module(factory, size: int) -> torch.nn.Module:
    """Seeded random weights; BatchNorm statistics measured on random images (momentum 1), so deep layers respond."""
    torch.manual_seed(0)
    m = factory()
    for bn in m.modules():
        if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
            bn.momentum = 1.0
    m.train()
    with torch.no_grad():
        m(torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1)))
    return m.eval()


def _as_torch(spec, out: torch.Tensor, signal: np.ndarray):
    """The layer's map (N, h, w, C) of a hook output, and `signal` (shaped like that map) as the output's cotangent."""
    if spec.kind == "tokens":  # (N, skip + h*w, D): the patch tokens; nothing flows into the class token
        n, _, d = out.shape
        cot = torch.zeros_like(out)
        cot[:, spec.skip :] = torch.from_numpy(signal.reshape(n, -1, d))
        return out[:, spec.skip :].detach().numpy().reshape(signal.shape), cot
    if spec.kind == "nhwc":  # torch holds the map channels last already (Swin's stages)
        return out.detach().numpy(), torch.from_numpy(np.ascontiguousarray(signal))
    return nhwc(out), nchw(signal)


@functools.lru_cache(maxsize=None)
def _captured(name: str):
    """The torch module (float64) and its import (float64), one capture per family and process."""
    factory, size, _ = _families()[name]
    tm = _torch_module(factory, size)
    model = converters.from_torch(tm, torch.randn(1, 3, size, size), dynamic=False)
    with jax.enable_x64(True):
        return copy.deepcopy(tm).double(), as_float64(model)


EXPENSIVE = {("googlenet", "high"), ("mobilenet_v3_small", "high")}  # 2-4x the compile time of the others


@pytest.mark.parametrize("name,which", [
    pytest.param(n, w, marks=[pytest.mark.families] if (n, w) in EXPENSIVE else [])
    for n in _families() for w in ("low", "high")])  # fmt: skip
def test_graph_projections_equal_torch_with_the_same_rules(name, which):
    _, size, layers = _families()[name]
    layer = layers[0] if which == "low" else layers[1]
    units = which == "low"  # single units at the low layer, on a crop where its field is local
    x = np.random.default_rng(0).standard_normal((1, size, size, 3))
    with jax.enable_x64(True):
        tm64, m64 = _captured(name)
        spec = m64.arch.spec(layer)

        @jax.jit
        def run(m, x, signal):  # each method's projection of a whole-map signal (and of the strongest unit)
            act, sw = dv.forward(m, x, layer)
            c = jnp.argmax(jnp.max(act[0], axis=(0, 1)))
            i, j = jnp.unravel_index(jnp.argmax(act[0, :, :, c]), act.shape[1:3])
            unit = jnp.stack([0, i, j, c]).astype(jnp.int32)[None]
            return act, unit, {k: (dv.project(m, sw, signal, layer, k),
                                   dv.project_units(m, sw, unit, act[0, i, j, c][None], layer, k)[0] if units
                                   else None) for k in METHODS}  # fmt: skip

        shape = jax.eval_shape(lambda m, x: dv.forward(m, x, layer)[0], m64, jnp.asarray(x)).shape
        signal = np.random.default_rng(1).standard_normal(shape)
        act, unit, ours = run(m64, jnp.asarray(x), jnp.asarray(signal))
    _, i, j, c = np.asarray(unit[0]).tolist()
    one = np.zeros(shape)
    one[0, i, j, c] = act[0, i, j, c]
    for method in METHODS:
        cases = [("map", signal, ours[method][0])] + ([("unit", one, ours[method][1][None])] if units else [])
        for what, s, got in cases:
            xt = nchw(x).requires_grad_(True)
            with converters.projection_rules(method):
                out = _upto(tm64, layer, xt)
                ref_act, cot = _as_torch(spec, out, s)
                (ref,) = torch.autograd.grad(out, xt, cot)
            assert_close(act, ref_act, 1e-12, err_msg=f"{name} {layer} activation")
            assert np.abs(nhwc(ref)).max() > 0
            assert_close(got, nhwc(ref), 1e-10, elementwise=1e-10, err_msg=f"{name} {layer} {method} {what}")
