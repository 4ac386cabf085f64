"""The CAM family on a vision transformer and (behind DEEPVIS_SLOW_TESTS=1) torchvision's MobileNetV3-Small, both
imported by converters.from_torch, in float64, against pytorch-grad-cam's maps before its scaling and resizing.

The ViT is torchvision's own `VisionTransformer` class made tiny (32 px, 8 px patches: a 4 x 4 grid, 2 layers,
hidden 32) so that CI stays cheap. Its token layers are maps already (the class token dropped, the patch tokens on
their grid): ``grad_cam(model, x, target, layer="encoder.layers.encoder_layer_1.ln_1")`` is (N, 4, 4) with no
reshape written by the user, and equals pytorch-grad-cam given the `reshape_transform` its ViT tutorial writes."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torchvision.models import mobilenet_v3_small
from torchvision.models.vision_transformer import VisionTransformer

import converters
import deepvis_jax as dv
from reference import as_float64, assert_close, nchw

A = dv.attribution
CAMS = (("grad_cam", "GradCAM"), ("hires_cam", "HiResCAM"), ("grad_cam_pp", "GradCAMPlusPlus"),
        ("xgrad_cam", "XGradCAM"), ("layer_cam", "LayerCAM"))  # fmt: skip


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _convert(tm, hw):
    model = converters.from_torch(tm, torch.randn(2, 3, *hw))
    with jax.enable_x64(True):
        model = as_float64(model)
    return tm.double(), model


def _peer_raw(cls_name, tm, module, x, target, reshape_transform=None):
    """pytorch-grad-cam's map before scaling and resizing: its whole call (hooks record the activations and
    gradients, through `reshape_transform`), then ``max(get_cam_image(...), 0)``."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = getattr(pytorch_grad_cam, cls_name)(model=tm, target_layers=[module], reshape_transform=reshape_transform)
    xt, targets = nchw(x).double(), [ClassifierOutputTarget(c) for c in target]
    cam(input_tensor=xt, targets=targets)
    acts = cam.activations_and_grads.activations[0].numpy()
    grads = cam.activations_and_grads.gradients[0].numpy()
    raw = cam.get_cam_image(xt, module, targets, acts, grads, False)
    cam.activations_and_grads.release()
    return np.maximum(raw, 0)


def _check(tm, model, module, layer, x, target, reshape_transform=None, methods=CAMS):
    for ours, peer in methods:
        ref = _peer_raw(peer, tm, module, x, target, reshape_transform)
        got = getattr(A, ours)(model, jnp.asarray(x), target, layer=layer)
        assert got.shape == ref.shape, (ours, got.shape, ref.shape)
        assert float(np.max(ref)) > 0, f"{peer}: an all-zero reference proves nothing"
        assert_close(got, ref, 1e-10, err_msg=f"{ours} at {layer}", elementwise=1e-10)


def _vit_tokens_to_maps(tensor, h=4, w=4):
    """pytorch-grad-cam's ViT reshape_transform (its tutorial's): drop the class token, patch tokens on the grid."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), h, w, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def test_vit_token_layers_are_maps_and_cams_equal_pytorch_grad_cam():
    torch.manual_seed(0)
    tm = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                           num_classes=10).eval()  # fmt: skip
    with torch.no_grad():  # torchvision zero-initializes the head and the class token: every gradient would be 0
        torch.nn.init.normal_(tm.heads.head.weight, std=0.5)
        torch.nn.init.normal_(tm.class_token, std=0.5)
    tm, model = _convert(tm, (32, 32))
    x, target = np.random.default_rng(0).standard_normal((2, 32, 32, 3)), [3, 8]
    layer = "encoder.layers.encoder_layer_1.ln_1"  # the tutorial's layer: the last block's first LayerNorm
    assert layer in dv.layers(model)
    module = tm.encoder.layers.encoder_layer_1.ln_1
    _check(tm, model, module, layer, x, target, _vit_tokens_to_maps, methods=[CAMS[i] for i in (0, 2, 4)])
    with pytest.raises(ValueError, match="does not depend on layer"):  # a layer above the target's is one line
        A.grad_cam(model, jnp.asarray(x), dv.targets.channel("encoder.layers.encoder_layer_0", 0), layer=layer)


@pytest.mark.skipif(not os.environ.get("DEEPVIS_SLOW_TESTS"), reason="torchvision's MobileNetV3-Small (compiles "
                    "for ~1 min); set DEEPVIS_SLOW_TESTS=1")  # fmt: skip
def test_mobilenet_v3_small_cams_equal_pytorch_grad_cam():
    """Hardswish, ReLU and squeeze-excitation (hardsigmoid gates) in a real torchvision network at 64 px: the five
    gradient CAMs at features.9 (a block with squeeze-excitation, 4 x 4), Grad-CAM at features.12 (2 x 2)."""
    from reference import torch_model

    tm, model = _convert(torch_model("mobilenet_v3_small"), (64, 64))
    x, target = np.random.default_rng(1).standard_normal((2, 64, 64, 3)), [281, 7]
    _check(tm, model, tm.features[9], "features.9", x, target)
    _check(tm, model, tm.features[12], "features.12", x, target, methods=CAMS[:1])
